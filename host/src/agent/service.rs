//! Flyte's `AsyncAgentService` and `AgentMetadataService` over the
//! lifecycle engine. Stateless: a task lives in its `resource_meta` and in
//! the cluster, so any replica answers any call.
//!
//! Nothing from the caller is trusted: a `resource_meta` is used only if
//! this deployment signed it, the object's kind is always the plugin's
//! declared kind, and the namespace must pass the host's policy.
//!
//! A thin translation: the task semantics are `executor::Tasks`'. Status
//! codes: a caller's mistake is INVALID_ARGUMENT (naming the field) or
//! NOT_FOUND (an unknown task type, agent or plugin). CreateTask and
//! GetTask answer a slow or failing cluster with a phase, not an error
//! (propeller fails the attempt on any CreateTask error and counts GetTask
//! errors forever); DeleteTask answers it with UNAVAILABLE (propeller
//! retries the abort).

use std::sync::Arc;
use std::time::Instant;

use flytewasm_proto::flyteidl::admin::{
    Agent, CreateTaskRequest, CreateTaskResponse, DeleteTaskRequest, DeleteTaskResponse,
    GetAgentRequest, GetAgentResponse, GetTaskLogsRequest, GetTaskLogsResponse,
    GetTaskMetricsRequest, GetTaskMetricsResponse, GetTaskRequest, GetTaskResponse,
    ListAgentsRequest, ListAgentsResponse, TaskCategory,
};
use flytewasm_proto::flyteidl::service::agent_metadata_service_server::AgentMetadataService;
use flytewasm_proto::flyteidl::service::async_agent_service_server::AsyncAgentService;
use tonic::{Code, Request, Response, Status};

use super::request::task_request;
use super::resource::resource;
use super::resource_meta;
use super::signing::MetaKeys;
use crate::executor::{Executor, ExecutorError, TaskTicket, Tasks};
use crate::metrics::Metrics;
use crate::registry::LivePlugins;
use crate::runtime::Plugin;

pub struct AgentService {
    tasks: Arc<Tasks>,
    plugins: Arc<LivePlugins>,
    metrics: Arc<Metrics>,
    keys: MetaKeys,
    pin_versions: bool,
}

impl AgentService {
    /// With `pin_versions`, a task keeps the plugin build that created it
    /// while that build is loaded; else it moves to the newest build with
    /// the same id (what redeploying propeller does).
    pub fn new(
        tasks: Arc<Tasks>,
        plugins: Arc<LivePlugins>,
        metrics: Arc<Metrics>,
        keys: MetaKeys,
        pin_versions: bool,
    ) -> Self {
        metrics.plugins_loaded(plugins.current().plugins().len());
        tasks.report_to(metrics.clone());
        AgentService {
            tasks,
            plugins,
            metrics,
            keys,
            pin_versions,
        }
    }

    pub fn executor(&self) -> &Executor {
        self.tasks.executor()
    }

    pub fn tasks(&self) -> &Arc<Tasks> {
        &self.tasks
    }

    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    pub fn plugins(&self) -> &Arc<LivePlugins> {
        &self.plugins
    }

    /// One agent per plugin, named by the plugin id, with its task types.
    pub fn agents(&self) -> Vec<Agent> {
        self.plugins
            .current()
            .plugins()
            .iter()
            .map(|plugin| {
                let types = &plugin.info().task_types;
                #[allow(deprecated)] // older propellers read the plain type names
                Agent {
                    name: plugin.id().to_owned(),
                    supported_task_types: types.iter().map(|t| t.name.clone()).collect(),
                    is_sync: false,
                    supported_task_categories: types
                        .iter()
                        .map(|t| TaskCategory {
                            name: t.name.clone(),
                            version: t.version,
                        })
                        .collect(),
                }
            })
            .collect()
    }

