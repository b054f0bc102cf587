//! The task state machine as propeller's agent plugin drives it
//! (reference/flyte-facts.md §5.3): one CreateTask per attempt under a
//! short deadline, GetTask on a resync interval on any replica, DeleteTask
//! only on abort, never after success.
//!
//! - **Accept** answers within `tasks.create-answer-within-ms`, committed to
//!   the object's deterministic name. The launch carries on in the
//!   background: a full quota or an unreachable API is retried with
//!   back-off, reported as WAITING_FOR_RESOURCES / QUEUED, until the launch
//!   deadline. Objects of the node's earlier attempts still running are
//!   aborted first, so one attempt runs at a time.
//! - **Status** never fails the call for a transient problem: a plugin
//!   deadline or trap, a full pool or a cluster read error reports the last
//!   known phase, and only `max-consecutive-failures` in a row fail the
//!   task (retryable, system) and clean its object up.
//! - **Terminal answers are durable**: the first replica to see the end
//!   records it on the object (or, when the object must go, in a tombstone
//!   ConfigMap); every replica answers from that record until the janitor
//!   deletes both after `retention-seconds`.
//!
//! The only state kept in memory is per replica and optional: launches in
//! progress, the last phase seen and the failure count. A replica that
//! dies loses none of what another needs; a launch it had not landed yet
//! is seen as missing, and fails the attempt past the launch deadline.

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::sync::watch;

use super::carried;
use super::lifecycle::{
    Aborted, ErrorKind, Executor, ExecutorError, Phase, PhaseEvent, TaskError, TaskState, codes,
    plugin_kind,
};
use super::metadata::Execution;
use super::object::TaskRequest;
use crate::cluster::{MANAGED_LABEL, ResourceKind};
use crate::runtime::Plugin;

/// What a front-end keeps for an accepted task (propeller stores it in the
/// workflow's state): which plugin build, which object, and a failure
/// known before anything was created. Small, whatever the task.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TaskTicket {
    pub plugin_id: String,
    pub plugin_digest: String,
    pub namespace: String,
    pub name: String,
    pub execution: Execution,
    /// When CreateTask accepted it (unix seconds): the launch deadline
    /// counts from here.
    pub accepted_at: i64,
    /// Set when the task failed before any object was made.
    pub failure: Option<LaunchFailure>,
    /// The task itself, when an older `resource_meta` carried it (objects
    /// made before the task travelled with the object).
    #[serde(skip)]
    pub task: Option<TaskRequest>,
}

/// A failure known at CreateTask time.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LaunchFailure {
    pub phase: Phase,
    pub error: TaskError,
}

impl TaskTicket {
    fn state(&self, kind: ResourceKind, last: Option<&PhaseEvent>) -> TaskState {
        let (phase, version, reason) = last.map_or((Phase::Queued, 0, String::new()), |e| {
            (e.phase, e.version, e.reason.clone())
        });
        TaskState {
            plugin_id: self.plugin_id.clone(),
            plugin_digest: self.plugin_digest.clone(),
            kind,
            namespace: self.namespace.clone(),
            name: self.name.clone(),
            phase,
            version,
            reason,
        }
    }

    fn key(&self) -> (String, String) {
        (self.namespace.clone(), self.name.clone())
    }

    /// What GetTask reports for a task that failed at CreateTask.
    pub fn failure_event(&self) -> Option<PhaseEvent> {
        self.failure.as_ref().map(|failure| {
            let mut event = PhaseEvent::new(failure.phase, failure.error.message.clone());
            event.error = Some(failure.error.clone());
            event
        })
    }

    /// The object's namespace and name.
    pub fn object(&self) -> (&str, &str) {
        (&self.namespace, &self.name)
    }
}

/// Where a background launch stands.
#[derive(Debug, Clone)]
enum Launch {
    /// Still trying: Queued, or WaitingForResources with the quota's reason.
    Pending(PhaseEvent),
    Created,
    /// Ended without an object (or aborted before it landed).
    Failed(PhaseEvent),
}

