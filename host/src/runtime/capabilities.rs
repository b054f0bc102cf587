//! What a plugin can reach: WASI with an empty context (no preopened
//! directories, no environment or arguments, no sockets, closed stdin,
//! frozen clocks), stdout/stderr captured, and the host's logger.
//!
//! WASI is linked with its async bindings, so every import a wasip2 guest
//! gets runs inside the call's deadline ([`super::call`]): a sleep or a
//! poll on a far-future clock is cancelled when the deadline passes. What
//! else could cost the host is capped here: random bytes per request and
//! host-side resources (pollables, streams) per call.

use std::time::Duration;

use wasmtime::component::{HasSelf, Linker};
use wasmtime_wasi::{HostMonotonicClock, HostWallClock, WasiCtx};

use super::CallState;
use super::output::CapturedOutput;
use super::wit;

/// Random bytes one WASI call may ask for (std's hash seeds need 16).
const MAX_RANDOM_BYTES: u64 = 64 << 10;
/// Host-side WASI resources one call may hold at once.
pub(super) const MAX_HOST_RESOURCES: usize = 10_000;

pub(super) fn add_to_linker(linker: &mut Linker<CallState>) -> anyhow::Result<()> {
    wasmtime_wasi::p2::add_to_linker_async(linker)?;
    wit::Plugin::add_to_linker::<_, HasSelf<_>>(linker, |state| state)?;
    Ok(())
}

/// The WASI context of one call, writing stdout and stderr to `output`.
pub(super) fn wasi_context(stdout: &CapturedOutput, stderr: &CapturedOutput) -> WasiCtx {
    WasiCtx::builder()
        .stdout(stdout.clone())
        .stderr(stderr.clone())
        .wall_clock(FrozenClock)
        .monotonic_clock(FrozenClock)
        // Off even though no address is allowed: creating sockets would
        // still spend the host's file descriptors.
        .allow_tcp(false)
        .allow_udp(false)
        .allow_ip_name_lookup(false)
        .max_random_size(MAX_RANDOM_BYTES)
        .build()
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
        let Some(message) = self.log_budget.admit(&message) else {
            return;
        };
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
