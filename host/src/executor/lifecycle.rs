//! The lifecycle of one task's object, with Flyte's PluginManager semantics
//! (reference/flyte-facts.md §2): launch → monitor → abort → finalize.
//!
//! [`TaskState`] is plain data — enough to resume a task from anywhere (it
//! will travel in an agent's `resource_meta`). Phase changes are driven by
//! the shared watch ([`Executor::wait_for_change`]), never by polling.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::carried;
use super::metadata::{Execution, FINALIZER};
use super::object::{PrepareError, TaskRequest, prepare};
use super::pod_templates::{self, PodTemplateError};
use crate::cluster::{Cluster, ClusterError, Created, Propagation, Refusal, ResourceKind};
use crate::config::{HostConfig, TasksConfig};
use crate::runtime::{CallError, Plugin, wit};

/// Where a task stands: which plugin build made which object, and the last
/// phase reported for it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TaskState {
    pub plugin_id: String,
    pub plugin_digest: String,
    pub kind: ResourceKind,
    pub namespace: String,
    pub name: String,
    pub phase: Phase,
    pub version: u32,
    pub reason: String,
}

/// Flyte's plugin phases, as stored and reported.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Phase {
    NotReady,
    WaitingForResources,
    Queued,
    Initializing,
    Running,
    Success,
    RetryableFailure,
    PermanentFailure,
}

impl Phase {
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            Phase::Success | Phase::RetryableFailure | Phase::PermanentFailure
        )
    }

    pub fn is_failure(self) -> bool {
        matches!(self, Phase::RetryableFailure | Phase::PermanentFailure)
    }

    /// The task execution phase Flyte reports for it (§2.9).
    pub fn event_phase(self) -> &'static str {
        match self {
            Phase::NotReady => "UNDEFINED",
            Phase::WaitingForResources => "WAITING_FOR_RESOURCES",
            Phase::Queued => "QUEUED",
            Phase::Initializing => "INITIALIZING",
            Phase::Running => "RUNNING",
            Phase::Success => "SUCCEEDED",
            Phase::RetryableFailure | Phase::PermanentFailure => "FAILED",
        }
    }

    fn from_wit(phase: wit::Phase) -> Self {
        match phase {
            wit::Phase::NotReady => Phase::NotReady,
            wit::Phase::WaitingForResources => Phase::WaitingForResources,
            wit::Phase::Queued => Phase::Queued,
            wit::Phase::Initializing => Phase::Initializing,
            wit::Phase::Running => Phase::Running,
            wit::Phase::Success => Phase::Success,
            wit::Phase::RetryableFailure => Phase::RetryableFailure,
            wit::Phase::PermanentFailure => Phase::PermanentFailure,
        }
    }

    fn to_wit(self) -> wit::Phase {
        match self {
            Phase::NotReady => wit::Phase::NotReady,
            Phase::WaitingForResources => wit::Phase::WaitingForResources,
            Phase::Queued => wit::Phase::Queued,
            Phase::Initializing => wit::Phase::Initializing,
            Phase::Running => wit::Phase::Running,
            Phase::Success => wit::Phase::Success,
            Phase::RetryableFailure => wit::Phase::RetryableFailure,
            Phase::PermanentFailure => wit::Phase::PermanentFailure,
        }
    }
}

/// A failure shown to the user, with Flyte's code and kind.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskError {
    pub code: String,
    pub message: String,
    pub kind: ErrorKind,
}

/// Whose fault a failure is (Flyte's `ExecutionError.Kind`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ErrorKind {
    User,
    System,
}

impl ErrorKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::User => "USER",
            ErrorKind::System => "SYSTEM",
        }
    }
}

