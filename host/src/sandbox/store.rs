//! The sandbox's objects: namespaced CRUD with Kubernetes semantics —
//! resourceVersions and 409 on stale writes, the status subresource,
//! merge and JSON patches, finalizers and deletion timestamps, label
//! selectors, generations, managedFields ([`fields`](super::fields)),
//! deletion options ([`deletion`](super::deletion)), and an event log that
//! watches replay from.
//!
//! Besides the objects, the store keeps the indexes the controllers read
//! (owner uid → dependents, uid → object, per-namespace quota counts), so
//! that no controller has to look at every object after each change.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use serde_json::{Value, json};
use tokio::sync::broadcast;

use super::deletion::{self, DeleteOptions};
use super::fields::{self, Writer};
use super::quota;

/// A kind the sandbox serves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Kind {
    /// "" for the core group.
    pub group: String,
    pub version: String,
    pub kind: String,
    pub plural: String,
}

impl Kind {
    pub fn new(api_version: &str, kind: &str, plural: &str) -> Self {
        let (group, version) = api_version.rsplit_once('/').unwrap_or(("", api_version));
        Kind {
            group: group.into(),
            version: version.into(),
            kind: kind.into(),
            plural: plural.into(),
        }
    }

    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.clone()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    /// `group/plural`, the key objects are stored under.
    pub fn key(&self) -> String {
        format!("{}/{}", self.group, self.plural)
    }
}

/// A Kubernetes API error, answered as a `Status` body.
#[derive(Debug, Clone)]
pub struct ApiError {
    pub code: u16,
    pub reason: &'static str,
    pub message: String,
}

