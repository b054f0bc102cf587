//! Flyte 2's `AsyncConnectorService` and `ConnectorMetadataService` over the
//! task service.
//!
//! Flyte 2's messages are field-compatible with Flyte 1's (§2.2), so a
//! request is re-read as its v1 form and an answer written back as v2:
//! - the TaskTemplate reaches the plugin as its Flyte 1 fields; Flyte
//!   2-only fields are dropped (docs/operations.md lists them:
//!   `GPUAccelerator.device_class` is the one that changes a pod);
//! - `inputs` (named literals, v1's literal map on the wire) are read and,
//!   as on the agent path, only render a K8sPod's `{{.Inputs.x}}`;
//!   `Inputs.context` is dropped;
//! - `connection` (secrets and config for a connector that calls an outside
//!   service) is accepted and ignored: plugins reach only the cluster, and
//!   tasks get their secrets the Kubernetes way (the template's `security_context`);
//! - `task_category` in GetTask and DeleteTask is ignored: the
//!   `resource_meta` names its plugin;
//! - a v2 `Resource` has no `state` and no `agent_error`: the phase
//!   (RETRYABLE_FAILED, which Flyte 2's connector plugin maps to a
//!   retryable failure, or FAILED) and the message say how a task failed.
//!
//! The `resource_meta` is the agent protocol's, so either protocol answers
//! for a task the other created.

use std::sync::Arc;

use flytewasm_proto::flyteidl::admin as v1;
use flytewasm_proto::flyteidl2::connector::async_connector_service_server::AsyncConnectorService;
use flytewasm_proto::flyteidl2::connector::connector_metadata_service_server::ConnectorMetadataService;
use flytewasm_proto::flyteidl2::connector::{
    Connector, CreateTaskRequest, CreateTaskResponse, DeleteTaskRequest, DeleteTaskResponse,
    GetConnectorRequest, GetConnectorResponse, GetTaskLogsRequest, GetTaskLogsResponse,
    GetTaskMetricsRequest, GetTaskMetricsResponse, GetTaskRequest, GetTaskResponse,
    ListConnectorsRequest, ListConnectorsResponse, Resource, TaskCategory,
};
use prost::Message;
use tonic::{Request, Response, Status};

use crate::task_service::{Offer, Protocol, TaskService, resource};

const PROTOCOL: Protocol = Protocol::Connector;

#[derive(Clone)]
pub struct ConnectorService(Arc<TaskService>);

impl ConnectorService {
    pub fn new(service: Arc<TaskService>) -> Self {
        ConnectorService(service)
    }

    /// One connector per plugin, named by the plugin id, with its task categories.
    pub fn connectors(&self) -> Vec<Connector> {
        self.0.offers().into_iter().map(connector).collect()
    }
}

fn connector(offer: Offer) -> Connector {
    Connector {
        name: offer.name,
        supported_task_categories: offer
            .categories
            .into_iter()
            .map(|c| TaskCategory {
                name: c.name,
                version: c.version,
            })
            .collect(),
    }
}

/// `message` read as the other IDL's message with the same field numbers;
/// fields the target lacks are dropped.
fn reread<To: Message + Default>(message: &impl Message) -> Result<To, prost::DecodeError> {
    To::decode(message.encode_to_vec().as_slice())
}

/// A Flyte 2 CreateTaskRequest as the v1 one the task service reads.
fn v1_request(request: &CreateTaskRequest) -> Result<v1::CreateTaskRequest, Status> {
    reread(request).map_err(|err| {
        Status::invalid_argument(format!(
            "CreateTaskRequest: not readable as Flyte 1's message: {err}"
        ))
    })
}

/// GetTask's answer in Flyte 2's form: every field but `state` and `agent_error`.
fn v2_resource(resource: &v1::Resource) -> Result<Resource, Status> {
    reread(resource)
        .map_err(|err| Status::internal(format!("Resource: not writable as Flyte 2's: {err}")))
}

#[tonic::async_trait]
impl AsyncConnectorService for ConnectorService {
    async fn create_task(
        &self,
        request: Request<CreateTaskRequest>,
    ) -> Result<Response<CreateTaskResponse>, Status> {
        let mut call = self.0.call(PROTOCOL, "CreateTask");
        let result = match v1_request(request.get_ref()) {
            Ok(request) => self.0.create(request, &mut call).await,
            Err(status) => Err(status),
        };
        call.finish(result.map(|resource_meta| CreateTaskResponse { resource_meta }))
    }

    async fn get_task(
        &self,
        request: Request<GetTaskRequest>,
    ) -> Result<Response<GetTaskResponse>, Status> {
        let mut call = self.0.call(PROTOCOL, "GetTask");
        let result = self
            .0
            .status(&request.into_inner().resource_meta, &mut call)
            .await;
        let result = result.and_then(|event| v2_resource(&resource(&event)));
        call.finish(result.map(|resource| GetTaskResponse {
            resource: Some(resource),
        }))
    }

    async fn delete_task(
        &self,
        request: Request<DeleteTaskRequest>,
    ) -> Result<Response<DeleteTaskResponse>, Status> {
        let mut call = self.0.call(PROTOCOL, "DeleteTask");
        let result = self
            .0
            .cancel(&request.into_inner().resource_meta, &mut call)
            .await;
        call.finish(result.map(|()| DeleteTaskResponse {}))
    }

