//! `flytewasm serve`: Flyte 1's agent and Flyte 2's connector gRPC services
//! for the plugins in a directory, on the current cluster (in-cluster service account or
//! KUBECONFIG) or the embedded sandbox.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use tokio::net::TcpListener;

use crate::cluster::{Cluster, SHARD_KEYS, Shard};
use crate::executor::{Executor, Tasks};
use crate::metrics::Metrics;
use crate::registry::{AllowList, LivePlugins, Options, PluginState};
use crate::server::serve;
use crate::task_service::{MetaKeys, TaskService};

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub host: super::HostArgs,
    /// Address for the gRPC services (Flyte 1's agent and Flyte 2's connector protocols).
    #[arg(long, env = "FLYTEWASM_GRPC_ADDRESS", default_value = "0.0.0.0:8000")]
    pub grpc: SocketAddr,
    /// Address for /healthz, /readyz and /metrics.
    #[arg(long, env = "FLYTEWASM_HTTP_ADDRESS", default_value = "0.0.0.0:8080")]
    pub http: SocketAddr,
    /// Serve gRPC over TLS with this certificate (PEM); needs --tls-key.
    #[arg(long, requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// The private key (PEM) of --tls-cert.
    #[arg(long, requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// Require client certificates signed by this CA (PEM): mutual TLS,
    /// for meshes and setups that issue them. Needs --tls-cert.
    #[arg(long, requires = "tls_cert")]
    pub tls_client_ca: Option<PathBuf>,
    /// Run on the embedded sandbox cluster (a test double), for trying it out.
    #[arg(long)]
    pub sandbox: bool,
    /// Sandbox only: write its kubeconfig here, for kubectl.
    #[arg(long, requires = "sandbox")]
    pub sandbox_kubeconfig: Option<PathBuf>,
    /// Sandbox only: milliseconds between simulated operator states.
    #[arg(long, default_value_t = 500)]
    pub sandbox_step_ms: u64,
    /// kubeconfig context to use (default: in-cluster, else the current one).
    #[arg(long, conflicts_with = "sandbox")]
    pub context: Option<String>,
    /// Keep each task on the plugin build that created it while that build
    /// is loaded (default: tasks move to the newest build of their plugin).
    #[arg(long)]
    pub pin_versions: bool,
    /// Only serve plugins whose sha256 digest is listed for their id in this
    /// YAML file (`spark: [sha256:...]`).
    #[arg(long, env = "FLYTEWASM_ALLOW_LIST")]
    pub allow_list: Option<PathBuf>,
    /// Replicas that split the objects between their watch caches (1 to
    /// 32): each caches its share and reads the others' from the API, and
    /// every replica answers for every task.
    #[arg(long, env = "FLYTEWASM_SHARD_COUNT", default_value_t = 1)]
    pub shard_count: u32,
    /// This replica's share, 0 to --shard-count - 1 (a StatefulSet's pod
    /// index, `apps.kubernetes.io/pod-index`).
    #[arg(long, env = "FLYTEWASM_SHARD_INDEX", default_value_t = 0)]
    pub shard_index: u32,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let config = args.host.config()?;
    let shard = Shard::new(args.shard_index, args.shard_count).map_err(anyhow::Error::msg)?;
    let keys = match (&config.security.resource_meta_keys, args.sandbox) {
        (Some(path), _) => MetaKeys::load(path)?,
        (None, true) => MetaKeys::ephemeral(),
        (None, false) => anyhow::bail!(
            "serve needs security.resource-meta-keys in the host config: the keys file every replica shares to sign resource_meta (docs/operations.md)"
        ),
    };
    let runtime = super::runtime(&config.runtime)?;
    let options = Options {
        allow_list: args
            .allow_list
            .as_deref()
            .map(read_allow_list)
            .transpose()?,
        owners: config.task_type_owners.clone(),
    };
    let metrics = Arc::new(Metrics::default());
    let plugins = LivePlugins::load(runtime, &args.host.plugins, options, Some(metrics.clone()))?;
    let _watching = plugins.watch()?;
    let tls = match (&args.tls_cert, &args.tls_key) {
        (Some(cert), Some(key)) => {
            let identity = tonic::transport::Identity::from_pem(
                read(cert, "--tls-cert")?,
                read(key, "--tls-key")?,
            );
            let mut tls = tonic::transport::ServerTlsConfig::new().identity(identity);
            if let Some(ca) = &args.tls_client_ca {
                tls = tls.client_ca_root(tonic::transport::Certificate::from_pem(read(
                    ca,
                    "--tls-client-ca",
                )?));
            }
            Some(tls)
        }
        _ => None,
    };

    let tokio = tokio::runtime::Runtime::new()?;
    tokio.block_on(async move {
        let (cluster, _sandbox) = if args.sandbox {
            let sandbox =
                super::sandbox_for(plugins.current().plugins(), args.sandbox_step_ms).await?;
            println!(
                "[sandbox] embedded sandbox cluster (a test double) at {}",
                sandbox.url()
            );
            // A plugin dropped in later brings its kind with it, as its CRD would.
            let mut swaps = plugins.subscribe();
            let (live, kinds) = (plugins.clone(), sandbox.kinds());
            tokio::spawn(async move {
                while swaps.changed().await.is_ok() {
                    for plugin in live.current().plugins() {
                        kinds.register(super::sandbox_kind(plugin));
                    }
                }
            });
            if let Some(path) = &args.sandbox_kubeconfig {
                std::fs::write(path, sandbox.kubeconfig())?;
                println!("[sandbox] kubeconfig: {}", path.display());
            }
            (Cluster::new(sandbox.client()?), Some(sandbox))
        } else {
            (Cluster::from_kubeconfig(args.context.clone()).await?, None)
        };
        let cluster = cluster.with_shard(shard);
        if shard.count > 1 {
            println!(
                "[serve] shard {} of {}: caches shard keys {:?} of {SHARD_KEYS}",
                shard.index,
                shard.count,
                shard.keys()
            );
        }

        for status in plugins.current().status() {
            match status.state {
                PluginState::Serving => println!(
                    "[serve] plugin {} {} serves {} ({})",
                    status.id.unwrap_or_default(),
                    status.version.unwrap_or_default(),
                    status.task_types.join(", "),
                    status.file.display()
                ),
                _ => println!(
                    "[serve] not serving {}: {}",
                    status.file.display(),
                    status.last_error.unwrap_or_default()
                ),
            }
        }
        println!(
            "[serve] watching {} for plugin changes",
            args.host.plugins.display()
        );
        let tasks = Tasks::new(Executor::new(Arc::new(cluster), Arc::new(config)));
        // Finished objects go after their retention, from whichever replica.
        let live = plugins.clone();
        tokio::spawn(
            tasks
                .clone()
                .janitor(move || live.current().plugins().to_vec()),
        );
        let service = TaskService::new(tasks, plugins, metrics, keys, args.pin_versions);

        let grpc = bind(args.grpc, "--grpc").await?;
        let http = bind(args.http, "--http").await?;
        println!(
            "[serve] agent and connector gRPC on {}{}; /healthz /readyz /metrics on http://{}",
            grpc.local_addr()?,
            match (&tls, &args.tls_client_ca) {
                (Some(_), Some(_)) => " (mutual TLS: client certificates required)",
                (Some(_), None) => " (TLS)",
                _ => "",
            },
            http.local_addr()?
        );
        serve(service, grpc, http, tls, shutdown_signal()).await?;
        println!("[serve] stopped");
        Ok(())
    })
}

fn read_allow_list(path: &std::path::Path) -> anyhow::Result<AllowList> {
    let text = std::fs::read_to_string(path)
        .map_err(|err| anyhow::anyhow!("--allow-list {}: {err}", path.display()))?;
    serde_yaml::from_str(&text).map_err(|err| {
        anyhow::anyhow!(
            "--allow-list {}: expected `plugin-id: [sha256:...]` entries: {err}",
            path.display()
        )
    })
}

fn read(path: &PathBuf, flag: &str) -> anyhow::Result<Vec<u8>> {
    std::fs::read(path).map_err(|err| anyhow::anyhow!("{flag} {}: {err}", path.display()))
}

async fn bind(address: SocketAddr, flag: &str) -> anyhow::Result<TcpListener> {
    TcpListener::bind(address)
        .await
        .map_err(|err| anyhow::anyhow!("{flag} {address}: cannot listen: {err}"))
}

/// Ctrl-C, or SIGTERM (what Kubernetes sends to stop a pod).
async fn shutdown_signal() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("installing a SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}