/// The failure codes the host itself reports (plugins report their own).
pub mod codes {
    pub const NAMESPACE_NOT_ALLOWED: &str = "NamespaceNotAllowed";
    pub const RESOURCE_DELETED_EXTERNALLY: &str = "ResourceDeletedExternally";
    pub const UNEXPECTED_OBJECT_DELETION: &str = "UnexpectedObjectDeletion";
    pub const PLUGIN_FAILURE: &str = "PluginFailure";
    pub const FAILED_TO_BUILD_RESOURCE: &str = "FailedToBuildResource";
    pub const BAD_TASK_SPECIFICATION: &str = "BadTaskSpecification";
    pub const BAD_TASK_FORMAT: &str = "BadTaskFormat";
    pub const ENTITY_TOO_LARGE: &str = "EntityTooLarge";
    pub const RUNTIME_FAILURE: &str = "RuntimeFailure";
    pub const OBJECT_NAME_COLLISION: &str = "ObjectNameCollision";
    pub const LAUNCH_DEADLINE_EXCEEDED: &str = "LaunchDeadlineExceeded";
    pub const SYSTEM_FAILURE: &str = "SystemFailure";
    pub const ABORTED: &str = "Aborted";
    pub const TASK_CONTEXT_MISSING: &str = "TaskContextMissing";
    pub const UNCONFIRMED_LAUNCH: &str = "UnconfirmedLaunch";
}

/// One phase change, as reported to Flyte (or printed by `run`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PhaseEvent {
    pub phase: Phase,
    pub version: u32,
    pub reason: String,
    pub error: Option<TaskError>,
    pub logs: Vec<LogLink>,
    pub custom_info: Option<Value>,
    /// RFC 3339.
    pub occurred_at: String,
    #[serde(skip)]
    pub cleanup_on_failure: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LogLink {
    pub name: String,
    pub uri: String,
    pub show_while_pending: bool,
}

impl PhaseEvent {
    pub fn new(phase: Phase, reason: impl Into<String>) -> Self {
        PhaseEvent {
            phase,
            version: 0,
            reason: reason.into(),
            error: None,
            logs: Vec::new(),
            custom_info: None,
            occurred_at: now(),
            cleanup_on_failure: false,
        }
    }

    pub fn failure(phase: Phase, kind: ErrorKind, code: &str, message: impl Into<String>) -> Self {
        let message = message.into();
        let mut event = PhaseEvent::new(phase, message.clone());
        event.error = Some(TaskError {
            code: code.into(),
            message,
            kind,
        });
        event
    }

    /// Whether this says nothing new after (`phase`, `version`, `reason`):
    /// the same phase and version, or an older version of the same phase
    /// and reason (a plugin only bumps the version on a new reason).
    pub fn seen_after(&self, phase: Phase, version: u32, reason: &str) -> bool {
        self.phase == phase
            && (self.version == version || (self.version < version && self.reason == reason))
    }

    /// The host's code for this failure, if it is one.
    pub fn code(&self) -> Option<&str> {
        self.error.as_ref().map(|e| e.code.as_str())
    }

    fn from_wit(info: wit::PhaseInfo) -> Self {
        let occurred_at = info
            .occurred_at
            .and_then(|t| chrono::DateTime::from_timestamp(t.seconds, t.nanos))
            .map_or_else(now, |t| {
                t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
            });
        PhaseEvent {
            phase: Phase::from_wit(info.phase),
            version: info.version,
            reason: info.reason,
            error: info.error.map(|e| TaskError {
                code: e.code,
                message: e.message,
                kind: match e.kind {
                    wit::ErrorKind::User => ErrorKind::User,
                    wit::ErrorKind::System => ErrorKind::System,
                },
            }),
            logs: info
                .logs
                .into_iter()
                .map(|l| LogLink {
                    name: l.name,
                    uri: l.uri,
                    show_while_pending: l.show_while_pending,
                })
                .collect(),
            custom_info: info.custom_info.and_then(|c| serde_json::from_str(&c).ok()),
            occurred_at,
            cleanup_on_failure: info.cleanup_on_failure,
        }
    }
}

fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// A step that could not complete now and should be retried (Flyte's
/// "unknown transition + error"): the cluster was unreachable or failing.
#[derive(Debug, thiserror::Error)]
pub enum ExecutorError {
    #[error("cluster error while {action} {name}: {source}")]
    Cluster {
        action: &'static str,
        name: String,
        source: ClusterError,
    },
    #[error("plugin call failed: {0}")]
    Plugin(#[from] CallError),
}

impl ExecutorError {
    /// What a failed cluster call while `action` on `name` becomes.
    pub fn cluster(action: &'static str, name: &str) -> impl FnOnce(ClusterError) -> Self {
        let name = name.to_owned();
        move |source| ExecutorError::Cluster {
            action,
            name,
            source,
        }
    }

