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
use wasmtime::Engine;
use wasmtime::component::Component;

use super::cache;

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
#[derive(Clone, PartialEq, Eq)]
pub struct PrecompileKey([u8; 32]);

impl std::fmt::Debug for PrecompileKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PrecompileKey(..)") // never print the secret
    }
}

impl PrecompileKey {
    /// The key in `path`, created (random, mode 0600) if it does not exist.
    /// Replicas starting together may race to create it: the key is written
    /// to a private temporary file and linked into place, which fails if
    /// another got there first, whose key is then read. Nobody ever reads
    /// half a key.
    pub fn load_or_create(path: &Path) -> anyhow::Result<Self> {
        match read_key(path)? {
            Some(key) => Ok(key),
            None => {
                let mut key = [0u8; 32];
                getrandom::fill(&mut key)
                    .map_err(|err| anyhow::anyhow!("no randomness for a key: {err}"))?;
                if let Some(dir) = path.parent() {
                    std::fs::create_dir_all(dir)?;
                }
                publish_private(path, &key).map_err(|err| {
                    anyhow::anyhow!("cannot create precompile key {}: {err}", path.display())
                })?;
                read_key(path)?.ok_or_else(|| {
                    anyhow::anyhow!("precompile key {} vanished after creation", path.display())
                })
            }
        }
    }

    fn seal(&self, body: &[u8]) -> blake3::Hash {
        // Artifacts are megabytes: hashed on every core (a swap waits on it).
        blake3::Hasher::new_keyed(&self.0)
            .update_rayon(body)
            .finalize()
    }
}

fn read_key(path: &Path) -> anyhow::Result<Option<PrecompileKey>> {
    match std::fs::read(path) {
        Ok(bytes) => {
            let key: [u8; 32] = bytes.as_slice().try_into().map_err(|_| {
                anyhow::anyhow!(
                    "precompile key {} must be 32 bytes, it is {}",
                    path.display(),
                    bytes.len()
                )
            })?;
            Ok(Some(PrecompileKey(key)))
        }
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(err) => Err(anyhow::anyhow!(
            "cannot read precompile key {}: {err}",
            path.display()
        )),
    }
}

/// The key must not be where artifacts are written: anyone who can plant
/// an artifact in the cache must not also be able to read the key.
pub fn refuse_key_inside(key: &Path, cache_dir: &Path) -> anyhow::Result<()> {
    let absolute = |path: &Path| {
        std::path::absolute(path).map(|p| p.components().collect::<std::path::PathBuf>())
    };
    let (key_abs, dir_abs) = (absolute(key)?, absolute(cache_dir)?);
    if key_abs.starts_with(&dir_abs) {
        anyhow::bail!(
            "runtime.precompile-key-file {} is inside runtime.cache-dir {}: keep the key outside the cache (e.g. a mounted Secret)",
            key.display(),
            cache_dir.display()
        );
    }
    Ok(())
}

#[cfg(unix)]
fn publish_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut nonce = [0u8; 8];
    getrandom::fill(&mut nonce).map_err(|err| std::io::Error::other(err.to_string()))?;
    let tmp = path.with_extension(format!("tmp-{}", hex::encode(nonce)));
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)?
        .write_all(bytes)?;
    let linked = std::fs::hard_link(&tmp, path);
    let _ = std::fs::remove_file(&tmp);
    match linked {
        Err(err) if err.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        other => other,
    }
}

/// Compile `wasm` for this engine and seal it.
pub(super) fn compile(
    engine: &Engine,
    key: &PrecompileKey,
    wasm: &[u8],
) -> anyhow::Result<Vec<u8>> {
    wasmparser::Validator::new_with_features(wasmparser::WasmFeatures::all()).validate_all(wasm)?;
    let artifact = engine.precompile_component(wasm)?;
    seal(engine, key, &digest_of(wasm), &artifact)
}

/// Seal a compiled artifact of the component with digest `source_digest`.
pub(super) fn seal(
    engine: &Engine,
    key: &PrecompileKey,
    source_digest: &str,
    artifact: &[u8],
) -> anyhow::Result<Vec<u8>> {
    let header = serde_json::to_vec(&Header {
        source_digest: source_digest.into(),
        flytewasm: env!("CARGO_PKG_VERSION").into(),
        engine: cache::engine_fingerprint(engine),
    })?;
    let mut out = Vec::with_capacity(MAGIC.len() + 4 + header.len() + artifact.len() + MAC_LEN);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&(header.len() as u32).to_le_bytes());
    out.extend_from_slice(&header);
    out.extend_from_slice(artifact);
    let seal = key.seal(&out);
    out.extend_from_slice(seal.as_bytes());
    Ok(out)
}

/// Whether these bytes claim to be a sealed artifact (else: a component).
pub fn is_sealed(bytes: &[u8]) -> bool {
    bytes.starts_with(MAGIC)
}

/// An artifact whose seal and engine checked out: not yet deserialized.
pub struct Sealed<'a> {
    header: Header,
    artifact: &'a [u8],
}

/// Check the seal, and that `engine` made it; nothing is deserialized yet.
pub(super) fn verify<'a>(
    engine: &Engine,
    key: Option<&PrecompileKey>,
    bytes: &'a [u8],
) -> Result<Sealed<'a>, String> {
    let key =
        key.ok_or("precompiled plugins need a precompile key (runtime.precompile-key-file)")?;
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
    let header_end = (MAGIC.len() + 4).saturating_add(header_len);
    let header: Header = body
        .get(MAGIC.len() + 4..header_end)
        .and_then(|h| serde_json::from_slice(h).ok())
        .ok_or("unreadable precompiled plugin header")?;
    let engine = cache::engine_fingerprint(engine);
    if header.engine != engine || header.flytewasm != env!("CARGO_PKG_VERSION") {
        return Err(format!(
            "compiled by flytewasm {} for engine {}, this is flytewasm {} with engine {engine}: recompile it with `flytewasm plugin compile`",
            header.flytewasm,
            header.engine,
            env!("CARGO_PKG_VERSION")
        ));
    }
    Ok(Sealed {
        header,
        artifact: &body[header_end..],
    })
}

impl Sealed<'_> {
    /// The digest of the `.wasm` it was compiled from.
    pub fn source_digest(&self) -> &str {
        &self.header.source_digest
    }

    pub fn open(self, engine: &Engine) -> Result<Component, String> {
        // SAFETY: the bytes carry this host's seal, so this host (or one
        // holding its key) produced them with `precompile_component`;
        // wasmtime checks the engine compatibility again before using them.
        unsafe { super::code_memory::deserialize(engine, self.artifact) }
            .map_err(|err| format!("cannot use the precompiled plugin: {err:#}"))
    }
}

pub fn digest_of(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}
