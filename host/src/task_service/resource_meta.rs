//! `resource_meta`: the opaque bytes propeller keeps for a task (in the
//! workflow's state, which etcd caps at about 1.5 MiB per object) and hands
//! back on every GetTask and DeleteTask. It holds only the task's
//! [`TaskTicket`] — which plugin build, which object, which attempt, and a
//! failure known at CreateTask — so it stays under [`MAX_BYTES`] whatever
//! the task; the task itself travels with its object. Signed on the way
//! out and verified on the way in ([`MetaKeys`]): nothing in it is trusted
//! unless this deployment wrote it.
//!
//! Versions: `version` changes only when a field changes meaning. Fields
//! added later are ignored by replicas that do not know them, so replicas
//! of two releases answer each other's tasks. Version 1 (which carried the
//! whole task) is still read.

use serde::Deserialize;
use serde_json::Value;

use super::signing::MetaKeys;
use crate::executor::tasks::LaunchFailure;
use crate::executor::{PhaseEvent, TaskRequest, TaskState, TaskTicket};

/// The layout this host writes.
pub const VERSION: u64 = 2;
/// What a `resource_meta` never exceeds.
pub const MAX_BYTES: usize = 1024;
/// A launch failure's message is cut to this in the meta (the host's log
/// has all of it).
const MAX_MESSAGE_BYTES: usize = 480;

/// Version 1: the whole task, and the state at launch.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct LayoutV1 {
    state: TaskState,
    task: TaskRequest,
    #[serde(default)]
    launch_failure: Option<PhaseEvent>,
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum MetaError {
    #[error("resource_meta is empty: pass the bytes CreateTask returned")]
    Empty,
    #[error("resource_meta is not signed by flytewasm: pass the bytes CreateTask returned")]
    Unsigned,
    #[error(
        "resource_meta is signed with key `{0}`, which this host does not have (another deployment's, or a key retired too early)"
    )]
    UnknownKey(String),
    #[error("resource_meta does not verify: it was changed after CreateTask signed it")]
    BadSignature,
    #[error("resource_meta is not flytewasm's JSON: {0}")]
    NotJson(String),
    #[error("resource_meta version {0} is not supported: this host reads versions 1 and {VERSION}")]
    Version(String),
    #[error("resource_meta.{path}: {message}")]
    Field { path: String, message: String },
    #[error(
        "the task's ids make a {0}-byte resource_meta, over the {MAX_BYTES}-byte limit: shorten the execution, node or namespace names"
    )]
    TooLarge(usize),
}

/// The signed bytes handed to propeller, at most [`MAX_BYTES`]: a launch
/// failure's message is cut until they fit. Only ids too long to fit
/// (execution, node, namespace) are refused.
pub fn encode(ticket: &TaskTicket, keys: &MetaKeys) -> Result<Vec<u8>, MetaError> {
    let mut ticket = ticket.clone();
    let mut budget = MAX_MESSAGE_BYTES;
    loop {
        if let Some(LaunchFailure { error, .. }) = &mut ticket.failure {
            cut(&mut error.message, budget);
        }
        let bytes = keys.sign(layout(&ticket).to_string().as_bytes());
        if bytes.len() <= MAX_BYTES {
            return Ok(bytes);
        }
        if ticket.failure.is_none() || budget == 0 {
            return Err(MetaError::TooLarge(bytes.len()));
        }
        // JSON escaping made the message longer than its bytes: cut more.
        budget /= 2;
    }
}

/// The JSON written: the ticket's fields and the version.
fn layout(ticket: &TaskTicket) -> Value {
    let mut value = serde_json::to_value(ticket).expect("tickets serialize");
    value["version"] = VERSION.into();
    value
}

/// Read bytes from propeller: the signature first (nothing unsigned is
/// even parsed), then the JSON; the error names the field that is wrong.
pub fn decode(bytes: &[u8], keys: &MetaKeys) -> Result<TaskTicket, MetaError> {
    if bytes.is_empty() {
        return Err(MetaError::Empty);
    }
    let bytes = keys.verify(bytes)?;
    let value: Value =
        serde_json::from_slice(bytes).map_err(|err| MetaError::NotJson(err.to_string()))?;
    match &value["version"] {
        Value::Number(n) if n.as_u64() == Some(VERSION) => fields::<TaskTicket>(value),
        Value::Number(n) if n.as_u64() == Some(1) => fields::<LayoutV1>(value).map(from_v1),
        Value::Null => Err(MetaError::Field {
            path: "version".into(),
            message: "missing".into(),
        }),
        other => Err(MetaError::Version(other.to_string())),
    }
}

fn fields<T: serde::de::DeserializeOwned>(value: Value) -> Result<T, MetaError> {
    serde_path_to_error::deserialize(value).map_err(|err| MetaError::Field {
        path: err.path().to_string(),
        message: err.inner().to_string(),
    })
}

fn from_v1(old: LayoutV1) -> TaskTicket {
    TaskTicket {
        plugin_id: old.state.plugin_id,
        plugin_digest: old.state.plugin_digest,
        namespace: old.state.namespace,
        name: old.state.name,
        execution: old.task.execution.clone(),
        accepted_at: 0,
        launched: false,
        failure: old.launch_failure.and_then(|event| {
            event.error.map(|error| LaunchFailure {
                phase: event.phase,
                error,
            })
        }),
        task: Some(old.task),
    }
}

