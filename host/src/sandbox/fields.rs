//! `metadata.managedFields`, recorded on create, update and patch as
//! kube-apiserver does for non-apply writes: one entry per (manager,
//! operation, subresource), operation `Update`, owning the fields the write
//! changed (`fieldsV1`, Kubernetes' `f:<field>` nesting; lists are leaves,
//! so this is an approximation of the real sets).
//!
//! The manager is the request's `fieldManager`, else the User-Agent up to
//! its first `/` (kube-rs sends none: then it is empty, as on a real
//! server). Clients cannot rewrite the entries through ordinary writes;
//! sending an empty list (`[]` or `[{}]`) clears them, and that write
//! records only what else it changed.

use serde_json::{Map, Value, json};

use super::store::now_rfc3339;

/// The metadata the server owns: never part of a field set.
const SYSTEM_METADATA: [&str; 10] = [
    "name",
    "namespace",
    "uid",
    "resourceVersion",
    "creationTimestamp",
    "generation",
    "managedFields",
    "selfLink",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
];

/// Who makes a write, for its managedFields entry.
#[derive(Debug, Clone)]
pub struct Writer {
    pub manager: String,
    /// The API version the request used.
    pub api_version: String,
    /// The write is to the status subresource.
    pub status: bool,
}

/// The manager name kube-apiserver uses for a request.
pub fn manager(field_manager: Option<&str>, user_agent: Option<&str>) -> String {
    match field_manager.filter(|m| !m.is_empty()) {
        Some(manager) => manager.to_owned(),
        None => user_agent
            .unwrap_or_default()
            .split('/')
            .next()
            .unwrap_or_default()
            .chars()
            .filter(|c| !c.is_control())
            .take(128)
            .collect(),
    }
}

/// Set `next`'s managedFields: `live`'s (`Null` on create), plus what this
/// write changed, owned by `writer`.
pub fn record(live: &Value, next: &mut Value, writer: &Writer) {
    let sent = next["metadata"]["managedFields"].take();
    let reset = sent == json!([]) || sent == json!([{}]);
    let mut entries: Vec<Value> = if reset {
        Vec::new()
    } else {
        live["metadata"]["managedFields"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    };
    if let Some(meta) = next["metadata"].as_object_mut() {
        meta.remove("managedFields");
    }
    let mut changed = changed_fields(live, next);
    if let Some(Value::Object(meta)) = changed.get_mut("f:metadata") {
        for field in SYSTEM_METADATA {
            meta.remove(&format!("f:{field}"));
        }
        if meta.is_empty() {
            changed.remove("f:metadata");
        }
    }
    changed.remove("f:apiVersion");
    changed.remove("f:kind");
    if !changed.is_empty() {
        let subresource = writer.status.then_some("status");
        let same = |e: &&mut Value| {
            e["manager"] == writer.manager.as_str()
                && e["operation"] == "Update"
                && e["subresource"].as_str() == subresource
        };
        let changed = Value::Object(changed);
        match entries.iter_mut().find(same) {
            Some(entry) => {
                json_patch::merge(&mut entry["fieldsV1"], &changed);
                entry["time"] = json!(now_rfc3339());
                entry["apiVersion"] = json!(writer.api_version);
            }
            None => {
                let mut entry = json!({
                    "manager": writer.manager, "operation": "Update", "apiVersion": writer.api_version,
                    "time": now_rfc3339(), "fieldsType": "FieldsV1", "fieldsV1": changed,
                });
                if let Some(subresource) = subresource {
                    entry["subresource"] = json!(subresource);
                }
                entries.push(entry);
            }
        }
    }
    if !entries.is_empty() {
        next["metadata"]["managedFields"] = Value::Array(entries);
    }
}

/// The fields of `next` that differ from `live`, nested as `f:<key>`:
/// objects recurse, anything else is a leaf `{}`.
fn changed_fields(live: &Value, next: &Value) -> Map<String, Value> {
    let mut out = Map::new();
    let Some(next) = next.as_object() else {
        return out;
    };
    for (key, value) in next {
        let before = live.get(key);
        if before == Some(value) || value.is_null() {
            continue;
        }
        let nested = match value {
            Value::Object(map) if !map.is_empty() => {
                Value::Object(changed_fields(before.unwrap_or(&Value::Null), value))
            }
            _ => json!({}),
        };
        out.insert(format!("f:{key}"), nested);
    }
    out
}