    /// Worth trying again later: the cluster failed, or the plugin had no
    /// free slot (its call never ran).
    pub fn is_transient(&self) -> bool {
        match self {
            ExecutorError::Cluster { .. } => true,
            ExecutorError::Plugin(call) => call.is_busy(),
        }
    }
}

/// What aborting did to the object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Aborted {
    Deleted,
    Patched,
}

/// How often to look at an object while its kind's watch is failing.
const POLL_WITHOUT_WATCH: Duration = Duration::from_secs(1);

/// Runs tasks' objects on one cluster.
#[derive(Clone)]
pub struct Executor {
    cluster: Arc<Cluster>,
    config: Arc<HostConfig>,
}

impl Executor {
    pub fn new(cluster: Arc<Cluster>, config: Arc<HostConfig>) -> Self {
        Executor { cluster, config }
    }

    pub fn cluster(&self) -> &Cluster {
        &self.cluster
    }

    /// The host's own namespace: where it keeps its records and looks for
    /// platform PodTemplates (`tasks.records-namespace`, else the client's).
    pub fn host_namespace(&self) -> String {
        self.config
            .tasks
            .records_namespace
            .clone()
            .unwrap_or_else(|| self.cluster.default_namespace().to_owned())
    }

    pub fn config(&self) -> &HostConfig {
        &self.config
    }

    /// The host's namespace policy (`security.namespaces`) for this task.
    pub fn namespace_allowed(&self, namespace: &str, execution: &Execution) -> Result<(), String> {
        self.config
            .security
            .check_namespace(namespace, &execution.project, &execution.domain)
    }

    /// Build the object with the plugin and create it. Returns the state to
    /// keep and the first event: Queued when created (or already there),
    /// else the failure Flyte would report.
    pub async fn launch(
        &self,
        plugin: &Plugin,
        request: &TaskRequest,
    ) -> Result<(TaskState, PhaseEvent), ExecutorError> {
        let kind = plugin_kind(plugin);
        let mut state = TaskState {
            plugin_id: plugin.id().into(),
            plugin_digest: plugin.digest().into(),
            kind: kind.clone(),
            namespace: request.namespace.clone(),
            name: request.object_name(plugin),
            phase: Phase::NotReady,
            version: 0,
            reason: String::new(),
        };
        if let Err(reason) = self.namespace_allowed(&request.namespace, &request.execution) {
            let event = PhaseEvent::failure(
                Phase::PermanentFailure,
                ErrorKind::User,
                codes::NAMESPACE_NOT_ALLOWED,
                reason,
            );
            state.record(&event);
            return Ok((state, event));
        }
        let mut request = request.clone();
        match pod_templates::base_template(
            &self.cluster,
            &self.config,
            &request,
            &self.host_namespace(),
        )
        .await
        {
            Ok(template) => request.base_pod_template = template,
            Err(err @ (PodTemplateError::Missing { .. } | PodTemplateError::InvalidName(_))) => {
                let event = PhaseEvent::failure(
                    Phase::PermanentFailure,
                    ErrorKind::User,
                    codes::BAD_TASK_SPECIFICATION,
                    err.to_string(),
                );
                state.record(&event);
                return Ok((state, event));
            }
            Err(PodTemplateError::Cluster(source)) => {
                return Err(ExecutorError::Cluster {
                    action: "reading the base PodTemplate of",
                    name: state.name,
                    source,
                });
            }
        }
        let request = &request;
        let prepared = {
            let (config, request) = (self.config.clone(), request.clone());
            off_the_runtime(plugin, "build-resource", None, move |plugin| {
                prepare(plugin, &config, &request, SystemTime::now())
            })
            .await?
        };
        let event = match prepared {
            Err(err) => build_failure(err),
            Ok(prepared) => match self
                .cluster
                .create(&kind, &prepared.namespace, &prepared.object)
                .await
            {
                Ok(Created::New) => PhaseEvent::new(Phase::Queued, "task submitted to K8s"),
                Ok(Created::AlreadyExisted) => self.adopt(&state, request).await?,
                Err(err) => match classify_create_error(&err) {
                    Some(event) => event,
                    None => {
                        return Err(ExecutorError::Cluster {
                            action: "creating",
                            name: state.name,
                            source: err,
                        });
                    }
                },
            },
        };
        state.record(&event);
        Ok((state, event))
    }

