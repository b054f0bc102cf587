//! Cluster access with kube-rs: objects of whatever kind a plugin declares
//! (`DynamicObject` + `ApiResource`), one shared watch per (kind, namespace)
//! started on first use, reads from its cache with API fallback, and writes
//! retried with back-off on transient failures (5xx, 429, timeouts).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use backon::{ExponentialBuilder, Retryable};
use futures::StreamExt;
use kube::api::{
    Api, ApiResource, DeleteParams, DynamicObject, GroupVersionKind, Patch, PatchParams, PostParams,
};
use kube::runtime::reflector::{self, ObjectRef};
use kube::runtime::{WatchStreamExt, watcher};
use serde_json::{Value, json};
use tokio::sync::broadcast;

/// The kind of object a plugin creates.
#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct ResourceKind {
    pub api_version: String,
    pub kind: String,
    pub plural: String,
}

impl ResourceKind {
    fn api_resource(&self) -> ApiResource {
        let (group, version) = self
            .api_version
            .rsplit_once('/')
            .unwrap_or(("", &self.api_version));
        ApiResource::from_gvk_with_plural(
            &GroupVersionKind::gvk(group, version, &self.kind),
            &self.plural,
        )
    }
}

/// A failed API call, with what the classification rules need.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct ClusterError {
    /// HTTP status, 0 when the server was not reached.
    pub code: u16,
    /// Kubernetes' reason, e.g. `AlreadyExists`, `Forbidden`, `Conflict`.
    pub reason: String,
    pub message: String,
}

impl ClusterError {
    fn from_kube(err: kube::Error) -> Self {
        match err {
            kube::Error::Api(status) => ClusterError {
                code: status.code,
                reason: status.reason.clone(),
                message: format!("{} ({})", status.message, status.reason),
            },
            other => ClusterError {
                code: 0,
                reason: "Unreachable".into(),
                message: format!("{other:#}"),
            },
        }
    }

    pub fn is_not_found(&self) -> bool {
        matches!(self.code, 404 | 410)
    }

    /// Worth retrying: the server was unreachable, overloaded or failing.
    pub fn is_transient(&self) -> bool {
        self.code == 0 || self.code == 429 || self.code >= 500
    }
}

/// What creating an object found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Created {
    New,
    /// It existed already: launch is idempotent.
    AlreadyExisted,
}

/// One cluster (or the sandbox), shared by every task.
pub struct Cluster {
    client: kube::Client,
    watches: Mutex<HashMap<(ResourceKind, String), Arc<KindWatch>>>,
}