impl ApiError {
    pub fn new(code: u16, reason: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            code,
            reason,
            message: message.into(),
        }
    }
    pub fn not_found(kind: &Kind, name: &str) -> Self {
        Self::new(
            404,
            "NotFound",
            format!("{}.{} \"{name}\" not found", kind.plural, kind.group),
        )
    }
    pub fn status(&self) -> Value {
        json!({
            "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
            "message": self.message, "reason": self.reason, "code": self.code,
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventType {
    Added,
    Modified,
    Deleted,
}

impl EventType {
    pub fn as_str(self) -> &'static str {
        match self {
            EventType::Added => "ADDED",
            EventType::Modified => "MODIFIED",
            EventType::Deleted => "DELETED",
        }
    }
}

/// Where an object is stored: (kind key `group/plural`, namespace, name).
pub type Key = (String, String, String);

/// One change, as watches see it.
#[derive(Debug, Clone)]
pub struct Event {
    pub resource_version: u64,
    pub kind_key: String,
    pub namespace: String,
    pub kind: EventType,
    /// Shared with the store (while it is the object's current state) and
    /// every watch: one copy, however many watch.
    pub object: Arc<Value>,
    /// The uids in the object's ownerReferences before or after the change:
    /// the owners whose set of dependents this change may have altered. The
    /// object alone cannot say which references a change removed.
    pub owner_uids: Vec<String>,
}

pub struct Store {
    inner: Mutex<Inner>,
    events: broadcast::Sender<Arc<Event>>,
    /// How many past events watches can resume from; older is `410 Gone`.
    history: usize,
}

#[derive(Default)]
struct Inner {
    kinds: Vec<Kind>,
    objects: BTreeMap<Key, Arc<Value>>,
    /// uid → the live object with it, for the garbage collector.
    by_uid: HashMap<String, Key>,
    /// Owner uid → the objects whose ownerReferences name it (whether the
    /// owner exists or not): the garbage collector's graph.
    dependents: HashMap<String, BTreeSet<Key>>,
    /// Namespace → kind key → objects a quota counts (see
    /// [`quota::counts`]), so admission does not count the store.
    usage: HashMap<String, BTreeMap<String, u64>>,
    resource_version: u64,
    log: VecDeque<Arc<Event>>,
    next_uid: u64,
}

/// Where a paged list ended: the last object it served.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Position {
    pub namespace: String,
    pub name: String,
}

/// One page of a list.
pub struct ListPage {
    pub items: Vec<Value>,
    /// The store's resourceVersion when the page was read.
    pub resource_version: u64,
    /// Where the next page starts, when objects remain.
    pub next: Option<Position>,
}

pub enum Patch {
    Merge(Value),
    Json(json_patch::Patch),
}

impl Store {
    pub fn new(history: usize) -> Self {
        Store {
            inner: Mutex::new(Inner::default()),
            events: broadcast::channel(4096).0,
            history: history.max(1),
        }
    }

    pub fn register(&self, kind: Kind) {
        let mut inner = self.inner.lock().unwrap();
        if !inner.kinds.contains(&kind) {
            inner.kinds.push(kind);
        }
    }

    pub fn kinds(&self) -> Vec<Kind> {
        self.inner.lock().unwrap().kinds.clone()
    }

    pub fn find_kind(&self, group: &str, version: &str, plural: &str) -> Option<Kind> {
        let inner = self.inner.lock().unwrap();
        inner
            .kinds
            .iter()
            .find(|k| k.group == group && k.version == version && k.plural == plural)
            .cloned()
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Arc<Event>> {
        self.events.subscribe()
    }

    /// Events after `since`, or `None` when they are no longer kept (410).
    pub fn events_since(
        &self,
        kind: &Kind,
        namespace: Option<&str>,
        since: u64,
    ) -> Option<Vec<Arc<Event>>> {
        let inner = self.inner.lock().unwrap();
        if !inner.keeps_events_since(since) {
            return None;
        }
        let key = kind.key();
        // The log is in resourceVersion order: skip what the watch has seen.
        let first = inner.log.partition_point(|e| e.resource_version <= since);
        Some(
            inner
                .log
                .range(first..)
                .filter(|e| e.kind_key == key)
                .filter(|e| namespace.is_none_or(|ns| e.namespace == ns))
                .cloned()
                .collect(),
        )
    }

    pub fn get(&self, kind: &Kind, namespace: &str, name: &str) -> Result<Value, ApiError> {
        let inner = self.inner.lock().unwrap();
        inner
            .objects
            .get(&(kind.key(), namespace.into(), name.into()))
            .map(|object| Value::clone(object))
            .ok_or_else(|| ApiError::not_found(kind, name))
    }

    /// Objects of a kind (in one namespace or all), filtered by a label selector.
    pub fn list(
        &self,
        kind: &Kind,
        namespace: Option<&str>,
        selector: &str,
    ) -> Result<(Vec<Value>, u64), ApiError> {
        let page = self.list_page(kind, namespace, selector, usize::MAX, None)?;
        Ok((page.items, page.resource_version))
    }

    /// Up to `limit` of those objects, in (namespace, name) order, after
    /// `after` (where the previous page ended).
    pub fn list_page(
        &self,
        kind: &Kind,
        namespace: Option<&str>,
        selector: &str,
        limit: usize,
        after: Option<&Position>,
    ) -> Result<ListPage, ApiError> {
        use std::ops::Bound;
        let selector = LabelSelector::parse(selector)?;
        let inner = self.inner.lock().unwrap();
        let key = kind.key();
        // Keys sort by kind, then namespace: the wanted objects are one run.
        let from = match after {
            Some(Position { namespace, name }) => {
                Bound::Excluded((key.clone(), namespace.clone(), name.clone()))
            }
            None => Bound::Included((
                key.clone(),
                namespace.unwrap_or_default().to_owned(),
                String::new(),
            )),
        };
        let mut matching = inner
            .objects
            .range((from, Bound::Unbounded))
            .take_while(|((k, ns, _), _)| *k == key && namespace.is_none_or(|n| n == ns))
            .filter(|(_, object)| selector.matches(object));
        let items: Vec<(&Key, &Arc<Value>)> = matching.by_ref().take(limit.max(1)).collect();
        // Only whether more remain: kube-apiserver too leaves the count
        // out of a selected list, and counting would read every object.
        let next = match (matching.next(), items.last()) {
            (Some(_), Some(((_, namespace, name), _))) => Some(Position {
                namespace: namespace.clone(),
                name: name.clone(),
            }),
            _ => None,
        };
        Ok(ListPage {
            items: items.into_iter().map(|(_, o)| Value::clone(o)).collect(),
            resource_version: inner.resource_version,
            next,
        })
    }

    /// Whether watches can still resume from `resource_version` (the
    /// events after it are kept).
    pub fn keeps_events_since(&self, resource_version: u64) -> bool {
        self.inner
            .lock()
            .unwrap()
            .keeps_events_since(resource_version)
    }

    pub fn create(
        &self,
        kind: &Kind,
        namespace: &str,
        mut object: Value,
        writer: &Writer,
    ) -> Result<Value, ApiError> {
        let name = object["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        if name.is_empty() {
            return Err(ApiError::new(
                422,
                "Invalid",
                format!("{} is invalid: metadata.name: Required value", kind.kind),
            ));
        }
        if !object.is_object() || !object["metadata"].is_object() {
            return Err(ApiError::new(
                400,
                "BadRequest",
                "the object is not a JSON object with metadata",
            ));
        }
        if object["apiVersion"] != kind.api_version() || object["kind"] != kind.kind {
            return Err(ApiError::new(
                400,
                "BadRequest",
                format!(
                    "the object is a {} {}, not a {} {}",
                    object["apiVersion"],
                    object["kind"],
                    kind.api_version(),
                    kind.kind
                ),
            ));
        }
        let mut inner = self.inner.lock().unwrap();
        let key = (kind.key(), namespace.to_owned(), name.clone());
        if inner.objects.contains_key(&key) {
            return Err(ApiError::new(
                409,
                "AlreadyExists",
                format!("{}.{} \"{name}\" already exists", kind.plural, kind.group),
            ));
        }
        inner.next_uid += 1;
        let meta = &mut object["metadata"];
        meta["namespace"] = json!(namespace);
        meta["uid"] = json!(format!("00000000-0000-4000-8000-{:012}", inner.next_uid));
        meta["creationTimestamp"] = json!(now_rfc3339());
        meta["generation"] = json!(1);
        if let Some(map) = meta.as_object_mut() {
            map.remove("deletionTimestamp");
        }
        // The status subresource: status is not set on create.
        if let Some(map) = object.as_object_mut() {
            map.remove("status");
        }
        fields::record(&Value::Null, &mut object, writer);
        Ok(inner.commit(self, kind, key, object, EventType::Added))
    }

    /// PUT of the object or of its status subresource.
    pub fn replace(
        &self,
        kind: &Kind,
        namespace: &str,
        name: &str,
        object: Value,
        writer: &Writer,
    ) -> Result<Value, ApiError> {
        self.update(kind, namespace, name, |current| {
            check_resource_version(&object, current)?;
            let mut next = current.clone();
            if writer.status {
                next["status"] = object["status"].clone();
            } else {
                let kept_status = current["status"].clone();
                next = object.clone();
                next["status"] = kept_status;
                preserve_system_metadata(&mut next, current);
            }
            fields::record(current, &mut next, writer);
            Ok(next)
        })
    }

    pub fn patch(
        &self,
        kind: &Kind,
        namespace: &str,
        name: &str,
        patch: &Patch,
        writer: &Writer,
    ) -> Result<Value, ApiError> {
        let status = writer.status;
        self.update(kind, namespace, name, |current| {
            let mut next = current.clone();
            match patch {
                Patch::Merge(body) => {
                    check_resource_version(body, current)?;
                    json_patch::merge(&mut next, body);
                }
                Patch::Json(ops) => json_patch::patch(&mut next, ops).map_err(|err| {
                    ApiError::new(
                        422,
                        "Invalid",
                        format!("the JSON patch does not apply: {err}"),
                    )
                })?,
            }
            if status {
                let status = next["status"].clone();
                next = current.clone();
                next["status"] = status;
            } else {
                next["status"] = current["status"].clone();
                preserve_system_metadata(&mut next, current);
            }
            fields::record(current, &mut next, writer);
            Ok(next)
        })
    }

    /// Delete now, or mark for deletion while finalizers remain (the
    /// policy's GC finalizers included, see [`deletion`]). Also says
    /// whether the object is gone.
    pub fn delete(
        &self,
        kind: &Kind,
        namespace: &str,
        name: &str,
        options: &DeleteOptions,
    ) -> Result<(Value, bool), ApiError> {
        let mut inner = self.inner.lock().unwrap();
        let key = (kind.key(), namespace.to_owned(), name.to_owned());
        let current = inner
            .objects
            .get(&key)
            .cloned()
            .ok_or_else(|| ApiError::not_found(kind, name))?;
        options.check_preconditions(&current)?;
        let finalizers = deletion::finalizers(kind, &current, options);
        if finalizers.is_empty() {
            return Ok((inner.remove(self, kind, key), true));
        }
        let mut next = Value::clone(&current);
        let meta = &mut next["metadata"];
        meta["finalizers"] = json!(finalizers);
        if meta["deletionTimestamp"].is_null() {
            meta["deletionTimestamp"] = json!(now_rfc3339());
            if let Some(generation) = meta["generation"].as_i64().filter(|g| *g > 0) {
                meta["generation"] = json!(generation + 1);
            }
        }
        meta["deletionGracePeriodSeconds"] = json!(0);
        if next == *current {
            return Ok((Value::clone(&current), false));
        }
        Ok((
            inner.commit(self, kind, key, next, EventType::Modified),
            false,
        ))
    }

    /// Read the objects and the indexes under the lock, as the controllers
    /// do. `read` must not call the store.
    pub fn read<R>(&self, read: impl FnOnce(&View) -> R) -> R {
        let inner = self.inner.lock().unwrap();
        read(&View(&inner))
    }

    /// Objects a quota counts in a namespace, by kind key.
    pub fn usage(&self, namespace: &str) -> BTreeMap<String, u64> {
        let inner = self.inner.lock().unwrap();
        inner.usage.get(namespace).cloned().unwrap_or_default()
    }

    /// Apply a change computed from the current object (controllers use
    /// this directly; the API uses it for PUT and PATCH).
    pub fn update(
        &self,
        kind: &Kind,
        namespace: &str,
        name: &str,
        change: impl FnOnce(&Value) -> Result<Value, ApiError>,
    ) -> Result<Value, ApiError> {
        let mut inner = self.inner.lock().unwrap();
        let key = (kind.key(), namespace.to_owned(), name.to_owned());
        let current = inner
            .objects
            .get(&key)
            .cloned()
            .ok_or_else(|| ApiError::not_found(kind, name))?;
        let mut next = change(&current)?;
        if next == *current {
            return Ok(Value::clone(&current));
        }
        // Like a custom resource's: a change besides metadata and status
        // is a new generation.
        if content_changed(&current, &next)
            && let Some(generation) = current["metadata"]["generation"].as_i64()
        {
            next["metadata"]["generation"] = json!(generation + 1);
        }
        if !next["metadata"]["deletionTimestamp"].is_null() && !has_finalizers(&next) {
            return Ok(inner.remove(self, kind, key));
        }
        Ok(inner.commit(self, kind, key, next, EventType::Modified))
    }
}

/// The store's objects and indexes, borrowed under its lock.
pub struct View<'a>(&'a Inner);

impl View<'_> {
    pub fn kinds(&self) -> &[Kind] {
        &self.0.kinds
    }

    pub fn get(&self, key: &Key) -> Option<&Value> {
        self.0.objects.get(key).map(|o| &**o)
    }

    pub fn objects(&self) -> impl Iterator<Item = (&Key, &Value)> {
        self.0.objects.iter().map(|(k, o)| (k, &**o))
    }

    /// The live object with this uid.
    pub fn by_uid(&self, uid: &str) -> Option<(&Key, &Value)> {
        let key = self.0.by_uid.get(uid)?;
        Some((key, self.0.objects.get(key)?))
    }

    /// The objects whose ownerReferences name this uid.
    pub fn dependents(&self, uid: &str) -> impl Iterator<Item = &Key> {
        self.0.dependents.get(uid).into_iter().flatten()
    }
}

