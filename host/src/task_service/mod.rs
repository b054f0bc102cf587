//! The task service both protocol front-ends translate to: Flyte 1's agent
//! protocol (`agent`) and Flyte 2's connector protocol (`connector`) answer
//! every call through one `TaskService`, with one signed `resource_meta`
//! format, so a task created through either protocol is read, polled and
//! aborted through the other on any replica.
//!
//! Its requests are flyteidl v1's messages: Flyte 2's are field-compatible
//! with them (the same numbers and wire types, reference/flyte2-connector.md
//! §2.2), so the connector front-end re-reads its bytes as v1's and the
//! plugins receive the same TaskTemplate whichever SDK wrote the task (its
//! Flyte 1 fields; tests/test_idl_compatibility.py checks the numbers).
//!
//! Nothing from the caller is trusted: a `resource_meta` is used only if
//! this deployment signed it and its object is the one its task makes, and
//! the namespace must pass the host's policy. Status codes: a caller's
//! mistake is INVALID_ARGUMENT (naming the field) or NOT_FOUND (an unknown
//! task type or plugin). CreateTask and GetTask answer a slow or failing
//! cluster with a phase, not an error (propeller fails the attempt on any
//! CreateTask error and counts GetTask errors forever); DeleteTask answers
//! it with UNAVAILABLE (the caller retries the abort).

mod request;
mod resource;
pub mod resource_meta;
mod signing;

use std::sync::Arc;
use std::time::Instant;

use flytewasm_proto::flyteidl::admin::CreateTaskRequest;
use tonic::{Code, Response, Status};

use crate::executor::{Executor, ExecutorError, PhaseEvent, TaskTicket, Tasks};
use crate::metrics::Metrics;
use crate::registry::LivePlugins;
use crate::runtime::Plugin;

pub use request::{BadRequest, task_request};
pub use resource::resource;
pub use resource_meta::MetaError;
pub use resource_meta::{decode as decode_meta, encode as encode_meta};
pub use signing::MetaKeys;

/// Which protocol a call came in by (a label on the call metrics).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// Flyte 1: `flyteidl.service.AsyncAgentService`, `AgentMetadataService`.
    Agent,
    /// Flyte 2: `flyteidl2.connector.AsyncConnectorService`, `ConnectorMetadataService`.
    Connector,
}

impl Protocol {
    pub fn label(self) -> &'static str {
        match self {
            Protocol::Agent => "agent",
            Protocol::Connector => "connector",
        }
    }
}

/// A loaded plugin as a protocol advertises it: one agent (Flyte 1) or
/// connector (Flyte 2) per plugin, named by the plugin id.
pub struct Offer {
    pub name: String,
    pub categories: Vec<Category>,
}

/// A task type and version a plugin serves (both protocols' `TaskCategory`).
pub struct Category {
    pub name: String,
    pub version: i32,
}

pub struct TaskService {
    tasks: Arc<Tasks>,
    plugins: Arc<LivePlugins>,
    metrics: Arc<Metrics>,
    keys: MetaKeys,
    pin_versions: bool,
}