/// What this replica remembers of a task; losing it loses nothing.
struct Local {
    last: Option<PhaseEvent>,
    failures: u32,
    launch: Option<watch::Receiver<Launch>>,
    /// This replica saw the object exist (so NotFound means deleted).
    seen_object: bool,
    /// The writes after its end are under way.
    ending: bool,
    touched: Instant,
}

impl Local {
    fn new() -> Self {
        Local {
            last: None,
            failures: 0,
            launch: None,
            seen_object: false,
            ending: false,
            touched: Instant::now(),
        }
    }
}

/// Back-off between launch tries.
const LAUNCH_RETRY_MIN: Duration = Duration::from_millis(200);
const LAUNCH_RETRY_MAX: Duration = Duration::from_secs(10);
/// Forget a task this replica has not been asked about for this long.
const FORGET_AFTER: Duration = Duration::from_secs(15 * 60);

/// When the writes that follow a task's end (recording it, cleaning up)
/// happen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EndWrites {
    /// After the answer: GetTask stays within propeller's deadline however
    /// slow the API is. The answer does not depend on them (every replica
    /// derives the same end from the object until it is recorded).
    Background,
    /// Before the answer: a one-off `run` must not exit with them pending.
    Inline,
}

/// The agent path's tasks on one cluster.
pub struct Tasks {
    executor: Executor,
    local: Mutex<HashMap<(String, String), Local>>,
    end_writes: EndWrites,
}

impl Tasks {
    pub fn new(executor: Executor) -> Arc<Self> {
        Self::with_end_writes(executor, EndWrites::Background)
    }

    pub fn with_end_writes(executor: Executor, end_writes: EndWrites) -> Arc<Self> {
        Arc::new(Tasks {
            executor,
            local: Mutex::new(HashMap::new()),
            end_writes,
        })
    }

    pub fn executor(&self) -> &Executor {
        &self.executor
    }

    /// Tasks this replica is keeping something about.
    pub fn tracked(&self) -> usize {
        self.local.lock().unwrap().len()
    }

    /// Accept a task: start its launch and answer within the configured
    /// bound with the ticket to keep. A failure known by then (the plugin
    /// refused the task, the namespace is not allowed) is in the ticket.
    pub async fn accept(self: &Arc<Self>, plugin: &Plugin, request: TaskRequest) -> TaskTicket {
        let mut ticket = TaskTicket {
            plugin_id: plugin.id().into(),
            plugin_digest: plugin.digest().into(),
            namespace: request.namespace.clone(),
            name: request.object_name(plugin),
            execution: request.execution.clone(),
            accepted_at: chrono::Utc::now().timestamp(),
            failure: None,
            task: None,
        };
        let (tx, mut rx) =
            watch::channel(Launch::Pending(PhaseEvent::new(Phase::Queued, "launching")));
        let answered = Arc::new(AtomicBool::new(false));
        self.with_local(&ticket, |local| local.launch = Some(rx.clone()));
        tokio::spawn(self.clone().launch(
            plugin.clone(),
            request,
            ticket.clone(),
            tx,
            answered.clone(),
        ));
        let bound = Duration::from_millis(self.executor.config().tasks.create_answer_within_ms);
        let settled = |launch: &Launch| !matches!(launch, Launch::Pending(_));
        if tokio::time::timeout(bound, rx.wait_for(settled))
            .await
            .is_err()
        {
            // From here on, a failure must be kept where any replica finds it.
            answered.store(true, Ordering::SeqCst);
        }
        if let Launch::Failed(event) = &*rx.borrow() {
            ticket.failure = event.error.clone().map(|error| LaunchFailure {
                phase: event.phase,
                error,
            });
        }
        ticket
    }

