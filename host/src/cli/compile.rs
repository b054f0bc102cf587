//! `flytewasm plugin compile IN.wasm -o OUT.cwasm`: precompile a plugin for
//! this host's engine, sealed with this host's key, so it loads in
//! milliseconds instead of going through Cranelift.

use std::path::PathBuf;

use crate::config::HostConfig;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The plugin component (`.wasm`).
    pub file: PathBuf,
    /// Where to write the precompiled plugin (`.cwasm`).
    #[arg(short, long)]
    pub output: PathBuf,
    /// Host configuration whose `runtime.precompile-key-file` seals it
    /// (default: the key in the cache dir, made on first use).
    #[arg(long, env = "FLYTEWASM_CONFIG")]
    pub config: Option<PathBuf>,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let config = match &args.config {
        Some(path) => HostConfig::load(path)?,
        None => HostConfig::default(),
    };
    let runtime = super::runtime(&config.runtime)?;
    let wasm = std::fs::read(&args.file)
        .map_err(|err| anyhow::anyhow!("cannot read {}: {err}", args.file.display()))?;
    // Load it first: only a plugin that fits the contract is worth compiling.
    let plugin = runtime.load_bytes(&wasm, &args.file, &|_| Ok(()))?;
    let sealed = runtime.precompile(&wasm)?;
    // Write-then-rename: a watching host never sees half of it.
    let tmp = args.output.with_extension("cwasm.partial");
    std::fs::write(&tmp, &sealed)
        .and_then(|()| std::fs::rename(&tmp, &args.output))
        .map_err(|err| anyhow::anyhow!("cannot write {}: {err}", args.output.display()))?;
    println!(
        "{} {} ({}) → {} ({} bytes, for this host's engine)",
        plugin.id(),
        plugin.info().version,
        plugin.digest(),
        args.output.display(),
        sealed.len()
    );
    Ok(())
}