    fn call(&self, rpc: &'static str) -> Call<'_> {
        Call {
            metrics: &self.metrics,
            rpc,
            plugin: String::new(),
            started: Instant::now(),
        }
    }

    /// Accept the task and answer with its ticket. Only a task that can
    /// never run fails here, and then inside the ticket (GetTask reports
    /// it, as Flyte's k8s plugin manager would): propeller would turn a
    /// CreateTask error into a retried attempt.
    async fn create(
        &self,
        request: CreateTaskRequest,
        call: &mut Call<'_>,
    ) -> Result<CreateTaskResponse, Status> {
        let template = request.template.as_ref().ok_or_else(|| {
            Status::invalid_argument("template: required (the TaskTemplate to run)")
        })?;
        let plugin = self.plugin_for_type(&template.r#type, template.task_type_version)?;
        call.plugin = plugin.id().to_owned();
        let task = task_request(request, self.executor().cluster().default_namespace())
            .map_err(|err| Status::invalid_argument(err.to_string()))?;
        let ticket = self.tasks.accept(&plugin, task).await;
        if let Some(failure) = &ticket.failure {
            tracing::warn!(plugin = plugin.id(), name = %ticket.name, "task failed at launch: {}", failure.error.message);
        } else {
            tracing::info!(plugin = plugin.id(), namespace = %ticket.namespace, name = %ticket.name, "task accepted");
        }
        let resource_meta = resource_meta::encode(&ticket, &self.keys)
            .map_err(|err| Status::invalid_argument(err.to_string()))?;
        Ok(CreateTaskResponse { resource_meta })
    }

    async fn get(
        &self,
        request: GetTaskRequest,
        call: &mut Call<'_>,
    ) -> Result<GetTaskResponse, Status> {
        let ticket = self.decode(&request.resource_meta)?;
        call.plugin = ticket.plugin_id.clone();
        if let Some(failure) = ticket.failure_event() {
            // Nothing was created: no plugin or namespace needed to say so.
            return Ok(GetTaskResponse {
                resource: Some(resource(&failure)),
            });
        }
        let plugin = self.plugin_of(&ticket)?;
        let event = self.tasks.status(&plugin, &ticket).await;
        self.metrics.phase(plugin.id(), event.phase.event_phase());
        Ok(GetTaskResponse {
            resource: Some(resource(&event)),
        })
    }

    async fn delete(
        &self,
        request: DeleteTaskRequest,
        call: &mut Call<'_>,
    ) -> Result<DeleteTaskResponse, Status> {
        let ticket = self.decode(&request.resource_meta)?;
        call.plugin = ticket.plugin_id.clone();
        let plugin = self.plugin_of(&ticket)?;
        self.tasks
            .cancel(&plugin, &ticket)
            .await
            .map_err(|err| self.executor_status(&plugin, err))?;
        tracing::info!(plugin = plugin.id(), namespace = %ticket.namespace, name = %ticket.name, "task aborted");
        Ok(DeleteTaskResponse {})
    }

    fn plugin_for_type(&self, task_type: &str, version: i32) -> Result<Plugin, Status> {
        let registry = self.plugins.current();
        registry
            .resolve(task_type, version)
            .cloned()
            .map_err(|err| Status::not_found(err.to_string()))
    }

    /// The plugin for a verified ticket, once the ticket's object is the one
    /// its task makes (so not even a signed meta can point elsewhere) in a
    /// namespace the policy still allows: the build that created it when
    /// versions are pinned, else the newest with its id (a removed file's
    /// last version still answers for the tasks it created).
    fn plugin_of(&self, ticket: &TaskTicket) -> Result<Plugin, Status> {
        let registry = self.plugins.current();
        let plugin = registry
            .for_task(&ticket.plugin_id, &ticket.plugin_digest, self.pin_versions)
            .cloned()
            .ok_or_else(|| {
                Status::not_found(format!(
                    "plugin `{}`, which created {}/{}, is not loaded",
                    ticket.plugin_id, ticket.namespace, ticket.name
                ))
            })?;
        if plugin.digest() != ticket.plugin_digest {
            tracing::info!(
                plugin = plugin.id(),
                task = %ticket.name,
                created_by = %ticket.plugin_digest,
                now = plugin.digest(),
                "task crosses plugin versions"
            );
        }
        check_object(ticket, &plugin)?;
        self.executor()
            .namespace_allowed(&ticket.namespace, &ticket.execution)
            .map_err(Status::permission_denied)?;
        Ok(plugin)
    }

    fn decode(&self, bytes: &[u8]) -> Result<TaskTicket, Status> {
        resource_meta::decode(bytes, &self.keys)
            .map_err(|err| Status::invalid_argument(err.to_string()))
    }

    fn executor_status(&self, plugin: &Plugin, err: ExecutorError) -> Status {
        if err.is_transient() {
            return Status::unavailable(err.to_string());
        }
        self.metrics.plugin_error(plugin.id());
        Status::internal(err.to_string())
    }
}

/// resource_meta comes back from the wire: its object must be the one its
/// task makes (same name), so edited bytes cannot point GetTask or
/// DeleteTask at an object this task did not create.
fn check_object(ticket: &TaskTicket, plugin: &Plugin) -> Result<(), Status> {
    let task = ticket
        .task
        .clone()
        .unwrap_or_else(|| crate::executor::TaskRequest {
            execution: ticket.execution.clone(),
            namespace: ticket.namespace.clone(),
            ..Default::default()
        });
    let expected = task.object_name(plugin);
    if ticket.name != expected || task.namespace != ticket.namespace {
        return Err(Status::invalid_argument(format!(
            "resource_meta: {}/{} is not the object of this task (it makes {}/{expected})",
            ticket.namespace, ticket.name, task.namespace
        )));
    }
    Ok(())
}

/// One RPC being answered: counted and timed when it finishes.
struct Call<'a> {
    metrics: &'a Metrics,
    rpc: &'static str,
    plugin: String,
    started: Instant,
}

impl Call<'_> {
    fn finish<T>(self, result: Result<T, Status>) -> Result<Response<T>, Status> {
        let code = result.as_ref().map_or_else(Status::code, |_| Code::Ok);
        self.metrics
            .call(self.rpc, &self.plugin, code, self.started.elapsed());
        if let Err(status) = &result {
            tracing::warn!(rpc = self.rpc, plugin = %self.plugin, code = ?code, "{}", status.message());
        }
        result.map(Response::new)
    }
}

