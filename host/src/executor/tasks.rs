//! The task state machine as propeller's agent plugin drives it
//! (reference/flyte-facts.md §5.3): one CreateTask per attempt under a
//! short deadline, GetTask on a resync interval on any replica, DeleteTask
//! only on abort, never after success.
//!
//! - **Accept** answers within `tasks.create-answer-within-ms`, committed to
//!   the object's deterministic name. The launch carries on in the
//!   background: a full quota or an unreachable API is retried with
//!   back-off, reported as WAITING_FOR_RESOURCES / QUEUED, until the launch
//!   deadline. A launch still going when the answer is given is recorded
//!   ([`Records`]), so whichever replica GetTask reaches carries it on.
//!   Objects of the node's earlier attempts still running are aborted
//!   first, so one attempt runs at a time.
//! - **Status** never fails the call for a transient problem: a plugin
//!   deadline or trap, a full pool or a cluster read error reports the last
//!   known phase, and only `max-consecutive-failures` in a row fail the
//!   task (retryable, system) and clean its object up.
//! - **Terminal answers are durable**: the first replica to see the end
//!   records it on the object (or, when the object must go, as an outcome
//!   record); every replica answers from that record until the janitor
//!   ([`super::janitor`]) deletes both after `retention-seconds`.
//!
//! What is kept in memory is per replica and optional: launches this
//! replica runs, the last phase seen, the failure count.

use std::collections::{BTreeSet, HashMap};
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use backon::{ExponentialBuilder, Retryable};
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
use super::records::{Records, TaskObject};
use crate::cluster::{ClusterError, ResourceKind};
use crate::config::GET_TASK_WITHIN;
use crate::metrics::Metrics;
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
    /// The object existed when CreateTask answered: a replica that finds
    /// it missing knows it was deleted, not still to be created.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub launched: bool,
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

    fn object<'a>(&'a self, kind: &'a ResourceKind) -> TaskObject<'a> {
        TaskObject {
            namespace: &self.namespace,
            plural: &kind.plural,
            name: &self.name,
        }
    }

    fn past_launch_deadline(&self, deadline_seconds: u64) -> bool {
        self.accepted_for_over(deadline_seconds)
    }

    fn accepted_for_over(&self, seconds: u64) -> bool {
        chrono::Utc::now().timestamp() > self.accepted_at + seconds as i64
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
    /// Removing the object's unconfirmed label is under way.
    confirming: bool,
    /// A look whose answer was `last` again: another would compute the same.
    settled: Option<Settled>,
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
            confirming: false,
            settled: None,
            touched: Instant::now(),
        }
    }
}

/// A look at a running task whose answer was the previous one again, and
/// what it was made from. Another look at that object version, by that
/// plugin, for that execution, would compute the same, so it is skipped
/// until `until`: plugins see the time only in the task context's `now`,
/// which Flyte's rules read for timeouts before a task runs (pending pods,
/// operators that never start a job), never while it runs; `until` bounds
/// the rest, and brings a look when the launch's confirmation is due.
struct Settled {
    event: PhaseEvent,
    execution: String,
    version: String,
    digest: String,
    until: chrono::DateTime<chrono::Utc>,
}

/// How long a settled answer is given again without a look.
const SETTLED_FOR: chrono::Duration = chrono::Duration::minutes(5);
/// Confirm a launch once its object is this old (or half
/// `tasks.unconfirmed-abort-seconds`, when that is sooner): a task that
/// ends sooner never costs the write.
const CONFIRM_AFTER: chrono::Duration = chrono::Duration::seconds(60);

/// Back-off between launch tries.
const LAUNCH_RETRY_MIN: Duration = Duration::from_millis(200);
const LAUNCH_RETRY_MAX: Duration = Duration::from_secs(10);
/// A launch still going when CreateTask answered records itself as the
/// answer is given; past this, a replica that finds neither the object nor
/// a launch record takes the object as created and gone (the launch drops
/// its record only once the object exists, and keeps an outcome if it
/// fails). Within it, the record may still be on its way.
const LAUNCH_RECORD_GRACE_SECONDS: u64 = 60;
/// What GetTask reads of the host's records, in errors.
const RECORDS: &str = "reading the records of";
/// Forget a task this replica has not been asked about for this long.
const FORGET_AFTER: Duration = Duration::from_secs(15 * 60);
/// How long the writes after a task's end are tried again: in the
/// background, as long as this replica remembers the task; inline (`run`),
/// no longer than a user waits for an exit.
const END_WRITES_WITHIN: Duration = FORGET_AFTER;
const END_WRITES_INLINE_WITHIN: Duration = Duration::from_secs(60);

/// The time one GetTask's cluster reads have, together.
#[derive(Debug, Clone, Copy)]
struct Reads {
    started: Instant,
    by: Instant,
    within: Duration,
}

impl Reads {
    fn new(within: Duration) -> Self {
        let started = Instant::now();
        Reads {
            started,
            by: started + within,
            within,
        }
    }