    /// An object of the task's name is there already: launched before (a
    /// repeated call), if it carries this task's identity; else someone
    /// else's, and the task cannot use the name.
    async fn adopt(
        &self,
        state: &TaskState,
        request: &TaskRequest,
    ) -> Result<PhaseEvent, ExecutorError> {
        let object = self
            .cluster
            .get_from_api(&state.kind, &state.namespace, &state.name)
            .await
            .map_err(ExecutorError::cluster("reading", &state.name))?;
        let expected = request.execution.key();
        Ok(match object.as_ref().map(carried::owner_of) {
            // Deleted between the create and this read: the next try creates it.
            None => {
                return Err(ExecutorError::Cluster {
                    action: "creating",
                    name: state.name.clone(),
                    source: ClusterError {
                        code: 409,
                        reason: "AlreadyExists".into(),
                        message: "the object existed and is gone now".into(),
                    },
                });
            }
            Some(Some(owner)) if owner == expected => {
                PhaseEvent::new(Phase::Queued, "task submitted to K8s")
            }
            Some(owner) => PhaseEvent::failure(
                Phase::PermanentFailure,
                ErrorKind::System,
                codes::OBJECT_NAME_COLLISION,
                format!(
                    "{} {}/{} exists and is not this task's (it belongs to {}, this task is {expected}): the task cannot use its name",
                    state.kind.kind,
                    state.namespace,
                    state.name,
                    owner.unwrap_or("something flytewasm did not create")
                ),
            ),
        })
    }

    /// The task's phase now, as the plugin reads the object (from the
    /// watch cache); `state` is what was reported before.
    pub async fn observe(
        &self,
        plugin: &Plugin,
        request: &TaskRequest,
        state: &TaskState,
    ) -> Result<PhaseEvent, ExecutorError> {
        let object = self.get(state).await?;
        Ok(match object {
            None => PhaseEvent::failure(
                Phase::RetryableFailure,
                ErrorKind::System,
                codes::RESOURCE_DELETED_EXTERNALLY,
                format!(
                    "resource not found, name [{}/{}]. reason: the object is gone from the cluster",
                    state.namespace, state.name
                ),
            ),
            Some(object) => self.phase_of(plugin, request, state, &object, None).await?,
        })
    }

    /// What the plugin makes of the object, as [`Executor::observe`] reports it.
    /// `slot_within`: the longest the call may wait for a slot, when the
    /// caller's deadline is nearer than `slot-wait`.
    pub async fn phase_of(
        &self,
        plugin: &Plugin,
        request: &TaskRequest,
        state: &TaskState,
        object: &Value,
        slot_within: Option<Duration>,
    ) -> Result<PhaseEvent, ExecutorError> {
        Ok({
            {
                let ctx = self.phase_context(plugin, request, state);
                let observed = without_context(object).to_string();
                let answer =
                    off_the_runtime(plugin, "get-task-phase", slot_within, move |plugin| {
                        plugin.get_task_phase(&ctx, &observed)
                    })
                    .await?;
                let event = match answer {
                    Ok(info) => PhaseEvent::from_wit(info),
                    Err(err) if err.is_bad_task() => plugin_failure(&err),
                    // The plugin failed on its own: a look that went wrong.
                    Err(err) => return Err(ExecutorError::Plugin(err)),
                };
                let deleting = !object["metadata"]["deletionTimestamp"].is_null();
                if deleting && !event.phase.is_terminal() {
                    PhaseEvent::failure(
                        Phase::RetryableFailure,
                        ErrorKind::System,
                        codes::UNEXPECTED_OBJECT_DELETION,
                        format!(
                            "object [{}/{}] terminated in the background, manually",
                            state.namespace, state.name
                        ),
                    )
                } else {
                    event
                }
            }
        })
    }