    /// Launch in the background until the object is created, the task
    /// fails, or the launch deadline passes.
    async fn launch(
        self: Arc<Self>,
        plugin: Plugin,
        request: TaskRequest,
        ticket: TaskTicket,
        tx: watch::Sender<Launch>,
        answered: Arc<AtomicBool>,
    ) {
        let config = &self.executor.config().tasks;
        let deadline = Instant::now() + Duration::from_secs(config.launch_deadline_seconds);
        let kind = plugin_kind(&plugin);
        if request.execution.retry_attempt > 0 {
            self.abort_earlier_attempts(&plugin, &kind, &request).await;
        }
        let mut delay = LAUNCH_RETRY_MIN;
        let mut last_reason;
        let outcome = loop {
            // A DeleteTask that came while this launch was retrying leaves a
            // tombstone: then nothing must be created.
            if answered.load(Ordering::SeqCst)
                && let Ok(Some(event)) = self.tombstone(ticket.object(), &kind).await
            {
                break Launch::Failed(event);
            }
            match self.executor.launch(&plugin, &request).await {
                Ok((state, event)) => match event.phase {
                    Phase::Queued => {
                        if answered.load(Ordering::SeqCst) {
                            // Landed after CreateTask answered: an abort or a
                            // later attempt (both leave a tombstone) may have
                            // come meanwhile.
                            if let Ok(Some(aborted)) = self.tombstone(ticket.object(), &kind).await
                            {
                                self.abort_state(&plugin, &request, &state).await;
                                break Launch::Failed(aborted);
                            }
                        }
                        break Launch::Created;
                    }
                    Phase::WaitingForResources => {
                        last_reason = event.reason.clone();
                        tx.send_replace(Launch::Pending(event));
                    }
                    _ => break Launch::Failed(event),
                },
                Err(err) if err.is_transient() => {
                    last_reason = err.to_string();
                    tx.send_replace(Launch::Pending(PhaseEvent::new(
                        Phase::Queued,
                        format!("waiting to create the object: {err}"),
                    )));
                }
                Err(err) => {
                    break Launch::Failed(PhaseEvent::failure(
                        Phase::PermanentFailure,
                        ErrorKind::System,
                        codes::PLUGIN_FAILURE,
                        err.to_string(),
                    ));
                }
            }
            if Instant::now() + delay > deadline {
                break Launch::Failed(PhaseEvent::failure(
                    Phase::RetryableFailure,
                    ErrorKind::System,
                    codes::LAUNCH_DEADLINE_EXCEEDED,
                    format!(
                        "could not create {}/{} within {}s: {last_reason}",
                        ticket.namespace, ticket.name, config.launch_deadline_seconds
                    ),
                ));
            }
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(LAUNCH_RETRY_MAX);
        };
        tx.send_replace(outcome.clone());
        if let Launch::Failed(event) = &outcome {
            tracing::warn!(plugin = plugin.id(), task = %ticket.name, "launch failed: {}", event.reason);
            if answered.load(Ordering::SeqCst) {
                self.keep_tombstone(ticket.object(), &kind, event).await;
            }
        }
        self.with_local(&ticket, |local| {
            local.launch = None;
            if let Launch::Failed(event) = outcome {
                local.last = Some(event);
            }
        });
    }

