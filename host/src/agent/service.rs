//! Flyte's `AsyncAgentService` and `AgentMetadataService` over the
//! lifecycle engine. Stateless: a task lives in its `resource_meta` and in
//! the cluster, so any replica answers any call.
//!
//! Nothing from the caller is trusted: a `resource_meta` is used only if
//! this deployment signed it, the object's kind is always the plugin's
//! declared kind, and the namespace must pass the host's policy.
//!
//! Status codes: a caller's mistake is INVALID_ARGUMENT (naming the field)
//! or NOT_FOUND (an unknown task type, agent or plugin); a cluster that
//! cannot be reached now, or a plugin with no free slot, is UNAVAILABLE
//! (propeller retries); INTERNAL is kept for a plugin that failed on its own.

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
use super::resource_meta::ResourceMeta;
use super::signing::MetaKeys;
use crate::executor::lifecycle::plugin_kind;
use crate::executor::{Engine, EngineError, Phase, PhaseEvent, TaskState};
use crate::metrics::Metrics;
use crate::registry::LivePlugins;
use crate::runtime::Plugin;

pub struct AgentService {
    engine: Engine,
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
        engine: Engine,
        plugins: Arc<LivePlugins>,
        metrics: Arc<Metrics>,
        keys: MetaKeys,
        pin_versions: bool,
    ) -> Self {
        metrics.plugins_loaded(plugins.current().plugins().len());
        AgentService {
            engine,
            plugins,
            metrics,
            keys,
            pin_versions,
        }
    }

    pub fn engine(&self) -> &Engine {
        &self.engine
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
        let task = task_request(request, self.engine.cluster().default_namespace())
            .map_err(|err| Status::invalid_argument(err.to_string()))?;
        let (state, event) = self
            .engine
            .launch(&plugin, &task)
            .await
            .map_err(|err| self.engine_status(&plugin, err))?;
        if event.phase == Phase::PermanentFailure {
            // The plugin refused the task or failed building it: nothing was
            // created, and retrying cannot help. The failure goes into the
            // resource_meta, so GetTask reports it as Flyte's k8s plugin
            // manager would (a permanent failure), not as a create error
            // propeller would retry.
            if event.error.as_ref().is_some_and(|e| e.kind == "SYSTEM") {
                self.metrics.plugin_error(plugin.id()); // the plugin's fault, not the task's
            }
            let message = event.error.as_ref().map_or("", |e| e.message.as_str());
            tracing::warn!(plugin = plugin.id(), name = %state.name, "task failed at launch: {message}");
            return Ok(CreateTaskResponse {
                resource_meta: ResourceMeta::failed_launch(state, task, event).encode(&self.keys),
            });
        }
        if event.phase != Phase::Queued {
            return Err(self.launch_refused(&plugin, &event));
        }
        tracing::info!(plugin = plugin.id(), namespace = %state.namespace, name = %state.name, "task launched");
        Ok(CreateTaskResponse {
            resource_meta: ResourceMeta::new(state, task).encode(&self.keys),
        })
    }

    async fn get(
        &self,
        request: GetTaskRequest,
        call: &mut Call<'_>,
    ) -> Result<GetTaskResponse, Status> {
        let meta = self.decode(&request.resource_meta)?;
        if let Some(failure) = &meta.launch_failure {
            call.plugin = meta.state.plugin_id.clone();
            return Ok(GetTaskResponse {
                resource: Some(resource(failure)),
            });
        }
        let plugin = self.plugin_by_id(&meta)?;
        call.plugin = plugin.id().to_owned();
        let state = self.object_of(&meta, &plugin)?;
        let event = self
            .engine
            .observe(&plugin, &meta.task, &state)
            .await
            .map_err(|err| self.engine_status(&plugin, err))?;
        if event
            .error
            .as_ref()
            .is_some_and(|e| e.code == "PluginFailure")
        {
            self.metrics.plugin_error(plugin.id());
        }
        if event.phase.is_terminal() {
            // Nobody calls DeleteTask after a task ends: release it now, as
            // the k8s PluginManager's Finalize would. Both steps are idempotent.
            if event.phase.is_failure() && event.cleanup_on_failure {
                self.engine
                    .abort(&plugin, &meta.task, &state)
                    .await
                    .map_err(|err| self.engine_status(&plugin, err))?;
            }
            self.engine
                .finalize(&plugin, &state)
                .await
                .map_err(|err| self.engine_status(&plugin, err))?;
        }
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
        let meta = self.decode(&request.resource_meta)?;
        if meta.launch_failure.is_some() {
            return Ok(DeleteTaskResponse {}); // nothing was created
        }
        let plugin = self.plugin_by_id(&meta)?;
        call.plugin = plugin.id().to_owned();
        let state = self.object_of(&meta, &plugin)?;
        // Both are fine with an object that is already gone.
        self.engine
            .abort(&plugin, &meta.task, &state)
            .await
            .map_err(|err| self.engine_status(&plugin, err))?;
        self.engine
            .finalize(&plugin, &state)
            .await
            .map_err(|err| self.engine_status(&plugin, err))?;
        tracing::info!(plugin = plugin.id(), namespace = %state.namespace, name = %state.name, "task deleted");
        Ok(DeleteTaskResponse {})
    }

    fn plugin_for_type(&self, task_type: &str, version: i32) -> Result<Plugin, Status> {
        let registry = self.plugins.current();
        registry
            .resolve(task_type, version)
            .cloned()
            .map_err(|err| Status::not_found(err.to_string()))
    }

    /// The plugin for a task: the build that created it when versions are
    /// pinned, else the newest with its id (a removed file's last version
    /// still answers for the tasks it created).
    fn plugin_by_id(&self, meta: &ResourceMeta) -> Result<Plugin, Status> {
        let state = &meta.state;
        let registry = self.plugins.current();
        let plugin = registry
            .for_task(&state.plugin_id, &state.plugin_digest, self.pin_versions)
            .cloned()
            .ok_or_else(|| {
                Status::not_found(format!(
                    "plugin `{}`, which created {}/{}, is not loaded",
                    state.plugin_id, state.namespace, state.name
                ))
            })?;
        if plugin.digest() != state.plugin_digest {
            tracing::info!(
                plugin = plugin.id(),
                task = %state.name,
                created_by = %state.plugin_digest,
                now = plugin.digest(),
                "task crosses plugin versions"
            );
        }
        Ok(plugin)
    }

    fn decode(&self, bytes: &[u8]) -> Result<ResourceMeta, Status> {
        ResourceMeta::decode(bytes, &self.keys)
            .map_err(|err| Status::invalid_argument(err.to_string()))
    }

    /// The object a verified meta's task owns: its name and namespace as
    /// the task makes them (so not even a signed meta can point elsewhere),
    /// in a namespace the policy still allows, of the plugin's own kind.
    fn object_of(&self, meta: &ResourceMeta, plugin: &Plugin) -> Result<TaskState, Status> {
        check_object(meta, plugin)?;
        self.engine
            .namespace_allowed(&meta.task)
            .map_err(Status::permission_denied)?;
        Ok(TaskState {
            kind: plugin_kind(plugin),
            ..meta.state.clone()
        })
    }

    fn engine_status(&self, plugin: &Plugin, err: EngineError) -> Status {
        if err.is_transient() {
            return Status::unavailable(err.to_string());
        }
        self.metrics.plugin_error(plugin.id());
        Status::internal(err.to_string())
    }

    /// The task could not be launched: say whose fault it is.
    fn launch_refused(&self, plugin: &Plugin, event: &PhaseEvent) -> Status {
        if event.phase == Phase::WaitingForResources {
            return Status::resource_exhausted(event.reason.clone());
        }
        let Some(error) = &event.error else {
            return Status::internal(format!("unexpected launch phase {:?}", event.phase));
        };
        match (error.kind.as_str(), error.code.as_str()) {
            ("USER", "RuntimeFailure") => Status::permission_denied(error.message.clone()),
            ("USER", _) => Status::invalid_argument(error.message.clone()),
            _ => {
                self.metrics.plugin_error(plugin.id());
                Status::internal(error.message.clone())
            }
        }
    }
}

/// resource_meta comes back from the wire: its object must be the one its
/// task makes (same name and namespace), so edited bytes cannot point
/// GetTask or DeleteTask at an object this task did not create.
fn check_object(meta: &ResourceMeta, plugin: &Plugin) -> Result<(), Status> {
    let (expected_ns, expected_name) = (&meta.task.namespace, meta.task.object_name(plugin));
    if meta.state.namespace != *expected_ns || meta.state.name != expected_name {
        return Err(Status::invalid_argument(format!(
            "resource_meta.state: {}/{} is not the object of this task (it makes {expected_ns}/{expected_name})",
            meta.state.namespace, meta.state.name
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
