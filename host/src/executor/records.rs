//! What the host keeps about a task apart from its object, as ConfigMaps in
//! its own namespace (`tasks.records-namespace`), where the tasks' users
//! cannot write:
//! - an **outcome**: the answer for a task whose object is gone or was
//!   never made (aborted before its launch landed, cleaned up after a
//!   failure, past the launch deadline). The first one kept stays.
//! - a **launch**: the task itself, while its launch has not landed and
//!   CreateTask has already answered, so any replica can carry it on.
//!
//! A record is named by a hash of the object it is about and says which
//! object and which task attempt it is for; a record that does not say so
//! is not ours and is not read.

use serde_json::{Value, json};

use super::carried::{
    CONTEXT_ANNOTATION, FINISHED_AT_ANNOTATION, FINISHED_LABEL, TASK_ANNOTATION, encode_context,
    task_of,
};
use super::lifecycle::PhaseEvent;
use super::object::TaskRequest;
use crate::cluster::{Cluster, ClusterError, Created, MANAGED_LABEL, ResourceKind};

/// Which record a ConfigMap is.
pub const RECORD_LABEL: &str = "flytewasm.io/record";
/// The object a record is about: `namespace/plural/name`.
const OBJECT_ANNOTATION: &str = "flytewasm.io/object";

/// A task's object, as records name it.
#[derive(Debug, Clone, Copy)]
pub struct TaskObject<'a> {
    pub namespace: &'a str,
    pub plural: &'a str,
    pub name: &'a str,
}

impl TaskObject<'_> {
    fn path(&self) -> String {
        format!("{}/{}/{}", self.namespace, self.plural, self.name)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Record {
    Outcome,
    Launch,
}

impl Record {
    fn as_str(self) -> &'static str {
        match self {
            Record::Outcome => "outcome",
            Record::Launch => "launch",
        }
    }
}

/// The records of one host deployment.
#[derive(Debug, Clone)]
pub struct Records {
    namespace: String,
}

impl Records {
    pub fn new(namespace: impl Into<String>) -> Self {
        Records {
            namespace: namespace.into(),
        }
    }

    pub fn namespace(&self) -> &str {
        &self.namespace
    }

    pub fn kind() -> ResourceKind {
        ResourceKind {
            api_version: "v1".into(),
            kind: "ConfigMap".into(),
            plural: "configmaps".into(),
        }
    }

    /// The selector of every record: each may be deleted once old enough
    /// (a launch record too, when dropping it failed: past the launch
    /// deadline no launch carries on).
    pub fn selector() -> String {
        format!("{}={},{RECORD_LABEL}", MANAGED_LABEL.0, MANAGED_LABEL.1)
    }

    /// The outcome kept for `object`, if any.
    pub async fn outcome(
        &self,
        cluster: &Cluster,
        object: TaskObject<'_>,
    ) -> Result<Option<PhaseEvent>, ClusterError> {
        let record = self.read(cluster, Record::Outcome, object).await?;
        Ok(record.and_then(|r| {
            r["data"]["outcome"]
                .as_str()
                .and_then(|text| serde_json::from_str(text).ok())
        }))
    }

    /// Keep `event` as the outcome of `object` (attempt `task`). The first
    /// outcome kept stays: a second is not an error.
    pub async fn keep_outcome(
        &self,
        cluster: &Cluster,
        object: TaskObject<'_>,
        task: &str,
        event: &PhaseEvent,
    ) -> Result<(), ClusterError> {
        let outcome = serde_json::to_string(event).expect("events serialize");
        let mut record = self.record(Record::Outcome, object, task, json!({ "outcome": outcome }));
        record["metadata"]["labels"][FINISHED_LABEL] = json!("true");
        self.create(cluster, Record::Outcome, object, &record).await
    }

    /// The task whose launch is to be carried on, if one is recorded.
    pub async fn launch(
        &self,
        cluster: &Cluster,
        object: TaskObject<'_>,
    ) -> Result<Option<TaskRequest>, ClusterError> {
        let record = self.read(cluster, Record::Launch, object).await?;
        Ok(record.and_then(|r| {
            let context = r["data"]["context"].as_str()?;
            let carrier = json!({ "metadata": { "annotations": { CONTEXT_ANNOTATION: context } } });
            task_of(&carrier).ok()
        }))
    }

