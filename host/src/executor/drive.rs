//! Driving one task from launch to the end, reacting to watch events:
//! what `flytewasm run` does, and what the tests exercise.

use std::future::Future;
use std::time::Duration;

use super::lifecycle::{Aborted, Executor, ExecutorError, PhaseEvent, TaskState};
use super::object::TaskRequest;
use crate::runtime::Plugin;

/// How a driven task ended.
#[derive(Debug)]
pub enum Outcome {
    Succeeded(PhaseEvent),
    Failed(PhaseEvent),
    /// Stopped from outside (Ctrl-C, timeout); the object is gone, or
    /// patched as the plugin asked.
    Aborted(Aborted),
}

/// Without any watch event, look again this often (a resync, as informers do).
const RESYNC: Duration = Duration::from_secs(30);
/// Steps that hit cluster errors are retried this often, this many times.
const RETRY: Duration = Duration::from_millis(500);
const MAX_RETRIES: u32 = 20;

/// Launch the task and follow it until it ends or `stop` completes. Every
/// new phase is passed to `on_event`. On a failure that leaves the object
/// running, and on `stop`, the object is aborted; it is always finalized.
pub async fn run_to_completion(
    engine: &Executor,
    plugin: &Plugin,
    request: &TaskRequest,
    mut on_event: impl FnMut(&TaskState, &PhaseEvent),
    stop: impl Future<Output = ()>,
) -> Result<Outcome, ExecutorError> {
    tokio::pin!(stop);
    let (mut state, event) = retrying(|| engine.launch(plugin, request)).await?;
    on_event(&state, &event);
    let mut last = event;
    if !last.phase.is_terminal() {
        let mut changes = engine.changes(&state);
        loop {
            match engine.check(plugin, request, &mut state).await {
                Ok(Some(event)) => {
                    on_event(&state, &event);
                    last = event;
                    if last.phase.is_terminal() {
                        break;
                    }
                }
                Ok(None) => {}
                Err(err) => tracing::warn!(task = %state.name, "will look again: {err}"),
            }
            tokio::select! {
                _ = &mut stop => {
                    let aborted = retrying(|| engine.abort(plugin, request, &state)).await?;
                    retrying(|| engine.finalize(plugin, &state)).await?;
                    if aborted == Aborted::Deleted
                        && let Err(why) = engine.wait_gone(&state, Duration::from_secs(60)).await
                    {
                        tracing::warn!(task = %state.name, "{why}");
                    }
                    return Ok(Outcome::Aborted(aborted));
                }
                _ = engine.wait_for_change(&state, &mut changes, RESYNC) => {}
            }
        }
    }
    if last.phase.is_failure() && last.cleanup_on_failure {
        retrying(|| engine.abort(plugin, request, &state)).await?;
    }
    retrying(|| engine.finalize(plugin, &state)).await?;
    Ok(if last.phase.is_failure() {
        Outcome::Failed(last)
    } else {
        Outcome::Succeeded(last)
    })
}

/// Retry a step that failed transiently (Flyte retries it next round).
async fn retrying<T, F: Future<Output = Result<T, ExecutorError>>>(
    mut step: impl FnMut() -> F,
) -> Result<T, ExecutorError> {
    let mut attempt = 0;
    loop {
        match step().await {
            Err(err) if err.is_transient() && attempt < MAX_RETRIES => {
                attempt += 1;
                tokio::time::sleep(RETRY).await;
            }
            other => return other,
        }
    }
}