/// The uids an object's ownerReferences name.
fn owner_uids(object: Option<&Value>) -> BTreeSet<String> {
    object
        .and_then(|o| o["metadata"]["ownerReferences"].as_array())
        .into_iter()
        .flatten()
        .filter_map(|r| r["uid"].as_str().map(str::to_owned))
        .collect()
}

impl Inner {
    fn keeps_events_since(&self, since: u64) -> bool {
        let oldest = self
            .log
            .front()
            .map_or(self.resource_version + 1, |e| e.resource_version);
        since + 1 >= oldest || since >= self.resource_version
    }

    fn commit(
        &mut self,
        store: &Store,
        kind: &Kind,
        key: Key,
        mut object: Value,
        event: EventType,
    ) -> Value {
        self.resource_version += 1;
        object["metadata"]["resourceVersion"] = json!(self.resource_version.to_string());
        let object = Arc::new(object);
        let before = self.objects.insert(key.clone(), object.clone());
        let owners = self.reindex(&key, before.as_deref(), Some(&object));
        self.record(store, kind, key.1, event, object.clone(), owners);
        Value::clone(&object)
    }

    fn remove(&mut self, store: &Store, kind: &Kind, key: Key) -> Value {
        let removed = self.objects.remove(&key).expect("checked by the caller");
        let owners = self.reindex(&key, Some(&removed), None);
        self.resource_version += 1;
        let mut object = Arc::unwrap_or_clone(removed);
        object["metadata"]["resourceVersion"] = json!(self.resource_version.to_string());
        let object = Arc::new(object);
        self.record(
            store,
            kind,
            key.1,
            EventType::Deleted,
            object.clone(),
            owners,
        );
        Value::clone(&object)
    }

