//! The `flytewasm` command line.

mod compile;
mod inspect;
mod output;
mod plugins;
mod render;
mod run;
mod serve;
mod standalone_sandbox;
mod task_args;

pub use task_args::TaskArgs;

use std::path::PathBuf;

use clap::{Parser, Subcommand};

use crate::config::HostConfig;
use crate::runtime::{Runtime, RuntimeConfig};

#[derive(Debug, Parser)]
#[command(
    name = "flytewasm",
    version,
    about = "Flyte backend plugins as WebAssembly components"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Print the object a task would create, as YAML (no cluster needed).
    Render(TaskArgs),
    /// Run one task to completion on a cluster or the embedded sandbox.
    Run(run::Args),
    /// Serve Flyte 1's agent and Flyte 2's connector gRPC protocols for the plugins, so unmodified Flyte runs them.
    Serve(serve::Args),
    /// Start the embedded sandbox cluster (a test double) alone, for kubectl.
    Sandbox(standalone_sandbox::Args),
    /// Work with plugin components.
    #[command(subcommand)]
    Plugin(PluginCommand),
    /// List the plugins a running `serve` has loaded (its /plugins endpoint).
    Plugins(plugins::Args),
}

#[derive(Debug, Subcommand)]
pub enum PluginCommand {
    /// Show a component's identity, task types, kind, properties and imports.
    Inspect(inspect::Args),
    /// Load a component the way the host does and report whether it fits the contract.
    Validate(inspect::Args),
    /// Precompile a component for this host's engine (`.cwasm`, sealed with the host's key).
    Compile(compile::Args),
}

/// Where plugins and host configuration come from.
#[derive(Debug, clap::Args)]
pub struct HostArgs {
    /// Directory of plugin components (`*.wasm`).
    #[arg(long, env = "FLYTEWASM_PLUGINS", default_value = "plugins")]
    pub plugins: PathBuf,
    /// Host configuration file (YAML): k8s defaults, plugin configuration, runtime limits.
    #[arg(long, env = "FLYTEWASM_CONFIG")]
    pub config: Option<PathBuf>,
}

impl HostArgs {
    pub fn config(&self) -> anyhow::Result<HostConfig> {
        match &self.config {
            Some(path) => HostConfig::load(path),
            None => Ok(HostConfig::default()),
        }
    }
}

/// A runtime with the precompiled-artifact cache in the user's cache dir,
/// sealed with a key in the user's config dir (never inside the cache).
pub fn runtime(config: &RuntimeConfig) -> anyhow::Result<Runtime> {
    let mut config = config.clone();
    if config.cache_dir.is_none() {
        config.cache_dir = default_cache_dir();
    }
    if config.precompile_key_file.is_none() {
        config.precompile_key_file = default_key_file();
    }
    if config.precompile_key_file.is_none() {
        config.cache_dir = None; // nowhere safe for a key: no cache
    }
    Runtime::new(config)
}

fn default_key_file() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("FLYTEWASM_PRECOMPILE_KEY") {
        return Some(path.into());
    }
    let base = std::env::var_os("XDG_CONFIG_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".config")))?;
    Some(base.join("flytewasm").join("precompile.key"))
}

fn default_cache_dir() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os("FLYTEWASM_CACHE_DIR") {
        return Some(dir.into());
    }
    let base = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".cache")))?;
    Some(base.join("flytewasm"))
}

/// The embedded sandbox, serving the kinds `plugins` create, with
/// simulated operator states `step_ms` apart (what `run --sandbox` and
/// `serve --sandbox` share).
async fn sandbox_for<'a>(
    plugins: impl IntoIterator<Item = &'a crate::runtime::Plugin>,
    step_ms: u64,
) -> anyhow::Result<crate::sandbox::Sandbox> {
    use crate::sandbox::{Sandbox, SandboxConfig};
    let sandbox = Sandbox::start(SandboxConfig {
        step: std::time::Duration::from_millis(step_ms),
        ..SandboxConfig::default()
    })
    .await?;
    for plugin in plugins {
        sandbox.register(sandbox_kind(plugin));
    }
    Ok(sandbox)
}

/// The sandbox kind a plugin's objects are.
fn sandbox_kind(plugin: &crate::runtime::Plugin) -> crate::sandbox::Kind {
    let kind = crate::executor::lifecycle::plugin_kind(plugin);
    crate::sandbox::Kind::new(&kind.api_version, &kind.kind, &kind.plural)
}

/// Run a command; the exit code says how it ended.
pub fn run(cli: Cli) -> anyhow::Result<std::process::ExitCode> {
    let done = std::process::ExitCode::SUCCESS;
    match cli.command {
        Command::Render(args) => render::run(args).map(|()| done),
        Command::Run(args) => run::run(args),
        Command::Serve(args) => serve::run(args).map(|()| done),
        Command::Sandbox(args) => standalone_sandbox::run(args).map(|()| done),
        Command::Plugin(PluginCommand::Inspect(args)) => inspect::inspect(args).map(|()| done),
        Command::Plugin(PluginCommand::Validate(args)) => inspect::validate(args).map(|()| done),
        Command::Plugin(PluginCommand::Compile(args)) => compile::run(args).map(|()| done),
        Command::Plugins(args) => plugins::run(args).map(|()| done),
    }
}