    /// Look at the object and ask the plugin for its phase. `None` when
    /// nothing changed since the last event (same phase and version).
    pub async fn check(
        &self,
        plugin: &Plugin,
        request: &TaskRequest,
        state: &mut TaskState,
    ) -> Result<Option<PhaseEvent>, ExecutorError> {
        let event = self.observe(plugin, request, state).await?;
        if event.seen_after(state.phase, state.version, &state.reason) {
            return Ok(None);
        }
        state.record(&event);
        Ok(Some(event))
    }

    /// Stop the task: the plugin chooses delete (default) or a patch.
    /// An object already gone is fine.
    pub async fn abort(
        &self,
        plugin: &Plugin,
        request: &TaskRequest,
        state: &TaskState,
    ) -> Result<Aborted, ExecutorError> {
        let Some(object) = self.get(state).await? else {
            return Ok(Aborted::Deleted);
        };
        let ctx = self.phase_context(plugin, request, state);
        let observed = without_context(&object).to_string();
        let action = off_the_runtime(plugin, "on-abort", None, move |plugin| {
            plugin.on_abort(&ctx, &observed)
        })
        .await?;
        let cluster_error = |source| ExecutorError::Cluster {
            action: "aborting",
            name: state.name.clone(),
            source,
        };
        match action {
            Ok(wit::AbortAction::Patch(patch)) => {
                let patch: Value = serde_json::from_str(&patch).map_err(|err| {
                    ExecutorError::Plugin(CallError::InvalidOutput {
                        plugin: plugin.id().into(),
                        call: "on-abort",
                        reason: format!("the abort patch is not JSON: {err}"),
                    })
                })?;
                self.cluster
                    .merge_patch(&state.kind, &state.namespace, &state.name, &patch)
                    .await
                    .map_err(cluster_error)?;
                Ok(Aborted::Patched)
            }
            // A plugin that cannot say how to abort still gets its object deleted.
            Ok(wit::AbortAction::Delete) | Err(_) => {
                self.delete(plugin, state).await.map_err(cluster_error)?;
                Ok(Aborted::Deleted)
            }
        }
    }

    /// Release the object: remove Flyte's finalizer (whatever the current
    /// config says, as Flyte does) and delete it if configured to.
    pub async fn finalize(&self, plugin: &Plugin, state: &TaskState) -> Result<(), ExecutorError> {
        self.release(state, "finalizing", |_| None).await?;
        if self.config.k8s.delete_resource_on_finalize
            && !plugin.info().properties.disable_delete_resource_on_finalize
        {
            self.delete(plugin, state)
                .await
                .map_err(ExecutorError::cluster("finalizing", &state.name))?;
        }
        Ok(())
    }

    /// Record `event` as the task's end on its object (the answer every
    /// later GetTask gets, and when retention starts) and remove Flyte's
    /// finalizer, in one write. The object stays until the janitor's turn.
    pub async fn finish(&self, state: &TaskState, event: &PhaseEvent) -> Result<(), ExecutorError> {
        // The first end recorded stays.
        self.release(state, "finishing", |object| {
            (!carried::is_finished(object)).then(|| carried::finished_metadata(event, &state.name))
        })
        .await
    }

    /// Remove Flyte's finalizer, merging in what `metadata` makes of the object.
    async fn release(
        &self,
        state: &TaskState,
        action: &'static str,
        metadata: impl Fn(&Value) -> Option<Value>,
    ) -> Result<(), ExecutorError> {
        self.cluster
            .release(
                &state.kind,
                &state.namespace,
                &state.name,
                FINALIZER,
                metadata,
            )
            .await
            .map_err(ExecutorError::cluster(action, &state.name))
    }

    /// Delete the object with the plugin's propagation policy.
    pub async fn delete(&self, plugin: &Plugin, state: &TaskState) -> Result<(), ClusterError> {
        let propagation = plugin_propagation(&self.config.tasks, plugin);
        self.cluster
            .delete(&state.kind, &state.namespace, &state.name, propagation)
            .await
    }

    /// Wait until the object changes (or `max` passes, as a resync).
    pub async fn wait_for_change(
        &self,
        state: &TaskState,
        changes: &mut tokio::sync::broadcast::Receiver<String>,
        max: Duration,
    ) {
        // Without a working watch no change will be announced: poll instead.
        let max = if self.cluster.watch_healthy(&state.kind, &state.namespace) {
            max
        } else {
            max.min(POLL_WITHOUT_WATCH)
        };
        let deadline = tokio::time::sleep(max);
        tokio::pin!(deadline);
        loop {
            tokio::select! {
                name = changes.recv() => match name {
                    Ok(name) if name == state.name => return,
                    Ok(_) => continue,
                    // Missed some changes: look now.
                    Err(_) => return,
                },
                _ = &mut deadline => return,
            }
        }
    }