    /// Abort, the plugin's way, the node's objects from earlier attempts
    /// that are still running: propeller has given up on them. The attempt
    /// just before may still be launching somewhere (its CreateTask answer
    /// was lost): a tombstone makes it stand down when it lands.
    async fn abort_earlier_attempts(
        &self,
        plugin: &Plugin,
        kind: &ResourceKind,
        request: &TaskRequest,
    ) {
        let selector = format!("{}={}", carried::NODE_LABEL, request.execution.node_label());
        let objects = match self
            .executor
            .cluster()
            .list(kind, Some(&request.namespace), &selector)
            .await
        {
            Ok(objects) => objects,
            Err(err) => {
                tracing::warn!(task = %request.execution.key(), "could not look for earlier attempts: {err}");
                return;
            }
        };
        let current = request.execution.retry_attempt;
        let mut previous_found = false;
        for object in objects {
            let attempt = carried::attempt_of(&object);
            previous_found |= attempt == Some(current - 1);
            let earlier = attempt.is_some_and(|a| a < current);
            let live =
                object["metadata"]["deletionTimestamp"].is_null() && !carried::is_finished(&object);
            if earlier && live {
                self.abort_object(plugin, kind, &object, "a later attempt of its node started")
                    .await;
            }
        }
        if !previous_found {
            let mut previous = request.clone();
            previous.execution.retry_attempt = current - 1;
            let superseded = PhaseEvent::failure(
                Phase::PermanentFailure,
                ErrorKind::System,
                codes::ABORTED,
                format!("attempt {current} of the node started"),
            );
            let name = previous.object_name(plugin);
            self.keep_tombstone((&request.namespace, &name), kind, &superseded)
                .await;
        }
    }

    /// Abort one object found in the cluster, with the task it carries.
    async fn abort_object(&self, plugin: &Plugin, kind: &ResourceKind, object: &Value, why: &str) {
        let name = object["metadata"]["name"].as_str().unwrap_or_default();
        let task = match carried::task_of(object) {
            Ok(task) => task,
            Err(err) => {
                tracing::warn!(
                    task = name,
                    "cannot abort it the plugin's way ({err}); deleting it"
                );
                TaskRequest::default()
            }
        };
        let state = TaskState {
            plugin_id: plugin.id().into(),
            plugin_digest: plugin.digest().into(),
            kind: kind.clone(),
            namespace: object["metadata"]["namespace"]
                .as_str()
                .unwrap_or_default()
                .into(),
            name: name.into(),
            phase: Phase::Running,
            version: 0,
            reason: String::new(),
        };
        tracing::info!(task = name, "aborting: {why}");
        self.abort_state(plugin, &task, &state).await;
    }

    /// Abort and release an object, the plugin's way; failures are logged.
    async fn abort_state(&self, plugin: &Plugin, task: &TaskRequest, state: &TaskState) {
        let result = match self.executor.abort(plugin, task, state).await {
            Ok(_) => self.executor.finalize(plugin, state).await,
            Err(err) => Err(err),
        };
        if let Err(err) = result {
            tracing::warn!(task = %state.name, "could not abort it: {err}");
        }
    }

    /// The task's phase now. Answers from the durable record when the task
    /// has ended; a transient problem reports the last known phase.
    pub async fn status(self: &Arc<Self>, plugin: &Plugin, ticket: &TaskTicket) -> PhaseEvent {
        if let Some(event) = ticket.failure_event() {
            return event;
        }
        let kind = plugin_kind(plugin);
        match self.look(plugin, &kind, ticket).await {
            Ok(event) => {
                self.with_local(ticket, |local| {
                    local.failures = 0;
                    local.last = Some(event.clone());
                });
                event
            }
            Err(err) => self.transient_failure(plugin, &kind, ticket, err).await,
        }
    }