    /// Bring the indexes up to date with one object's change (`None`: not
    /// there before, or no more). Answers the owner uids it named before
    /// or after, for the event.
    fn reindex(&mut self, key: &Key, before: Option<&Value>, after: Option<&Value>) -> Vec<String> {
        let (old, new) = (owner_uids(before), owner_uids(after));
        for uid in old.difference(&new) {
            if let Some(dependents) = self.dependents.get_mut(uid) {
                dependents.remove(key);
                // No empty entries: "has dependents" is "has an entry".
                if dependents.is_empty() {
                    self.dependents.remove(uid);
                }
            }
        }
        for uid in new.difference(&old) {
            self.dependents
                .entry(uid.clone())
                .or_default()
                .insert(key.clone());
        }

        if let Some(uid) = before.and_then(|o| o["metadata"]["uid"].as_str()) {
            self.by_uid.remove(uid);
        }
        if let Some(uid) = after.and_then(|o| o["metadata"]["uid"].as_str()) {
            self.by_uid.insert(uid.to_owned(), key.clone());
        }

        let counted = |object: Option<&Value>| object.is_some_and(|o| quota::counts(o, &key.0));
        let (was, is) = (counted(before), counted(after));
        if was != is {
            let kinds = self.usage.entry(key.1.clone()).or_default();
            let count = kinds.entry(key.0.clone()).or_default();
            if is {
                *count += 1;
            } else {
                *count -= 1;
                if *count == 0 {
                    kinds.remove(&key.0);
                    if kinds.is_empty() {
                        self.usage.remove(&key.1);
                    }
                }
            }
        }

        old.union(&new).cloned().collect()
    }