    /// The change feed for this task's kind and namespace.
    pub fn changes(&self, state: &TaskState) -> tokio::sync::broadcast::Receiver<String> {
        self.cluster.changes(&state.kind, &state.namespace)
    }

    /// Wait until the object no longer exists (up to `max`). A read that
    /// fails on the cluster is not an answer: it looks again. The error
    /// says what holds the object: the garbage collector's `orphan` and
    /// `foregroundDeletion` finalizers wait for a controller that may not
    /// be running, and Flyte's or an operator's for their owner.
    pub async fn wait_gone(&self, state: &TaskState, max: Duration) -> Result<(), String> {
        let mut changes = self.changes(state);
        let deadline = tokio::time::Instant::now() + max;
        loop {
            let last = match self.get(state).await {
                Ok(None) => return Ok(()),
                Ok(Some(object)) => Some(object),
                Err(err) => {
                    tracing::debug!(task = %state.name, "will look again: {err}");
                    None
                }
            };
            if tokio::time::Instant::now() >= deadline {
                return Err(still_there(state, last.as_ref(), max));
            }
            self.wait_for_change(state, &mut changes, Duration::from_secs(1))
                .await;
        }
    }

    async fn get(&self, state: &TaskState) -> Result<Option<Value>, ExecutorError> {
        self.cluster
            .get(&state.kind, &state.namespace, &state.name)
            .await
            .map_err(ExecutorError::cluster("reading", &state.name))
    }

    fn phase_context(
        &self,
        plugin: &Plugin,
        request: &TaskRequest,
        state: &TaskState,
    ) -> wit::PhaseContext {
        wit::PhaseContext {
            task: request.task_context(plugin, &self.config, SystemTime::now()),
            previous_phase: state.phase.to_wit(),
            previous_version: state.version,
            previous_reason: state.reason.clone(),
        }
    }
}

impl TaskState {
    fn record(&mut self, event: &PhaseEvent) {
        self.phase = event.phase;
        self.version = event.version;
        self.reason = event.reason.clone();
    }
}

/// Run a plugin call on the blocking pool once one of its slots is free,
/// holding the slot: a call may spin until its deadline, which must not
/// stall the async executor. No slot within the wait is a transient error.
async fn off_the_runtime<R: Send + 'static>(
    plugin: &Plugin,
    name: &'static str,
    slot_within: Option<Duration>,
    call: impl FnOnce(&Plugin) -> R + Send + 'static,
) -> Result<R, ExecutorError> {
    let slot = plugin.call_slot(name, slot_within).await?;
    let plugin_id = plugin.id().to_owned();
    let plugin = plugin.clone();
    tokio::task::spawn_blocking(move || {
        let _slot = slot;
        call(&plugin)
    })
    .await
    .map_err(|join| {
        ExecutorError::Plugin(CallError::Trap {
            plugin: plugin_id.clone(),
            call: name,
            message: format!("the host's call thread failed: {join}"),
        })
    })
}

/// The object as a plugin sees it: without the task it carries, which the
/// plugin gets in its context already.
fn without_context(object: &Value) -> std::borrow::Cow<'_, Value> {
    if object["metadata"]["annotations"][carried::CONTEXT_ANNOTATION].is_null() {
        return std::borrow::Cow::Borrowed(object);
    }
    let mut object = object.clone();
    if let Some(annotations) = object["metadata"]["annotations"].as_object_mut() {
        annotations.remove(carried::CONTEXT_ANNOTATION);
    }
    std::borrow::Cow::Owned(object)
}

