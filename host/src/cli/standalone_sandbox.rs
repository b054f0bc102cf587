//! `flytewasm sandbox`: the embedded test-double cluster on its own, with a
//! kubeconfig for kubectl and other tools, and the control endpoint for
//! fault injection (see `crate::sandbox`).

use std::path::PathBuf;
use std::time::Duration;

use crate::executor::lifecycle::plugin_kind;
use crate::sandbox::{Kind, Sandbox, SandboxConfig};

#[derive(Debug, clap::Args)]
#[command(
    after_help = "Fault injection, for tests in other processes, on the sandbox's address:\n  \
    curl -X POST URL/sandbox.flytewasm.io/v1/faults -d '{\"failNext\": [{\"verb\": \"create\", \"code\": 503, \"times\": 3}]}'\n  \
    keys (any subset): clear, failNext [{verb, code, times}], latencyMs, writeLatencyMs, dropWatches\n  \
    GET on the same path: {requests, errorsServed, latencyMs, writeLatencyMs, failNext}"
)]
pub struct Args {
    /// Port on 127.0.0.1.
    #[arg(long, default_value_t = 6443)]
    pub port: u16,
    /// Also serve the kinds these plugins create.
    #[arg(long, env = "FLYTEWASM_PLUGINS")]
    pub plugins: Option<PathBuf>,
    /// Where to write the kubeconfig (default: in the temp directory).
    #[arg(long)]
    pub kubeconfig: Option<PathBuf>,
    /// Milliseconds between simulated operator states.
    #[arg(long, default_value_t = 500)]
    pub step_ms: u64,
    /// No garbage collector: orphan and foreground deletions then wait
    /// forever for their finalizers, as on a cluster without
    /// kube-controller-manager.
    #[arg(long)]
    pub no_garbage_collector: bool,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let kinds = match &args.plugins {
        Some(dir) => {
            let runtime = super::runtime(&Default::default())?;
            let registry = crate::registry::Registry::load_dir(&runtime, dir)?;
            registry.plugins().iter().map(plugin_kind).collect()
        }
        None => Vec::new(),
    };
    let tokio = tokio::runtime::Runtime::new()?;
    tokio.block_on(async move {
        // Only what the plugins create: other CRDs are installed through the API.
        let config = SandboxConfig {
            port: args.port,
            step: Duration::from_millis(args.step_ms),
            kinds: Vec::new(),
            garbage_collector: !args.no_garbage_collector,
            ..SandboxConfig::default()
        };
        let sandbox = Sandbox::start(config).await?;
        for kind in kinds {
            sandbox.register(Kind::new(&kind.api_version, &kind.kind, &kind.plural));
        }
        let path = args.kubeconfig.unwrap_or_else(|| {
            std::env::temp_dir().join(format!("flytewasm-sandbox-{}.kubeconfig", args.port))
        });
        std::fs::write(&path, sandbox.kubeconfig())?;
        println!(
            "[sandbox] embedded sandbox cluster (a test double) serving at {}",
            sandbox.url()
        );
        println!("[sandbox] kubeconfig: {}", path.display());
        println!(
            "[sandbox] export KUBECONFIG={}   # Ctrl-C stops the sandbox",
            path.display()
        );
        tokio::signal::ctrl_c().await?;
        println!("[sandbox] stopped");
        Ok(())
    })
}