#[tonic::async_trait]
impl AsyncAgentService for AgentService {
    async fn create_task(
        &self,
        request: Request<CreateTaskRequest>,
    ) -> Result<Response<CreateTaskResponse>, Status> {
        let mut call = self.call("CreateTask");
        let result = self.create(request.into_inner(), &mut call).await;
        call.finish(result)
    }

    async fn get_task(
        &self,
        request: Request<GetTaskRequest>,
    ) -> Result<Response<GetTaskResponse>, Status> {
        let mut call = self.call("GetTask");
        let result = self.get(request.into_inner(), &mut call).await;
        call.finish(result)
    }

    async fn delete_task(
        &self,
        request: Request<DeleteTaskRequest>,
    ) -> Result<Response<DeleteTaskResponse>, Status> {
        let mut call = self.call("DeleteTask");
        let result = self.delete(request.into_inner(), &mut call).await;
        call.finish(result)
    }

    async fn get_task_metrics(
        &self,
        _: Request<GetTaskMetricsRequest>,
    ) -> Result<Response<GetTaskMetricsResponse>, Status> {
        self.call("GetTaskMetrics")
            .finish(Err(Status::unimplemented(
                "flytewasm plugins do not report task metrics",
            )))
    }

    type GetTaskLogsStream = futures::stream::Empty<Result<GetTaskLogsResponse, Status>>;

    async fn get_task_logs(
        &self,
        _: Request<GetTaskLogsRequest>,
    ) -> Result<Response<Self::GetTaskLogsStream>, Status> {
        self.call("GetTaskLogs").finish(Err(Status::unimplemented(
            "flytewasm plugins do not stream logs: use the task's log links",
        )))
    }
}

#[tonic::async_trait]
impl AgentMetadataService for AgentService {
    async fn get_agent(
        &self,
        request: Request<GetAgentRequest>,
    ) -> Result<Response<GetAgentResponse>, Status> {
        let call = self.call("GetAgent");
        let name = request.into_inner().name;
        let agents = self.agents();
        let names: Vec<String> = agents.iter().map(|a| a.name.clone()).collect();
        let result = agents
            .into_iter()
            .find(|agent| agent.name == name)
            .map(|agent| GetAgentResponse { agent: Some(agent) })
            .ok_or_else(|| {
                Status::not_found(format!(
                    "no agent named `{name}`; agents: {}",
                    names.join(", ")
                ))
            });
        call.finish(result)
    }

    async fn list_agents(
        &self,
        _: Request<ListAgentsRequest>,
    ) -> Result<Response<ListAgentsResponse>, Status> {
        self.call("ListAgents").finish(Ok(ListAgentsResponse {
            agents: self.agents(),
        }))
    }
}