/// Why an object is still there after a delete.
fn still_there(state: &TaskState, object: Option<&Value>, waited: Duration) -> String {
    let what = format!(
        "{} {}/{} is still there {}s after its delete",
        state.kind.kind,
        state.namespace,
        state.name,
        waited.as_secs()
    );
    let finalizers: Vec<&str> = object
        .and_then(|o| o["metadata"]["finalizers"].as_array())
        .map(|f| f.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    if finalizers.is_empty() {
        return format!("{what} (the cluster could not be read, or the delete did not land)");
    }
    let gc = finalizers
        .iter()
        .any(|f| matches!(*f, "orphan" | "foregroundDeletion"));
    let hint = if gc {
        "the garbage collector (kube-controller-manager) has not finished with it: is it running?"
    } else {
        "their controllers must remove them"
    };
    format!(
        "{what}: held by finalizers [{}]; {hint}",
        finalizers.join(", ")
    )
}

/// How deletes of `plugin`'s objects treat their dependents: the
/// platform's per-plugin setting, else what the plugin asks, else the
/// host's default.
pub fn plugin_propagation(tasks: &TasksConfig, plugin: &Plugin) -> Propagation {
    let asked = plugin
        .info()
        .properties
        .delete_propagation
        .map(|asked| match asked {
            wit::DeletePropagation::Background => Propagation::Background,
            wit::DeletePropagation::Foreground => Propagation::Foreground,
        });
    tasks.propagation(plugin.id(), asked)
}

pub fn plugin_kind(plugin: &Plugin) -> ResourceKind {
    let kind = &plugin.info().kind;
    ResourceKind {
        api_version: kind.api_version.clone(),
        kind: kind.kind.clone(),
        plural: kind.plural.clone(),
    }
}

/// A plugin that could not build the object: the user's task is wrong, or
/// the plugin failed. Both fail the task permanently; the message says which.
fn build_failure(err: PrepareError) -> PhaseEvent {
    let message = match &err {
        PrepareError::Plugin(call) if call.is_bad_task() => {
            format!("could not build resource for task: {call}")
        }
        other => other.to_string(),
    };
    let kind = if matches!(&err, PrepareError::Plugin(call) if !call.is_bad_task()) {
        ErrorKind::System
    } else {
        ErrorKind::User
    };
    PhaseEvent::failure(Phase::PermanentFailure, kind, err.code(), message)
}

fn plugin_failure(err: &CallError) -> PhaseEvent {
    if err.is_bad_task() {
        PhaseEvent::failure(
            Phase::PermanentFailure,
            ErrorKind::User,
            codes::BAD_TASK_SPECIFICATION,
            err.to_string(),
        )
    } else {
        PhaseEvent::failure(
            Phase::PermanentFailure,
            ErrorKind::System,
            codes::PLUGIN_FAILURE,
            err.to_string(),
        )
    }
}

/// Flyte's create-error table (§2.3); `None` means retry later.
fn classify_create_error(err: &ClusterError) -> Option<PhaseEvent> {
    let failure = |phase, code| {
        Some(PhaseEvent::failure(
            phase,
            ErrorKind::User,
            code,
            err.message.clone(),
        ))
    };
    match err.refusal()? {
        Refusal::Quota => Some(PhaseEvent::new(
            Phase::WaitingForResources,
            format!("Exceeded resourcequota: {}", err.message),
        )),
        Refusal::Forbidden => failure(Phase::RetryableFailure, codes::RUNTIME_FAILURE),
        Refusal::Invalid => failure(Phase::PermanentFailure, codes::BAD_TASK_FORMAT),
        Refusal::TooLarge => failure(Phase::PermanentFailure, codes::ENTITY_TOO_LARGE),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn error(code: u16, reason: &str, message: &str) -> ClusterError {
        ClusterError {
            code,
            reason: reason.into(),
            message: message.into(),
        }
    }

    #[test]
    fn a_quota_refusal_waits_for_resources() {
        let event = classify_create_error(&error(
            403,
            "Forbidden",
            "pods \"x\" is forbidden: exceeded quota: q",
        ))
        .unwrap();
        assert_eq!(event.phase, Phase::WaitingForResources);
        assert!(event.reason.starts_with("Exceeded resourcequota: "));
    }

    #[test]
    fn server_errors_are_retried_not_reported() {
        assert!(classify_create_error(&error(500, "InternalError", "boom")).is_none());
        assert!(classify_create_error(&error(0, "Unreachable", "connection refused")).is_none());
    }
}
