//! A `CreateTaskRequest` as the task the engine launches.
//!
//! Propeller fills `TaskExecutionMetadata` from the same task execution
//! context it hands a compiled-in k8s plugin (ids, namespace, labels,
//! annotations, service account, environment, identity), so the object ends
//! up with the metadata it would have had. Fields propeller leaves unset for
//! agents get these defaults (docs/operations.md):
//! - `max_attempts` 0 → 1 (the attempt count is not known to the agent);
//! - `interruptible`: when propeller leaves `max_attempts` unset too, the
//!   template's `metadata.interruptible` (what the task was registered
//!   with); `interruptible_failure_threshold` ignored;
//! - `overrides` ignored: propeller applies node overrides to the template
//!   it sends, and container args arrive already rendered;
//! - `inputs` render a K8sPod target's `{{.Inputs.x}}` (propeller leaves
//!   those to the plugin; `executor::input_args`);
//! - input and raw-output prefixes empty: inputs travel inline.

use flytewasm_proto::flyteidl::admin::{CreateTaskRequest, TaskExecutionMetadata};
use flytewasm_proto::flyteidl::core::TaskTemplate;
use flytewasm_proto::flyteidl::core::task_metadata::InterruptibleValue;

use crate::executor::metadata::Execution;
use crate::executor::{TaskRequest, input_args};

/// A request field that is missing or wrong.
#[derive(Debug, thiserror::Error, PartialEq)]
#[error("{field}: {message}")]
pub struct BadRequest {
    pub field: &'static str,
    pub message: String,
}

fn missing(field: &'static str, why: &str) -> BadRequest {
    BadRequest {
        field,
        message: format!("required ({why})"),
    }
}

/// The task to launch; the namespace defaults to the cluster's.
pub fn task_request(
    request: CreateTaskRequest,
    default_namespace: &str,
) -> Result<TaskRequest, BadRequest> {
    let mut template = request
        .template
        .ok_or_else(|| missing("template", "the TaskTemplate to run"))?;
    input_args::render(&mut template, request.inputs.as_ref()).map_err(|err| BadRequest {
        field: "inputs",
        message: err.to_string(),
    })?;
    let metadata: TaskExecutionMetadata = request.task_execution_metadata.ok_or_else(|| {
        missing(
            "task_execution_metadata",
            "the task execution's ids name the object",
        )
    })?;
    let id = metadata.task_execution_id.unwrap_or_default();
    let node = id.node_execution_id.unwrap_or_default();
    let workflow = node.execution_id.unwrap_or_default();
    if workflow.name.is_empty() {
        return Err(missing(
            "task_execution_metadata.task_execution_id.node_execution_id.execution_id.name",
            "it names the object",
        ));
    }
    if node.node_id.is_empty() {
        return Err(missing(
            "task_execution_metadata.task_execution_id.node_execution_id.node_id",
            "it names the object",
        ));
    }
    let service_account = if metadata.k8s_service_account.is_empty() {
        metadata
            .identity
            .map(|identity| identity.k8s_service_account)
            .unwrap_or_default()
    } else {
        metadata.k8s_service_account
    };
    let namespace = if metadata.namespace.is_empty() {
        default_namespace.to_owned()
    } else {
        metadata.namespace
    };
    // A propeller that fills `max_attempts` fills `interruptible` too (its
    // own decision, overrides and failure threshold included); one that
    // leaves both unset gets the task's registered setting.
    let interruptible = if metadata.max_attempts > 0 {
        metadata.interruptible
    } else {
        template_interruptible(&template)
    };
    Ok(TaskRequest {
        template,
        execution: Execution {
            project: workflow.project,
            domain: workflow.domain,
            name: workflow.name,
            node_id: node.node_id,
            retry_attempt: id.retry_attempt,
        },
        namespace,
        name: None,
        labels: metadata.labels.into_iter().collect(),
        annotations: metadata.annotations.into_iter().collect(),
        service_account,
        interruptible,
        max_attempts: u32::try_from(metadata.max_attempts)
            .ok()
            .filter(|n| *n > 0)
            .unwrap_or(1),
        environment: metadata.environment_variables.into_iter().collect(),
        output_prefix: request.output_prefix,
        ..Default::default()
    })
}

