//! `flytewasm plugin inspect|validate FILE`

use std::path::PathBuf;

use crate::runtime::{Plugin, RuntimeConfig, WIT_PACKAGE, WIT_VERSION};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The plugin component (`.wasm`).
    pub file: PathBuf,
}

fn load(args: &Args) -> anyhow::Result<Plugin> {
    let runtime = super::runtime(&RuntimeConfig::default())?;
    Ok(runtime.load(&args.file)?)
}

pub fn inspect(args: Args) -> anyhow::Result<()> {
    let plugin = load(&args)?;
    let info = plugin.info();
    let props = &info.properties;
    println!("id:            {}", info.id);
    println!("version:       {}", info.version);
    println!("contract:      {WIT_PACKAGE}@{WIT_VERSION}");
    println!("digest:        {}", plugin.digest());
    println!("task types:");
    for t in &info.task_types {
        println!("  - {} (version {})", t.name, t.version);
    }
    println!(
        "creates:       {} {} ({})",
        info.kind.api_version, info.kind.kind, info.kind.plural
    );
    println!("properties:");
    println!(
        "  inject owner references:   {}",
        !props.disable_inject_owner_references
    );
    println!(
        "  inject finalizer:          {}",
        !props.disable_inject_finalizer
    );
    println!(
        "  delete resource on finalize: {}",
        !props.disable_delete_resource_on_finalize
    );
    println!(
        "  generated name max length: {}",
        props
            .generated_name_max_length
            .map_or("50 (default)".to_owned(), |n| n.to_string())
    );
    println!(
        "  delete propagation:        {}",
        props
            .delete_propagation
            .map_or("the host's (default)".to_owned(), |p| format!("{p:?}"))
    );
    println!("imports:");
    for import in plugin.imports() {
        println!("  - {import}");
    }
    let risky: Vec<&String> = plugin
        .imports()
        .iter()
        .filter(|i| {
            ["wasi:filesystem", "wasi:sockets", "wasi:http"]
                .iter()
                .any(|p| i.starts_with(p))
        })
        .collect();
    if risky.is_empty() {
        println!("capabilities:  none (no filesystem, sockets or http imports)");
    } else {
        println!(
            "capabilities:  asks for {} (the host grants none of them)",
            risky.len()
        );
    }
    Ok(())
}

pub fn validate(args: Args) -> anyhow::Result<()> {
    let plugin = load(&args)?;
    println!(
        "{}: ok ({} {}, {})",
        args.file.display(),
        plugin.id(),
        plugin.info().version,
        plugin.digest()
    );
    Ok(())
}
