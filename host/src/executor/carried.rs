//! What travels with a task's object, so any replica can answer for the
//! task from a `resource_meta` of a few hundred bytes: whose task the
//! object is, the task itself (compressed), and once it has ended, the
//! answer every later GetTask gets. (What is kept apart from the object is
//! in [`super::records`].)

use std::collections::BTreeMap;

use data_encoding::BASE64;
use serde_json::{Value, json};

use super::lifecycle::PhaseEvent;
use super::metadata::Execution;
use super::object::TaskRequest;
use crate::cluster::{MANAGED_LABEL, SHARD_LABEL, Shard};

/// The task execution attempt an object belongs to (`project/domain/name/node/attempt`).
pub const TASK_ANNOTATION: &str = "flytewasm.io/task-execution";
/// The task (template, metadata, prefixes) as deflate-compressed JSON, base64.
pub const CONTEXT_ANNOTATION: &str = "flytewasm.io/task-context";
/// The terminal answer, as JSON, once the task has ended.
pub const OUTCOME_ANNOTATION: &str = "flytewasm.io/outcome";
/// When the task ended (RFC 3339): retention counts from here.
pub const FINISHED_AT_ANNOTATION: &str = "flytewasm.io/finished-at";
/// Set on finished objects, so the janitor lists only those.
pub const FINISHED_LABEL: &str = "flytewasm.io/finished";
/// A hash of the node execution: finds the objects of its other attempts.
pub const NODE_LABEL: &str = "flytewasm.io/node-execution";
pub const ATTEMPT_LABEL: &str = "flytewasm.io/attempt";
/// Set at creation, removed by a GetTask once the object is half
/// `tasks.unconfirmed-abort-seconds` old. A live object that keeps it
/// was made for a CreateTask whose answer propeller never got: if the node
/// is then aborted, no DeleteTask comes for it, so the janitor aborts it
/// (`tasks.unconfirmed-abort-seconds`).
pub const UNCONFIRMED_LABEL: &str = "flytewasm.io/unconfirmed";

/// The largest compressed task context put on an object: Kubernetes allows
/// 256 KiB of annotations in all.
pub const MAX_CONTEXT_BYTES: usize = 192 * 1024;
/// Outcomes larger than this are not kept (the answer is derived again
/// from the object's status).
const MAX_OUTCOME_BYTES: usize = 32 * 1024;

impl Execution {
    /// `project/domain/name/node/attempt`: what [`TASK_ANNOTATION`] holds.
    pub fn key(&self) -> String {
        format!(
            "{}/{}/{}/{}/{}",
            self.project, self.domain, self.name, self.node_id, self.retry_attempt
        )
    }

    /// A label value naming the node execution (every attempt shares it).
    pub fn node_label(&self) -> String {
        let node = format!(
            "{}/{}/{}/{}",
            self.project, self.domain, self.name, self.node_id
        );
        blake3::hash(node.as_bytes()).to_hex()[..32].to_owned()
    }
}

/// The labels and annotations the host adds to every object it creates
/// (named `name`).
pub fn identity(
    request: &TaskRequest,
    name: &str,
) -> Result<(BTreeMap<String, String>, BTreeMap<String, String>), String> {
    let labels = BTreeMap::from([
        (SHARD_LABEL.to_owned(), Shard::key_of(name).to_string()),
        (MANAGED_LABEL.0.to_owned(), MANAGED_LABEL.1.to_owned()),
        (NODE_LABEL.to_owned(), request.execution.node_label()),
        (
            ATTEMPT_LABEL.to_owned(),
            request.execution.retry_attempt.to_string(),
        ),
        (UNCONFIRMED_LABEL.to_owned(), "true".to_owned()),
    ]);
    let context = encode_context(request);
    if context.len() > MAX_CONTEXT_BYTES {
        return Err(format!(
            "the task is {} bytes compressed, over the {MAX_CONTEXT_BYTES}-byte limit of what an object can carry",
            context.len()
        ));
    }
    let annotations = BTreeMap::from([
        (TASK_ANNOTATION.to_owned(), request.execution.key()),
        (CONTEXT_ANNOTATION.to_owned(), context),
    ]);
    Ok((labels, annotations))
}

/// The task, compressed, as [`CONTEXT_ANNOTATION`] holds it.
pub fn encode_context(request: &TaskRequest) -> String {
    let json = serde_json::to_vec(request).expect("task requests serialize");
    BASE64.encode(&miniz_oxide::deflate::compress_to_vec(&json, 6))
}