/// `TaskTemplate.metadata.interruptible`, when the task sets it.
fn template_interruptible(template: &TaskTemplate) -> bool {
    matches!(
        template
            .metadata
            .as_ref()
            .and_then(|m| m.interruptible_value),
        Some(InterruptibleValue::Interruptible(true))
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use flytewasm_proto::flyteidl::core::{
        Identity, NodeExecutionIdentifier, TaskExecutionIdentifier, TaskMetadata,
        WorkflowExecutionIdentifier,
    };

    fn request() -> CreateTaskRequest {
        CreateTaskRequest {
            template: Some(TaskTemplate {
                r#type: "spark".into(),
                ..Default::default()
            }),
            output_prefix: "s3://bucket/out/0".into(),
            task_execution_metadata: Some(TaskExecutionMetadata {
                task_execution_id: Some(TaskExecutionIdentifier {
                    node_execution_id: Some(NodeExecutionIdentifier {
                        node_id: "n0".into(),
                        execution_id: Some(WorkflowExecutionIdentifier {
                            project: "flytesnacks".into(),
                            domain: "development".into(),
                            name: "f1a2b3".into(),
                            ..Default::default()
                        }),
                    }),
                    retry_attempt: 2,
                    ..Default::default()
                }),
                namespace: "flytesnacks-development".into(),
                labels: [("execution-id".into(), "f1a2b3".into())].into(),
                annotations: [("team".into(), "data".into())].into(),
                environment_variables: [("FOO".into(), "bar".into())].into(),
                identity: Some(Identity {
                    k8s_service_account: "spark-sa".into(),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn metadata_flows_into_the_task() {
        let task = task_request(request(), "default").unwrap();
        assert_eq!(task.namespace, "flytesnacks-development");
        assert_eq!(task.execution.name, "f1a2b3");
        assert_eq!(task.execution.project, "flytesnacks");
        assert_eq!(task.execution.node_id, "n0");
        assert_eq!(task.execution.retry_attempt, 2);
        assert_eq!(task.labels["execution-id"], "f1a2b3");
        assert_eq!(task.annotations["team"], "data");
        assert_eq!(task.environment["FOO"], "bar");
        // The identity's service account when the plain field is empty.
        assert_eq!(task.service_account, "spark-sa");
        assert_eq!(task.output_prefix, "s3://bucket/out/0");
        // Unset by propeller: documented defaults.
        assert_eq!(task.max_attempts, 1);
        assert!(!task.interruptible);
    }

    #[test]
    fn interruptible_falls_back_to_the_template() {
        let mut interruptible = request();
        interruptible.template.as_mut().unwrap().metadata = Some(TaskMetadata {
            interruptible_value: Some(InterruptibleValue::Interruptible(true)),
            ..Default::default()
        });
        assert!(
            task_request(interruptible, "default")
                .unwrap()
                .interruptible
        );
    }

    #[test]
    fn missing_fields_are_named() {
        let mut no_template = request();
        no_template.template = None;
        assert_eq!(
            task_request(no_template, "default").unwrap_err().field,
            "template"
        );

        let mut no_ids = request();
        no_ids
            .task_execution_metadata
            .as_mut()
            .unwrap()
            .task_execution_id = None;
        let err = task_request(no_ids, "default").unwrap_err();
        assert!(err.field.ends_with("execution_id.name"), "{err}");

        let mut no_namespace = request();
        no_namespace
            .task_execution_metadata
            .as_mut()
            .unwrap()
            .namespace = String::new();
        assert_eq!(
            task_request(no_namespace, "team-a").unwrap().namespace,
            "team-a"
        );
    }
}