/// The shared watch of one kind in one namespace.
struct KindWatch {
    cache: reflector::Store<DynamicObject>,
    /// False from a watch error until the watch delivers again: meanwhile
    /// the cache may be stale, so reads go to the API.
    healthy: Arc<AtomicBool>,
    api_resource: ApiResource,
    changes: broadcast::Sender<String>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for KindWatch {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// An API call, retried with back-off while it fails transiently.
async fn retried<T, F>(call: impl FnMut() -> F) -> Result<T, ClusterError>
where
    F: std::future::Future<Output = Result<T, kube::Error>>,
{
    let mut call = call;
    let backoff = ExponentialBuilder::default()
        .with_min_delay(Duration::from_millis(50))
        .with_max_delay(Duration::from_secs(2))
        .with_max_times(8)
        .with_jitter();
    (|| {
        let attempt = call();
        async move { attempt.await.map_err(ClusterError::from_kube) }
    })
    .retry(backoff)
    .when(ClusterError::is_transient)
    .await
}

/// Deleting or patching an object that is already gone is fine.
fn ok_if_gone<T>(result: Result<T, ClusterError>) -> Result<(), ClusterError> {
    match result {
        Ok(_) => Ok(()),
        Err(err) if err.is_not_found() => Ok(()),
        Err(err) => Err(err),
    }
}

impl Cluster {
    pub fn new(client: kube::Client) -> Self {
        Cluster {
            client,
            watches: Mutex::new(HashMap::new()),
        }
    }

    /// The cluster of the current kubeconfig context (or `context`), or the
    /// in-cluster service account.
    pub async fn from_kubeconfig(context: Option<String>) -> anyhow::Result<Self> {
        let config = match context {
            Some(context) => {
                let options = kube::config::KubeConfigOptions {
                    context: Some(context),
                    ..Default::default()
                };
                kube::Config::from_kubeconfig(&options).await?
            }
            None => kube::Config::infer().await?,
        };
        Ok(Cluster::new(kube::Client::try_from(config)?))
    }

    /// Whether the API server answers now: a cheap discovery read that
    /// every authenticated client may make.
    pub async fn reachable(&self) -> Result<(), ClusterError> {
        self.client
            .list_core_api_versions()
            .await
            .map(|_| ())
            .map_err(ClusterError::from_kube)
    }

    pub fn default_namespace(&self) -> &str {
        self.client.default_namespace()
    }

    fn api(&self, kind: &ResourceKind, namespace: &str) -> Api<DynamicObject> {
        Api::namespaced_with(self.client.clone(), namespace, &kind.api_resource())
    }

    pub async fn create(
        &self,
        kind: &ResourceKind,
        namespace: &str,
        object: &Value,
    ) -> Result<Created, ClusterError> {
        let api = self.api(kind, namespace);
        let object: DynamicObject =
            serde_json::from_value(object.clone()).map_err(|err| ClusterError {
                code: 400,
                reason: "BadRequest".into(),
                message: err.to_string(),
            })?;
        let params = PostParams::default();
        match retried(|| api.create(&params, &object)).await {
            Ok(_) => Ok(Created::New),
            Err(err)
                if err.reason == "AlreadyExists"
                    || (err.code == 409 && err.message.contains("already exists")) =>
            {
                Ok(Created::AlreadyExisted)
            }
            Err(err) => Err(err),
        }
    }

    /// The object as the watch cache has it, else from the API server;
    /// `None` when it does not exist.
    pub async fn get(
        &self,
        kind: &ResourceKind,
        namespace: &str,
        name: &str,
    ) -> Result<Option<Value>, ClusterError> {
        let watch = self.watch(kind, namespace);
        let key = ObjectRef::new_with(name, watch.api_resource.clone()).within(namespace);
        let cached = watch
            .healthy
            .load(Ordering::Relaxed)
            .then(|| watch.cache.get(&key))
            .flatten();
        if let Some(object) = cached {
            return Ok(Some(
                serde_json::to_value(&*object).expect("objects serialize"),
            ));
        }
        self.get_from_api(kind, namespace, name).await
    }

    async fn get_from_api(
        &self,
        kind: &ResourceKind,
        namespace: &str,
        name: &str,
    ) -> Result<Option<Value>, ClusterError> {
        let api = self.api(kind, namespace);
        match retried(|| api.get(name)).await {
            Ok(object) => Ok(Some(
                serde_json::to_value(object).expect("objects serialize"),
            )),
            Err(err) if err.is_not_found() => Ok(None),
            Err(err) => Err(err),
        }
    }

    /// Delete; an object already gone is fine.
    pub async fn delete(
        &self,
        kind: &ResourceKind,
        namespace: &str,
        name: &str,
    ) -> Result<(), ClusterError> {
        let api = self.api(kind, namespace);
        let params = DeleteParams::default();
        ok_if_gone(retried(|| api.delete(name, &params)).await)
    }

    /// Apply a JSON merge patch; an object already gone is fine.
    pub async fn merge_patch(
        &self,
        kind: &ResourceKind,
        namespace: &str,
        name: &str,
        patch: &Value,
    ) -> Result<(), ClusterError> {
        let api = self.api(kind, namespace);
        let (params, patch) = (PatchParams::default(), Patch::Merge(patch));
        ok_if_gone(retried(|| api.patch(name, &params, &patch)).await)
    }

    /// Remove `finalizer` with a merge patch that names the resourceVersion
    /// it was computed from, re-reading and retrying on conflict (Flyte's
    /// Finalize). An object already gone is fine.
    pub async fn remove_finalizer(
        &self,
        kind: &ResourceKind,
        namespace: &str,
        name: &str,
        finalizer: &str,
    ) -> Result<(), ClusterError> {
        let mut from_cache = true;
        let mut conflicts = 0;
        loop {
            let object = if from_cache {
                self.get(kind, namespace, name).await?
            } else {
                self.get_from_api(kind, namespace, name).await?
            };
            let Some(object) = object else { return Ok(()) };
            let finalizers: Vec<String> = object["metadata"]["finalizers"]
                .as_array()
                .map(|f| {
                    f.iter()
                        .filter_map(|v| v.as_str().map(str::to_owned))
                        .collect()
                })
                .unwrap_or_default();
            if !finalizers.iter().any(|f| f == finalizer) {
                return Ok(());
            }
            let remaining: Vec<&String> = finalizers.iter().filter(|f| *f != finalizer).collect();
            let patch = json!({ "metadata": {
                "finalizers": if remaining.is_empty() { Value::Null } else { json!(remaining) },
                "resourceVersion": object["metadata"]["resourceVersion"],
            } });
            match self.merge_patch(kind, namespace, name, &patch).await {
                Err(err) if err.code == 409 && conflicts < 10 => {
                    conflicts += 1;
                    from_cache = false;
                    tracing::debug!(%namespace, %name, "conflict removing the finalizer, retrying: {err}");
                }
                other => return other,
            }
        }
    }

    /// Names of objects of `kind` in `namespace` that changed, as the
    /// shared watch sees them (starting the watch on first use).
    pub fn changes(&self, kind: &ResourceKind, namespace: &str) -> broadcast::Receiver<String> {
        self.watch(kind, namespace).changes.subscribe()
    }

    /// Whether the shared watch of `kind` in `namespace` is delivering (no
    /// error since its last event); while not, reads go to the API.
    pub fn watch_healthy(&self, kind: &ResourceKind, namespace: &str) -> bool {
        self.watch(kind, namespace).healthy.load(Ordering::Relaxed)
    }

    /// Wait until the shared watch has listed `kind` in `namespace` once.
    pub async fn wait_synced(&self, kind: &ResourceKind, namespace: &str) {
        let _ = self.watch(kind, namespace).cache.wait_until_ready().await;
    }

    fn watch(&self, kind: &ResourceKind, namespace: &str) -> Arc<KindWatch> {
        let mut watches = self.watches.lock().unwrap();
        watches
            .entry((kind.clone(), namespace.to_owned()))
            .or_insert_with(|| Arc::new(self.start_watch(kind, namespace)))
            .clone()
    }

    /// One reflector per (kind, namespace): a list, then a watch resumed
    /// from the last resourceVersion, relisting after `410 Gone`, with
    /// back-off on errors (kube-runtime's watcher).
    fn start_watch(&self, kind: &ResourceKind, namespace: &str) -> KindWatch {
        let api_resource = kind.api_resource();
        let writer = reflector::store::Writer::new(api_resource.clone());
        let cache = writer.as_reader();
        let (changes, _) = broadcast::channel(1024);
        let api = self.api(kind, namespace);
        let sender = changes.clone();
        let label = format!("{} {}/{namespace}", kind.kind, kind.api_version);
        let healthy = Arc::new(AtomicBool::new(true));
        let health = healthy.clone();
        let task = tokio::spawn(async move {
            let stream = watcher(api, watcher::Config::default().any_semantic())
                .default_backoff()
                .reflect(writer);
            futures::pin_mut!(stream);
            while let Some(event) = stream.next().await {
                match event {
                    Ok(event) => {
                        health.store(true, Ordering::Relaxed);
                        if let watcher::Event::Apply(object)
                        | watcher::Event::InitApply(object)
                        | watcher::Event::Delete(object) = event
                        {
                            let _ = sender.send(object.metadata.name.unwrap_or_default());
                        }
                    }
                    Err(err) => {
                        health.store(false, Ordering::Relaxed);
                        tracing::warn!(watch = %label, "watch error (retrying): {err}");
                    }
                }
            }
        });
        KindWatch {
            cache,
            healthy,
            api_resource,
            changes,
            task,
        }
    }
}
