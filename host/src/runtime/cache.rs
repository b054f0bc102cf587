//! Compile a component once: precompiled artifacts are kept on disk, keyed
//! by the component's digest and the engine's compatibility hash, so a
//! restart (or a second load of the same file) skips Cranelift.

use std::hash::{Hash, Hasher};
use std::path::PathBuf;

use wasmtime::component::Component;

use super::Runtime;

pub(super) fn compile(runtime: &Runtime, bytes: &[u8], digest: &str) -> anyhow::Result<Component> {
    // Parse fully first: malformed input is an error, never a panic.
    wasmparser::Validator::new_with_features(wasmparser::WasmFeatures::all())
        .validate_all(bytes)?;
    let Some(path) = artifact_path(runtime, digest) else {
        return Ok(Component::new(&runtime.engine, bytes)?);
    };
    if let Ok(artifact) = std::fs::read(&path) {
        // Read, not mapped: a file replaced or damaged on disk later cannot
        // pull memory out from under a loaded plugin.
        // SAFETY: the cache directory holds only artifacts this host wrote,
        // named by the digest of their source and this engine's hash, and
        // wasmtime checks the engine compatibility before using one.
        match unsafe { Component::deserialize(&runtime.engine, &artifact) } {
            Ok(component) => return Ok(component),
            Err(err) => {
                tracing::warn!(path = %path.display(), "ignoring unusable precompiled artifact: {err:#}")
            }
        }
    }
    let component = Component::new(&runtime.engine, bytes)?;
    if let Err(err) = store(&path, &component.serialize()?) {
        tracing::warn!(path = %path.display(), "cannot cache the precompiled plugin: {err}");
    }
    Ok(component)
}

fn artifact_path(runtime: &Runtime, digest: &str) -> Option<PathBuf> {
    let dir = runtime.config.cache_dir.as_ref()?;
    let engine = engine_fingerprint(&runtime.engine);
    let digest = digest.trim_start_matches("sha256:");
    Some(dir.join(format!("{digest}-{engine}.cwasm")))
}

/// Which engines can share precompiled code (wasmtime version and settings).
pub(super) fn engine_fingerprint(engine: &wasmtime::Engine) -> String {
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    engine.precompile_compatibility_hash().hash(&mut hasher);
    format!("{:016x}", hasher.finish())
}

/// Write-then-rename, so a concurrent reader never sees half a file.
fn store(path: &PathBuf, bytes: &[u8]) -> std::io::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    std::fs::write(&tmp, bytes)?;
    std::fs::rename(&tmp, path)
}
