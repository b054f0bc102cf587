//! The embedded sandbox: an in-process Kubernetes API server on loopback,
//! reached only over HTTP through kube-rs, like a real cluster. A test
//! double, named so in everything it prints.
//!
//! What it implements, as kube-apiserver does where the host relies on it:
//!
//! - namespaced CRUD for the kinds registered with it (Pods, ConfigMaps,
//!   PodTemplates, Jobs, ResourceQuotas, CRDs, and whatever a created CRD or the caller
//!   registers), discovery, the status subresource, merge and JSON patches
//!   (a strategic merge patch is taken as a merge patch), resourceVersions
//!   with 409 on stale writes, generations, list + watch with bookmarks and
//!   `410 Gone`, label selectors, and `Status` error bodies (`store`, `api`);
//! - paged lists (`limit`, `continue`) and metadata-only lists
//!   (`as=PartialObjectMetadataList`) (`paging`);
//! - DELETE with `propagationPolicy` (`Orphan`, `Background`, `Foreground`)
//!   or `orphanDependents`, from the `DeleteOptions` body or the query,
//!   preconditions, finalizers and deletion timestamps; with no policy,
//!   `batch/v1` Jobs orphan their dependents, the rest go in the background
//!   (`deletion`);
//! - `metadata.managedFields` on create, update and patch (`fields`);
//! - ResourceQuota admission for object counts (`count/<plural>.<group>`,
//!   `pods`...), with 403 and kube-apiserver's message (`quota`).
//!
//! And what kube-controller-manager and operators would do: the garbage
//! collector (`gc`; off with `garbage_collector: false`), the quota
//! controller filling quotas' `status.hard`/`status.used`, and operator
//! simulators moving Spark applications, Jobs, Kubeflow training jobs,
//! RayJobs and DaskJobs (and their pods) and pods along ([`operators`]). [`Faults`] injects
//! errors, latency (all or writes only) and dropped watches.
//!
//! Not implemented: server-side apply, field selectors, graceful pod
//! termination (pods go at once), admission webhooks, RBAC (any token is
//! accepted), cluster-scoped kinds besides CRDs.
//!
//! # Control endpoint
//!
//! A test in another process (the sandbox run as `flytewasm sandbox`)
//! drives [`Faults`] over HTTP on the sandbox's own address; these
//! requests are not counted and never meet faults or latency:
//!
//! ```text
//! POST /sandbox.flytewasm.io/v1/faults
//! {"clear": true,                                   // first: no errors, no latency
//!  "failNext": [{"verb": "create", "code": 503, "times": 3}],
//!  "latencyMs": 200,                                // every response
//!  "writeLatencyMs": 2000,                          // create/update/patch/delete, on top
//!  "dropWatches": true}                             // any subset
//!
//! GET /sandbox.flytewasm.io/v1/faults   (POST answers the same)
//! {"requests": {"create": 4, ...}, "errorsServed": {"create 503": 3},
//!  "latencyMs": 200, "writeLatencyMs": 2000, "failNext": [...still pending]}
//! ```
//!
//! A bad request is a 400 with a `Status` body, and changes nothing.

mod api;
mod control;
mod deletion;
mod faults;
mod fields;
mod gc;
pub mod operators;
mod paging;
mod quota;
mod store;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

pub use faults::Faults;
pub use store::Kind;

use store::{Event, Store};

/// State shared by the API handlers and the simulators.
struct Shared {
    store: Store,
    faults: Faults,
    quotas: quota::Quotas,
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
    /// Run the garbage collector (off: orphan and foreground deletions wait
    /// forever for their finalizers, as without kube-controller-manager).
    pub garbage_collector: bool,
}

impl Default for SandboxConfig {
    /// Serves SparkApplications, PyTorchJobs, TFJobs, MPIJobs, DaskJobs and
    /// RayJobs from the start.
    fn default() -> Self {
        let mut kinds = vec![operators::spark_kind()];
        kinds.extend(operators::training_kinds());
        kinds.push(operators::dask_kind());
        kinds.push(operators::ray_kind());
        SandboxConfig {
            port: 0,
            step: Duration::from_millis(500),
            kinds,
            event_history: 20_000,
            garbage_collector: true,
        }
    }
}

/// A running sandbox. Dropping it stops the server.
pub struct Sandbox {
    addr: SocketAddr,
    shared: Arc<Shared>,
    /// The API server, the simulators and the controllers.
    tasks: Vec<tokio::task::JoinHandle<()>>,
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
            quotas: quota::Quotas::default(),
            step: config.step,
        });
        let core = [
            operators::pod_kind(),
            Kind::new("v1", "ConfigMap", "configmaps"),
            Kind::new("v1", "PodTemplate", "podtemplates"),
            operators::job_kind(),
            quota::quota_kind(),
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
        let mut tasks = vec![
            server,
            operators::start(shared.clone()),
            on_changes(shared.clone(), quota::reconcile),
        ];
        if config.garbage_collector {
            let mut collector = gc::Collector::default();
            tasks.push(on_changes(shared.clone(), move |shared, batch| {
                collector.reconcile(shared, batch)
            }));
        }
        tracing::info!(target: "sandbox", "[sandbox] test-double Kubernetes API serving on http://{addr}");
        Ok(Sandbox {
            addr,
            shared,
            tasks,
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
        for task in &self.tasks {
            task.abort();
        }
    }
}

/// The changes a controller pass looks at: the events queued since the
/// previous pass.
struct Batch {
    events: Vec<Arc<Event>>,
    /// Some events were dropped (the controller fell behind): the pass must
    /// look at everything, as an informer relists.
    missed: bool,
}

/// Run a controller pass after each batch of changes, until the sandbox
/// stops. A pass's own writes start the next pass, which finds nothing to
/// do.
fn on_changes(
    shared: Arc<Shared>,
    mut pass: impl FnMut(&Shared, &Batch) + Send + 'static,
) -> tokio::task::JoinHandle<()> {
    use tokio::sync::broadcast::error::{RecvError, TryRecvError};
    let mut events = shared.store.subscribe();
    tokio::spawn(async move {
        loop {
            let mut batch = Batch {
                events: Vec::new(),
                missed: false,
            };
            match events.recv().await {
                Ok(event) => batch.events.push(event),
                Err(RecvError::Lagged(_)) => batch.missed = true,
                Err(RecvError::Closed) => return,
            }
            loop {
                match events.try_recv() {
                    Ok(event) => batch.events.push(event),
                    Err(TryRecvError::Lagged(_)) => batch.missed = true,
                    Err(_) => break,
                }
            }
            pass(&shared, &batch);
        }
    })
}