    /// How long the plugin's call may wait for a slot, so that GetTask
    /// answers within [`GET_TASK_WITHIN`] even when the call takes all of
    /// `call_timeout`.
    fn slot_within(&self, call_timeout: Duration) -> Duration {
        (self.started + GET_TASK_WITHIN).saturating_duration_since(Instant::now() + call_timeout)
    }

    async fn read<T>(
        self,
        action: &'static str,
        name: &str,
        read: impl Future<Output = Result<T, ClusterError>>,
    ) -> Result<T, ExecutorError> {
        let read = tokio::time::timeout_at(self.by.into(), read).await;
        read.unwrap_or_else(|_| Err(ClusterError::no_answer(self.within)))
            .map_err(ExecutorError::cluster(action, name))
    }
}

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
    records: Records,
    local: Mutex<HashMap<(String, String), Local>>,
    /// Namespaces tasks were seen in (for a janitor that may not list
    /// cluster-wide).
    namespaces: Mutex<BTreeSet<String>>,
    end_writes: EndWrites,
    /// Background confirmations in flight at once: a resync's first looks
    /// at thousands of tasks would otherwise each open an API connection,
    /// which the client keeps idle, with its buffers, long after.
    confirmations: Arc<tokio::sync::Semaphore>,
    /// Where plugin faults are counted, when a server reports them.
    metrics: std::sync::OnceLock<Arc<Metrics>>,
}

/// See [`Tasks::confirmations`].
const CONFIRMATIONS_AT_ONCE: usize = 16;

impl Tasks {
    pub fn new(executor: Executor) -> Arc<Self> {
        Self::with_end_writes(executor, EndWrites::Background)
    }

    pub fn with_end_writes(executor: Executor, end_writes: EndWrites) -> Arc<Self> {
        let namespace = executor.host_namespace();
        Arc::new(Tasks {
            executor,
            records: Records::new(namespace),
            local: Mutex::new(HashMap::new()),
            namespaces: Mutex::new(BTreeSet::new()),
            end_writes,
            confirmations: Arc::new(tokio::sync::Semaphore::new(CONFIRMATIONS_AT_ONCE)),
            metrics: std::sync::OnceLock::new(),
        })
    }

    /// Count plugin faults (traps, deadlines, bad answers) in `metrics`.
    pub fn report_to(&self, metrics: Arc<Metrics>) {
        let _ = self.metrics.set(metrics);
    }

    /// A plugin call failed on the plugin's side.
    fn plugin_fault(&self, plugin: &Plugin) {
        if let Some(metrics) = self.metrics.get() {
            metrics.plugin_error(plugin.id());
        }
    }

    pub fn executor(&self) -> &Executor {
        &self.executor
    }

    pub fn records(&self) -> &Records {
        &self.records
    }

    /// Tasks this replica is keeping something about.
    pub fn tracked(&self) -> usize {
        self.local.lock().unwrap().len()
    }

    /// Whether the last look at the task failed (it will be tried again).
    pub fn failing(&self, ticket: &TaskTicket) -> bool {
        self.local
            .lock()
            .unwrap()
            .get(&ticket.key())
            .is_some_and(|l| l.failures > 0)
    }

    fn seen_namespace(&self, namespace: &str) {
        let mut namespaces = self.namespaces.lock().unwrap();
        if !namespaces.contains(namespace) {
            namespaces.insert(namespace.to_owned());
        }
    }

