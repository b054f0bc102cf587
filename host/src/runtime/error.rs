//! What can go wrong loading or calling a plugin. Every message names the
//! plugin (or file) and the call, so a task failure tells the user where.

use std::path::PathBuf;

use super::wit;

/// The message carries its cause (`cause`, deliberately not an error
/// `source`), so printing the chain does not repeat it.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("cannot read plugin {path}: {cause}")]
    Read {
        path: PathBuf,
        cause: std::io::Error,
    },
    #[error("{path}: refused precompiled plugin: {reason}")]
    Precompiled { path: PathBuf, reason: String },
    /// Refused by digest before anything was compiled (the allow-list).
    #[error("{path}: refused: {reason}")]
    Refused { path: PathBuf, reason: String },
    #[error("{path} is not a valid WebAssembly component: {cause:#}")]
    Compile { path: PathBuf, cause: anyhow::Error },
    #[error(
        "{path} was built for the contract {found}, this host serves {}@{}",
        super::WIT_PACKAGE,
        super::WIT_VERSION
    )]
    WitVersion { path: PathBuf, found: String },
    #[error("{path} does not fit the flytewasm:plugin contract: {cause:#}")]
    Link {
        path: PathBuf,
        cause: wasmtime::Error,
    },
    #[error("{path}: describe() failed: {cause}")]
    Describe { path: PathBuf, cause: CallError },
    #[error("{path}: invalid plugin info: {reason}")]
    Invalid { path: PathBuf, reason: String },
}

impl LoadError {
    /// The load could not run now (no free slot for `describe()`); the same
    /// file may load later.
    pub fn is_transient(&self) -> bool {
        matches!(self, LoadError::Describe { cause, .. } if cause.is_busy())
    }
}

/// A plugin call that did not give a usable answer.
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    /// The user's task is wrong (the plugin said so). Not the plugin's fault.
    #[error("{message}")]
    BadTask {
        plugin: String,
        call: &'static str,
        message: String,
    },
    /// The plugin reported an error of its own.
    #[error("plugin `{plugin}` failed in {call}: {message}")]
    Internal {
        plugin: String,
        call: &'static str,
        message: String,
    },
    /// The plugin trapped (a panic, an unreachable, a stack overflow...).
    #[error("plugin `{plugin}` crashed in {call}: {message}")]
    Trap {
        plugin: String,
        call: &'static str,
        message: String,
    },
    #[error("plugin `{plugin}` ran past its {limit_ms} ms deadline in {call}")]
    Timeout {
        plugin: String,
        call: &'static str,
        limit_ms: u128,
    },
    #[error("plugin `{plugin}` ran out of memory in {call} (limit {limit_bytes} bytes)")]
    OutOfMemory {
        plugin: String,
        call: &'static str,
        limit_bytes: usize,
    },
    /// The plugin answered, but the answer breaks the contract.
    #[error("plugin `{plugin}` returned an invalid answer from {call}: {reason}")]
    InvalidOutput {
        plugin: String,
        call: &'static str,
        reason: String,
    },
    /// The host could not start the call (e.g. a pool limit).
    #[error("plugin `{plugin}` could not be started for {call}: {message}")]
    Instantiate {
        plugin: String,
        call: &'static str,
        message: String,
    },
    /// Every slot this plugin may use stayed taken: try again later.
    #[error(
        "plugin `{plugin}` is busy: no call slot for {call} within {waited_ms} ms (its other calls hold them); retry later"
    )]
    Busy {
        plugin: String,
        call: &'static str,
        waited_ms: u128,
    },
}

impl CallError {
    pub(super) fn from_plugin(plugin: &str, call: &'static str, error: wit::PluginError) -> Self {
        let bounded = |mut message: String| {
            super::answer::truncate(&mut message, super::answer::MAX_MESSAGE_BYTES);
            message
        };
        match error {
            wit::PluginError::BadTask(message) => CallError::BadTask {
                plugin: plugin.into(),
                call,
                message: bounded(message),
            },
            wit::PluginError::Internal(message) => CallError::Internal {
                plugin: plugin.into(),
                call,
                message: bounded(message),
            },
        }
    }

    /// The user's task is at fault (a permanent, user-kind failure).
    pub fn is_bad_task(&self) -> bool {
        matches!(self, CallError::BadTask { .. })
    }

    /// The call never ran because the plugin was saturated: retrying later
    /// can succeed, and says nothing about the task.
    pub fn is_busy(&self) -> bool {
        matches!(self, CallError::Busy { .. })
    }
}