    async fn look(
        self: &Arc<Self>,
        plugin: &Plugin,
        kind: &ResourceKind,
        ticket: &TaskTicket,
    ) -> Result<PhaseEvent, ExecutorError> {
        let cluster_error = |source| ExecutorError::Cluster {
            action: "reading",
            name: ticket.name.clone(),
            source,
        };
        let object = self
            .executor
            .cluster()
            .get(kind, &ticket.namespace, &ticket.name)
            .await
            .map_err(cluster_error)?;
        let Some(object) = object else {
            return self.missing(kind, ticket).await;
        };
        self.with_local(ticket, |local| local.seen_object = true);
        if let Some(event) = carried::outcome_of(&object) {
            return Ok(event);
        }
        if let Some(owner) = carried::owner_of(&object)
            && owner != ticket.execution.key()
        {
            return Ok(PhaseEvent::failure(
                Phase::PermanentFailure,
                ErrorKind::System,
                codes::OBJECT_NAME_COLLISION,
                format!(
                    "{} {}/{} belongs to {owner}, not to this task ({})",
                    kind.kind,
                    ticket.namespace,
                    ticket.name,
                    ticket.execution.key()
                ),
            ));
        }
        let task = match &ticket.task {
            Some(task) => task.clone(),
            None => match carried::task_of(&object) {
                Ok(task) => task,
                Err(err) => {
                    return Ok(PhaseEvent::failure(
                        Phase::PermanentFailure,
                        ErrorKind::System,
                        codes::TASK_CONTEXT_MISSING,
                        format!("{}/{}: {err}", ticket.namespace, ticket.name),
                    ));
                }
            },
        };
        let last = self.last(ticket);
        let state = ticket.state(kind.clone(), last.as_ref());
        let event = self
            .executor
            .phase_of(plugin, &task, &state, &object)
            .await?;
        if event.code() == Some(codes::PLUGIN_FAILURE) {
            // The plugin failed on its own (a trap, a deadline, a bad
            // answer): a look that went wrong, not the task's end.
            return Err(ExecutorError::Plugin(crate::runtime::CallError::Trap {
                plugin: plugin.id().into(),
                call: "get-task-phase",
                message: event.reason,
            }));
        }
        if event.phase.is_terminal() && !carried::is_finished(&object) {
            let deleting = !object["metadata"]["deletionTimestamp"].is_null();
            let (this, plugin, event_) = (self.clone(), plugin.clone(), event.clone());
            let writes = async move { this.end(&plugin, &task, &state, &event_, deleting).await };
            self.after_end(ticket, writes).await;
        }
        Ok(event)
    }

    /// Run the writes that follow a task's end, now or in the background
    /// ([`EndWrites`]), once per task at a time; a failure is logged and
    /// the next look tries again.
    async fn after_end(
        self: &Arc<Self>,
        ticket: &TaskTicket,
        writes: impl Future<Output = Result<(), ExecutorError>> + Send + 'static,
    ) {
        if self.with_local(ticket, |local| std::mem::replace(&mut local.ending, true)) {
            return; // already under way
        }
        let (this, ticket) = (self.clone(), ticket.clone());
        let done = async move {
            if let Err(err) = writes.await {
                tracing::warn!(task = %ticket.name, "after the task's end: {err}");
            }
            this.with_local(&ticket, |local| local.ending = false);
        };
        match self.end_writes {
            EndWrites::Inline => done.await,
            EndWrites::Background => {
                tokio::spawn(done);
            }
        }
    }

    /// The object is not there: not launched yet, launched and gone, or
    /// never to be launched.
    async fn missing(
        &self,
        kind: &ResourceKind,
        ticket: &TaskTicket,
    ) -> Result<PhaseEvent, ExecutorError> {
        let (launching, seen) = {
            let local = self.local.lock().unwrap();
            let local = local.get(&ticket.key());
            (
                local.and_then(|l| l.launch.as_ref().map(|rx| rx.borrow().clone())),
                local.is_some_and(|l| l.seen_object),
            )
        };
        match launching {
            Some(Launch::Pending(event)) | Some(Launch::Failed(event)) => return Ok(event),
            // Created, but the read came first: it is there.
            Some(Launch::Created) => {
                return Ok(PhaseEvent::new(Phase::Queued, "task submitted to K8s"));
            }
            None => {}
        }
        if let Some(event) = self.tombstone(ticket.object(), kind).await? {
            return Ok(event);
        }
        let deadline =
            ticket.accepted_at + self.executor.config().tasks.launch_deadline_seconds as i64;
        let gone = PhaseEvent::failure(
            Phase::RetryableFailure,
            ErrorKind::System,
            codes::RESOURCE_DELETED_EXTERNALLY,
            format!(
                "resource not found, name [{}/{}]. reason: the object is gone from the cluster",
                ticket.namespace, ticket.name
            ),
        );
        Ok(if seen {
            gone
        } else if chrono::Utc::now().timestamp() <= deadline {
            // Another replica is launching it (or did, and this read was first).
            PhaseEvent::new(Phase::Queued, "waiting for the launch to complete")
        } else {
            PhaseEvent {
                reason: format!(
                    "{}/{} was not created within the launch deadline, or was deleted",
                    ticket.namespace, ticket.name
                ),
                ..gone
            }
        })
    }