impl TaskService {
    /// With `pin_versions`, a task keeps the plugin build that created it
    /// while that build is loaded; else it moves to the newest build with
    /// the same id (what redeploying propeller does).
    pub fn new(
        tasks: Arc<Tasks>,
        plugins: Arc<LivePlugins>,
        metrics: Arc<Metrics>,
        keys: MetaKeys,
        pin_versions: bool,
    ) -> Arc<Self> {
        metrics.plugins_loaded(plugins.current().plugins().len());
        tasks.report_to(metrics.clone());
        Arc::new(TaskService {
            tasks,
            plugins,
            metrics,
            keys,
            pin_versions,
        })
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

    /// Every loaded plugin with its task types.
    pub fn offers(&self) -> Vec<Offer> {
        self.plugins
            .current()
            .plugins()
            .iter()
            .map(|plugin| Offer {
                name: plugin.id().to_owned(),
                categories: plugin
                    .info()
                    .task_types
                    .iter()
                    .map(|t| Category {
                        name: t.name.clone(),
                        version: t.version,
                    })
                    .collect(),
            })
            .collect()
    }

    /// The offer named `name`, or NOT_FOUND listing the names there are.
    pub fn offer(&self, name: &str, what: &str) -> Result<Offer, Status> {
        let offers = self.offers();
        let names: Vec<String> = offers.iter().map(|o| o.name.clone()).collect();
        offers
            .into_iter()
            .find(|offer| offer.name == name)
            .ok_or_else(|| {
                Status::not_found(format!(
                    "no {what} named `{name}`; {what}s: {}",
                    names.join(", ")
                ))
            })
    }

    /// GetTaskMetrics, in either protocol: plugins report none.
    pub fn metrics_unimplemented() -> Status {
        Status::unimplemented("flytewasm plugins do not report task metrics")
    }

    /// GetTaskLogs, in either protocol: the log links are the logs.
    pub fn logs_unimplemented() -> Status {
        Status::unimplemented("flytewasm plugins do not stream logs: use the task's log links")
    }

    /// A call being answered, counted and timed when it finishes.
    pub fn call(&self, protocol: Protocol, rpc: &'static str) -> Call<'_> {
        Call {
            metrics: &self.metrics,
            protocol,
            rpc,
            plugin: String::new(),
            started: Instant::now(),
        }
    }

    /// Accept the task and answer with its `resource_meta`. Only a task that
    /// can never run fails here, and then inside the ticket (GetTask reports
    /// it, as Flyte's k8s plugin manager would): propeller would turn a
    /// CreateTask error into a retried attempt.
    pub async fn create(
        &self,
        request: CreateTaskRequest,
        call: &mut Call<'_>,
    ) -> Result<Vec<u8>, Status> {
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
        resource_meta::encode(&ticket, &self.keys)
            .map_err(|err| Status::invalid_argument(err.to_string()))
    }

    /// The task's phase now.
    pub async fn status(
        &self,
        resource_meta: &[u8],
        call: &mut Call<'_>,
    ) -> Result<PhaseEvent, Status> {
        let ticket = self.decode(resource_meta)?;
        call.plugin = ticket.plugin_id.clone();
        if let Some(failure) = ticket.failure_event() {
            // Nothing was created: no plugin or namespace needed to say so.
            return Ok(failure);
        }
        let plugin = self.plugin_of(&ticket)?;
        let event = self.tasks.status(&plugin, &ticket).await;
        self.metrics.phase(plugin.id(), event.phase.event_phase());
        Ok(event)
    }

    /// Abort the task the plugin's way (idempotent).
    pub async fn cancel(&self, resource_meta: &[u8], call: &mut Call<'_>) -> Result<(), Status> {
        let ticket = self.decode(resource_meta)?;
        call.plugin = ticket.plugin_id.clone();
        let plugin = self.plugin_of(&ticket)?;
        self.tasks
            .cancel(&plugin, &ticket)
            .await
            .map_err(|err| self.executor_status(&plugin, err))?;
        tracing::info!(plugin = plugin.id(), namespace = %ticket.namespace, name = %ticket.name, "task aborted");
        Ok(())
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
pub struct Call<'a> {
    metrics: &'a Metrics,
    protocol: Protocol,
    rpc: &'static str,
    plugin: String,
    started: Instant,
}

impl Call<'_> {
    pub fn finish<T>(self, result: Result<T, Status>) -> Result<Response<T>, Status> {
        let code = result.as_ref().map_or_else(Status::code, |_| Code::Ok);
        self.metrics.call(
            self.protocol.label(),
            self.rpc,
            &self.plugin,
            code,
            self.started.elapsed(),
        );
        if let Err(status) = &result {
            tracing::warn!(protocol = self.protocol.label(), rpc = self.rpc, plugin = %self.plugin, code = ?code, "{}", status.message());
        }
        result.map(Response::new)
    }
}
