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
//! Like the real collector's graph, a pass looks only at what the batch's
//! events can have changed, through the store's owner uid → dependents
//! index: the objects that changed (as owners and as dependents), the
//! owners whose dependents changed, and the dependents of owners that went
//! or started going. So a pass costs what changed, not the size of the
//! store. After missed events, or once a new kind is served (references
//! to it become resolvable), a pass looks at every object instead.
//!
//! Switched off by `SandboxConfig::garbage_collector = false`: then
//! orphan and foreground deletions wait forever, as on a cluster without
//! kube-controller-manager.

use std::collections::BTreeSet;

use serde_json::{Value, json};

use super::deletion::{DeleteOptions, FOREGROUND_FINALIZER, ORPHAN_FINALIZER, Propagation};
use super::store::{EventType, Key, Kind, Store, View};
use super::{Batch, Shared};

/// The collector's memory between passes.
#[derive(Default)]
pub(super) struct Collector {
    /// How many kinds were served at the last pass.
    kinds: usize,
}

/// What a batch asks the collector to look at again.
#[derive(Default)]
struct Work {
    /// Owners (by uid) whose deletion may proceed: being deleted themselves,
    /// or with a dependent that changed.
    owners: BTreeSet<String>,
    /// Owners (by uid) that appeared, went, or are being deleted: their
    /// dependents may now find them missing or deleting theirs first.
    owners_changed: BTreeSet<String>,
    /// Objects that changed, as dependents of their owners.
    dependents: BTreeSet<Key>,
}

