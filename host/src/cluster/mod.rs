//! Cluster access with kube-rs: objects of whatever kind a plugin declares
//! (`DynamicObject` + `ApiResource`), one shared watch per (kind, namespace)
//! started on first use, reads from its cache with API fallback, and writes
//! retried with back-off on transient failures (5xx, 429, timeouts).
//!
//! Watches see only the objects this host manages ([`MANAGED_LABEL`]) and
//! cache them as compact JSON without `managedFields` ([`cached`]), so
//! memory follows our tasks, not every object of the kind in the
//! namespace; a watch nobody has read for a while is stopped
//! ([`Cluster::stop_idle_watches`]).

mod cached;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use backon::{ExponentialBuilder, Retryable};
use futures::StreamExt;
use kube::api::{
    Api, ApiResource, DeleteParams, DynamicObject, GroupVersionKind, ListParams, Patch,
    PatchParams, PostParams, PropagationPolicy,
};
use kube::runtime::reflector::{self, ObjectRef};
use kube::runtime::{WatchStreamExt, watcher};
use serde_json::{Value, json};
use tokio::sync::broadcast;

/// The label on every object this host creates: its watches select it.
pub const MANAGED_LABEL: (&str, &str) = ("app.kubernetes.io/managed-by", "flytewasm");

/// The label that puts an object under one of [`SHARD_KEYS`] keys, derived
/// from its name (as propeller's `shard-key` does for workflows): replicas
/// split the key space, so changing their number relabels nothing.
pub const SHARD_LABEL: &str = "flytewasm.io/shard-key";
pub const SHARD_KEYS: u32 = 32;

/// Objects per page of a paged list (kube-runtime's watcher pages by 500 too).
pub const LIST_PAGE: u32 = 500;

/// This replica's share of the objects: the shard keys its watches cache.
/// Every replica still answers for every task; an object outside its share
/// is read from the API server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shard {
    pub index: u32,
    pub count: u32,
}

impl Shard {
    /// One replica caches everything.
    pub const ALL: Shard = Shard { index: 0, count: 1 };

    /// Replica `index` of `count` (at most [`SHARD_KEYS`]).
    pub fn new(index: u32, count: u32) -> Result<Self, String> {
        if count == 0 || count > SHARD_KEYS || index >= count {
            return Err(format!(
                "shard {index} of {count}: the count must be 1 to {SHARD_KEYS} and the index below it"
            ));
        }
        Ok(Shard { index, count })
    }

    /// The shard key of the object named `name`: stable across processes
    /// and versions (the first bytes of its SHA-256).
    pub fn key_of(name: &str) -> u32 {
        use sha2::Digest;
        let digest = sha2::Sha256::digest(name.as_bytes());
        u32::from_be_bytes([digest[0], digest[1], digest[2], digest[3]]) % SHARD_KEYS
    }

    /// The keys this replica takes: a contiguous range of the key space.
    pub fn keys(&self) -> std::ops::Range<u32> {
        self.index * SHARD_KEYS / self.count..(self.index + 1) * SHARD_KEYS / self.count
    }

    pub fn owns(&self, name: &str) -> bool {
        self.count == 1 || self.keys().contains(&Shard::key_of(name))
    }

    /// What this replica's janitor looks after (None: all): its keys, and
    /// for the first shard also objects with no key (made by an older
    /// release), so that no object is left to nobody.
    pub fn tended_selector(&self) -> Option<String> {
        if self.index > 0 {
            return self.selector();
        }
        (self.count > 1).then(|| {
            let others: Vec<String> = (self.keys().end..SHARD_KEYS)
                .map(|k| k.to_string())
                .collect();
            format!("{SHARD_LABEL} notin ({})", others.join(","))
        })
    }

    /// The label selector term for this replica's keys (None: all).
    pub fn selector(&self) -> Option<String> {
        (self.count > 1).then(|| {
            let keys: Vec<String> = self.keys().map(|k| k.to_string()).collect();
            format!("{SHARD_LABEL} in ({})", keys.join(","))
        })
    }
}

