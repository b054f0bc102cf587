//! `resource_meta`: the opaque bytes propeller keeps for a task and hands
//! back on every GetTask and DeleteTask. Versioned JSON carrying everything
//! needed to resume — which plugin build made which object, the phase last
//! reported, and the task itself for the plugin's phase calls — so any
//! replica, or a restarted process, can answer. It is signed on the way
//! out and verified on the way in ([`MetaKeys`]): nothing in it is trusted
//! unless this deployment wrote it.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::signing::MetaKeys;
use crate::executor::{PhaseEvent, TaskRequest, TaskState};

/// The layout this host writes and reads.
pub const VERSION: u64 = 1;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ResourceMeta {
    pub version: u64,
    pub state: TaskState,
    pub task: TaskRequest,
    /// Set when the task failed before any object was made (the plugin
    /// refused the task, or failed building it): what GetTask reports.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub launch_failure: Option<PhaseEvent>,
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
    #[error("resource_meta version {0} is not supported: this host reads version {VERSION}")]
    Version(String),
    #[error("resource_meta.{path}: {message}")]
    Field { path: String, message: String },
}

impl ResourceMeta {
    pub fn new(state: TaskState, task: TaskRequest) -> Self {
        ResourceMeta {
            version: VERSION,
            state,
            task,
            launch_failure: None,
        }
    }

    /// A task that failed at launch: nothing was created.
    pub fn failed_launch(state: TaskState, task: TaskRequest, failure: PhaseEvent) -> Self {
        ResourceMeta {
            launch_failure: Some(failure),
            ..ResourceMeta::new(state, task)
        }
    }

    /// The signed bytes handed to propeller.
    pub fn encode(&self, keys: &MetaKeys) -> Vec<u8> {
        keys.sign(&serde_json::to_vec(self).expect("resource meta serializes"))
    }

    /// Read bytes from propeller: the signature first (nothing unsigned is
    /// even parsed), then the JSON; the error names the field that is wrong.
    pub fn decode(bytes: &[u8], keys: &MetaKeys) -> Result<Self, MetaError> {
        if bytes.is_empty() {
            return Err(MetaError::Empty);
        }
        let bytes = keys.verify(bytes)?;
        let value: Value =
            serde_json::from_slice(bytes).map_err(|err| MetaError::NotJson(err.to_string()))?;
        match &value["version"] {
            Value::Number(n) if n.as_u64() == Some(VERSION) => {}
            Value::Null => {
                return Err(MetaError::Field {
                    path: "version".into(),
                    message: "missing".into(),
                });
            }
            other => return Err(MetaError::Version(other.to_string())),
        }
        serde_path_to_error::deserialize(value).map_err(|err| MetaError::Field {
            path: err.path().to_string(),
            message: err.inner().to_string(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testkit;

    fn meta() -> ResourceMeta {
        let plugin = testkit::plugin("spark");
        let task = testkit::spark_task("flyte", "demo");
        let state = TaskState {
            plugin_id: plugin.id().into(),
            plugin_digest: plugin.digest().into(),
            kind: crate::executor::lifecycle::plugin_kind(&plugin),
            namespace: "flyte".into(),
            name: "demo".into(),
            phase: crate::executor::Phase::Queued,
            version: 0,
            reason: "task submitted to K8s".into(),
        };
        ResourceMeta::new(state, task)
    }

    #[test]
    fn round_trips_state_and_task() {
        let (meta, keys) = (meta(), MetaKeys::ephemeral());
        let back = ResourceMeta::decode(&meta.encode(&keys), &keys).unwrap();
        assert_eq!(back.state, meta.state);
        assert_eq!(back.task.template, meta.task.template);
        assert_eq!(back.task.execution.name, meta.task.execution.name);
    }

    #[test]
    fn bad_bytes_name_the_problem() {
        let keys = MetaKeys::ephemeral();
        let decode = |bytes: &[u8]| ResourceMeta::decode(bytes, &keys);
        // What a signer with the key could still get wrong: named, too.
        let signed = |value: &Value| keys.sign(value.to_string().as_bytes());
        assert_eq!(decode(b"").unwrap_err(), MetaError::Empty);
        assert_eq!(decode(b"\x00\x01").unwrap_err(), MetaError::Unsigned);
        assert!(matches!(
            decode(&keys.sign(b"\x00\x01")),
            Err(MetaError::NotJson(_))
        ));
        let plain = serde_json::to_vec(&meta()).unwrap();
        assert_eq!(decode(&plain).unwrap_err(), MetaError::Unsigned);
        let mut value: Value = serde_json::from_slice(&plain).unwrap();
        value["version"] = 7.into();
        assert_eq!(
            decode(&signed(&value)).unwrap_err(),
            MetaError::Version("7".into())
        );
        value["version"] = VERSION.into();
        value["state"]["phase"] = "SIDEWAYS".into();
        let err = decode(&signed(&value)).unwrap_err();
        assert!(
            matches!(&err, MetaError::Field { path, .. } if path == "state.phase"),
            "{err}"
        );
        value["state"]["phase"] = "RUNNING".into();
        value["task"]["template"] = "not base64!".into();
        let err = decode(&signed(&value)).unwrap_err();
        assert!(
            matches!(&err, MetaError::Field { path, message } if path == "task.template" && message.contains("base64")),
            "{err}"
        );
    }
}