/// One write the pass decided on, made once the store's lock is released.
enum Action {
    /// Drop the object's references to these owner uids.
    StripOwners(Target, Vec<String>),
    RemoveFinalizer(Target, &'static str),
    Delete(Target, Propagation),
}

/// An object a write is for; the uid guards against a namesake created
/// since the pass looked.
struct Target {
    kind: Kind,
    key: Key,
    uid: String,
}

impl Collector {
    pub(super) fn reconcile(&mut self, shared: &Shared, batch: &Batch) {
        let store = &shared.store;
        let mut work = Work::default();
        for event in &batch.events {
            let meta = &event.object["metadata"];
            let uid = meta["uid"].as_str().unwrap_or_default();
            let name = meta["name"].as_str().unwrap_or_default();
            // Only these change what the object is to its dependents (an
            // update can neither set a deletionTimestamp nor change a uid).
            if event.kind != EventType::Modified || deleting(&event.object) {
                work.owners_changed.insert(uid.to_owned());
            }
            if event.kind != EventType::Deleted {
                if deleting(&event.object) {
                    work.owners.insert(uid.to_owned());
                }
                if !owners(&event.object).is_empty() {
                    let key = (event.kind_key.clone(), event.namespace.clone(), name.into());
                    work.dependents.insert(key);
                }
            }
            work.owners.extend(event.owner_uids.iter().cloned());
        }
        let actions = store.read(|view| {
            let everything = batch.missed || view.kinds().len() != self.kinds;
            self.kinds = view.kinds().len();
            if everything {
                work = all_work(view);
            }
            plan(view, &work)
        });
        for action in actions {
            action.apply(store);
        }
    }
}

/// Every object: the deleting ones as owners, the owned ones as dependents.
fn all_work(view: &View) -> Work {
    let mut work = Work::default();
    for (key, object) in view.objects() {
        if deleting(object) {
            work.owners.extend(uid(object).map(str::to_owned));
        }
        if !owners(object).is_empty() {
            work.dependents.insert(key.clone());
        }
    }
    work
}

fn plan(view: &View, work: &Work) -> Vec<Action> {
    let kind_of = |key: &str| view.kinds().iter().find(|k| k.key() == key);
    let target = |kind: &Kind, key: &Key, object: &Value| Target {
        kind: kind.clone(),
        key: key.clone(),
        uid: uid(object).unwrap_or_default().to_owned(),
    };
    let mut actions = Vec::new();

    for owner_uid in &work.owners {
        let Some((key, owner)) = view.by_uid(owner_uid) else {
            continue;
        };
        if !deleting(owner) {
            continue;
        }
        let Some(kind) = kind_of(&key.0) else {
            continue;
        };
        // A cluster-scoped owner (namespace "") may own objects anywhere.
        let dependents = view
            .dependents(owner_uid)
            .filter(|d| d.1 == key.1 || key.1.is_empty())
            .filter_map(|d| Some((d, view.get(d)?)));
        if has_finalizer(owner, ORPHAN_FINALIZER) {
            for (dep_key, dependent) in dependents {
                if let Some(dep_kind) = kind_of(&dep_key.0) {
                    let strip = vec![owner_uid.clone()];
                    actions.push(Action::StripOwners(
                        target(dep_kind, dep_key, dependent),
                        strip,
                    ));
                }
            }
            actions.push(Action::RemoveFinalizer(
                target(kind, key, owner),
                ORPHAN_FINALIZER,
            ));
        } else if has_finalizer(owner, FOREGROUND_FINALIZER) {
            let blocked = dependents
                .flat_map(|(_, d)| owners(d).iter().filter(|r| r["uid"] == owner_uid.as_str()))
                .any(|r| r["blockOwnerDeletion"] == true);
            if !blocked {
                actions.push(Action::RemoveFinalizer(
                    target(kind, key, owner),
                    FOREGROUND_FINALIZER,
                ));
            }
        }
    }

    let dependents: BTreeSet<&Key> = work
        .dependents
        .iter()
        .chain(work.owners_changed.iter().flat_map(|u| view.dependents(u)))
        .collect();
    for key in dependents {
        let Some(dependent) = view.get(key) else {
            continue;
        };
        if deleting(dependent) || owners(dependent).is_empty() {
            continue;
        }
        let Some(kind) = kind_of(&key.0) else {
            continue;
        };
        let mut solid = 0;
        let mut gone = Vec::new();
        let mut waiting = false;
        for reference in owners(dependent) {
            match owner_state(view, reference, &key.1) {
                Owner::Exists => solid += 1,
                Owner::Missing => gone.extend(reference["uid"].as_str().map(str::to_owned)),
                Owner::DeletingDependents => {
                    waiting = true;
                    gone.extend(reference["uid"].as_str().map(str::to_owned));
                }
            }
        }
        if gone.is_empty() {
            continue;
        }
        let target = target(kind, key, dependent);
        if solid > 0 {
            actions.push(Action::StripOwners(target, gone));
            continue;
        }
        // A dependent that owns others goes in the foreground too, so the
        // chain is deleted from the bottom up.
        let owns_others = view.dependents(&target.uid).next().is_some();
        let policy = if waiting && owns_others {
            Propagation::Foreground
        } else if has_finalizer(dependent, ORPHAN_FINALIZER) {
            Propagation::Orphan
        } else if has_finalizer(dependent, FOREGROUND_FINALIZER) {
            Propagation::Foreground
        } else {
            Propagation::Background
        };
        actions.push(Action::Delete(target, policy));
    }
    actions
}

enum Owner {
    Exists,
    Missing,
    /// Being deleted in the foreground: its dependents go first.
    DeletingDependents,
}

/// Resolved as the real collector does: by kind and name (in the
/// dependent's namespace, else cluster-scoped), then checked by uid.
fn owner_state(view: &View, reference: &Value, namespace: &str) -> Owner {
    let served = view.kinds().iter().find(|k| {
        reference["apiVersion"] == k.api_version() && reference["kind"] == k.kind.as_str()
    });
    let (Some(kind), Some(name), Some(uid)) = (
        served,
        reference["name"].as_str(),
        reference["uid"].as_str(),
    ) else {
        return Owner::Exists; // not resolvable: left alone
    };
    let key = |namespace: &str| (kind.key(), namespace.to_owned(), name.to_owned());
    let owner = view.get(&key(namespace)).or_else(|| view.get(&key("")));
    match owner {
        Some(owner) if self::uid(owner) == Some(uid) => {
            if deleting(owner) && has_finalizer(owner, FOREGROUND_FINALIZER) {
                Owner::DeletingDependents
            } else {
                Owner::Exists
            }
        }
        _ => Owner::Missing,
    }
}

fn uid(object: &Value) -> Option<&str> {
    object["metadata"]["uid"].as_str()
}

fn deleting(object: &Value) -> bool {
    !object["metadata"]["deletionTimestamp"].is_null()
}

fn owners(object: &Value) -> &[Value] {
    object["metadata"]["ownerReferences"]
        .as_array()
        .map_or(&[], Vec::as_slice)
}

fn has_finalizer(object: &Value, finalizer: &str) -> bool {
    object["metadata"]["finalizers"]
        .as_array()
        .is_some_and(|f| f.iter().any(|f| f == finalizer))
}

impl Action {
    fn apply(self, store: &Store) {
        match self {
            Action::StripOwners(target, uids) => {
                let _ = store.update(&target.kind, &target.key.1, &target.key.2, |current| {
                    let mut next = current.clone();
                    if uid(current) != Some(target.uid.as_str()) {
                        return Ok(next);
                    }
                    let meta = &mut next["metadata"];
                    let kept: Vec<Value> = owners(current)
                        .iter()
                        .filter(|r| !uids.iter().any(|uid| r["uid"] == uid.as_str()))
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
            Action::RemoveFinalizer(target, finalizer) => {
                let _ = store.update(&target.kind, &target.key.1, &target.key.2, |current| {
                    let mut next = current.clone();
                    if uid(current) != Some(target.uid.as_str()) {
                        return Ok(next);
                    }
                    if let Some(finalizers) = next["metadata"]["finalizers"].as_array_mut() {
                        finalizers.retain(|f| f != finalizer);
                    }
                    Ok(next)
                });
            }
            Action::Delete(target, policy) => {
                let mut options = DeleteOptions::propagation(policy);
                options.preconditions.uid = Some(target.uid.clone());
                let _ = store.delete(&target.kind, &target.key.1, &target.key.2, &options);
            }
        }
    }
}