/// What happens to an object's dependents (a Job's pods, an operator's
/// children) when it is deleted. Every delete says which: `batch/v1` Jobs
/// otherwise orphan their pods.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize)]
pub enum Propagation {
    /// Delete the object now; the garbage collector deletes dependents.
    #[default]
    Background,
    /// Delete the dependents first; the object goes last.
    Foreground,
    /// Keep the dependents.
    Orphan,
}

impl Propagation {
    fn params(self) -> DeleteParams {
        let policy = match self {
            Propagation::Background => PropagationPolicy::Background,
            Propagation::Foreground => PropagationPolicy::Foreground,
            Propagation::Orphan => PropagationPolicy::Orphan,
        };
        DeleteParams {
            propagation_policy: Some(policy),
            ..DeleteParams::default()
        }
    }
}

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

/// A create the cluster refused, and why (Flyte's create-error table).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// A ResourceQuota has no room now: wait for it.
    Quota,
    /// Not allowed (RBAC, admission): retrying as is will not help soon.
    Forbidden,
    /// The object is invalid (400, 422).
    Invalid,
    /// The object is too large (413).
    TooLarge,
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

    /// A call that did not answer within `within` (taken as unreachable).
    pub fn no_answer(within: Duration) -> Self {
        ClusterError {
            code: 0,
            reason: "Timeout".into(),
            message: format!("no answer from the API server within {within:?}"),
        }
    }

    pub fn is_not_found(&self) -> bool {
        matches!(self.code, 404 | 410)
    }

    /// Worth retrying: the server was unreachable, overloaded or failing.
    pub fn is_transient(&self) -> bool {
        self.code == 0 || self.code == 429 || self.code >= 500
    }

    /// Why a create was refused; `None` when it is worth retrying as is.
    pub fn refusal(&self) -> Option<Refusal> {
        match self.code {
            403 if self.message.contains("exceeded quota") => Some(Refusal::Quota),
            403 => Some(Refusal::Forbidden),
            400 | 422 => Some(Refusal::Invalid),
            413 => Some(Refusal::TooLarge),
            _ => None,
        }
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
    started: Instant,
    shard: Shard,
}