    /// The task has ended: clean up when the plugin asks to (keeping the
    /// answer in a tombstone), else record the end on the object — and in a
    /// tombstone too when the object is being deleted (it takes the record
    /// with it).
    async fn end(
        &self,
        plugin: &Plugin,
        task: &TaskRequest,
        state: &TaskState,
        event: &PhaseEvent,
        deleting: bool,
    ) -> Result<(), ExecutorError> {
        let cleanup = event.phase.is_failure() && event.cleanup_on_failure;
        if deleting || cleanup {
            self.keep_tombstone((&state.namespace, &state.name), &state.kind, event)
                .await;
        }
        if cleanup {
            self.executor.abort(plugin, task, state).await?;
            return self.executor.finalize(plugin, state).await;
        }
        self.executor.finish(state, event).await
    }

    /// A look failed for a reason that may pass: report the last known
    /// phase, unless it has failed too often in a row.
    async fn transient_failure(
        self: &Arc<Self>,
        plugin: &Plugin,
        kind: &ResourceKind,
        ticket: &TaskTicket,
        err: ExecutorError,
    ) -> PhaseEvent {
        let limit = self.executor.config().tasks.max_consecutive_failures;
        let (failures, last) = self.with_local(ticket, |local| {
            local.failures += 1;
            (local.failures, local.last.clone())
        });
        tracing::warn!(plugin = plugin.id(), task = %ticket.name, failures, "could not look at the task: {err}");
        if failures < limit {
            return last.unwrap_or_else(|| PhaseEvent::new(Phase::Queued, "task submitted to K8s"));
        }
        let event = PhaseEvent::failure(
            Phase::RetryableFailure,
            ErrorKind::System,
            codes::SYSTEM_FAILURE,
            format!("{failures} looks at the task failed in a row; the last: {err}"),
        );
        self.with_local(ticket, |local| local.last = Some(event.clone()));
        let state = ticket.state(kind.clone(), last.as_ref());
        let (this, plugin, ticket_, event_) =
            (self.clone(), plugin.clone(), ticket.clone(), event.clone());
        let cleanup = async move {
            this.keep_tombstone(ticket_.object(), &state.kind, &event_)
                .await;
            let task = match &ticket_.task {
                Some(task) => Some(task.clone()),
                None => this.carried_task(&state.kind, &ticket_).await,
            };
            this.executor
                .abort(&plugin, &task.unwrap_or_default(), &state)
                .await?;
            this.executor.finalize(&plugin, &state).await
        };
        self.after_end(ticket, cleanup).await;
        event
    }

    async fn carried_task(&self, kind: &ResourceKind, ticket: &TaskTicket) -> Option<TaskRequest> {
        let object = self
            .executor
            .cluster()
            .get_from_api(kind, &ticket.namespace, &ticket.name)
            .await
            .ok()??;
        carried::task_of(&object).ok()
    }

