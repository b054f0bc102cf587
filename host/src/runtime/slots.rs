//! Fair shares of the instance pool. The pool holds `max-concurrent-calls`
//! instances for all plugins; each plugin may hold at most its share of
//! them, so one plugin whose calls hang (until their deadline) cannot take
//! the slots another needs. Waiting has a bound: past it the call is
//! refused with [`CallError::Busy`], a retryable error.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::CallError;

pub(super) struct Slots {
    pool: Arc<Semaphore>,
    shares: Mutex<HashMap<String, Arc<Share>>>,
    per_plugin: usize,
    wait: Duration,
}

struct Share {
    slots: Arc<Semaphore>,
    /// When a call was last refused for want of a slot.
    refused_at: Mutex<Option<Instant>>,
}

/// How long a refusal counts: a plugin is saturated while its calls are
/// being refused, not merely while its share happens to be full.
const SATURATED_FOR: Duration = Duration::from_secs(5);

/// Held for the length of one call: a slot of the plugin's share and one
/// of the pool.
pub struct CallSlot {
    _share: OwnedSemaphorePermit,
    _pool: OwnedSemaphorePermit,
}

impl Slots {
    pub(super) fn new(pool: u32, per_plugin: u32, wait: Duration) -> Self {
        Slots {
            pool: Arc::new(Semaphore::new(pool as usize)),
            shares: Mutex::new(HashMap::new()),
            per_plugin: per_plugin as usize,
            wait,
        }
    }

    /// The share of a plugin id (every build of a plugin shares one).
    fn share(&self, plugin: &str) -> Arc<Share> {
        let mut shares = self.shares.lock().unwrap();
        shares
            .entry(plugin.to_owned())
            .or_insert_with(|| {
                Arc::new(Share {
                    slots: Arc::new(Semaphore::new(self.per_plugin)),
                    refused_at: Mutex::new(None),
                })
            })
            .clone()
    }

    /// Wait up to `slot-wait`, or `within` when that is shorter.
    pub(super) async fn acquire(
        &self,
        plugin: &str,
        call: &'static str,
        within: Option<Duration>,
    ) -> Result<CallSlot, CallError> {
        let wait = within.map_or(self.wait, |within| within.min(self.wait));
        let share = self.share(plugin);
        let both = async {
            // The plugin's share first: a saturated plugin's callers queue
            // there, never in front of other plugins at the pool.
            let share = share.slots.clone().acquire_owned().await;
            let pool = self.pool.clone().acquire_owned().await;
            (share, pool)
        };
        match tokio::time::timeout(wait, both).await {
            Ok((Ok(share), Ok(pool))) => Ok(CallSlot {
                _share: share,
                _pool: pool,
            }),
            // The semaphores are never closed; a timeout is the only way here.
            _ => {
                // Saturated means full for a whole `slot-wait`, not for a
                // caller's shorter deadline.
                if wait == self.wait {
                    *share.refused_at.lock().unwrap() = Some(Instant::now());
                }
                Err(CallError::Busy {
                    plugin: plugin.into(),
                    call,
                    waited_ms: wait.as_millis(),
                })
            }
        }
    }

    /// [`Slots::acquire`] for callers outside async code (plugin loads).
    pub(super) fn acquire_blocking(
        &self,
        plugin: &str,
        call: &'static str,
    ) -> Result<CallSlot, CallError> {
        blocking(|| block_on(async { self.acquire(plugin, call, None).await }))
    }

    pub(super) fn saturated(&self, plugin: &str) -> bool {
        let refused_at = *self.share(plugin).refused_at.lock().unwrap();
        refused_at.is_some_and(|at| at.elapsed() < SATURATED_FOR)
    }
}

/// Run `body`, which blocks (on [`block_on`]), from wherever the caller is.
/// The host calls plugins from blocking threads (`spawn_blocking`) or plain
/// threads, where `body` just runs; on a worker of a multi-thread runtime
/// it steps out of the worker first. On a current-thread runtime (tests,
/// embedders) `body` runs on a thread of its own, and that runtime waits
/// for it.
pub(super) fn blocking<R: Send>(body: impl FnOnce() -> R + Send) -> R {
    use tokio::runtime::{Handle, RuntimeFlavor};
    match Handle::try_current().map(|handle| handle.runtime_flavor()) {
        Ok(RuntimeFlavor::MultiThread) => tokio::task::block_in_place(body),
        Ok(_) => std::thread::scope(|scope| match scope.spawn(body).join() {
            Ok(value) => value,
            Err(panic) => std::panic::resume_unwind(panic),
        }),
        Err(_) => body(),
    }
}

/// Drive a future to completion inside [`blocking`]: on the caller's tokio
/// runtime when there is one, else on wasmtime-wasi's own, which also
/// drives WASI's timers.
pub(super) fn block_on<F: Future>(future: F) -> F::Output {
    use wasmtime_wasi::runtime::{in_tokio, poll_noop, with_ambient_tokio_runtime};
    let mut future = std::pin::pin!(future);
    // Most plugin calls never wait on the host: one poll finishes them
    // without the cost of parking a thread.
    match with_ambient_tokio_runtime(|| poll_noop(future.as_mut())) {
        Some(value) => value,
        None => in_tokio(future),
    }
}
