//! How a watch cache keeps an object: the reflector's key fields, and the
//! rest as deflated JSON. A parsed `serde_json::Value` tree costs about
//! eight times the object's JSON (a B-tree node for every small map: each
//! env entry, each label set), and the cache holds every live and retained
//! task's object; deflating halves the text again. It is inflated and
//! parsed only when a task reads it (tens of microseconds).

use std::borrow::Cow;
use std::sync::Arc;

use kube::api::DynamicObject;
use kube::runtime::reflector::Lookup;
use kube::runtime::watcher;
use serde_json::Value;

/// An annotation a plugin never reads and a cache need not keep.
const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";

/// One cached object.
#[derive(Debug, Clone)]
pub(super) struct CachedObject {
    name: String,
    namespace: Option<String>,
    resource_version: Option<String>,
    uid: Option<String>,
    /// The whole object as JSON, without what [`strip_bulk`] drops, deflated.
    deflated: Arc<[u8]>,
}

/// Fast compression: the cache is written on every watch event.
const DEFLATE_LEVEL: u8 = 1;

impl CachedObject {
    fn new(mut object: DynamicObject) -> Self {
        strip_bulk(&mut object);
        let json = serde_json::to_vec(&object).expect("objects serialize");
        let deflated = miniz_oxide::deflate::compress_to_vec(&json, DEFLATE_LEVEL);
        let metadata = object.metadata;
        CachedObject {
            name: metadata.name.unwrap_or_default(),
            namespace: metadata.namespace,
            resource_version: metadata.resource_version,
            uid: metadata.uid,
            deflated: deflated.into(),
        }
    }

    pub(super) fn name(&self) -> &str {
        &self.name
    }

    pub(super) fn resource_version(&self) -> Option<&str> {
        self.resource_version.as_deref()
    }

    /// The object, parsed.
    pub(super) fn value(&self) -> Value {
        let json = miniz_oxide::inflate::decompress_to_vec(&self.deflated)
            .expect("the cache inflates what it deflated");
        serde_json::from_slice(&json).expect("the cache holds JSON it wrote")
    }
}

/// What a cached object need not keep: nothing a plugin reads.
fn strip_bulk(object: &mut DynamicObject) {
    object.metadata.managed_fields = None;
    if let Some(annotations) = object.metadata.annotations.as_mut() {
        annotations.remove(LAST_APPLIED);
    }
}

/// A watcher event with its object in cached form.
pub(super) fn compact(event: watcher::Event<DynamicObject>) -> watcher::Event<CachedObject> {
    match event {
        watcher::Event::Apply(object) => watcher::Event::Apply(CachedObject::new(object)),
        watcher::Event::Delete(object) => watcher::Event::Delete(CachedObject::new(object)),
        watcher::Event::InitApply(object) => watcher::Event::InitApply(CachedObject::new(object)),
        watcher::Event::Init => watcher::Event::Init,
        watcher::Event::InitDone => watcher::Event::InitDone,
    }
}

/// The reflector's view of a cached object. One store holds one kind in
/// one namespace, so the key needs no kind (the dynamic type is `()`, and
/// keys do not each carry a copy of the kind's names).
impl Lookup for CachedObject {
    type DynamicType = ();

    fn kind(_: &()) -> Cow<'_, str> {
        Cow::Borrowed("object")
    }

    fn group(_: &()) -> Cow<'_, str> {
        Cow::Borrowed("")
    }

    fn version(_: &()) -> Cow<'_, str> {
        Cow::Borrowed("")
    }

    fn plural(_: &()) -> Cow<'_, str> {
        Cow::Borrowed("objects")
    }

    fn name(&self) -> Option<Cow<'_, str>> {
        Some(Cow::Borrowed(&self.name))
    }

    fn namespace(&self) -> Option<Cow<'_, str>> {
        self.namespace.as_deref().map(Cow::Borrowed)
    }

    fn resource_version(&self) -> Option<Cow<'_, str>> {
        self.resource_version.as_deref().map(Cow::Borrowed)
    }

    fn uid(&self) -> Option<Cow<'_, str>> {
        self.uid.as_deref().map(Cow::Borrowed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn an_object_is_kept_whole_but_for_the_bulk_and_read_back_the_same() {
        let object = json!({
            "apiVersion": "sparkoperator.k8s.io/v1beta2", "kind": "SparkApplication",
            "metadata": {
                "name": "a", "namespace": "ns", "resourceVersion": "7", "uid": "u-1",
                "labels": { "app.kubernetes.io/managed-by": "flytewasm" },
                "annotations": { LAST_APPLIED: "{}", "flytewasm.io/plugin": "spark" },
                "managedFields": [{ "manager": "kubectl", "operation": "Apply" }],
            },
            "spec": { "mainApplicationFile": "local:///app.py" },
            "status": { "applicationState": { "state": "RUNNING" } },
        });
        let cached = CachedObject::new(serde_json::from_value(object.clone()).unwrap());
        assert_eq!(
            (cached.name(), cached.namespace().as_deref()),
            ("a", Some("ns"))
        );
        assert_eq!(cached.resource_version().as_deref(), Some("7"));
        let mut expected = object;
        let metadata = expected["metadata"].as_object_mut().unwrap();
        metadata.remove("managedFields");
        metadata["annotations"]
            .as_object_mut()
            .unwrap()
            .remove(LAST_APPLIED);
        assert_eq!(cached.value(), expected);
    }
}