    /// Abort: delete the object (or patch it, as the plugin says), and
    /// leave a tombstone so a launch still in progress anywhere stands
    /// down and every replica answers ABORTED-as-failed the same way.
    pub async fn cancel(
        &self,
        plugin: &Plugin,
        ticket: &TaskTicket,
    ) -> Result<Aborted, ExecutorError> {
        if ticket.failure.is_some() {
            return Ok(Aborted::Deleted); // nothing was created
        }
        let kind = plugin_kind(plugin);
        let aborted = PhaseEvent::failure(
            Phase::PermanentFailure,
            ErrorKind::User,
            codes::ABORTED,
            "the task was aborted",
        );
        let object = self
            .executor
            .cluster()
            .get_from_api(&kind, &ticket.namespace, &ticket.name)
            .await
            .map_err(|source| ExecutorError::Cluster {
                action: "reading",
                name: ticket.name.clone(),
                source,
            })?;
        // Kept whether or not the object is there yet: a launch still in
        // progress anywhere stands down, and GetTask reads the abort.
        self.write_tombstone(ticket.object(), &kind, &aborted)
            .await?;
        let task = match (&ticket.task, &object) {
            (Some(task), _) => task.clone(),
            (None, Some(object)) => carried::task_of(object).unwrap_or_default(),
            (None, None) => TaskRequest::default(),
        };
        let state = ticket.state(kind, None);
        let done = self.executor.abort(plugin, &task, &state).await?;
        self.executor.finalize(plugin, &state).await?;
        self.with_local(ticket, |local| local.last = Some(aborted.clone()));
        Ok(done)
    }

    /// The change feed and the state to wait on for a ticket's object
    /// (what a front-end that follows one task, like `run`, waits on).
    pub fn follow(
        &self,
        plugin: &Plugin,
        ticket: &TaskTicket,
    ) -> (TaskState, tokio::sync::broadcast::Receiver<String>) {
        let state = ticket.state(plugin_kind(plugin), None);
        let changes = self.executor.changes(&state);
        (state, changes)
    }

    /// The outcome kept for the object `name` of `kind` without the object.
    async fn tombstone(
        &self,
        (namespace, name): (&str, &str),
        kind: &ResourceKind,
    ) -> Result<Option<PhaseEvent>, ExecutorError> {
        let found = self
            .executor
            .cluster()
            .get_from_api(
                &config_maps(),
                namespace,
                &carried::tombstone_name(name, &kind.plural),
            )
            .await
            .map_err(|source| ExecutorError::Cluster {
                action: "reading the outcome of",
                name: name.into(),
                source,
            })?;
        Ok(found.as_ref().and_then(carried::tombstone_outcome))
    }

    /// Keep `event` as the outcome of `name`; the first kept stays.
    async fn write_tombstone(
        &self,
        (namespace, name): (&str, &str),
        kind: &ResourceKind,
        event: &PhaseEvent,
    ) -> Result<(), ExecutorError> {
        let tombstone = carried::tombstone(namespace, name, &kind.plural, event);
        self.executor
            .cluster()
            .create(&config_maps(), namespace, &tombstone)
            .await
            .map(|_| ())
            .map_err(|source| ExecutorError::Cluster {
                action: "keeping the outcome of",
                name: name.into(),
                source,
            })
    }

    /// Best effort: without it, replicas still agree once the launch
    /// deadline has passed.
    async fn keep_tombstone(&self, object: (&str, &str), kind: &ResourceKind, event: &PhaseEvent) {
        if let Err(err) = self.write_tombstone(object, kind, event).await {
            tracing::warn!(task = object.1, "could not keep the task's outcome: {err}");
        }
    }

    fn last(&self, ticket: &TaskTicket) -> Option<PhaseEvent> {
        self.local
            .lock()
            .unwrap()
            .get(&ticket.key())
            .and_then(|l| l.last.clone())
    }

    fn with_local<R>(&self, ticket: &TaskTicket, change: impl FnOnce(&mut Local) -> R) -> R {
        let mut local = self.local.lock().unwrap();
        let entry = local.entry(ticket.key()).or_insert_with(Local::new);
        entry.touched = Instant::now();
        change(entry)
    }

