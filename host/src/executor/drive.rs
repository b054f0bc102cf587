//! Following one task from launch to the end in this process, reacting to
//! watch events: what `flytewasm run` does. The same task state machine as
//! the agent path ([`Tasks`]): launch with quota waiting, transient looks
//! retried, the end recorded on the object, abort the plugin's way.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use backon::{ExponentialBuilder, Retryable};

use super::lifecycle::{Aborted, ExecutorError, PhaseEvent, TaskState};
use super::object::TaskRequest;
use super::tasks::{TaskTicket, Tasks};
use crate::runtime::Plugin;

/// How a driven task ended.
#[derive(Debug)]
pub enum Outcome {
    Succeeded(PhaseEvent),
    Failed(PhaseEvent),
    /// Stopped from outside (Ctrl-C, timeout): the object is deleted or
    /// patched as the plugin asked.
    Aborted(Aborted),
    /// Stopped from outside, and the delete went out, but the object was
    /// still there when we stopped waiting: why (e.g. the finalizers
    /// holding it).
    AbortedNotGone(String),
}

/// Without any watch event, look again this often (a resync, as informers do).
const RESYNC: Duration = Duration::from_secs(30);
/// After a look that failed, look again this soon.
const RETRY: Duration = Duration::from_millis(500);
/// How long an abort is tried again while the cluster fails.
const ABORT_WITHIN: Duration = Duration::from_secs(60);

/// Launch the task and follow it until it ends or `stop` completes. Every
/// new phase is passed to `on_event`. On `stop` the task is aborted; at the
/// end its object is released (and deleted when the host is configured to
/// delete on finalize: no janitor follows a one-off run).
pub async fn run_to_completion(
    tasks: &Arc<Tasks>,
    plugin: &Plugin,
    request: &TaskRequest,
    mut on_event: impl FnMut(&TaskState, &PhaseEvent),
    stop: impl Future<Output = ()>,
) -> Result<Outcome, ExecutorError> {
    tokio::pin!(stop);
    let ticket = tasks.accept(plugin, request.clone()).await;
    let (state, mut changes) = tasks.follow(plugin, &ticket);
    let mut last: Option<PhaseEvent> = None;
    let end = loop {
        let event = tasks.status(plugin, &ticket).await;
        let seen = last
            .as_ref()
            .is_some_and(|l| event.seen_after(l.phase, l.version, &l.reason));
        if !seen {
            on_event(&state, &event);
        }
        if event.phase.is_terminal() {
            break event;
        }
        if !seen {
            last = Some(event);
        }
        tokio::select! {
            _ = &mut stop => {
                let aborted = abort(tasks, plugin, &ticket).await?;
                let gone_within =
                    Duration::from_secs(tasks.executor().config().tasks.abort_wait_seconds);
                if aborted == Aborted::Deleted
                    && let Err(why) = tasks.executor().wait_gone(&state, gone_within).await
                {
                    return Ok(Outcome::AbortedNotGone(why));
                }
                return Ok(Outcome::Aborted(aborted));
            }
            // A look that failed is tried again soon, not at the next resync.
            _ = tasks.executor().wait_for_change(
                &state,
                &mut changes,
                if tasks.failing(&ticket) { RETRY } else { RESYNC },
            ) => {}
        }
    };
    if ticket.failure.is_none() {
        tasks.executor().finalize(plugin, &state).await?;
    }
    Ok(if end.phase.is_failure() {
        Outcome::Failed(end)
    } else {
        Outcome::Succeeded(end)
    })
}

/// Abort the task, again and again while the cluster fails transiently (up
/// to `ABORT_WITHIN`): an abort that never reaches the cluster leaves the job
/// running, and nobody retries for us here (on the agent path propeller
/// repeats DeleteTask).
async fn abort(
    tasks: &Arc<Tasks>,
    plugin: &Plugin,
    ticket: &TaskTicket,
) -> Result<Aborted, ExecutorError> {
    let backoff = ExponentialBuilder::default()
        .with_min_delay(RETRY)
        .with_max_delay(Duration::from_secs(5))
        .without_max_times()
        .with_total_delay(Some(ABORT_WITHIN))
        .with_jitter();
    (|| tasks.cancel(plugin, ticket))
        .retry(backoff)
        .when(ExecutorError::is_transient)
        .notify(|err, after| {
            tracing::warn!(task = %ticket.name, "abort failed, trying again in {after:?}: {err}")
        })
        .await
}