    /// Record a launch in progress, so another replica can carry it on.
    pub async fn keep_launch(
        &self,
        cluster: &Cluster,
        object: TaskObject<'_>,
        request: &TaskRequest,
    ) -> Result<(), ClusterError> {
        let data = json!({ "context": encode_context(request) });
        let record = self.record(Record::Launch, object, &request.execution.key(), data);
        self.create(cluster, Record::Launch, object, &record).await
    }

    /// The launch has landed or ended: nobody needs to carry it on.
    pub async fn drop_launch(
        &self,
        cluster: &Cluster,
        object: TaskObject<'_>,
    ) -> Result<(), ClusterError> {
        let kind = Self::kind();
        let name = record_name(Record::Launch, object);
        cluster
            .delete(&kind, &self.namespace, &name, Default::default())
            .await
    }

    fn record(&self, record: Record, object: TaskObject<'_>, task: &str, data: Value) -> Value {
        json!({
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {
                "name": record_name(record, object),
                "namespace": self.namespace,
                "labels": { MANAGED_LABEL.0: MANAGED_LABEL.1, RECORD_LABEL: record.as_str() },
                "annotations": {
                    OBJECT_ANNOTATION: object.path(),
                    TASK_ANNOTATION: task,
                    FINISHED_AT_ANNOTATION: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                },
            },
            "data": data,
        })
    }

    /// Create a record; one already there must be ours for this object.
    async fn create(
        &self,
        cluster: &Cluster,
        record: Record,
        object: TaskObject<'_>,
        body: &Value,
    ) -> Result<(), ClusterError> {
        match cluster.create(&Self::kind(), &self.namespace, body).await? {
            Created::New => Ok(()),
            Created::AlreadyExisted => match self.read(cluster, record, object).await? {
                Some(_) => Ok(()),
                None => Err(ClusterError {
                    code: 409,
                    reason: "AlreadyExists".into(),
                    message: format!(
                        "ConfigMap {}/{} exists and is not flytewasm's {} record for {}",
                        self.namespace,
                        record_name(record, object),
                        record.as_str(),
                        object.path()
                    ),
                }),
            },
        }
    }

    async fn read(
        &self,
        cluster: &Cluster,
        record: Record,
        object: TaskObject<'_>,
    ) -> Result<Option<Value>, ClusterError> {
        let name = record_name(record, object);
        let found = cluster
            .get_from_api(&Self::kind(), &self.namespace, &name)
            .await?;
        Ok(found.filter(|r| is_record_for(r, record, object)))
    }
}

/// `outcome-<hash>` / `launch-<hash>` of the object's path: any object
/// name fits, and records of different objects never share a name.
fn record_name(record: Record, object: TaskObject<'_>) -> String {
    let hash = blake3::hash(object.path().as_bytes()).to_hex();
    format!("{}-{}", record.as_str(), &hash[..40])
}

fn is_record_for(found: &Value, record: Record, object: TaskObject<'_>) -> bool {
    let meta = &found["metadata"];
    meta["labels"][MANAGED_LABEL.0] == MANAGED_LABEL.1
        && meta["labels"][RECORD_LABEL] == record.as_str()
        && meta["annotations"][OBJECT_ANNOTATION] == object.path().as_str()
}

#[cfg(test)]
mod tests {
    use super::*;

    const OBJECT: TaskObject<'static> = TaskObject {
        namespace: "ns",
        plural: "sparkapplications",
        name: "task-n0-0",
    };

    #[test]
    fn a_record_is_read_only_for_its_own_object() {
        let records = Records::new("flyte");
        let record = records.record(Record::Outcome, OBJECT, "p/d/e/n0/0", json!({}));
        assert!(is_record_for(&record, Record::Outcome, OBJECT));
        assert!(!is_record_for(&record, Record::Launch, OBJECT));
        let other = TaskObject {
            name: "task-n0-1",
            ..OBJECT
        };
        assert!(!is_record_for(&record, Record::Outcome, other));
        let mut forged = record.clone();
        forged["metadata"]["labels"] = json!({});
        assert!(!is_record_for(&forged, Record::Outcome, OBJECT));
    }

    #[test]
    fn names_are_short_whatever_the_object() {
        let long = "x".repeat(253);
        let object = TaskObject {
            name: &long,
            ..OBJECT
        };
        assert!(record_name(Record::Launch, object).len() < 64);
        assert_ne!(
            record_name(Record::Outcome, OBJECT),
            record_name(Record::Launch, OBJECT)
        );
    }
}
