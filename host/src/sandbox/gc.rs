//! The garbage collector, as kube-controller-manager runs it, after each
//! batch of changes:
//!
//! - an owner being deleted with the `orphan` finalizer: its dependents
//!   lose their ownerReferences to it, then the finalizer goes;
//! - an owner being deleted with `foregroundDeletion`: its dependents are
//!   deleted, and the finalizer goes once none that `blockOwnerDeletion`
//!   remains;
//! - a dependent none of whose owners exists any more (by uid) is deleted
//!   (with the policy its own GC finalizers ask for, else in the
//!   background); one that still has an owner just loses the references
//!   to the missing ones. An owner of a kind the sandbox does not serve is
//!   assumed to exist, as the real collector cannot resolve it either.
//!
//! Switched off by `SandboxConfig::garbage_collector = false`: then
//! orphan and foreground deletions wait forever, as on a cluster without
//! kube-controller-manager.

use std::collections::{HashMap, HashSet};

use serde_json::{Value, json};

use super::Shared;
use super::deletion::{DeleteOptions, FOREGROUND_FINALIZER, ORPHAN_FINALIZER, Propagation};
use super::store::{Kind, Store};

/// An object, as the collector needs to see it.
struct Node {
    kind_key: String,
    namespace: String,
    name: String,
    uid: String,
    deleting: bool,
    finalizers: Vec<String>,
    owners: Vec<Value>,
}

impl Node {
    fn has_finalizer(&self, finalizer: &str) -> bool {
        self.finalizers.iter().any(|f| f == finalizer)
    }
    fn owned_by(&self, uid: &str) -> impl Iterator<Item = &Value> {
        self.owners.iter().filter(move |r| r["uid"] == uid)
    }
}

enum Owner {
    Exists,
    Missing,
    /// Being deleted in the foreground: its dependents go first.
    DeletingDependents,
}

pub(super) fn reconcile(shared: &Shared) {
    let store = &shared.store;
    let kinds = store.kinds();
    let mut nodes = Vec::new();
    store.scan(|kind_key, namespace, object| {
        let meta = &object["metadata"];
        let strings = |field: &str| -> Vec<String> {
            meta[field]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|f| f.as_str().map(str::to_owned))
                .collect()
        };
        nodes.push(Node {
            kind_key: kind_key.to_owned(),
            namespace: namespace.to_owned(),
            name: meta["name"].as_str().unwrap_or_default().to_owned(),
            uid: meta["uid"].as_str().unwrap_or_default().to_owned(),
            deleting: !meta["deletionTimestamp"].is_null(),
            finalizers: strings("finalizers"),
            owners: meta["ownerReferences"]
                .as_array()
                .cloned()
                .unwrap_or_default(),
        });
    });
    if nodes.iter().all(|n| n.owners.is_empty() && !n.deleting) {
        return;
    }
    let by_name: HashMap<(&str, &str, &str), &Node> = nodes
        .iter()
        .map(|n| {
            (
                (n.kind_key.as_str(), n.namespace.as_str(), n.name.as_str()),
                n,
            )
        })
        .collect();
    let owner_uids: HashSet<&str> = nodes
        .iter()
        .flat_map(|n| n.owners.iter().filter_map(|r| r["uid"].as_str()))
        .collect();
    let kind_of = |key: &str| kinds.iter().find(|k| k.key() == key);

    for owner in nodes.iter().filter(|n| n.deleting) {
        let Some(kind) = kind_of(&owner.kind_key) else {
            continue;
        };
        let dependents = nodes
            .iter()
            .filter(|n| n.namespace == owner.namespace || owner.namespace.is_empty())
            .filter(|n| n.owned_by(&owner.uid).next().is_some());
        if owner.has_finalizer(ORPHAN_FINALIZER) {
            for dependent in dependents {
                if let Some(dep_kind) = kind_of(&dependent.kind_key) {
                    strip_owners(store, dep_kind, dependent, &[owner.uid.as_str()]);
                }
            }
            remove_finalizer(store, kind, owner, ORPHAN_FINALIZER);
        } else if owner.has_finalizer(FOREGROUND_FINALIZER) {
            let blocked = dependents
                .flat_map(|d| d.owned_by(&owner.uid))
                .any(|r| r["blockOwnerDeletion"] == true);
            if !blocked {
                remove_finalizer(store, kind, owner, FOREGROUND_FINALIZER);
            }
        }
    }

    for dependent in nodes.iter().filter(|n| !n.owners.is_empty() && !n.deleting) {
        let Some(kind) = kind_of(&dependent.kind_key) else {
            continue;
        };
        let mut solid = 0;
        let mut gone = Vec::new();
        let mut waiting = false;
        for reference in &dependent.owners {
            match owner_state(reference, dependent, &kinds, &by_name) {
                Owner::Exists => solid += 1,
                Owner::Missing => gone.extend(reference["uid"].as_str()),
                Owner::DeletingDependents => {
                    waiting = true;
                    gone.extend(reference["uid"].as_str());
                }
            }
        }
        if gone.is_empty() {
            continue;
        }
        if solid > 0 {
            strip_owners(store, kind, dependent, &gone);
            continue;
        }
        let policy = if waiting && owner_uids.contains(dependent.uid.as_str()) {
            Propagation::Foreground
        } else if dependent.has_finalizer(ORPHAN_FINALIZER) {
            Propagation::Orphan
        } else if dependent.has_finalizer(FOREGROUND_FINALIZER) {
            Propagation::Foreground
        } else {
            Propagation::Background
        };
        let mut options = DeleteOptions::propagation(policy);
        options.preconditions.uid = Some(dependent.uid.clone());
        let _ = store.delete(kind, &dependent.namespace, &dependent.name, &options);
    }
}

