//! One plugin call: a fresh Store from the pre-linked component, a
//! deadline, a memory cap, and every failure turned into a [`CallError`].

use std::time::Instant;

use wasmtime::component::ResourceTable;
use wasmtime::{ResourceLimiter, Store, Trap};
use wasmtime_wasi::p2::pipe::MemoryOutputPipe;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use super::{CallError, EPOCH_TICK, Plugin, sandbox, wit};

/// The Store's data for one call.
pub struct CallState {
    pub(super) plugin: std::sync::Arc<str>,
    wasi: WasiCtx,
    table: ResourceTable,
    limiter: MemoryCap,
}

impl WasiView for CallState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

/// Refuses growth past the cap and remembers that it did, so the trap that
/// follows is reported as running out of memory.
struct MemoryCap {
    limit: usize,
    exceeded: bool,
}

impl ResourceLimiter for MemoryCap {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _max: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let allowed = desired <= self.limit;
        self.exceeded |= !allowed;
        Ok(allowed)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _max: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= 100_000)
    }
}

impl Plugin {
    /// The object for this task, as JSON text (checked by the caller).
    pub fn build_resource(&self, ctx: &wit::TaskContext) -> Result<String, CallError> {
        let json = self.call("build-resource", |plugin, store| {
            plugin.call_build_resource(store, ctx)
        })?;
        self.check_size("build-resource", &json)?;
        Ok(json)
    }

    pub fn get_task_phase(
        &self,
        ctx: &wit::PhaseContext,
        observed: &str,
    ) -> Result<wit::PhaseInfo, CallError> {
        self.call("get-task-phase", |plugin, store| {
            plugin.call_get_task_phase(store, ctx, observed)
        })
    }

    pub fn on_abort(
        &self,
        ctx: &wit::PhaseContext,
        observed: &str,
    ) -> Result<wit::AbortAction, CallError> {
        let action = self.call("on-abort", |plugin, store| {
            plugin.call_on_abort(store, ctx, observed)
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

    fn call<R>(
        &self,
        call: &'static str,
        f: impl FnOnce(
            &wit::Plugin,
            &mut Store<CallState>,
        ) -> wasmtime::Result<Result<R, wit::PluginError>>,
    ) -> Result<R, CallError> {
        in_fresh_instance(&self.inner.runtime, &self.inner.pre, self.id(), call, f)
    }
}

/// Run `f` in a fresh instance of `pre`. A trap poisons only this Store.
pub(super) fn in_fresh_instance<R>(
    runtime: &super::Runtime,
    pre: &wit::PluginPre<CallState>,
    plugin: &str,
    call: &'static str,
    f: impl FnOnce(&wit::Plugin, &mut Store<CallState>) -> wasmtime::Result<Result<R, wit::PluginError>>,
) -> Result<R, CallError> {
    let plugin_id: std::sync::Arc<str> = plugin.into();
    let (wasi, stdout, stderr) = sandbox::wasi_context();
    let state = CallState {
        plugin: plugin_id.clone(),
        wasi,
        table: ResourceTable::new(),
        limiter: MemoryCap {
            limit: runtime.config.memory_limit_bytes,
            exceeded: false,
        },
    };
    let mut store = Store::new(&runtime.engine, state);
    store.limiter(|state| &mut state.limiter);
    let ticks = (runtime.config.call_timeout.as_millis() / EPOCH_TICK.as_millis()).max(1) as u64;
    store.set_epoch_deadline(ticks);

    let started = Instant::now();
    let result = pre
        .instantiate(&mut store)
        .map_err(|err| (true, err))
        .and_then(|plugin| f(&plugin, &mut store).map_err(|err| (false, err)));
    forward_output(&plugin_id, "stdout", &stdout);
    let panic_text = forward_output(&plugin_id, "stderr", &stderr);
    tracing::trace!(
        plugin = &*plugin_id,
        call,
        elapsed_us = started.elapsed().as_micros() as u64
    );

    let plugin = plugin.to_owned();
    match result {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(error)) => Err(CallError::from_plugin(&plugin, call, error)),
        Err((instantiating, error)) => {
            if store.data().limiter.exceeded {
                return Err(CallError::OutOfMemory {
                    plugin,
                    call,
                    limit_bytes: runtime.config.memory_limit_bytes,
                });
            }
            match error.downcast_ref::<Trap>() {
                Some(Trap::Interrupt) => Err(CallError::Timeout {
                    plugin,
                    call,
                    limit_ms: runtime.config.call_timeout.as_millis(),
                }),
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

/// Log what the plugin printed, one line per log event, and return stderr's
/// last meaningful text (a Rust panic message lands there).
fn forward_output(plugin: &str, stream: &str, pipe: &MemoryOutputPipe) -> Option<String> {
    let bytes = pipe.contents();
    if bytes.is_empty() {
        return None;
    }
    let text = String::from_utf8_lossy(&bytes);
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        tracing::info!(plugin, stream, "{line}");
    }
    let summary: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with("note: run with `RUST_BACKTRACE"))
        .collect();
    (!summary.is_empty()).then(|| summary.join(" "))
}