    /// Namespaces tasks were seen in.
    pub fn namespaces(&self) -> Vec<String> {
        self.namespaces.lock().unwrap().iter().cloned().collect()
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
            launched: false,
            task: None,
        };
        let bound = Duration::from_millis(self.executor.config().tasks.create_answer_within_ms);
        let answer_by = Instant::now() + bound;
        let Some(mut rx) = self.start_launch(plugin, request, &ticket, answer_by) else {
            return ticket; // a launch of this task is already running here
        };
        let settled = |launch: &Launch| !matches!(launch, Launch::Pending(_));
        let _ = tokio::time::timeout_at(answer_by.into(), rx.wait_for(settled)).await;
        match &*rx.borrow() {
            Launch::Failed(event) => {
                ticket.failure = event.error.clone().map(|error| LaunchFailure {
                    phase: event.phase,
                    error,
                });
            }
            Launch::Created => ticket.launched = true,
            Launch::Pending(_) => {}
        }
        ticket
    }

    /// Start launching in the background, unless this replica already is.
    /// `answer_by`: when the caller has its answer; a launch that settles
    /// later keeps what it learns where every replica looks.
    fn start_launch(
        self: &Arc<Self>,
        plugin: &Plugin,
        request: TaskRequest,
        ticket: &TaskTicket,
        answer_by: Instant,
    ) -> Option<watch::Receiver<Launch>> {
        let pending = PhaseEvent::new(Phase::Queued, "launching");
        let (tx, rx) = watch::channel(Launch::Pending(pending));
        let started = self.with_local(ticket, |local| {
            if local.launch.is_some() {
                return false;
            }
            local.launch = Some(rx.clone());
            true
        });
        if !started {
            return None;
        }
        self.seen_namespace(&ticket.namespace);
        let (this, plugin, ticket) = (self.clone(), plugin.clone(), ticket.clone());
        let launch =
            tokio::spawn(
                self.clone()
                    .launch(plugin, request, ticket.clone(), tx, answer_by),
            );
        // A launch that panicked must not look pending forever.
        tokio::spawn(async move {
            if let Err(err) = launch.await {
                let failed = PhaseEvent::failure(
                    Phase::RetryableFailure,
                    ErrorKind::System,
                    codes::SYSTEM_FAILURE,
                    format!("the launch failed in the host: {err}"),
                );
                this.with_local(&ticket, |local| {
                    local.launch = None;
                    local.last = Some(failed);
                });
            }
        });
        Some(rx)
    }

    /// Launch until the object is created, the task fails, or the launch
    /// deadline passes. Past `answer_by` the launch is recorded, so another
    /// replica can carry it on, and its end is kept as an outcome.
    async fn launch(
        self: Arc<Self>,
        plugin: Plugin,
        request: TaskRequest,
        ticket: TaskTicket,
        tx: watch::Sender<Launch>,
        answer_by: Instant,
    ) {
        let config = &self.executor.config().tasks;
        let deadline = Instant::now()
            + Duration::from_secs(config.launch_deadline_seconds).saturating_sub(
                Duration::from_secs(
                    (chrono::Utc::now().timestamp() - ticket.accepted_at).max(0) as u64
                ),
            );
        let kind = plugin_kind(&plugin);
        let cluster = self.executor.cluster();
        if request.execution.retry_attempt > 0 {
            self.abort_earlier_attempts(&plugin, &kind, &request).await;
        }
        let mut recorded = false;
        let mut delay = LAUNCH_RETRY_MIN;
        let mut last_reason = String::from("no answer from the cluster");
        let outcome = loop {
            let late = Instant::now() >= answer_by;
            if late && !recorded {
                recorded = self.record_launch(&ticket, &kind, &request).await;
            }
            // An abort, or a later attempt, that came meanwhile leaves an
            // outcome: then nothing must be created.
            if late && let Some(event) = self.kept_outcome(&ticket, &kind).await {
                break Launch::Failed(event);
            }
            // Another replica carried the launch through meanwhile (its
            // record goes once the object exists): the object may have
            // run, ended and been collected since, and must not be made
            // again.
            if recorded && self.launch_carried_elsewhere(&ticket, &kind).await {
                tracing::info!(task = %ticket.name, "launched by another replica");
                break Launch::Created;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            let attempt = tokio::time::timeout(left, self.executor.launch(&plugin, &request));
            let tried = if recorded {
                attempt.await
            } else {
                // A try can outlast the answer (an API that keeps failing
                // the create): the launch is recorded when the answer is
                // given, not after, so a replica that dies meanwhile leaves
                // it for another to carry on.
                tokio::pin!(attempt);
                let record = async {
                    tokio::time::sleep_until(answer_by.into()).await;
                    self.record_launch(&ticket, &kind, &request).await
                };
                tokio::pin!(record);
                tokio::select! {
                    tried = &mut attempt => {
                        // A record already on its way is seen through, so
                        // it is dropped below rather than left behind.
                        if Instant::now() >= answer_by {
                            recorded = record.await;
                        }
                        tried
                    }
                    kept = &mut record => {
                        recorded = kept;
                        attempt.await
                    }
                }
            };
            match tried {
                Ok(Ok((state, event))) => match event.phase {
                    Phase::Queued => {
                        // Landed after the answer: an abort or a later
                        // attempt may have come meanwhile.
                        if Instant::now() >= answer_by
                            && let Some(aborted) = self.kept_outcome(&ticket, &kind).await
                        {
                            self.abort_and_release(&plugin, &request, &state, &aborted)
                                .await;
                            break Launch::Failed(aborted);
                        }
                        break Launch::Created;
                    }
                    Phase::WaitingForResources => {
                        last_reason = event.reason.clone();
                        tx.send_replace(Launch::Pending(event));
                    }
                    _ => break Launch::Failed(event),
                },
                Ok(Err(err)) if err.is_transient() => {
                    last_reason = err.to_string();
                    tx.send_replace(Launch::Pending(PhaseEvent::new(
                        Phase::Queued,
                        format!("waiting to create the object: {err}"),
                    )));
                }
                Ok(Err(err)) => {
                    break Launch::Failed(PhaseEvent::failure(
                        Phase::RetryableFailure,
                        ErrorKind::System,
                        codes::PLUGIN_FAILURE,
                        err.to_string(),
                    ));
                }
                Err(_) => {} // the deadline, below
            }
            if Instant::now() + delay >= deadline {
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
        if let Launch::Failed(event) = &outcome {
            tracing::warn!(plugin = plugin.id(), task = %ticket.name, "launch failed: {}", event.reason);
            if event
                .error
                .as_ref()
                .is_some_and(|e| e.kind == ErrorKind::System)
                && matches!(
                    event.code(),
                    Some(codes::FAILED_TO_BUILD_RESOURCE | codes::PLUGIN_FAILURE)
                )
            {
                self.plugin_fault(&plugin);
            }
            if Instant::now() >= answer_by {
                self.keep_outcome(&ticket, &kind, event).await;
            }
        }
        if recorded
            && let Err(err) = self
                .records
                .drop_launch(cluster, ticket.object(&kind))
                .await
        {
            tracing::debug!(task = %ticket.name, "the launch record stays until the janitor's turn: {err}");
        }
        if let Launch::Created = outcome {
            tracing::info!(plugin = plugin.id(), namespace = %ticket.namespace, name = %ticket.name, "task launched");
        }
        tx.send_replace(outcome.clone());
        self.with_local(&ticket, |local| {
            local.launch = None;
            if let Launch::Failed(event) = outcome {
                local.last = Some(event);
            }
        });
    }

    /// This launch's record is gone: another replica's launch landed (or
    /// ended) and dropped it. A failed read says no.
    async fn launch_carried_elsewhere(&self, ticket: &TaskTicket, kind: &ResourceKind) -> bool {
        let recorded = self
            .records
            .launch(self.executor.cluster(), ticket.object(kind))
            .await;
        matches!(recorded, Ok(None))
    }

    /// Record the launch so another replica carries it on; false if that
    /// failed (it is tried again on the next round).
    async fn record_launch(
        &self,
        ticket: &TaskTicket,
        kind: &ResourceKind,
        request: &TaskRequest,
    ) -> bool {
        match self
            .records
            .keep_launch(self.executor.cluster(), ticket.object(kind), request)
            .await
        {
            Ok(()) => true,
            Err(err) => {
                tracing::warn!(task = %ticket.name, "could not record the launch: {err}");
                false
            }
        }
    }

    /// Abort, the plugin's way, the node's objects from earlier attempts
    /// that are still running: propeller has given up on them. An earlier
    /// attempt may still be launching somewhere (its CreateTask answer was
    /// lost): its outcome is kept, so it stands down when it lands.
    async fn abort_earlier_attempts(
        &self,
        plugin: &Plugin,
        kind: &ResourceKind,
        request: &TaskRequest,
    ) {
        let current = request.execution.retry_attempt;
        let superseded = PhaseEvent::failure(
            Phase::PermanentFailure,
            ErrorKind::System,
            codes::ABORTED,
            format!("attempt {current} of the node started"),
        );
        for attempt in 0..current {
            let mut earlier = request.clone();
            earlier.execution.retry_attempt = attempt;
            let name = earlier.object_name(plugin);
            let object = TaskObject {
                namespace: &request.namespace,
                plural: &kind.plural,
                name: &name,
            };
            if let Err(err) = self
                .records
                .keep_outcome(
                    self.executor.cluster(),
                    object,
                    &earlier.execution.key(),
                    &superseded,
                )
                .await
            {
                tracing::warn!(task = %name, "could not mark the earlier attempt superseded: {err}");
            }
            let found = self
                .executor
                .cluster()
                .get_from_api(kind, &request.namespace, &name)
                .await;
            match found {
                Ok(Some(object))
                    if carried::is_live(&object)
                        && carried::owner_of(&object) == Some(earlier.execution.key().as_str()) =>
                {
                    tracing::info!(task = %name, "aborting: a later attempt of its node started");
                    self.abort_found(plugin, kind, &object, &superseded).await;
                }
                Ok(_) => {}
                Err(err) => {
                    tracing::warn!(task = %name, "could not look at the earlier attempt: {err}")
                }
            }
        }
    }

    /// Abort an object found in the cluster (not through a ticket) as
    /// [`Tasks::abort_and_release`] does.
    pub(super) async fn abort_found(
        &self,
        plugin: &Plugin,
        kind: &ResourceKind,
        object: &Value,
        ended: &PhaseEvent,
    ) {
        let state = object_state(plugin, kind, object);
        let task = carried::task_of(object).unwrap_or_default();
        self.abort_and_release(plugin, &task, &state, ended).await;
    }

    /// Abort and release an object, the plugin's way, as `ended`: one the
    /// plugin patched instead of deleting stays, marked ended, so the
    /// janitor collects it. Failures are logged.
    async fn abort_and_release(
        &self,
        plugin: &Plugin,
        task: &TaskRequest,
        state: &TaskState,
        ended: &PhaseEvent,
    ) {
        let aborted = match self.abort_then_release(plugin, task, state).await {
            Ok(Aborted::Patched) => self.executor.finish(state, ended).await,
            Ok(Aborted::Deleted) => Ok(()),
            Err(err) => Err(err),
        };
        if let Err(err) = aborted {
            tracing::warn!(task = %state.name, "could not abort it: {err}");
        }
    }

    async fn abort_then_release(
        &self,
        plugin: &Plugin,
        task: &TaskRequest,
        state: &TaskState,
    ) -> Result<Aborted, ExecutorError> {
        let aborted = self.executor.abort(plugin, task, state).await?;
        self.executor.finalize(plugin, state).await?;
        Ok(aborted)
    }

    /// The task's phase now. Answers from the durable record when the task
    /// has ended; a transient problem reports the last known phase.
    pub async fn status(self: &Arc<Self>, plugin: &Plugin, ticket: &TaskTicket) -> PhaseEvent {
        if let Some(event) = ticket.failure_event() {
            return event;
        }
        let kind = plugin_kind(plugin);
        self.seen_namespace(&ticket.namespace);
        let within = Duration::from_millis(self.executor.config().tasks.status_reads_within_ms);
        let reads = Reads::new(within);
        match self.look(plugin, &kind, ticket, reads).await {
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
        reads: Reads,
    ) -> Result<PhaseEvent, ExecutorError> {
        let cluster = self.executor.cluster();
        if let Some(event) = self.settled(plugin, kind, ticket) {
            if let Some(metrics) = self.metrics.get() {
                metrics.settled_look();
            }
            return Ok(event);
        }
        let object = reads
            .read(
                "reading",
                &ticket.name,
                cluster.get(kind, &ticket.namespace, &ticket.name),
            )
            .await?;
        let Some(object) = object else {
            return self.missing(plugin, kind, ticket, reads).await;
        };
        self.with_local(ticket, |local| local.seen_object = true);
        // Whose object it is first: nothing on another task's object counts.
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
        if let Some(event) = carried::outcome_of(&object) {
            return Ok(event);
        }
        let unconfirmed = carried::is_unconfirmed(&object);
        let confirm_at = self.confirmation_due(&object);
        if unconfirmed && confirm_at.is_some_and(|due| chrono::Utc::now() >= due) {
            self.confirm(kind, ticket);
        }
        // Going after its end on another replica (cleaned up on failure,
        // failed too many looks): that replica kept the answer first.
        if carried::is_deleting(&object) {
            let outcome = self.records.outcome(cluster, ticket.object(kind));
            if let Some(event) = reads.read(RECORDS, &ticket.name, outcome).await? {
                return Ok(event);
            }
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
        let slot_within = reads.slot_within(self.executor.config().runtime.call_timeout);
        // A plugin that fails (trap, deadline, bad answer) is a look that
        // went wrong, not the task's end: an error here.
        let event = self
            .executor
            .phase_of(plugin, &task, &state, &object, Some(slot_within))
            .await?;
        let settled = event.phase == Phase::Running
            && !carried::is_deleting(&object)
            && (event.phase, event.version, &event.reason)
                == (state.phase, state.version, &state.reason);
        let version = object["metadata"]["resourceVersion"].as_str();
        let mut until = chrono::Utc::now() + SETTLED_FOR;
        if let Some(due) = confirm_at.filter(|_| unconfirmed) {
            until = until.min(due);
        }
        let settled = match version {
            Some(version) if settled => Some(Settled {
                event: event.clone(),
                execution: ticket.execution.key(),
                version: version.to_owned(),
                digest: plugin.digest().to_owned(),
                until,
            }),
            _ => None,
        };
        self.with_local(ticket, |local| local.settled = settled);
        if event.phase.is_terminal() && !carried::is_finished(&object) {
            let deleting = carried::is_deleting(&object);
            let end = Arc::new((
                self.clone(),
                plugin.clone(),
                ticket.clone(),
                task,
                state,
                event.clone(),
            ));
            self.after_end(ticket, move || {
                let end = end.clone();
                async move {
                    let (this, plugin, ticket, task, state, event) = &*end;
                    this.end(plugin, ticket, task, state, event, deleting).await
                }
            })
            .await;
        }
        Ok(event)
    }

    /// Propeller asks about the task, so it has its resource_meta: the
    /// janitor must not take the object for one whose CreateTask answer was
    /// lost. In the background, one at a time; a failure is tried again on
    /// the next look.
    fn confirm(self: &Arc<Self>, kind: &ResourceKind, ticket: &TaskTicket) {
        if self.with_local(ticket, |local| {
            std::mem::replace(&mut local.confirming, true)
        }) {
            return;
        }
        let (this, kind, key) = (self.clone(), kind.clone(), ticket.key());
        let permits = self.confirmations.clone();
        // A resync's first looks queue thousands of these: one waiting for
        // its turn holds the task's key, and the request's state (a few KB)
        // only once it runs.
        tokio::spawn(async move {
            let _permit = permits.acquire_owned().await;
            Box::pin(this.confirm_now(&kind, key)).await;
        });
    }

    async fn confirm_now(&self, kind: &ResourceKind, key: (String, String)) {
        let (namespace, name) = &key;
        let patch =
            serde_json::json!({ "metadata": { "labels": { carried::UNCONFIRMED_LABEL: null } } });
        let cluster = self.executor.cluster();
        if let Err(err) = cluster.merge_patch(kind, namespace, name, &patch).await {
            // Worth seeing: an object never confirmed is aborted by the
            // janitor after `tasks.unconfirmed-abort-seconds`.
            tracing::warn!(task = %name, "could not confirm the launch (tried again on the next look): {err}");
        }
        if let Some(local) = self.local.lock().unwrap().get_mut(&key) {
            local.confirming = false;
        }
    }

    /// Run the writes that follow a task's end, now or in the background
    /// ([`EndWrites`]), once per task at a time. A transient failure is
    /// tried again with back-off: propeller asks nothing more after a
    /// terminal answer, so an end never recorded would leave the object
    /// unmarked, and the janitor would never collect it.
    async fn after_end<W, F>(self: &Arc<Self>, ticket: &TaskTicket, writes: W)
    where
        W: FnMut() -> F + Send + 'static,
        F: Future<Output = Result<(), ExecutorError>> + Send + 'static,
    {
        if self.with_local(ticket, |local| std::mem::replace(&mut local.ending, true)) {
            tracing::debug!(task = %ticket.name, "after the task's end: already under way");
            return; // already under way
        }
        tracing::debug!(task = %ticket.name, "after the task's end: writing");
        let within = match self.end_writes {
            EndWrites::Background => END_WRITES_WITHIN,
            EndWrites::Inline => END_WRITES_INLINE_WITHIN,
        };
        let backoff = ExponentialBuilder::default()
            .with_min_delay(Duration::from_millis(500))
            .with_max_delay(Duration::from_secs(30))
            .without_max_times()
            .with_total_delay(Some(within))
            .with_jitter();
        let (this, ticket) = (self.clone(), ticket.clone());
        let done = async move {
            let result = writes
                .retry(backoff)
                .when(ExecutorError::is_transient)
                .notify(|err, after| {
                    tracing::warn!(task = %ticket.name, "after the task's end: {err}; trying again in {after:?}")
                })
                .await;
            match result {
                Ok(()) => tracing::debug!(task = %ticket.name, "after the task's end: written"),
                Err(err) => {
                    tracing::error!(task = %ticket.name, "after the task's end, gave up: {err}")
                }
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

    /// The object is not there: launching (here, or recorded for any
    /// replica to carry on), ended without it, launched and gone, or never
    /// to be launched.
    async fn missing(
        self: &Arc<Self>,
        plugin: &Plugin,
        kind: &ResourceKind,
        ticket: &TaskTicket,
        reads: Reads,
    ) -> Result<PhaseEvent, ExecutorError> {
        let (launching, seen, last) = {
            let local = self.local.lock().unwrap();
            let local = local.get(&ticket.key());
            (
                local.and_then(|l| l.launch.as_ref().map(|rx| rx.borrow().clone())),
                local.is_some_and(|l| l.seen_object),
                local.and_then(|l| l.last.clone()),
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
        if let Some(event) = last.filter(|e| e.phase.is_terminal()) {
            return Ok(event);
        }
        let cluster = self.executor.cluster();
        let outcome = self.records.outcome(cluster, ticket.object(kind));
        if let Some(event) = reads.read(RECORDS, &ticket.name, outcome).await? {
            return Ok(event);
        }
        let deadline = self.executor.config().tasks.launch_deadline_seconds;
        let gone = gone(ticket);
        // Seen by this replica, or created before CreateTask answered: it
        // was deleted behind our back.
        let mut created = seen || ticket.launched;
        if !created && !ticket.past_launch_deadline(deadline) {
            // A launch recorded by the replica that accepted it: carry it on.
            let recorded = self.records.launch(cluster, ticket.object(kind));
            if let Some(request) = reads.read(RECORDS, &ticket.name, recorded).await? {
                if let Some(rx) = self.start_launch(plugin, request, ticket, Instant::now()) {
                    let now = rx.borrow().clone();
                    if let Launch::Pending(event) | Launch::Failed(event) = now {
                        return Ok(event);
                    }
                }
            } else if ticket.accepted_for_over(LAUNCH_RECORD_GRACE_SECONDS) {
                // A launch elsewhere may have landed (and dropped its
                // record) since the object was read: read it again.
                let again = cluster.get_from_api(kind, &ticket.namespace, &ticket.name);
                if reads.read("reading", &ticket.name, again).await?.is_some() {
                    return Ok(PhaseEvent::new(Phase::Queued, "task submitted to K8s"));
                }
                created = true;
            }
            if !created {
                return Ok(PhaseEvent::new(
                    Phase::Queued,
                    "waiting for the launch to complete",
                ));
            }
        }
        if created {
            // Keep the answer for the other replicas.
            self.keep_outcome_after(ticket, kind, &gone).await;
            return Ok(gone);
        }
        let never = PhaseEvent {
            reason: format!(
                "{}/{} was not created within the launch deadline, or was deleted",
                ticket.namespace, ticket.name
            ),
            ..gone
        };
        self.keep_outcome_after(ticket, kind, &never).await;
        Ok(never)
    }

    /// The task has ended: clean up when the plugin asks to (keeping the
    /// answer as an outcome record first), else record the end on the
    /// object — as an outcome record too when the object is being deleted
    /// (it takes its annotations with it).
    async fn end(
        &self,
        plugin: &Plugin,
        ticket: &TaskTicket,
        task: &TaskRequest,
        state: &TaskState,
        event: &PhaseEvent,
        deleting: bool,
    ) -> Result<(), ExecutorError> {
        let cleanup = event.phase.is_failure() && event.cleanup_on_failure;
        if deleting || cleanup {
            self.write_outcome(ticket, &state.kind, event).await?;
        }
        if cleanup {
            return self.abort_then_release(plugin, task, state).await.map(drop);
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
        if matches!(&err, ExecutorError::Plugin(call) if !call.is_busy()) {
            self.plugin_fault(plugin);
        }
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
        let cleanup = Arc::new((
            self.clone(),
            plugin.clone(),
            ticket.clone(),
            state,
            event.clone(),
        ));
        // The answer is kept before the object goes, so every replica gives it.
        self.after_end(ticket, move || {
            let cleanup = cleanup.clone();
            async move {
                let (this, plugin, ticket, state, event) = &*cleanup;
                this.write_outcome(ticket, &state.kind, event).await?;
                this.abort_own(plugin, ticket, state).await.map(drop)
            }
        })
        .await;
        event
    }

    /// Abort and release the ticket's object, if there is one and it
    /// carries the task's identity (another's under its name is left alone).
    async fn abort_own(
        &self,
        plugin: &Plugin,
        ticket: &TaskTicket,
        state: &TaskState,
    ) -> Result<Option<Aborted>, ExecutorError> {
        let object = self
            .executor
            .cluster()
            .get_from_api(&state.kind, &ticket.namespace, &ticket.name)
            .await
            .map_err(ExecutorError::cluster("reading", &ticket.name))?;
        let Some(object) = object else {
            return Ok(None);
        };
        if carried::owner_of(&object) != Some(ticket.execution.key().as_str()) {
            tracing::warn!(task = %ticket.name, owner = ?carried::owner_of(&object), "the object under this task's name is not its own; left alone");
            return Ok(None);
        }
        let task = match &ticket.task {
            Some(task) => task.clone(),
            None => carried::task_of(&object).unwrap_or_default(),
        };
        self.abort_then_release(plugin, &task, state)
            .await
            .map(Some)
    }

    /// Abort: keep the abort as the task's outcome (so a launch still in
    /// progress on any replica stands down), then delete the object (or
    /// patch it, as the plugin says). A task that has already ended keeps
    /// its answer; aborting it only releases it.
    pub async fn cancel(
        &self,
        plugin: &Plugin,
        ticket: &TaskTicket,
    ) -> Result<Aborted, ExecutorError> {
        if ticket.failure.is_some() {
            return Ok(Aborted::Deleted); // nothing was created
        }
        let kind = plugin_kind(plugin);
        let object = self
            .executor
            .cluster()
            .get_from_api(&kind, &ticket.namespace, &ticket.name)
            .await
            .map_err(ExecutorError::cluster("reading", &ticket.name))?;
        // An object under this task's name that does not carry its identity
        // (someone else's, made after ours went) is not this task's to abort.
        if let Some(object) = &object
            && carried::owner_of(object) != Some(ticket.execution.key().as_str())
        {
            tracing::warn!(task = %ticket.name, owner = ?carried::owner_of(object), "abort: the object under this task's name is not its own; left alone");
            return Ok(Aborted::Deleted);
        }
        let aborted = PhaseEvent::failure(
            Phase::PermanentFailure,
            ErrorKind::User,
            codes::ABORTED,
            "the task was aborted",
        );
        let finished = object.as_ref().is_some_and(carried::is_finished);
        if !finished {
            // Without it a launch elsewhere could still land: worth saying,
            // not worth leaving the object running for.
            self.keep_outcome(ticket, &kind, &aborted).await;
        }
        let task = match (&ticket.task, &object) {
            (Some(task), _) => task.clone(),
            (None, Some(object)) => carried::task_of(object).unwrap_or_default(),
            (None, None) => TaskRequest::default(),
        };
        let state = ticket.state(kind, None);
        let done = self.abort_then_release(plugin, &task, &state).await?;
        if done == Aborted::Patched && !finished {
            // The object stays: mark it ended, so the janitor collects it.
            self.executor.finish(&state, &aborted).await?;
        }
        if !finished {
            self.with_local(ticket, |local| local.last = Some(aborted.clone()));
        }
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

    /// The outcome kept for the ticket's object, if any (a failed read is
    /// taken as none: the caller looks again later).
    async fn kept_outcome(&self, ticket: &TaskTicket, kind: &ResourceKind) -> Option<PhaseEvent> {
        match self
            .records
            .outcome(self.executor.cluster(), ticket.object(kind))
            .await
        {
            Ok(event) => event,
            Err(err) => {
                tracing::debug!(task = %ticket.name, "could not read the outcome record: {err}");
                None
            }
        }
    }

    async fn write_outcome(
        &self,
        ticket: &TaskTicket,
        kind: &ResourceKind,
        event: &PhaseEvent,
    ) -> Result<(), ExecutorError> {
        self.records
            .keep_outcome(
                self.executor.cluster(),
                ticket.object(kind),
                &ticket.execution.key(),
                event,
            )
            .await
            .map_err(ExecutorError::cluster(
                "keeping the outcome of",
                &ticket.name,
            ))
    }

    /// Keep an outcome where a failure to do so leaves nothing running:
    /// logged, and replicas still agree once the launch deadline passes.
    async fn keep_outcome(&self, ticket: &TaskTicket, kind: &ResourceKind, event: &PhaseEvent) {
        if let Err(err) = self.write_outcome(ticket, kind, event).await {
            tracing::warn!(task = %ticket.name, "could not keep the task's outcome: {err}");
        }
    }

    /// Keep an outcome after the answer ([`Tasks::after_end`]): GetTask
    /// does not wait on the write.
    async fn keep_outcome_after(
        self: &Arc<Self>,
        ticket: &TaskTicket,
        kind: &ResourceKind,
        event: &PhaseEvent,
    ) {
        let outcome = Arc::new((self.clone(), ticket.clone(), kind.clone(), event.clone()));
        self.after_end(ticket, move || {
            let outcome = outcome.clone();
            async move {
                let (this, ticket, kind, event) = &*outcome;
                this.write_outcome(ticket, kind, event).await
            }
        })
        .await;
    }

    /// The last answer, when the object has not changed since a look that
    /// answered it again (see [`Local::settled`]) and the plugin is the same.
    fn settled(
        &self,
        plugin: &Plugin,
        kind: &ResourceKind,
        ticket: &TaskTicket,
    ) -> Option<PhaseEvent> {
        let cluster = self.executor.cluster();
        let version = cluster.cached_version(kind, &ticket.namespace, &ticket.name)?;
        let local = self.local.lock().unwrap();
        let local = local.get(&ticket.key())?;
        let settled = local.settled.as_ref()?;
        let current = settled.version == version
            && settled.digest == plugin.digest()
            && settled.execution == ticket.execution.key()
            && chrono::Utc::now() < settled.until;
        current.then(|| settled.event.clone())
    }

    /// When a look should confirm the object's launch: once it is
    /// [`CONFIRM_AFTER`] old, or half `tasks.unconfirmed-abort-seconds`
    /// when that is sooner (never, when the janitor aborts nothing). A task
    /// that ends sooner never costs the write (the janitor leaves ended
    /// objects alone); a longer one has the rest of the window for a
    /// GetTask to come.
    fn confirmation_due(&self, object: &Value) -> Option<chrono::DateTime<chrono::Utc>> {
        let window = self.executor.config().tasks.unconfirmed_abort_seconds;
        if window == 0 {
            return None;
        }
        let created = carried::created_at(object).unwrap_or_else(chrono::Utc::now);
        let half = chrono::Duration::milliseconds(window as i64 * 500);
        Some(created + half.min(CONFIRM_AFTER))
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

    /// Forget what has not been asked about for a while (never a launch
    /// this replica runs).
    pub(super) fn forget_idle(&self) {
        self.local.lock().unwrap().retain(|_, local| {
            local.launch.is_some() || local.ending || local.touched.elapsed() < FORGET_AFTER
        });
    }
}

/// The answer for an object that was there and is gone.
fn gone(ticket: &TaskTicket) -> PhaseEvent {
    PhaseEvent::failure(
        Phase::RetryableFailure,
        ErrorKind::System,
        codes::RESOURCE_DELETED_EXTERNALLY,
        format!(
            "resource not found, name [{}/{}]. reason: the object is gone from the cluster",
            ticket.namespace, ticket.name
        ),
    )
}

/// The state of an object found in the cluster (not through a ticket).
fn object_state(plugin: &Plugin, kind: &ResourceKind, object: &Value) -> TaskState {
    TaskState {
        plugin_id: plugin.id().into(),
        plugin_digest: plugin.digest().into(),
        kind: kind.clone(),
        namespace: object["metadata"]["namespace"]
            .as_str()
            .unwrap_or_default()
            .into(),
        name: object["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .into(),
        phase: Phase::Running,
        version: 0,
        reason: String::new(),
    }
}
