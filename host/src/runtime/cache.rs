//! Compile a component once: precompiled artifacts are kept on disk, keyed
//! by the component's digest and the engine's compatibility hash (so each
//! tier's code has its own), and a restart (or a second load of the same
//! file) skips the compiler.
//!
//! An artifact is native code, and the directory may be writable by others
//! (a shared volume): each is sealed with the precompile key like a
//! `.cwasm`, and its seal and source digest are checked before it is
//! deserialized. One that does not check out is recompiled and replaced.

use std::hash::{Hash, Hasher};
use std::path::PathBuf;

use wasmtime::Engine;
use wasmtime::component::Component;

use super::{Runtime, precompiled};

/// Compile a component for `engine`, or reuse its cached artifact.
pub(super) fn compile(
    runtime: &Runtime,
    engine: &Engine,
    bytes: &[u8],
    digest: &str,
) -> anyhow::Result<Component> {
    // Parse fully first: malformed input is an error, never a panic.
    wasmparser::Validator::new_with_features(wasmparser::WasmFeatures::all())
        .validate_all(bytes)?;
    if let Some(component) = cached(runtime, engine, digest) {
        return Ok(component);
    }
    let component = Component::new(engine, bytes)?;
    if let (Some(path), Some(key)) = (
        artifact_path(runtime, engine, digest),
        &runtime.precompile_key,
    ) {
        let sealed = precompiled::seal(engine, key, digest, &component.serialize()?)?;
        if let Err(err) = store(&path, &sealed) {
            tracing::warn!(path = %path.display(), "cannot cache the precompiled plugin: {err}");
        }
    }
    Ok(component)
}

/// The cached artifact of the component with `digest` for `engine`, if
/// there is one and its seal checks out.
pub(super) fn cached(runtime: &Runtime, engine: &Engine, digest: &str) -> Option<Component> {
    let path = artifact_path(runtime, engine, digest)?;
    let key = runtime.precompile_key.as_ref()?;
    // Read, not mapped: a file replaced or damaged on disk later cannot
    // pull memory out from under a loaded plugin.
    let artifact = std::fs::read(&path).ok()?;
    let opened = precompiled::verify(engine, Some(key), &artifact).and_then(|sealed| {
        if sealed.source_digest() != digest {
            return Err(format!(
                "it was compiled from {}, not {digest}",
                sealed.source_digest()
            ));
        }
        sealed.open(engine)
    });
    opened
        .inspect_err(|reason| {
            tracing::warn!(path = %path.display(), "refusing cached artifact, recompiling: {reason}")
        })
        .ok()
}

fn artifact_path(runtime: &Runtime, engine: &Engine, digest: &str) -> Option<PathBuf> {
    let dir = runtime.config.cache_dir.as_ref()?;
    let engine = engine_fingerprint(engine);
    let digest = digest.trim_start_matches("sha256:");
    Some(dir.join(format!("{digest}-{engine}.cwasm")))
}

/// Which engines can share precompiled code (wasmtime version and settings).
pub(super) fn engine_fingerprint(engine: &Engine) -> String {
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    engine.precompile_compatibility_hash().hash(&mut hasher);
    format!("{:016x}", hasher.finish())
}

/// Write-then-rename, so a concurrent reader never sees half a file.
fn store(path: &PathBuf, bytes: &[u8]) -> std::io::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let mut nonce = [0u8; 8];
    getrandom::fill(&mut nonce).map_err(|err| std::io::Error::other(err.to_string()))?;
    let tmp = path.with_extension(format!("tmp-{}", hex::encode(nonce)));
    std::fs::write(&tmp, bytes)?;
    std::fs::rename(&tmp, path)
}
