//! One plugin call: a fresh Store from the pre-linked component, a
//! deadline, a memory cap, bounded output, and every failure turned into a
//! [`CallError`].
//!
//! The deadline holds whatever the plugin does: the epoch interrupts wasm
//! that computes, and the whole call (instantiation included) is a future
//! under a timeout, so a WASI import that blocks — a sleep, a poll — is
//! cancelled with it. The Store and its pool slot go when the call ends.

use std::time::Instant;

use wasmtime::component::ResourceTable;
use wasmtime::{ResourceLimiter, Store, StoreLimits, StoreLimitsBuilder, Trap};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use super::output::{CapturedOutput, LogBudget};
use super::{
    CORE_INSTANCES_PER_COMPONENT, CallError, EPOCH_TICK, MEMORIES_PER_COMPONENT, Plugin,
    TABLES_PER_COMPONENT, capabilities, slots, wit,
};

/// What an export returns: a trap, or the plugin's own result.
type Answer<R> = wasmtime::Result<Result<R, wit::PluginError>>;

/// The Store's data for one call.
pub struct CallState {
    pub(super) plugin: std::sync::Arc<str>,
    pub(super) log_budget: LogBudget,
    wasi: WasiCtx,
    table: ResourceTable,
    limits: Limits,
}

impl WasiView for CallState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

/// The per-call memory cap, over all of the call's memories together
/// (wasmtime's `StoreLimits` counts each memory alone), beside wasmtime's
/// limits on instances, memories and tables. A refused growth is
/// remembered, so the trap that follows is reported as running out of memory.
struct Limits {
    store: StoreLimits,
    memory_limit: usize,
    /// Bytes of linear memory the call's memories hold now.
    memory_used: usize,
    memory_exceeded: bool,
}

impl ResourceLimiter for Limits {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        max: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let total = self.memory_used - current.min(self.memory_used) + desired;
        let allowed =
            total <= self.memory_limit && self.store.memory_growing(current, desired, max)?;
        if allowed {
            self.memory_used = total;
        }
        self.memory_exceeded |= !allowed;
        Ok(allowed)
    }

    fn table_growing(
        &mut self,
        current: usize,
        desired: usize,
        max: Option<usize>,
    ) -> wasmtime::Result<bool> {
        self.store.table_growing(current, desired, max)
    }

    fn instances(&self) -> usize {
        self.store.instances()
    }

    fn tables(&self) -> usize {
        self.store.tables()
    }

    fn memories(&self) -> usize {
        self.store.memories()
    }
}

impl Plugin {
    /// The object for this task, as JSON text (checked by the caller).
    pub fn build_resource(&self, ctx: &wit::TaskContext) -> Result<String, CallError> {
        let json = self.call("build-resource", async |plugin, store| {
            plugin.call_build_resource(store, ctx).await
        })?;
        self.check_size("build-resource", &json)?;
        Ok(json)
    }

    pub fn get_task_phase(
        &self,
        ctx: &wit::PhaseContext,
        observed: &str,
    ) -> Result<wit::PhaseInfo, CallError> {
        let mut info = self.call("get-task-phase", async |plugin, store| {
            plugin.call_get_task_phase(store, ctx, observed).await
        })?;
        super::answer::bound_phase_info(&mut info).map_err(|reason| CallError::InvalidOutput {
            plugin: self.id().into(),
            call: "get-task-phase",
            reason,
        })?;
        Ok(info)
    }

    pub fn on_abort(
        &self,
        ctx: &wit::PhaseContext,
        observed: &str,
    ) -> Result<wit::AbortAction, CallError> {
        let action = self.call("on-abort", async |plugin, store| {
            plugin.call_on_abort(store, ctx, observed).await
        })?;
        if let wit::AbortAction::Patch(patch) = &action {
            self.check_size("on-abort", patch)?;
        }
        Ok(action)
    }

    fn check_size(&self, call: &'static str, text: &str) -> Result<(), CallError> {
        let limit = self.inner.runtime.config.max_output_bytes;
        if text.len() > limit {
            return Err(CallError::InvalidOutput {
                plugin: self.id().into(),
                call,
                reason: format!("{} bytes is over the {limit}-byte limit", text.len()),
            });
        }
        Ok(())
    }

    fn call<R: Send>(
        &self,
        call: &'static str,
        f: impl AsyncFnOnce(&wit::Plugin, &mut Store<CallState>) -> Answer<R> + Send,
    ) -> Result<R, CallError> {
        in_fresh_instance(&self.inner.runtime, &self.inner.pre, self.id(), call, f)
    }
}

/// Run `f` in a fresh instance of `pre`. A trap poisons only this Store.
/// The caller holds a call slot ([`super::CallSlot`]).
pub(super) fn in_fresh_instance<R: Send>(
    runtime: &super::Runtime,
    pre: &wit::PluginPre<CallState>,
    plugin: &str,
    call: &'static str,
    f: impl AsyncFnOnce(&wit::Plugin, &mut Store<CallState>) -> Answer<R> + Send,
) -> Result<R, CallError> {
    slots::blocking(|| run(runtime, pre, plugin, call, f))
}