    fn record(
        &mut self,
        store: &Store,
        kind: &Kind,
        namespace: String,
        event: EventType,
        object: Arc<Value>,
        owner_uids: Vec<String>,
    ) {
        let event = Arc::new(Event {
            resource_version: self.resource_version,
            kind_key: kind.key(),
            namespace,
            kind: event,
            object,
            owner_uids,
        });
        if self.log.len() >= store.history {
            self.log.pop_front();
        }
        self.log.push_back(event.clone());
        let _ = store.events.send(event);
    }
}

fn has_finalizers(object: &Value) -> bool {
    object["metadata"]["finalizers"]
        .as_array()
        .is_some_and(|f| !f.is_empty())
}

/// A write naming a resourceVersion must name the current one.
fn check_resource_version(body: &Value, current: &Value) -> Result<(), ApiError> {
    match body["metadata"]["resourceVersion"].as_str() {
        Some(wanted) if Some(wanted) != current["metadata"]["resourceVersion"].as_str() => {
            Err(ApiError::new(
                409,
                "Conflict",
                format!(
                    "Operation cannot be fulfilled on \"{}\": the object has been modified; please apply your changes to the latest version and try again",
                    current["metadata"]["name"].as_str().unwrap_or_default()
                ),
            ))
        }
        _ => Ok(()),
    }
}

/// Whether anything besides metadata and status differs.
fn content_changed(current: &Value, next: &Value) -> bool {
    let (Some(current), Some(next)) = (current.as_object(), next.as_object()) else {
        return current != next;
    };
    let content = |key: &String| key != "metadata" && key != "status";
    current
        .iter()
        .filter(|(k, _)| content(k))
        .any(|(k, v)| next.get(k) != Some(v))
        || next
            .keys()
            .filter(|k| content(k))
            .any(|k| !current.contains_key(k))
}

/// Fields clients cannot change.
fn preserve_system_metadata(next: &mut Value, current: &Value) {
    for field in [
        "uid",
        "creationTimestamp",
        "namespace",
        "name",
        "deletionTimestamp",
        "deletionGracePeriodSeconds",
        "generation",
        "resourceVersion",
    ] {
        next["metadata"][field] = current["metadata"][field].clone();
    }
    if let Some(meta) = next["metadata"].as_object_mut() {
        meta.retain(|_, v| !v.is_null());
    }
}

