use std::process::ExitCode;

use clap::Parser;
use flytewasm::cli::{Cli, Command};
use tracing_subscriber::EnvFilter;

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logs(&cli);
    match flytewasm::cli::run(cli) {
        Ok(code) => code,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

/// Logs go to stderr. `FLYTEWASM_LOG` filters them (default: `info` for
/// `serve`, `warn` otherwise); `FLYTEWASM_LOG_FORMAT=json` makes them one
/// JSON object a line, for log collectors.
fn init_logs(cli: &Cli) {
    let default = match cli.command {
        Command::Serve(_) => "info",
        _ => "warn",
    };
    let filter =
        EnvFilter::try_from_env("FLYTEWASM_LOG").unwrap_or_else(|_| EnvFilter::new(default));
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if std::env::var("FLYTEWASM_LOG_FORMAT").is_ok_and(|f| f == "json") {
        logs.json().init();
    } else {
        logs.init();
    }
}