/// The shared watch of one kind in one namespace.
struct KindWatch {
    cache: reflector::Store<cached::CachedObject>,
    /// False from a watch error until the watch delivers again: meanwhile
    /// the cache may be stale, so reads go to the API.
    healthy: Arc<AtomicBool>,
    changes: broadcast::Sender<String>,
    /// When a read last used it (milliseconds since the cluster was made).
    last_used: AtomicU64,
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
            started: Instant::now(),
            shard: Shard::ALL,
        }
    }

    /// Cache only `shard`'s objects (reads of the others go to the API).
    pub fn with_shard(self, shard: Shard) -> Self {
        Cluster { shard, ..self }
    }

    pub fn shard(&self) -> Shard {
        self.shard
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

    /// Create; an object of that name already there is `AlreadyExisted`
    /// (the caller checks whose it is).
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
        match self.cached(kind, namespace, name) {
            Some(object) => Ok(Some(object.value())),
            None => self.get_from_api(kind, namespace, name).await,
        }
    }

    /// The resourceVersion of the object in this replica's watch cache,
    /// when the cache answers for it: enough to tell that it has not changed.
    pub fn cached_version(
        &self,
        kind: &ResourceKind,
        namespace: &str,
        name: &str,
    ) -> Option<String> {
        let object = self.cached(kind, namespace, name)?;
        object.resource_version().map(str::to_owned)
    }

    /// The object in this replica's watch cache, when the cache answers for
    /// it: the object is in this replica's shard and its watch is healthy.
    fn cached(
        &self,
        kind: &ResourceKind,
        namespace: &str,
        name: &str,
    ) -> Option<Arc<cached::CachedObject>> {
        if !self.shard.owns(name) {
            return None;
        }
        let watch = self.watch(kind, namespace);
        if !watch.healthy.load(Ordering::Relaxed) {
            return None;
        }
        watch
            .cache
            .get(&ObjectRef::new_with(name, ()).within(namespace))
    }

    /// The object as the API server has it now (no cache).
    pub async fn get_from_api(
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

    /// Delete, saying what becomes of the dependents; an object already
    /// gone is fine.
    pub async fn delete(
        &self,
        kind: &ResourceKind,
        namespace: &str,
        name: &str,
        propagation: Propagation,
    ) -> Result<(), ClusterError> {
        let api = self.api(kind, namespace);
        let params = propagation.params();
        ok_if_gone(retried(|| api.delete(name, &params)).await)
    }

    /// The metadata (`apiVersion`, `kind`, `metadata`) of the objects
    /// `selector` selects, [`LIST_PAGE`] at a time, each page handed to
    /// `each` before the next is asked for: a sweep over 100,000 objects
    /// holds one page of metadata. Answers the sum of what `each` answered.
    pub async fn each_listed_page<F>(
        &self,
        kind: &ResourceKind,
        namespace: Option<&str>,
        selector: &str,
        mut each: impl FnMut(Vec<Value>) -> F,
    ) -> Result<usize, ClusterError>
    where
        F: Future<Output = usize>,
    {
        let api: Api<DynamicObject> = match namespace {
            Some(namespace) => self.api(kind, namespace),
            None => Api::all_with(self.client.clone(), &kind.api_resource()),
        };
        let mut params = ListParams::default().labels(selector).limit(LIST_PAGE);
        let (mut total, mut restarts) = (0, 0);
        loop {
            let page = match retried(|| api.list_metadata(&params)).await {
                Ok(page) => page,
                // The token expired while the pages before were handled:
                // from the start again (what they handled no longer
                // matches, or is handled again harmlessly).
                Err(err) if err.code == 410 && params.continue_token.is_some() && restarts < 3 => {
                    restarts += 1;
                    params.continue_token = None;
                    continue;
                }
                Err(err) => return Err(err),
            };
            let next = page.metadata.continue_.filter(|token| !token.is_empty());
            let objects = page.items.into_iter();
            total += each(
                objects
                    .map(|o| serde_json::to_value(o).expect("metadata serializes"))
                    .collect(),
            )
            .await;
            match next {
                Some(token) => params = params.continue_token(&token),
                None => return Ok(total),
            }
        }
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

    /// Remove `finalizer` and merge in what `metadata` makes of the object
    /// (if anything), with one merge patch
    /// that names the resourceVersion it was computed from, re-reading and
    /// retrying on conflict (Flyte's Finalize). Nothing is written when
    /// there is nothing to change; an object already gone is fine.
    pub async fn release(
        &self,
        kind: &ResourceKind,
        namespace: &str,
        name: &str,
        finalizer: &str,
        metadata: impl Fn(&Value) -> Option<Value>,
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
            let has_finalizer = finalizers.iter().any(|f| f == finalizer);
            let mut patch = json!({ "metadata": {
                "resourceVersion": object["metadata"]["resourceVersion"],
            } });
            if has_finalizer {
                let remaining: Vec<&String> =
                    finalizers.iter().filter(|f| *f != finalizer).collect();
                patch["metadata"]["finalizers"] = if remaining.is_empty() {
                    Value::Null
                } else {
                    json!(remaining)
                };
            }
            // Computed from the object as read: after a conflict, what
            // another writer did may leave nothing to merge.
            let metadata = metadata(&object);
            let changes_metadata = metadata.as_ref().is_some_and(|m| {
                let mut merged = object["metadata"].clone();
                json_patch::merge(&mut merged, m);
                merged != object["metadata"]
            });
            if !has_finalizer && !changes_metadata {
                return Ok(());
            }
            if let Some(metadata) = &metadata {
                json_patch::merge(&mut patch["metadata"], metadata);
            }
            match self.merge_patch(kind, namespace, name, &patch).await {
                Err(err) if err.code == 409 && conflicts < 10 => {
                    conflicts += 1;
                    from_cache = false;
                    tracing::debug!(%namespace, %name, "conflict releasing the object, retrying: {err}");
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

    /// Objects held by all watch caches now.
    pub fn cached_objects(&self) -> usize {
        let watches = self.watches.lock().unwrap();
        watches.values().map(|w| w.cache.len()).sum()
    }

    /// The namespaces with a watch open now.
    pub fn watched_namespaces(&self) -> Vec<String> {
        let watches = self.watches.lock().unwrap();
        let mut namespaces: Vec<String> = watches.keys().map(|(_, ns)| ns.clone()).collect();
        namespaces.sort();
        namespaces.dedup();
        namespaces
    }

    /// Watches open now.
    pub fn open_watches(&self) -> usize {
        self.watches.lock().unwrap().len()
    }

    /// Stop the watches no read has used for `idle`: a namespace whose
    /// tasks have all ended costs nothing. The next read starts it again.
    pub fn stop_idle_watches(&self, idle: Duration) {
        let now = self.elapsed_ms();
        let idle = idle.as_millis() as u64;
        self.watches
            .lock()
            .unwrap()
            .retain(|_, watch| now.saturating_sub(watch.last_used.load(Ordering::Relaxed)) < idle);
    }

    fn elapsed_ms(&self) -> u64 {
        self.started.elapsed().as_millis() as u64
    }

    fn watch(&self, kind: &ResourceKind, namespace: &str) -> Arc<KindWatch> {
        let mut watches = self.watches.lock().unwrap();
        let watch = watches
            .entry((kind.clone(), namespace.to_owned()))
            .or_insert_with(|| Arc::new(self.start_watch(kind, namespace)))
            .clone();
        watch.last_used.store(self.elapsed_ms(), Ordering::Relaxed);
        watch
    }

    /// One reflector per (kind, namespace): a list, then a watch resumed
    /// from the last resourceVersion, relisting after `410 Gone`, with
    /// back-off on errors (kube-runtime's watcher).
    fn start_watch(&self, kind: &ResourceKind, namespace: &str) -> KindWatch {
        let writer = reflector::store::Writer::new(());
        let cache = writer.as_reader();
        // Preallocated per watch (and there is one per namespace): small.
        // A follower that falls behind is told so and reads the object again.
        let (changes, _) = broadcast::channel(128);
        let api = self.api(kind, namespace);
        let sender = changes.clone();
        let label = format!("{} {}/{namespace}", kind.kind, kind.api_version);
        let healthy = Arc::new(AtomicBool::new(true));
        let health = healthy.clone();
        let shard = self.shard;
        let task = tokio::spawn(async move {
            let selector = format!("{}={}", MANAGED_LABEL.0, MANAGED_LABEL.1);
            let selector = match shard.selector() {
                Some(keys) => format!("{selector},{keys}"),
                None => selector,
            };
            let config = watcher::Config::default().any_semantic().labels(&selector);
            let events = watcher(api, config)
                .default_backoff()
                .map(|event| event.map(cached::compact));
            let stream = reflector::reflector(writer, events);
            futures::pin_mut!(stream);
            while let Some(event) = stream.next().await {
                match event {
                    Ok(event) => {
                        health.store(true, Ordering::Relaxed);
                        if let watcher::Event::Apply(object)
                        | watcher::Event::InitApply(object)
                        | watcher::Event::Delete(object) = event
                        {
                            let _ = sender.send(object.name().to_owned());
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
            changes,
            last_used: AtomicU64::new(self.elapsed_ms()),
            task,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shards_split_the_key_space_and_every_name_has_one_owner() {
        for count in [1, 2, 3, 5, 32] {
            let shards: Vec<Shard> = (0..count).map(|i| Shard::new(i, count).unwrap()).collect();
            let covered: Vec<u32> = shards.iter().flat_map(|s| s.keys()).collect();
            assert_eq!(
                covered,
                (0..SHARD_KEYS).collect::<Vec<_>>(),
                "{count} shards"
            );
            for name in ["a-n0-0", "b-n1-2", "flyte-xyz"] {
                assert_eq!(shards.iter().filter(|s| s.owns(name)).count(), 1);
            }
        }
        assert_eq!(Shard::ALL.selector(), None);
        assert_eq!(
            Shard::new(1, 4).unwrap().selector().as_deref(),
            Some("flytewasm.io/shard-key in (8,9,10,11,12,13,14,15)")
        );
        assert_eq!(
            Shard::new(0, 2).unwrap().tended_selector().as_deref(),
            Some("flytewasm.io/shard-key notin (16,17,18,19,20,21,22,23,24,25,26,27,28,29,30,31)")
        );
        assert_eq!(
            Shard::new(1, 4).unwrap().tended_selector(),
            Shard::new(1, 4).unwrap().selector()
        );
        assert!(
            Shard::new(3, 3).is_err() && Shard::new(0, 33).is_err() && Shard::new(0, 0).is_err()
        );
    }
}