fn cut(message: &mut String, budget: usize) {
    if message.len() > budget {
        let mut end = budget;
        while !message.is_char_boundary(end) {
            end -= 1;
        }
        message.truncate(end);
        message.push_str("… (cut; the host's log has all of it)");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::executor::lifecycle::{ErrorKind, TaskError};
    use crate::executor::{Phase, metadata::Execution};

    fn ticket() -> TaskTicket {
        TaskTicket {
            plugin_id: "spark".into(),
            plugin_digest: "ab".repeat(32),
            namespace: "flytesnacks-development".into(),
            name: "f1a2b3c4d5-n0-0".into(),
            execution: Execution {
                project: "flytesnacks".into(),
                domain: "development".into(),
                name: "f1a2b3c4d5".into(),
                node_id: "n0".into(),
                retry_attempt: 0,
            },
            accepted_at: 1_790_000_000,
            failure: None,
            launched: false,
            task: None,
        }
    }

    #[test]
    fn round_trips_and_stays_small() {
        let keys = MetaKeys::ephemeral();
        let bytes = encode(&ticket(), &keys).unwrap();
        assert!(bytes.len() <= MAX_BYTES, "{} bytes", bytes.len());
        assert_eq!(decode(&bytes, &keys).unwrap(), ticket());
        let mut long = ticket();
        long.execution.node_id = "n".repeat(2000);
        assert!(matches!(encode(&long, &keys), Err(MetaError::TooLarge(_))));
    }

    #[test]
    fn a_long_failure_is_cut_to_fit() {
        let keys = MetaKeys::ephemeral();
        let mut failed = ticket();
        failed.failure = Some(LaunchFailure {
            phase: Phase::PermanentFailure,
            error: TaskError {
                code: "FailedToBuildResource".into(),
                message: "é".repeat(20_000),
                kind: ErrorKind::User,
            },
        });
        let bytes = encode(&failed, &keys).unwrap();
        assert!(bytes.len() <= MAX_BYTES, "{} bytes", bytes.len());
        let back = decode(&bytes, &keys).unwrap();
        assert!(
            back.failure
                .unwrap()
                .error
                .message
                .ends_with("has all of it)")
        );
        // Characters JSON escapes six times over still fit.
        failed.failure.as_mut().unwrap().error.message = "\u{1}\"".repeat(5_000);
        let bytes = encode(&failed, &keys).unwrap();
        assert!(bytes.len() <= MAX_BYTES, "{} bytes", bytes.len());
    }

    #[test]
    fn fields_a_newer_replica_added_are_ignored() {
        let keys = MetaKeys::ephemeral();
        let mut value = layout(&ticket());
        value["shard"] = "b".into();
        value["execution"]["cluster"] = "east".into();
        let bytes = keys.sign(value.to_string().as_bytes());
        assert_eq!(decode(&bytes, &keys).unwrap(), ticket());
    }

    #[test]
    fn bad_bytes_name_the_problem() {
        let keys = MetaKeys::ephemeral();
        let decode = |bytes: &[u8]| decode(bytes, &keys);
        // What a signer with the key could still get wrong: named, too.
        let signed = |value: &Value| keys.sign(value.to_string().as_bytes());
        assert_eq!(decode(b"").unwrap_err(), MetaError::Empty);
        assert_eq!(decode(b"\x00\x01").unwrap_err(), MetaError::Unsigned);
        assert!(matches!(
            decode(&keys.sign(b"\x00\x01")),
            Err(MetaError::NotJson(_))
        ));
        let mut value = layout(&ticket());
        assert_eq!(
            decode(value.to_string().as_bytes()).unwrap_err(),
            MetaError::Unsigned
        );
        value["version"] = 7.into();
        assert_eq!(
            decode(&signed(&value)).unwrap_err(),
            MetaError::Version("7".into())
        );
        value["version"] = VERSION.into();
        value["failure"] = serde_json::json!({ "phase": "SIDEWAYS", "error": { "code": "c", "message": "m", "kind": "USER" } });
        let err = decode(&signed(&value)).unwrap_err();
        assert!(
            matches!(&err, MetaError::Field { path, .. } if path == "failure.phase"),
            "{err}"
        );
        value["failure"] = Value::Null;
        value["accepted_at"] = Value::Null;
        value.as_object_mut().unwrap().remove("acceptedAt");
        let err = decode(&signed(&value)).unwrap_err();
        assert!(matches!(&err, MetaError::Field { .. }), "{err}");
    }

    #[test]
    fn version_1_is_still_read() {
        let keys = MetaKeys::ephemeral();
        let task = crate::testkit::spark_task("flyte", "demo");
        let state = serde_json::json!({
            "pluginId": "spark", "pluginDigest": "ab", "namespace": "flyte", "name": "demo",
            "kind": { "api_version": "sparkoperator.k8s.io/v1beta2", "kind": "SparkApplication", "plural": "sparkapplications" },
            "phase": "QUEUED", "version": 0, "reason": "task submitted to K8s",
        });
        let v1 = serde_json::json!({ "version": 1, "state": state, "task": task });
        let ticket = decode(&keys.sign(v1.to_string().as_bytes()), &keys).unwrap();
        assert_eq!(ticket.name, "demo");
        assert_eq!(ticket.task.unwrap().template, task.template);
    }
}
