//! `.cwasm` files: a component precompiled for this host's engine by
//! `flytewasm plugin compile`. Precompiled code is native code, so it is
//! trusted code: the file is sealed with a MAC under the host's key (keyed
//! BLAKE3: several times faster than HMAC-SHA256 over a multi-megabyte
//! artifact, which is most of a swap's cost), and only a seal that checks
//! out is ever deserialized. Hosts that share the
//! key (a Kubernetes Secret) share artifacts; anything else is refused.
//!
//! Layout: `MAGIC`, header length (u32 LE), header (JSON), the artifact,
//! then the keyed BLAKE3 hash of everything before it.

use std::path::Path;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use wasmtime::component::Component;

use super::{Runtime, cache};

const MAGIC: &[u8; 16] = b"flytewasm-cwasm1";
const MAC_LEN: usize = 32;

#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Header {
    /// Digest of the `.wasm` it was compiled from: the plugin's identity.
    source_digest: String,
    flytewasm: String,
    engine: String,
}

/// The secret that seals artifacts.
#[derive(Clone)]
pub struct PrecompileKey([u8; 32]);

impl PrecompileKey {
    /// The key in `path`, created (random, mode 0600) if it does not exist.
    pub fn load_or_create(path: &Path) -> anyhow::Result<Self> {
        match std::fs::read(path) {
            Ok(bytes) => {
                let key: [u8; 32] = bytes.as_slice().try_into().map_err(|_| {
                    anyhow::anyhow!(
                        "precompile key {} must be 32 bytes, it is {}",
                        path.display(),
                        bytes.len()
                    )
                })?;
                Ok(PrecompileKey(key))
            }
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
                let mut key = [0u8; 32];
                getrandom::fill(&mut key)
                    .map_err(|err| anyhow::anyhow!("no randomness for a key: {err}"))?;
                if let Some(dir) = path.parent() {
                    std::fs::create_dir_all(dir)?;
                }
                write_private(path, &key)?;
                Ok(PrecompileKey(key))
            }
            Err(err) => Err(anyhow::anyhow!(
                "cannot read precompile key {}: {err}",
                path.display()
            )),
        }
    }

    fn seal(&self, body: &[u8]) -> blake3::Hash {
        blake3::keyed_hash(&self.0, body)
    }
}

#[cfg(unix)]
fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?
        .write_all(bytes)
}

/// Compile `wasm` for this engine and seal it.
pub fn compile(runtime: &Runtime, key: &PrecompileKey, wasm: &[u8]) -> anyhow::Result<Vec<u8>> {
    wasmparser::Validator::new_with_features(wasmparser::WasmFeatures::all()).validate_all(wasm)?;
    let artifact = runtime.engine.precompile_component(wasm)?;
    let header = serde_json::to_vec(&Header {
        source_digest: digest_of(wasm),
        flytewasm: env!("CARGO_PKG_VERSION").into(),
        engine: cache::engine_fingerprint(&runtime.engine),
    })?;
    let mut out = Vec::with_capacity(MAGIC.len() + 4 + header.len() + artifact.len() + MAC_LEN);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&(header.len() as u32).to_le_bytes());
    out.extend_from_slice(&header);
    out.extend_from_slice(&artifact);
    let seal = key.seal(&out);
    out.extend_from_slice(seal.as_bytes());
    Ok(out)
}

/// Whether these bytes claim to be a sealed artifact (else: a component).
pub fn is_sealed(bytes: &[u8]) -> bool {
    bytes.starts_with(MAGIC)
}

/// Check the seal and the engine, then deserialize. Returns the component
/// and the digest of the `.wasm` it came from.
pub fn open(
    runtime: &Runtime,
    key: Option<&PrecompileKey>,
    bytes: &[u8],
) -> Result<(Component, String), String> {
    let key = key.ok_or(
        "precompiled plugins need a precompile key (runtime.precompile-key-file, or a cache dir)",
    )?;
    let body_len = bytes
        .len()
        .checked_sub(MAC_LEN)
        .filter(|len| *len >= MAGIC.len() + 4)
        .ok_or("truncated precompiled plugin")?;
    let (body, tag) = bytes.split_at(body_len);
    let tag: [u8; MAC_LEN] = tag.try_into().expect("split at MAC_LEN");
    // `Hash` equality is constant-time.
    if key.seal(body) != blake3::Hash::from_bytes(tag) {
        return Err(
            "the seal does not match this host's precompile key: it was not compiled by this host \
             (or was altered); run `flytewasm plugin compile` here"
                .into(),
        );
    }
    let header_len =
        u32::from_le_bytes(body[MAGIC.len()..MAGIC.len() + 4].try_into().unwrap()) as usize;
    let header_end = MAGIC.len() + 4 + header_len;
    let header: Header = body
        .get(MAGIC.len() + 4..header_end)
        .and_then(|h| serde_json::from_slice(h).ok())
        .ok_or("unreadable precompiled plugin header")?;
    let engine = cache::engine_fingerprint(&runtime.engine);
    if header.engine != engine || header.flytewasm != env!("CARGO_PKG_VERSION") {
        return Err(format!(
            "compiled by flytewasm {} for engine {}, this is flytewasm {} with engine {engine}: recompile it with `flytewasm plugin compile`",
            header.flytewasm,
            header.engine,
            env!("CARGO_PKG_VERSION")
        ));
    }
    // SAFETY: the bytes carry this host's seal, so this host (or one holding
    // its key) produced them with `precompile_component`; wasmtime checks the
    // engine compatibility again before using them.
    let component = unsafe { Component::deserialize(&runtime.engine, &body[header_end..]) }
        .map_err(|err| format!("cannot use the precompiled plugin: {err:#}"))?;
    Ok((component, header.source_digest))
}

pub fn digest_of(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}
