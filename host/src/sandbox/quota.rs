//! ResourceQuota for object counts: admission on create, and the quota
//! controller that keeps `status.hard` / `status.used` current.
//!
//! A quota's `spec.hard` may name `count/<plural>.<group>` (`count/<plural>`
//! for the core group) and, for core kinds, the legacy plain names (`pods`,
//! `configmaps`, ...). A create that would take a count above its limit is
//! refused with 403 `Forbidden` and kube-apiserver's message. Other
//! resources (cpu, memory...) and `scopes` are not enforced.
//!
//! Unlike kube-apiserver, admission counts the live objects rather than
//! the quota's `status.used`, so a delete frees room at once instead of
//! after the controller's next pass. Pods that ended (Succeeded, Failed)
//! or are being deleted do not count, as with the real pod evaluator.
//!
//! The counts come from the store's running tally ([`Store::usage`]), and
//! the controller only revisits the namespaces a batch of changes touched:
//! neither counts the store's objects.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Mutex;

use serde_json::{Map, Value, json};

use super::fields::Writer;
use super::store::{ApiError, Kind, Store};
use super::{Batch, Shared};

pub fn quota_kind() -> Kind {
    Kind::new("v1", "ResourceQuota", "resourcequotas")
}

/// Core kinds a quota can also limit by plain name.
const LEGACY_COUNTS: [&str; 7] = [
    "pods",
    "services",
    "secrets",
    "configmaps",
    "replicationcontrollers",
    "resourcequotas",
    "persistentvolumeclaims",
];

/// Creates go through here: admission and the create happen under one
/// lock, so concurrent creates cannot both take the last unit.
#[derive(Default)]
pub struct Quotas {
    admitting: Mutex<()>,
}

impl Quotas {
    pub fn create(
        &self,
        store: &Store,
        kind: &Kind,
        namespace: &str,
        object: Value,
        writer: &Writer,
    ) -> Result<Value, ApiError> {
        let _admitting = self.admitting.lock().unwrap();
        admit(store, kind, namespace, &object)?;
        store.create(kind, namespace, object, writer)
    }
}

/// The quota resource names that count objects of `kind`.
fn resource_names(kind: &Kind) -> Vec<String> {
    if kind.group.is_empty() {
        let mut names = vec![format!("count/{}", kind.plural)];
        if LEGACY_COUNTS.contains(&kind.plural.as_str()) {
            names.push(kind.plural.clone());
        }
        names
    } else {
        vec![format!("count/{}.{}", kind.plural, kind.group)]
    }
}

/// The store key (`group/plural`) of the objects a quota resource counts.
fn counted_key(resource: &str) -> Option<String> {
    if let Some(resource) = resource.strip_prefix("count/") {
        return Some(match resource.split_once('.') {
            Some((plural, group)) => format!("{group}/{plural}"),
            None => format!("/{resource}"),
        });
    }
    LEGACY_COUNTS
        .contains(&resource)
        .then(|| format!("/{resource}"))
}

/// A count limit: an integer, as a quantity string or a number.
fn limit(value: &Value) -> Option<u64> {
    match value {
        Value::String(s) => s.trim().parse().ok(),
        other => other.as_u64(),
    }
}

/// Whether a quota counts this object (the store keeps the tally).
pub(super) fn counts(object: &Value, kind_key: &str) -> bool {
    if kind_key != "/pods" {
        return true;
    }
    let phase = object["status"]["phase"].as_str();
    object["metadata"]["deletionTimestamp"].is_null()
        && !matches!(phase, Some("Succeeded" | "Failed"))
}

fn admit(store: &Store, kind: &Kind, namespace: &str, object: &Value) -> Result<(), ApiError> {
    let (quotas, _) = store.list(&quota_kind(), Some(namespace), "")?;
    if quotas.is_empty() || !counts(object, &kind.key()) {
        return Ok(());
    }
    let names = resource_names(kind);
    let used = store
        .usage(namespace)
        .get(&kind.key())
        .copied()
        .unwrap_or(0);
    for quota in &quotas {
        let hard = &quota["spec"]["hard"];
        // Sorted by name, as kube-apiserver prints them.
        let mut exceeded: Vec<(&String, u64)> = names
            .iter()
            .filter_map(|name| limit(&hard[name.as_str()]).map(|limit| (name, limit)))
            .filter(|(_, limit)| used + 1 > *limit)
            .collect();
        exceeded.sort();
        if exceeded.is_empty() {
            continue;
        }
        let list = |value: &dyn Fn(u64) -> u64| {
            exceeded
                .iter()
                .map(|(name, limit)| format!("{name}={}", value(*limit)))
                .collect::<Vec<_>>()
                .join(",")
        };
        let resource = if kind.group.is_empty() {
            kind.plural.clone()
        } else {
            format!("{}.{}", kind.plural, kind.group)
        };
        return Err(ApiError::new(
            403,
            "Forbidden",
            format!(
                "{resource} \"{}\" is forbidden: exceeded quota: {}, requested: {}, used: {}, limited: {}",
                object["metadata"]["name"].as_str().unwrap_or_default(),
                quota["metadata"]["name"].as_str().unwrap_or_default(),
                list(&|_| 1),
                list(&|_| used),
                list(&|limit| limit),
            ),
        ));
    }
    Ok(())
}

/// The quota controller's pass: each quota in a namespace the batch
/// changed (every quota, after missed events) gets its hard limits and the
/// counts it tracks. Counts only change with a namespace's own objects.
pub(super) fn reconcile(shared: &Shared, batch: &Batch) {
    let store = &shared.store;
    let kind = quota_kind();
    let list = |namespace: Option<&str>| {
        store
            .list(&kind, namespace, "")
            .map(|(quotas, _)| quotas)
            .unwrap_or_default()
    };
    let quotas: Vec<Value> = if batch.missed {
        list(None)
    } else {
        let namespaces: BTreeSet<&str> =
            batch.events.iter().map(|e| e.namespace.as_str()).collect();
        namespaces
            .into_iter()
            .flat_map(|ns| list(Some(ns)))
            .collect()
    };
    let mut usage_by_namespace = BTreeMap::new();
    for quota in quotas {
        let namespace = quota["metadata"]["namespace"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        let usage = usage_by_namespace
            .entry(namespace.clone())
            .or_insert_with(|| store.usage(&namespace));
        let hard = quota["spec"]["hard"].clone();
        let used: Map<String, Value> = hard
            .as_object()
            .into_iter()
            .flatten()
            .filter_map(|(resource, _)| {
                let key = counted_key(resource)?;
                let count = usage.get(&key).copied().unwrap_or(0);
                Some((resource.clone(), json!(count.to_string())))
            })
            .collect();
        let status = json!({ "hard": hard, "used": used });
        let uid = quota["metadata"]["uid"].clone();
        let name = quota["metadata"]["name"].as_str().unwrap_or_default();
        let _ = store.update(&kind, &namespace, name, |current| {
            let mut next = current.clone();
            if current["metadata"]["uid"] == uid {
                next["status"] = status;
            }
            Ok(next)
        });
    }
}