fn owner_state(
    reference: &Value,
    dependent: &Node,
    kinds: &[Kind],
    by_name: &HashMap<(&str, &str, &str), &Node>,
) -> Owner {
    let served = kinds.iter().find(|k| {
        reference["apiVersion"] == k.api_version() && reference["kind"] == k.kind.as_str()
    });
    let (Some(kind), Some(name), Some(uid)) = (
        served,
        reference["name"].as_str(),
        reference["uid"].as_str(),
    ) else {
        return Owner::Exists; // not resolvable: left alone
    };
    let key = kind.key();
    let owner = by_name
        .get(&(key.as_str(), dependent.namespace.as_str(), name))
        .or_else(|| by_name.get(&(key.as_str(), "", name)));
    match owner {
        Some(owner) if owner.uid == uid => {
            if owner.deleting && owner.has_finalizer(FOREGROUND_FINALIZER) {
                Owner::DeletingDependents
            } else {
                Owner::Exists
            }
        }
        _ => Owner::Missing,
    }
}

/// Drop the dependent's references to these owner uids.
fn strip_owners(store: &Store, kind: &Kind, dependent: &Node, uids: &[&str]) {
    let _ = store.update(kind, &dependent.namespace, &dependent.name, |current| {
        let mut next = current.clone();
        if current["metadata"]["uid"] != dependent.uid.as_str() {
            return Ok(next);
        }
        let meta = &mut next["metadata"];
        let kept: Vec<Value> = meta["ownerReferences"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|r| !uids.iter().any(|uid| r["uid"] == *uid))
            .cloned()
            .collect();
        if kept.is_empty() {
            if let Some(meta) = meta.as_object_mut() {
                meta.remove("ownerReferences");
            }
        } else {
            meta["ownerReferences"] = json!(kept);
        }
        Ok(next)
    });
}

fn remove_finalizer(store: &Store, kind: &Kind, node: &Node, finalizer: &str) {
    let _ = store.update(kind, &node.namespace, &node.name, |current| {
        let mut next = current.clone();
        if current["metadata"]["uid"] != node.uid.as_str() {
            return Ok(next);
        }
        if let Some(finalizers) = next["metadata"]["finalizers"].as_array_mut() {
            finalizers.retain(|f| f != finalizer);
        }
        Ok(next)
    });
}
