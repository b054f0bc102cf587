//! Flyte's `AsyncAgentService` and `AgentMetadataService` over the task
//! service: the messages are the service's own (flyteidl v1), so each call
//! is one `TaskService` call and the answer's `Resource`.

use std::sync::Arc;

use flytewasm_proto::flyteidl::admin::{
    Agent, CreateTaskRequest, CreateTaskResponse, DeleteTaskRequest, DeleteTaskResponse,
    GetAgentRequest, GetAgentResponse, GetTaskLogsRequest, GetTaskLogsResponse,
    GetTaskMetricsRequest, GetTaskMetricsResponse, GetTaskRequest, GetTaskResponse,
    ListAgentsRequest, ListAgentsResponse, TaskCategory,
};
use flytewasm_proto::flyteidl::service::agent_metadata_service_server::AgentMetadataService;
use flytewasm_proto::flyteidl::service::async_agent_service_server::AsyncAgentService;
use tonic::{Request, Response, Status};

use crate::task_service::{Offer, Protocol, TaskService, resource};

const PROTOCOL: Protocol = Protocol::Agent;

#[derive(Clone)]
pub struct AgentService(Arc<TaskService>);

impl AgentService {
    pub fn new(service: Arc<TaskService>) -> Self {
        AgentService(service)
    }

    pub fn service(&self) -> &Arc<TaskService> {
        &self.0
    }

    /// One agent per plugin, named by the plugin id, with its task types.
    pub fn agents(&self) -> Vec<Agent> {
        self.0.offers().into_iter().map(agent).collect()
    }
}

fn agent(offer: Offer) -> Agent {
    #[allow(deprecated)] // older propellers read the plain type names
    Agent {
        name: offer.name,
        supported_task_types: offer.categories.iter().map(|c| c.name.clone()).collect(),
        is_sync: false,
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

#[tonic::async_trait]
impl AsyncAgentService for AgentService {
    async fn create_task(
        &self,
        request: Request<CreateTaskRequest>,
    ) -> Result<Response<CreateTaskResponse>, Status> {
        let mut call = self.0.call(PROTOCOL, "CreateTask");
        let result = self.0.create(request.into_inner(), &mut call).await;
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
        call.finish(result.map(|event| GetTaskResponse {
            resource: Some(resource(&event)),
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
impl AgentMetadataService for AgentService {
    async fn get_agent(
        &self,
        request: Request<GetAgentRequest>,
    ) -> Result<Response<GetAgentResponse>, Status> {
        let call = self.0.call(PROTOCOL, "GetAgent");
        let result = self
            .0
            .offer(&request.into_inner().name, "agent")
            .map(|offer| GetAgentResponse {
                agent: Some(agent(offer)),
            });
        call.finish(result)
    }

    async fn list_agents(
        &self,
        _: Request<ListAgentsRequest>,
    ) -> Result<Response<ListAgentsResponse>, Status> {
        self.0
            .call(PROTOCOL, "ListAgents")
            .finish(Ok(ListAgentsResponse {
                agents: self.agents(),
            }))
    }
}