    async fn get_task_metrics(
        &self,
        _: Request<GetTaskMetricsRequest>,
    ) -> Result<Response<GetTaskMetricsResponse>, Status> {
        self.0
            .call(PROTOCOL, "GetTaskMetrics")
            .finish(Err(TaskService::metrics_unimplemented()))
    }

    type GetTaskLogsStream = futures::stream::Empty<Result<GetTaskLogsResponse, Status>>;

    async fn get_task_logs(
        &self,
        _: Request<GetTaskLogsRequest>,
    ) -> Result<Response<Self::GetTaskLogsStream>, Status> {
        self.0
            .call(PROTOCOL, "GetTaskLogs")
            .finish(Err(TaskService::logs_unimplemented()))
    }
}

#[tonic::async_trait]
impl ConnectorMetadataService for ConnectorService {
    async fn get_connector(
        &self,
        request: Request<GetConnectorRequest>,
    ) -> Result<Response<GetConnectorResponse>, Status> {
        let call = self.0.call(PROTOCOL, "GetConnector");
        let result = self
            .0
            .offer(&request.into_inner().name, "connector")
            .map(|offer| GetConnectorResponse {
                connector: Some(connector(offer)),
            });
        call.finish(result)
    }

    async fn list_connectors(
        &self,
        _: Request<ListConnectorsRequest>,
    ) -> Result<Response<ListConnectorsResponse>, Status> {
        self.0
            .call(PROTOCOL, "ListConnectors")
            .finish(Ok(ListConnectorsResponse {
                connectors: self.connectors(),
            }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use flytewasm_proto::flyteidl::core::{TaskLog, task_execution};
    use flytewasm_proto::flyteidl2::connector::TaskExecutionMetadata;
    use flytewasm_proto::flyteidl2::core as core2;

    /// Every field the host reads from a Flyte 2 CreateTaskRequest lands
    /// in the same field of its v1 form.
    #[test]
    fn a_v2_create_request_reads_as_v1() {
        let request = CreateTaskRequest {
            template: Some(core2::TaskTemplate {
                r#type: "spark".into(),
                task_type_version: 1,
                custom: Some(flytewasm_proto::well_known::Struct {
                    fields: [(
                        "mainApplicationFile".to_owned(),
                        flytewasm_proto::well_known::Value::from("local:///app.py".to_owned()),
                    )]
                    .into(),
                }),
                ..Default::default()
            }),
            output_prefix: "s3://out/0".into(),
            task_execution_metadata: Some(TaskExecutionMetadata {
                task_execution_id: Some(core2::TaskExecutionIdentifier {
                    node_execution_id: Some(core2::NodeExecutionIdentifier {
                        node_id: "a0".into(),
                        execution_id: Some(core2::WorkflowExecutionIdentifier {
                            project: "p".into(),
                            domain: "d".into(),
                            name: "run1".into(),
                            ..Default::default()
                        }),
                    }),
                    retry_attempt: 2,
                    ..Default::default()
                }),
                namespace: "p-d".into(),
                labels: [("team".to_owned(), "data".to_owned())].into(),
                k8s_service_account: "spark".into(),
                environment_variables: [("A".to_owned(), "1".to_owned())].into(),
                max_attempts: 3,
                interruptible: true,
                ..Default::default()
            }),
            connection: Some(core2::Connection {
                secrets: [("token".to_owned(), "x".to_owned())].into(),
                ..Default::default()
            }),
            ..Default::default()
        };
        let v1 = v1_request(&request).unwrap();
        let template = v1.template.unwrap();
        assert_eq!(template.r#type, "spark");
        assert_eq!(template.task_type_version, 1);
        assert_eq!(
            template.custom.unwrap().fields["mainApplicationFile"],
            flytewasm_proto::well_known::Value::from("local:///app.py".to_owned())
        );
        assert_eq!(v1.output_prefix, "s3://out/0");
        let metadata = v1.task_execution_metadata.unwrap();
        let id = metadata.task_execution_id.unwrap();
        let node = id.node_execution_id.unwrap();
        assert_eq!(node.node_id, "a0");
        assert_eq!(node.execution_id.unwrap().name, "run1");
        assert_eq!(id.retry_attempt, 2);
        assert_eq!(metadata.namespace, "p-d");
        assert_eq!(metadata.labels["team"], "data");
        assert_eq!(metadata.k8s_service_account, "spark");
        assert_eq!(metadata.environment_variables["A"], "1");
        assert_eq!(metadata.max_attempts, 3);
        assert!(metadata.interruptible);
    }

    /// A failure reaches Flyte 2 as its phase and message, with the links.
    #[test]
    fn a_v1_resource_writes_as_v2() {
        #[allow(deprecated)]
        let resource = v1::Resource {
            state: v1::State::RetryableFailure as i32,
            message: "Spark Job Failed".into(),
            log_links: vec![TaskLog {
                name: "Spark UI".into(),
                uri: "http://ui".into(),
                ..Default::default()
            }],
            phase: task_execution::Phase::RetryableFailed as i32,
            agent_error: Some(v1::AgentError {
                code: "DownstreamSystemError".into(),
                ..Default::default()
            }),
            ..Default::default()
        };
        let v2 = v2_resource(&resource).unwrap();
        assert_eq!(
            v2.phase,
            core2::task_execution::Phase::RetryableFailed as i32
        );
        assert_eq!(v2.message, "Spark Job Failed");
        assert_eq!(v2.log_links[0].uri, "http://ui");
        assert_eq!(v2.log_links[0].name, "Spark UI");
    }
}