pub fn now_rfc3339() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// Label selectors as kube-apiserver parses them: `a=b`, `a==b`, `a!=b`,
/// `a`, `!a`, and the set-based `a in (x,y)` and `a notin (x,y)`,
/// comma-joined (commas inside a set's parentheses belong to the set).
pub struct LabelSelector(Vec<Requirement>);

/// One term: the label's key, the values it may (or may not) have (none:
/// any), and whether it must match.
struct Requirement {
    key: String,
    values: Option<Vec<String>>,
    equal: bool,
}

impl LabelSelector {
    pub fn parse(text: &str) -> Result<Self, ApiError> {
        let mut terms = Vec::new();
        for term in split_terms(text).into_iter().filter(|t| !t.is_empty()) {
            let bad = || {
                ApiError::new(
                    400,
                    "BadRequest",
                    format!("unable to parse requirement: {term:?}"),
                )
            };
            let (key, values, equal) = if let Some((head, rest)) = term.split_once('(') {
                // `key in (a,b)` / `key notin (a,b)`, the space before `(` optional.
                let (key, op) = head.trim().rsplit_once(' ').ok_or_else(bad)?;
                let equal = match op {
                    "in" => true,
                    "notin" => false,
                    _ => return Err(bad()),
                };
                let values: Vec<String> = rest
                    .strip_suffix(')')
                    .ok_or_else(bad)?
                    .split(',')
                    .map(|v| v.trim().to_owned())
                    .collect();
                if values.iter().all(String::is_empty) {
                    return Err(bad());
                }
                (key.trim().to_owned(), Some(values), equal)
            } else if let Some((k, v)) = term.split_once("!=") {
                (k.trim().to_owned(), Some(vec![v.trim().to_owned()]), false)
            } else if let Some((k, v)) = term.split_once("==").or_else(|| term.split_once('=')) {
                (k.trim().to_owned(), Some(vec![v.trim().to_owned()]), true)
            } else if let Some(k) = term.strip_prefix('!') {
                (k.trim().to_owned(), None, false)
            } else {
                (term.to_owned(), None, true)
            };
            if key.is_empty() || key.contains(' ') {
                return Err(bad());
            }
            terms.push(Requirement { key, values, equal });
        }
        Ok(LabelSelector(terms))
    }

    pub fn matches(&self, object: &Value) -> bool {
        let labels = &object["metadata"]["labels"];
        self.0.iter().all(|term| {
            let actual = labels[term.key.as_str()].as_str();
            match &term.values {
                Some(values) => actual.is_some_and(|a| values.iter().any(|v| v == a)) == term.equal,
                None => actual.is_some() == term.equal,
            }
        })
    }
}

/// The selector's terms: split at commas outside parentheses.
fn split_terms(text: &str) -> Vec<&str> {
    let (mut terms, mut depth, mut start) = (Vec::new(), 0i32, 0);
    for (i, c) in text.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth = (depth - 1).max(0),
            ',' if depth == 0 => {
                terms.push(text[start..i].trim());
                start = i + 1;
            }
            _ => {}
        }
    }
    terms.push(text[start..].trim());
    terms
}

#[cfg(test)]
mod tests {
    use super::LabelSelector;
    use serde_json::json;

    #[test]
    fn set_based_selectors_match_as_kube_apiserver_s_do() {
        let object =
            |key: &str| json!({ "metadata": { "labels": { "managed": "yes", "shard": key } } });
        let selector = LabelSelector::parse("managed=yes,shard in (1, 2,3)").unwrap();
        assert!(selector.matches(&object("2")));
        assert!(!selector.matches(&object("4")));
        let outside = LabelSelector::parse("shard notin (1,2)").unwrap();
        assert!(outside.matches(&object("3")));
        assert!(
            outside.matches(&json!({ "metadata": {} })),
            "notin matches a missing label"
        );
        assert!(!outside.matches(&object("1")));
        assert!(
            LabelSelector::parse("shard in(1,2)")
                .unwrap()
                .matches(&object("1"))
        );
        assert!(LabelSelector::parse("shard in 1,2").is_err());
        assert!(LabelSelector::parse("shard in ()").is_err());
        assert!(LabelSelector::parse("shard within (1)").is_err());
    }
}
