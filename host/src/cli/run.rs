//! `flytewasm run TASK`: run one task to completion on a cluster (or the
//! embedded sandbox), showing each phase change and log link. Ctrl-C or
//! `--timeout` aborts it: the object is deleted (or patched, as the plugin
//! says) and finalized before exit.

use std::collections::BTreeSet;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use crate::cluster::Cluster;
use crate::executor::drive::{Outcome, run_to_completion};
use crate::executor::lifecycle::Aborted;
use crate::executor::{EndWrites, Executor, PhaseEvent, TaskState, Tasks};
use crate::task_file;

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub task: super::TaskArgs,
    /// Run on the embedded sandbox cluster (a test double) instead of the KUBECONFIG cluster.
    #[arg(long)]
    pub sandbox: bool,
    /// kubeconfig context to use (default: the current one).
    #[arg(long, conflicts_with = "sandbox")]
    pub context: Option<String>,
    /// `text` for people, `json` for one JSON line per phase change.
    #[arg(long, value_enum, default_value = "text")]
    pub output: Format,
    /// Abort the task if it has not ended after this many seconds.
    #[arg(long)]
    pub timeout: Option<u64>,
    /// Sandbox only: milliseconds between simulated operator states.
    #[arg(long, default_value_t = 500)]
    pub sandbox_step_ms: u64,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum Format {
    Text,
    Json,
}

/// Exit codes: 0 succeeded, 1 failed, 130 aborted.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let template = task_file::read(&args.task.task)?;
    let config = args.task.host.config()?;
    let runtime = super::runtime(&config.runtime)?;
    let registry = crate::registry::Registry::load_dir(&runtime, &args.task.host.plugins)?;
    let plugin = registry
        .resolve(&template.r#type, template.task_type_version)?
        .clone();
    let request = args.task.request(template, &plugin);

    let tokio = tokio::runtime::Runtime::new()?;
    tokio.block_on(async move {
        let (cluster, _sandbox) = if args.sandbox {
            let sandbox = super::sandbox_for([&plugin], args.sandbox_step_ms).await?;
            eprintln!("[sandbox] running on the embedded sandbox cluster, a test double, at {}", sandbox.url());
            (Cluster::new(sandbox.client()?), Some(sandbox))
        } else {
            (Cluster::from_kubeconfig(args.context.clone()).await?, None)
        };
        let tasks = Tasks::with_end_writes(Executor::new(Arc::new(cluster), Arc::new(config)), EndWrites::Inline);

        let timeout = args.timeout.map(Duration::from_secs);
        let stop = async move {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => eprintln!("interrupted: aborting the task"),
                _ = async { match timeout {
                    Some(t) => tokio::time::sleep(t).await,
                    None => std::future::pending().await,
                } } => eprintln!("timed out after {}s: aborting the task", timeout.unwrap_or_default().as_secs()),
            }
        };
        let mut printer = Printer { format: args.output, shown_logs: BTreeSet::new() };
        let outcome = run_to_completion(&tasks, &plugin, &request, |state, event| printer.event(state, event), stop).await?;
        Ok(match outcome {
            Outcome::Succeeded(_) => {
                if matches!(args.output, Format::Text) {
                    say(format_args!("task succeeded"));
                }
                ExitCode::SUCCESS
            }
            Outcome::Failed(event) => {
                let error = event.error.unwrap_or_else(|| crate::executor::lifecycle::TaskError {
                    code: "Unknown".into(),
                    message: event.reason.clone(),
                    kind: crate::executor::ErrorKind::System,
                });
                eprintln!("task failed: [{}] {}", error.code, error.message);
                ExitCode::FAILURE
            }
            Outcome::Aborted(Aborted::Deleted) => {
                eprintln!("task aborted; its object is gone");
                ExitCode::from(130)
            }
            Outcome::Aborted(Aborted::Patched) => {
                eprintln!("task aborted; its object was patched as the plugin asked");
                ExitCode::from(130)
            }
            // The job may still be running: not the exit of a clean abort.
            Outcome::AbortedNotGone(why) => {
                eprintln!("task aborted, but its object is not gone: {why}");
                ExitCode::FAILURE
            }
        })
    })
}

struct Printer {
    format: Format,
    shown_logs: BTreeSet<String>,
}

impl Printer {
    fn event(&mut self, state: &TaskState, event: &PhaseEvent) {
        match self.format {
            Format::Json => {
                // The event as Flyte sees it, plus which object it is about.
                let mut line = serde_json::to_value(event).expect("events serialize");
                line["pluginPhase"] = line["phase"].take();
                line["phase"] = event.phase.event_phase().into();
                line["task"] = state.name.clone().into();
                line["namespace"] = state.namespace.clone().into();
                say(format_args!("{line}"));
            }
            Format::Text => {
                let version = if event.version > 0 {
                    format!(" (v{})", event.version)
                } else {
                    String::new()
                };
                say(format_args!(
                    "{}  {:<22} {}{version}",
                    event.occurred_at,
                    event.phase.event_phase(),
                    event.reason
                ));
                for log in &event.logs {
                    if self.shown_logs.insert(log.uri.clone()) {
                        say(format_args!("{:>22}  log: {} {}", "", log.name, log.uri));
                    }
                }
            }
        }
    }
}

/// A line on stdout. A reader that went away (`| head`) must not stop the
/// task from being followed and cleaned up, so write errors are ignored.
fn say(line: std::fmt::Arguments) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}").and_then(|()| out.flush());
}