/// [`in_fresh_instance`], where blocking is allowed.
fn run<R>(
    runtime: &super::Runtime,
    pre: &wit::PluginPre<CallState>,
    plugin: &str,
    call: &'static str,
    f: impl AsyncFnOnce(&wit::Plugin, &mut Store<CallState>) -> Answer<R>,
) -> Result<R, CallError> {
    let config = &runtime.config;
    let plugin_id: std::sync::Arc<str> = plugin.into();
    let (stdout, stderr) = (
        CapturedOutput::new(config.max_log_bytes_per_call),
        CapturedOutput::new(config.max_log_bytes_per_call),
    );
    let mut table = ResourceTable::new();
    table.set_max_capacity(capabilities::MAX_HOST_RESOURCES);
    let state = CallState {
        plugin: plugin_id.clone(),
        log_budget: LogBudget::new(config.max_log_bytes_per_call, config.max_log_lines_per_call),
        wasi: capabilities::wasi_context(&stdout, &stderr),
        table,
        limits: Limits {
            store: StoreLimitsBuilder::new()
                .table_elements(100_000)
                .instances(CORE_INSTANCES_PER_COMPONENT as usize)
                .memories(MEMORIES_PER_COMPONENT as usize)
                .tables(TABLES_PER_COMPONENT as usize)
                .build(),
            memory_limit: config.memory_limit_bytes,
            memory_used: 0,
            memory_exceeded: false,
        },
    };
    let mut store = Store::new(pre.engine(), state);
    store.limiter(|state| &mut state.limits);
    // What the host copies out of the guest in one go (an answer, a log
    // line) is bounded too: without it, a list whose entries all point at
    // one large string would be copied once per entry.
    store.set_hostcall_fuel(config.memory_limit_bytes);
    let ticks = (config.call_timeout.as_millis() / EPOCH_TICK.as_millis()).max(1) as u64;
    store.set_epoch_deadline(ticks);

    let started = Instant::now();
    let run = async {
        let plugin = pre
            .instantiate_async(&mut store)
            .await
            .map_err(|err| (true, err))?;
        f(&plugin, &mut store).await.map_err(|err| (false, err))
    };
    // The timer is made inside the runtime that drives it.
    let result = slots::block_on(async { tokio::time::timeout(config.call_timeout, run).await });
    forward_output(store.data_mut(), "stdout", &stdout);
    let panic_text = forward_output(store.data_mut(), "stderr", &stderr);
    store.data().log_budget.report(&plugin_id, call);
    tracing::trace!(
        plugin = &*plugin_id,
        call,
        elapsed_us = started.elapsed().as_micros() as u64
    );

    let plugin = plugin.to_owned();
    let timeout = || CallError::Timeout {
        plugin: plugin.clone(),
        call,
        limit_ms: config.call_timeout.as_millis(),
    };
    let Ok(result) = result else {
        // Blocked in a host call (a sleep, a poll) when the deadline came.
        return Err(timeout());
    };
    match result {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(error)) => Err(CallError::from_plugin(&plugin, call, error)),
        Err((instantiating, error)) => {
            if store.data().limits.memory_exceeded {
                return Err(CallError::OutOfMemory {
                    plugin,
                    call,
                    limit_bytes: config.memory_limit_bytes,
                });
            }
            match error.downcast_ref::<Trap>() {
                Some(Trap::Interrupt) => Err(timeout()),
                Some(trap) => {
                    let message = match panic_text {
                        Some(text) => format!("{text} ({trap})"),
                        None => trap.to_string(),
                    };
                    Err(CallError::Trap {
                        plugin,
                        call,
                        message,
                    })
                }
                None if instantiating => Err(CallError::Instantiate {
                    plugin,
                    call,
                    message: format!("{error:#}"),
                }),
                None => Err(CallError::Trap {
                    plugin,
                    call,
                    message: format!("{error:#}"),
                }),
            }
        }
    }
}

/// Log what the plugin printed (within the call's log budget), one line
/// per log event, and return stderr's last meaningful text (a Rust panic
/// message lands there).
fn forward_output(state: &mut CallState, stream: &str, output: &CapturedOutput) -> Option<String> {
    let text = output.text();
    if text.is_empty() {
        return None;
    }
    let plugin = state.plugin.clone();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        if let Some(line) = state.log_budget.admit(line) {
            tracing::info!(plugin = &*plugin, stream, "{line}");
        }
    }
    let summary: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with("note: run with `RUST_BACKTRACE"))
        .collect();
    // The end of stderr, where a panic message is: bounded like any answer.
    let summary = summary.join(" ");
    let start = summary
        .len()
        .saturating_sub(super::answer::MAX_MESSAGE_BYTES);
    let start = (start..=summary.len())
        .find(|i| summary.is_char_boundary(*i))
        .unwrap_or(summary.len());
    (!summary.is_empty()).then(|| summary[start..].to_owned())
}
