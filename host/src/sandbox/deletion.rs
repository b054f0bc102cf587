//! DELETE semantics, as kube-apiserver's generic registry applies them:
//! `DeleteOptions` (from the body, else the query), preconditions, and the
//! garbage-collection finalizers a propagation policy puts on the object.
//!
//! `Orphan` adds the `orphan` finalizer, `Foreground` adds
//! `foregroundDeletion`, `Background` adds neither; the object then waits
//! for its finalizers (the garbage collector, [`super::gc`], removes those
//! two). With no policy given, a GC finalizer the object already has
//! decides, else the resource's default: `Orphan` for `batch/v1` Jobs and
//! `v1` ReplicationControllers (kept for backward compatibility), else
//! `Background`.

use std::collections::HashMap;

use serde::Deserialize;
use serde_json::{Value, json};

use super::store::{ApiError, Kind};

pub const ORPHAN_FINALIZER: &str = "orphan";
pub const FOREGROUND_FINALIZER: &str = "foregroundDeletion";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum Propagation {
    Orphan,
    Background,
    Foreground,
}

/// The parts of `meta/v1 DeleteOptions` the sandbox honours.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeleteOptions {
    pub propagation_policy: Option<Propagation>,
    /// Deprecated: `true` is `Orphan`, `false` deletes dependents.
    pub orphan_dependents: Option<bool>,
    #[serde(default)]
    pub preconditions: Preconditions,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Preconditions {
    pub uid: Option<String>,
    pub resource_version: Option<String>,
}

impl DeleteOptions {
    pub fn propagation(policy: Propagation) -> Self {
        DeleteOptions {
            propagation_policy: Some(policy),
            ..Default::default()
        }
    }

    /// As kube-apiserver reads them: the body when there is one, else the
    /// query parameters.
    pub fn from_request(body: &[u8], query: &HashMap<String, String>) -> Result<Self, ApiError> {
        let invalid = |message: String| ApiError::new(422, "Invalid", message);
        let options: DeleteOptions = if body.iter().any(|b| !b.is_ascii_whitespace()) {
            serde_json::from_slice(body).map_err(|err| {
                invalid(format!("DeleteOptions is invalid: {err} (propagationPolicy: supported values: \"Orphan\", \"Background\", \"Foreground\")"))
            })?
        } else {
            let policy = match query.get("propagationPolicy").map(String::as_str) {
                None => None,
                Some("Orphan") => Some(Propagation::Orphan),
                Some("Background") => Some(Propagation::Background),
                Some("Foreground") => Some(Propagation::Foreground),
                Some(other) => {
                    return Err(invalid(format!(
                        "DeleteOptions is invalid: propagationPolicy: Unsupported value: {other:?}: supported values: \"Foreground\", \"Background\", \"Orphan\""
                    )));
                }
            };
            DeleteOptions {
                propagation_policy: policy,
                orphan_dependents: query.get("orphanDependents").map(|v| v == "true"),
                preconditions: Preconditions {
                    uid: query.get("preconditions.uid").cloned(),
                    resource_version: query.get("preconditions.resourceVersion").cloned(),
                },
            }
        };
        if options.propagation_policy.is_some() && options.orphan_dependents.is_some() {
            return Err(invalid(
                "DeleteOptions is invalid: propagationPolicy: Invalid value: orphanDependents and deletionPropagation cannot be both set".into(),
            ));
        }
        Ok(options)
    }

    /// A precondition that does not hold is a 409, as on kube-apiserver.
    pub fn check_preconditions(&self, current: &Value) -> Result<(), ApiError> {
        let meta = &current["metadata"];
        let name = meta["name"].as_str().unwrap_or_default();
        let conflict = |field: &str, wanted: &str, actual: &Value| {
            ApiError::new(
                409,
                "Conflict",
                format!(
                    "Operation cannot be fulfilled on \"{name}\": Precondition failed: {field}: {wanted}, {field} in object meta: {}",
                    actual.as_str().unwrap_or_default()
                ),
            )
        };
        if let Some(uid) = &self.preconditions.uid
            && meta["uid"].as_str() != Some(uid)
        {
            return Err(conflict("UID", uid, &meta["uid"]));
        }
        if let Some(rv) = &self.preconditions.resource_version
            && meta["resourceVersion"].as_str() != Some(rv)
        {
            return Err(conflict("ResourceVersion", rv, &meta["resourceVersion"]));
        }
        Ok(())
    }

    /// The request asked for dependents to be deleted with the deprecated
    /// field: kube-apiserver then answers 202 while the object waits.
    pub fn accepted_status(&self) -> bool {
        self.orphan_dependents == Some(false)
    }
}

/// The answer to a DELETE that removed the object: a success `Status`
/// naming it, except for the resources whose registry returns the deleted
/// object (pods, here).
pub fn deleted_answer(kind: &Kind, object: Value) -> Value {
    if kind.group.is_empty() && kind.plural == "pods" {
        return object;
    }
    let meta = &object["metadata"];
    json!({
        "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success",
        "details": { "name": meta["name"], "group": kind.group, "kind": kind.plural, "uid": meta["uid"] },
    })
}

/// What DELETE does to dependents when the request does not say, by the
/// resource the request names.
pub fn default_propagation(kind: &Kind) -> Propagation {
    match (
        kind.group.as_str(),
        kind.version.as_str(),
        kind.plural.as_str(),
    ) {
        ("batch", "v1", "jobs") | ("", "v1", "replicationcontrollers") => Propagation::Orphan,
        _ => Propagation::Background,
    }
}

/// The object's finalizers once this DELETE is applied: the GC finalizers
/// replaced by the ones the policy asks for, the others kept in order.
pub fn finalizers(kind: &Kind, current: &Value, options: &DeleteOptions) -> Vec<String> {
    let existing: Vec<String> = current["metadata"]["finalizers"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|f| f.as_str().map(str::to_owned))
        .collect();
    let policy = match (options.orphan_dependents, options.propagation_policy) {
        (Some(true), _) => Propagation::Orphan,
        (Some(false), _) => Propagation::Background,
        (None, Some(policy)) => policy,
        // No policy given: a GC finalizer already there wins over the default.
        (None, None) => existing
            .iter()
            .find_map(|f| match f.as_str() {
                ORPHAN_FINALIZER => Some(Propagation::Orphan),
                FOREGROUND_FINALIZER => Some(Propagation::Foreground),
                _ => None,
            })
            .unwrap_or_else(|| default_propagation(kind)),
    };
    let mut next: Vec<String> = existing
        .iter()
        .filter(|f| *f != ORPHAN_FINALIZER && *f != FOREGROUND_FINALIZER)
        .cloned()
        .collect();
    match policy {
        Propagation::Orphan => next.push(ORPHAN_FINALIZER.into()),
        Propagation::Foreground => next.push(FOREGROUND_FINALIZER.into()),
        Propagation::Background => {}
    }
    // The same set keeps its order (no needless write).
    let mut sorted_next = next.clone();
    let mut sorted_existing = existing.clone();
    sorted_next.sort();
    sorted_existing.sort();
    if sorted_next == sorted_existing {
        existing
    } else {
        next
    }
}