/// The task an object carries; the error says what is wrong with it.
pub fn task_of(object: &Value) -> Result<TaskRequest, String> {
    let text = annotation(object, CONTEXT_ANNOTATION)
        .ok_or_else(|| format!("the object has no {CONTEXT_ANNOTATION} annotation"))?;
    let compressed = BASE64
        .decode(text.as_bytes())
        .map_err(|err| format!("{CONTEXT_ANNOTATION} is not base64: {err}"))?;
    // Bounded: what comes back from the cluster is not trusted to be small.
    let json = miniz_oxide::inflate::decompress_to_vec_with_limit(&compressed, 8 << 20)
        .map_err(|err| format!("{CONTEXT_ANNOTATION} does not inflate: {err:?}"))?;
    serde_json::from_slice(&json).map_err(|err| format!("{CONTEXT_ANNOTATION}: {err}"))
}

/// Whose task the object is (`None` for objects made before it was recorded).
pub fn owner_of(object: &Value) -> Option<&str> {
    annotation(object, TASK_ANNOTATION)
}

/// The attempt an object belongs to, from its label.
pub fn attempt_of(object: &Value) -> Option<u32> {
    object["metadata"]["labels"][ATTEMPT_LABEL]
        .as_str()
        .and_then(|a| a.parse().ok())
}

/// The terminal answer recorded on an object, if any.
pub fn outcome_of(object: &Value) -> Option<PhaseEvent> {
    annotation(object, OUTCOME_ANNOTATION).and_then(|text| serde_json::from_str(text).ok())
}

/// No GetTask has asked about the object's task yet.
pub fn is_unconfirmed(object: &Value) -> bool {
    !object["metadata"]["labels"][UNCONFIRMED_LABEL].is_null()
}

pub fn is_finished(object: &Value) -> bool {
    !object["metadata"]["labels"][FINISHED_LABEL].is_null()
}

pub fn is_deleting(object: &Value) -> bool {
    !object["metadata"]["deletionTimestamp"].is_null()
}

/// Neither ended (as recorded by the host) nor being deleted.
pub fn is_live(object: &Value) -> bool {
    !is_finished(object) && !is_deleting(object)
}

/// When the API server created the object.
pub fn created_at(object: &Value) -> Option<chrono::DateTime<chrono::Utc>> {
    object["metadata"]["creationTimestamp"]
        .as_str()
        .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
        .map(|t| t.to_utc())
}

/// When a finished object (or tombstone) ended.
pub fn finished_at(object: &Value) -> Option<chrono::DateTime<chrono::Utc>> {
    annotation(object, FINISHED_AT_ANNOTATION)
        .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
        .map(|t| t.to_utc())
}

/// The metadata that marks an object finished with `event` (merged into
/// the patch that removes Flyte's finalizer).
pub fn finished_metadata(event: &PhaseEvent, name: &str) -> Value {
    let mut annotations = json!({ FINISHED_AT_ANNOTATION: now() });
    let outcome = serde_json::to_string(event).expect("events serialize");
    if outcome.len() <= MAX_OUTCOME_BYTES {
        annotations[OUTCOME_ANNOTATION] = json!(outcome);
    }
    // Managed and keyed too: an object adopted from an older release gets
    // the labels the janitors select on.
    let key = Shard::key_of(name).to_string();
    json!({
        "labels": { FINISHED_LABEL: "true", MANAGED_LABEL.0: MANAGED_LABEL.1, SHARD_LABEL: key },
        "annotations": annotations,
    })
}

fn annotation<'a>(object: &'a Value, key: &str) -> Option<&'a str> {
    object["metadata"]["annotations"][key].as_str()
}

fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testkit;

    #[test]
    fn the_task_round_trips_through_the_object() {
        let task = testkit::spark_task("flyte", "demo");
        let (labels, annotations) = identity(&task, "demo-n0-0").unwrap();
        let object = json!({ "metadata": { "labels": labels, "annotations": annotations } });
        let back = task_of(&object).unwrap();
        assert_eq!(back.template, task.template);
        assert_eq!(owner_of(&object), Some(task.execution.key().as_str()));
        assert_eq!(attempt_of(&object), Some(task.execution.retry_attempt));
    }

    #[test]
    fn a_bad_context_is_named() {
        let object = json!({ "metadata": { "annotations": { CONTEXT_ANNOTATION: "!!" } } });
        assert!(task_of(&object).unwrap_err().contains("not base64"));
        assert!(
            task_of(&json!({}))
                .unwrap_err()
                .contains("no flytewasm.io/task-context")
        );
    }

    #[test]
    fn attempts_of_a_node_share_its_label() {
        let mut task = testkit::spark_task("flyte", "demo");
        let first = task.execution.node_label();
        task.execution.retry_attempt += 1;
        assert_eq!(task.execution.node_label(), first);
        task.execution.node_id = "n1".into();
        assert_ne!(task.execution.node_label(), first);
    }
}