    /// Delete what has been kept long enough, every `janitor-interval`:
    /// finished objects of the plugins' kinds and tombstones, all carrying
    /// our labels. Also stops idle watches and forgets idle tasks. Several
    /// replicas may do it at once: deletes of what is gone are fine.
    pub async fn janitor(self: Arc<Self>, plugins: impl Fn() -> Vec<Plugin>) {
        let config = self.executor.config().tasks.clone();
        let mut tick =
            tokio::time::interval(Duration::from_secs(config.janitor_interval_seconds.max(1)));
        loop {
            tick.tick().await;
            self.sweep(&plugins()).await;
            self.executor
                .cluster()
                .stop_idle_watches(Duration::from_secs(config.watch_idle_seconds));
            self.local.lock().unwrap().retain(|_, local| {
                local.launch.is_some() || local.touched.elapsed() < FORGET_AFTER
            });
        }
    }

    /// Finished objects of `kind`, in every namespace; where the host may
    /// not list cluster-wide (namespaced RBAC), in the namespaces it knows:
    /// those it watches and those its policy names.
    async fn finished(&self, kind: &ResourceKind, selector: &str) -> Vec<Value> {
        let cluster = self.executor.cluster();
        let err = match cluster.list(kind, None, selector).await {
            Ok(objects) => return objects,
            Err(err) => err,
        };
        if err.code != 403 {
            tracing::warn!(kind = %kind.kind, "janitor: cannot list finished objects: {err}");
            return Vec::new();
        }
        let mut namespaces = cluster.watched_namespaces();
        let named = self.executor.config().security.namespaces.iter().flatten();
        namespaces.extend(named.filter(|ns| !ns.contains('{')).cloned());
        namespaces.sort();
        namespaces.dedup();
        let mut objects = Vec::new();
        for namespace in namespaces {
            match cluster.list(kind, Some(&namespace), selector).await {
                Ok(found) => objects.extend(found),
                Err(err) => {
                    tracing::warn!(kind = %kind.kind, %namespace, "janitor: cannot list finished objects: {err}")
                }
            }
        }
        objects
    }

    /// One janitor round; returns how many objects it deleted.
    pub async fn sweep(&self, plugins: &[Plugin]) -> usize {
        let config = &self.executor.config().tasks;
        if config.keep_finished {
            return 0;
        }
        let retention = chrono::Duration::seconds(config.retention_seconds as i64);
        let selector = format!(
            "{}={},{}",
            MANAGED_LABEL.0,
            MANAGED_LABEL.1,
            carried::FINISHED_LABEL
        );
        let mut kinds: Vec<(Option<&Plugin>, ResourceKind)> = plugins
            .iter()
            .filter(|p| !p.info().properties.disable_delete_resource_on_finalize)
            .map(|p| (Some(p), plugin_kind(p)))
            .collect();
        kinds.dedup_by(|a, b| a.1 == b.1);
        kinds.push((None, config_maps()));
        let cluster = self.executor.cluster();
        let mut deleted = 0;
        for (plugin, kind) in kinds {
            let objects = self.finished(&kind, &selector).await;
            for object in objects {
                let expired = carried::finished_at(&object)
                    .is_some_and(|at| chrono::Utc::now() - at >= retention);
                if !expired {
                    continue;
                }
                let namespace = object["metadata"]["namespace"].as_str().unwrap_or_default();
                let name = object["metadata"]["name"].as_str().unwrap_or_default();
                let propagation =
                    plugin.map_or(config.delete_propagation, |p| config.propagation(p.id()));
                match cluster.delete(&kind, namespace, name, propagation).await {
                    Ok(()) => deleted += 1,
                    Err(err) => tracing::warn!(%namespace, %name, "janitor: cannot delete: {err}"),
                }
            }
        }
        if deleted > 0 {
            tracing::info!(deleted, "janitor: deleted finished objects past retention");
        }
        deleted
    }
}

fn config_maps() -> ResourceKind {
    ResourceKind {
        api_version: "v1".into(),
        kind: "ConfigMap".into(),
        plural: "configmaps".into(),
    }
}
