//! What a plugin can reach: WASI with an empty context (no preopened
//! directories, no environment or arguments, no network, closed stdin,
//! frozen clocks), stdout/stderr captured, and the host's logger.

use std::time::Duration;

use wasmtime::component::{HasSelf, Linker};
use wasmtime_wasi::p2::pipe::MemoryOutputPipe;
use wasmtime_wasi::{HostMonotonicClock, HostWallClock, WasiCtx};

use super::CallState;
use super::wit;

/// Output a plugin may print per call before it is cut (panic messages fit).
const CAPTURED_OUTPUT_BYTES: usize = 64 << 10;

pub(super) fn add_to_linker(linker: &mut Linker<CallState>) -> anyhow::Result<()> {
    wasmtime_wasi::p2::add_to_linker_sync(linker)?;
    wit::Plugin::add_to_linker::<_, HasSelf<_>>(linker, |state| state)?;
    Ok(())
}

/// The WASI context of one call, and the pipes its output lands in.
pub(super) fn wasi_context() -> (WasiCtx, MemoryOutputPipe, MemoryOutputPipe) {
    let stdout = MemoryOutputPipe::new(CAPTURED_OUTPUT_BYTES);
    let stderr = MemoryOutputPipe::new(CAPTURED_OUTPUT_BYTES);
    let ctx = WasiCtx::builder()
        .stdout(stdout.clone())
        .stderr(stderr.clone())
        .wall_clock(FrozenClock)
        .monotonic_clock(FrozenClock)
        .build();
    (ctx, stdout, stderr)
}

/// A clock stopped at the Unix epoch: plugins get time only through
/// `task-context.now`, so their answers depend on their inputs alone.
struct FrozenClock;

impl HostWallClock for FrozenClock {
    fn resolution(&self) -> Duration {
        Duration::from_secs(1)
    }
    fn now(&self) -> Duration {
        Duration::ZERO
    }
}

impl HostMonotonicClock for FrozenClock {
    fn resolution(&self) -> u64 {
        1_000_000_000
    }
    fn now(&self) -> u64 {
        0
    }
}

impl wit::flytewasm::plugin::host::Host for CallState {
    fn log(&mut self, level: wit::flytewasm::plugin::host::Level, message: String) {
        use wit::flytewasm::plugin::host::Level;
        let plugin = &*self.plugin;
        match level {
            Level::Debug => tracing::debug!(plugin, "{message}"),
            Level::Info => tracing::info!(plugin, "{message}"),
            Level::Warn => tracing::warn!(plugin, "{message}"),
            Level::Error => tracing::error!(plugin, "{message}"),
        }
    }
}

impl wit::flytewasm::plugin::types::Host for CallState {}
