//! The embedded sandbox: an in-process Kubernetes API server on loopback,
//! reached only over HTTP through kube-rs, like a real cluster. A test
//! double, named so in everything it prints.
//!
//! It serves namespaced CRUD for the kinds registered with it, the status
//! subresource, merge and JSON patches, resourceVersions with 409 on stale
//! writes, list + watch with bookmarks and `410 Gone`, finalizers and
//! deletion timestamps, label selectors and `Status` error bodies. Operator
//! simulators move Spark applications and pods along ([`operators`]);
//! [`Faults`] injects errors, latency and dropped watches.

mod api;
mod faults;
pub mod operators;
mod store;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

pub use faults::Faults;
pub use store::Kind;

use store::Store;

/// State shared by the API handlers and the simulators.
struct Shared {
    store: Store,
    faults: Faults,
    /// Default time between simulated states.
    step: Duration,
}

#[derive(Debug, Clone)]
pub struct SandboxConfig {
    /// Port on 127.0.0.1 (0 picks a free one).
    pub port: u16,
    /// Time between the simulated operator states.
    pub step: Duration,
    /// Kinds served from the start, besides Pods, ConfigMaps, Jobs and
    /// CustomResourceDefinitions (creating a CRD serves its kind too).
    pub kinds: Vec<Kind>,
    /// Past events a watch can resume from; older versions are `410 Gone`.
    pub event_history: usize,
}

impl Default for SandboxConfig {
    /// Serves SparkApplications from the start.
    fn default() -> Self {
        SandboxConfig {
            port: 0,
            step: Duration::from_millis(500),
            kinds: vec![operators::spark_kind()],
            event_history: 20_000,
        }
    }
}

/// A running sandbox. Dropping it stops the server.
pub struct Sandbox {
    addr: SocketAddr,
    shared: Arc<Shared>,
    server: tokio::task::JoinHandle<()>,
    operators: tokio::task::JoinHandle<()>,
}

/// Registers kinds with a running sandbox (see [`Sandbox::kinds`]).
#[derive(Clone)]
pub struct Kinds(Arc<Shared>);

impl Kinds {
    pub fn register(&self, kind: Kind) {
        self.0.store.register(kind);
    }
}

impl Sandbox {
    /// Start serving on loopback. Call within a tokio runtime.
    pub async fn start(config: SandboxConfig) -> anyhow::Result<Sandbox> {
        let shared = Arc::new(Shared {
            store: Store::new(config.event_history),
            faults: Faults::default(),
            step: config.step,
        });
        let core = [
            operators::pod_kind(),
            Kind::new("v1", "ConfigMap", "configmaps"),
            Kind::new("batch/v1", "Job", "jobs"),
            api::crd_kind(),
        ];
        for kind in core.into_iter().chain(config.kinds) {
            shared.store.register(kind);
        }
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", config.port))
            .await
            .map_err(|err| {
                anyhow::anyhow!(
                    "[sandbox] cannot listen on 127.0.0.1:{}: {err}",
                    config.port
                )
            })?;
        let addr = listener.local_addr()?;
        let router = api::router(shared.clone());
        let server = tokio::spawn(async move {
            if let Err(err) = axum::serve(listener, router).await {
                tracing::error!(target: "sandbox", "[sandbox] the API server stopped: {err}");
            }
        });
        let operators = operators::start(shared.clone());
        tracing::info!(target: "sandbox", "[sandbox] test-double Kubernetes API serving on http://{addr}");
        Ok(Sandbox {
            addr,
            shared,
            server,
            operators,
        })
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Serve another kind (a CRD), e.g. the one a plugin declares.
    pub fn register(&self, kind: Kind) {
        self.shared.store.register(kind);
    }

    /// A handle for registering kinds later, from another task.
    pub fn kinds(&self) -> Kinds {
        Kinds(self.shared.clone())
    }

    pub fn faults(&self) -> &Faults {
        &self.shared.faults
    }

    /// A kube-rs client for this sandbox, over HTTP like any cluster.
    pub fn client(&self) -> anyhow::Result<kube::Client> {
        let mut config = kube::Config::new(self.url().parse()?);
        config.default_namespace = "default".into();
        config.read_timeout = Some(Duration::from_secs(300));
        Ok(kube::Client::try_from(config)?)
    }

    /// A kubeconfig for kubectl and other tools.
    pub fn kubeconfig(&self) -> String {
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: flytewasm-sandbox\n  cluster:\n    server: {url}\ncontexts:\n- name: flytewasm-sandbox\n  context:\n    cluster: flytewasm-sandbox\n    user: sandbox\n    namespace: default\ncurrent-context: flytewasm-sandbox\nusers:\n- name: sandbox\n  user:\n    token: sandbox-test-double\n",
            url = self.url()
        )
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        self.server.abort();
        self.operators.abort();
    }
}
