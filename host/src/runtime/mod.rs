//! The wasm runtime: one wasmtime `Engine` for the process, plugins compiled
//! once (and cached precompiled), a fresh `Store` per call under a deadline
//! and a memory cap, with no ambient capabilities.
//!
//! - [`Runtime`] owns the engine and linker; [`Runtime::load`] turns a
//!   component file into a [`Plugin`].
//! - [`Plugin`] calls the four contract functions. Every failure is a
//!   [`CallError`] naming the plugin and the call.

mod cache;
mod call;
mod error;
pub mod precompiled;
mod sandbox;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use wasmtime::component::{Component, Linker, types::ComponentItem};
use wasmtime::{Config, Engine, PoolingAllocationConfig};

pub use call::CallState;
pub use error::{CallError, LoadError};

/// The generated host side of `wit/plugin.wit`.
pub mod wit {
    wasmtime::component::bindgen!({
        path: "../wit",
        world: "plugin",
        additional_derives: [PartialEq],
    });
    pub use self::flytewasm::plugin::types::*;
}

/// The WIT package every plugin must be built against.
pub const WIT_PACKAGE: &str = "flytewasm:plugin";
pub const WIT_VERSION: &str = "0.1.0";

/// Limits and tuning for plugin calls.
#[derive(Debug, Clone, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "kebab-case", default)]
pub struct RuntimeConfig {
    /// Wall-clock budget of one call.
    #[serde(with = "millis")]
    pub call_timeout: Duration,
    /// Linear memory a plugin may use in one call.
    pub memory_limit_bytes: usize,
    /// Largest answer (object JSON) a plugin may return.
    pub max_output_bytes: usize,
    /// Calls that may run at once (pooling allocator slots).
    pub max_concurrent_calls: u32,
    /// Where precompiled components are kept (None: no cache).
    pub cache_dir: Option<PathBuf>,
    /// The key that seals `.cwasm` files (`flytewasm plugin compile`);
    /// default: `precompile.key` in the cache dir, created on first use.
    pub precompile_key_file: Option<PathBuf>,
}

impl Default for RuntimeConfig {
    fn default() -> Self {
        RuntimeConfig {
            call_timeout: Duration::from_secs(2),
            memory_limit_bytes: 64 << 20,
            max_output_bytes: 4 << 20,
            max_concurrent_calls: 64,
            cache_dir: None,
            precompile_key_file: None,
        }
    }
}

mod millis {
    use serde::{Deserialize, Deserializer, Serializer};
    use std::time::Duration;

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(d.as_millis() as u64)
    }
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        Ok(Duration::from_millis(u64::deserialize(d)?))
    }
}

/// How often the epoch advances: the resolution of call deadlines.
const EPOCH_TICK: Duration = Duration::from_millis(5);

/// The engine and linker shared by every plugin.
#[derive(Clone)]
pub struct Runtime {
    engine: Engine,
    linker: Arc<Linker<CallState>>,
    config: Arc<RuntimeConfig>,
    precompile_key: Option<precompiled::PrecompileKey>,
    /// One permit per pooled instance slot (see [`Plugin::call_slot`]).
    slots: Arc<tokio::sync::Semaphore>,
}

impl Runtime {
    pub fn new(config: RuntimeConfig) -> anyhow::Result<Self> {
        let mut pool = PoolingAllocationConfig::new();
        let slots = config.max_concurrent_calls.max(1);
        pool.total_component_instances(slots)
            // A Rust component is about three core instances (wasm-host.md §4).
            .total_core_instances(slots * 4)
            .total_memories(slots * 2)
            .total_tables(slots * 4)
            .max_memory_size(config.memory_limit_bytes)
            // Reset a finished call's memory by zeroing it in place rather
            // than unmapping it: fresh instances start warm (wasm-host.md §4).
            .linear_memory_keep_resident(16 << 20)
            .table_keep_resident(64 << 10)
            .pagemap_scan(wasmtime::Enabled::Auto);
        let mut wasm = Config::new();
        // Linear memories keep wasmtime's default 4 GiB reservation with guard
        // pages, so compiled code needs no bounds checks; the pool reserves
        // (but does not commit) that address space per slot.
        wasm.wasm_component_model(true)
            .epoch_interruption(true)
            .allocation_strategy(wasmtime::InstanceAllocationStrategy::Pooling(pool));
        let engine = Engine::new(&wasm)?;
        start_epoch_ticker(&engine);

        let mut linker = Linker::new(&engine);
        sandbox::add_to_linker(&mut linker)?;
        let key_file = config.precompile_key_file.clone().or_else(|| {
            config
                .cache_dir
                .as_ref()
                .map(|dir| dir.join("precompile.key"))
        });
        let precompile_key = key_file
            .map(|path| precompiled::PrecompileKey::load_or_create(&path))
            .transpose()?;
        Ok(Runtime {
            engine,
            linker: Arc::new(linker),
            config: Arc::new(config),
            precompile_key,
            slots: Arc::new(tokio::sync::Semaphore::new(slots as usize)),
        })
    }

    /// Compile a component for this engine, sealed with this host's key
    /// (a `.cwasm` that loads without Cranelift).
    pub fn precompile(&self, wasm: &[u8]) -> anyhow::Result<Vec<u8>> {
        let key = self.precompile_key.as_ref().ok_or_else(|| {
            anyhow::anyhow!("no precompile key: set runtime.precompile-key-file or a cache dir")
        })?;
        precompiled::compile(self, key, wasm)
    }

    /// Load a component file: digest, compile (or reuse the precompiled
    /// artifact), type-check it against the contract, and ask who it is.
    pub fn load(&self, path: &Path) -> Result<Plugin, LoadError> {
        let bytes = std::fs::read(path).map_err(|cause| LoadError::Read {
            path: path.into(),
            cause,
        })?;
        self.load_bytes(&bytes, path)
    }

    /// Load a component, or a `.cwasm` this host sealed (its digest is the
    /// digest of the component it was compiled from).
    pub fn load_bytes(&self, bytes: &[u8], path: &Path) -> Result<Plugin, LoadError> {
        let (component, digest) = if precompiled::is_sealed(bytes) {
            precompiled::open(self, self.precompile_key.as_ref(), bytes).map_err(|reason| {
                LoadError::Precompiled {
                    path: path.into(),
                    reason,
                }
            })?
        } else {
            let digest = precompiled::digest_of(bytes);
            let component =
                cache::compile(self, bytes, &digest).map_err(|cause| LoadError::Compile {
                    path: path.into(),
                    cause,
                })?;
            (component, digest)
        };
        let imports = imports_of(&self.engine, &component);
        check_wit_version(&imports).map_err(|found| LoadError::WitVersion {
            path: path.into(),
            found,
        })?;
        let pre = self
            .linker
            .instantiate_pre(&component)
            .and_then(wit::PluginPre::new)
            .map_err(|cause| LoadError::Link {
                path: path.into(),
                cause,
            })?;
        // Ask who it is in a throwaway instance, named after its file until it says.
        let file_name = path
            .file_stem()
            .map(|s| s.to_string_lossy())
            .unwrap_or_default();
        let info = call::in_fresh_instance(self, &pre, &file_name, "describe", |plugin, store| {
            plugin.call_describe(store).map(Ok)
        })
        .map_err(|cause| LoadError::Describe {
            path: path.into(),
            cause,
        })?;
        validate_info(&info).map_err(|reason| LoadError::Invalid {
            path: path.into(),
            reason,
        })?;
        Ok(Plugin {
            inner: Arc::new(Loaded {
                info,
                digest,
                path: path.into(),
                imports,
                pre,
                runtime: self.clone(),
            }),
        })
    }
}

/// Advance the engine's epoch in the background; deadlines are counted in ticks.
fn start_epoch_ticker(engine: &Engine) {
    let engine = engine.weak();
    std::thread::Builder::new()
        .name("flytewasm-epoch".into())
        .spawn(move || {
            while let Some(engine) = engine.upgrade() {
                engine.increment_epoch();
                drop(engine);
                std::thread::sleep(EPOCH_TICK);
            }
        })
        .expect("spawning the epoch ticker");
}

/// Names of everything the component imports (WASI interfaces and ours).
fn imports_of(engine: &Engine, component: &Component) -> Vec<String> {
    component
        .component_type()
        .imports(engine)
        .map(|(name, item)| match item.ty {
            ComponentItem::ComponentInstance(_) => name.to_owned(),
            _ => format!("{name} (not an interface)"),
        })
        .collect()
}

/// A plugin built against another version of the contract is refused with
/// the version it asked for.
fn check_wit_version(imports: &[String]) -> Result<(), String> {
    let ours = imports.iter().find(|name| name.starts_with(WIT_PACKAGE));
    match ours {
        Some(name) if name.ends_with(&format!("@{WIT_VERSION}")) => Ok(()),
        Some(name) => Err(name.clone()),
        None => Err(format!(
            "no import of {WIT_PACKAGE} (not a flytewasm plugin)"
        )),
    }
}

fn validate_info(info: &wit::PluginInfo) -> Result<(), String> {
    if info.id.is_empty() || info.id != info.id.to_lowercase() {
        return Err(format!(
            "plugin id `{}` must be non-empty and lower case",
            info.id
        ));
    }
    if info.task_types.is_empty() {
        return Err("the plugin serves no task type".into());
    }
    let kind = &info.kind;
    if kind.api_version.is_empty() || kind.kind.is_empty() || kind.plural.is_empty() {
        return Err("the resource kind needs apiVersion, kind and plural".into());
    }
    if let Some(len) = info.properties.generated_name_max_length
        && len < 8
    {
        return Err(format!(
            "generated-name-max-length is {len}; it must be at least 8"
        ));
    }
    Ok(())
}

/// A loaded plugin: cheap to clone; calls in flight keep their version alive.
#[derive(Clone)]
pub struct Plugin {
    inner: Arc<Loaded>,
}

struct Loaded {
    info: wit::PluginInfo,
    digest: String,
    path: PathBuf,
    imports: Vec<String>,
    pre: wit::PluginPre<CallState>,
    runtime: Runtime,
}

impl std::fmt::Debug for Plugin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Plugin")
            .field("id", &self.id())
            .field("version", &self.info().version)
            .field("digest", &self.digest())
            .field("path", &self.path())
            .finish()
    }
}

impl Plugin {
    /// Wait for a free instance slot. The pool holds
    /// `max_concurrent_calls` instances; a call beyond that would fail to
    /// start, so concurrent callers queue here and hold the permit for the call.
    pub async fn call_slot(&self) -> tokio::sync::OwnedSemaphorePermit {
        self.inner
            .runtime
            .slots
            .clone()
            .acquire_owned()
            .await
            .expect("the slot semaphore is never closed")
    }

    pub fn id(&self) -> &str {
        &self.inner.info.id
    }

    pub fn info(&self) -> &wit::PluginInfo {
        &self.inner.info
    }

    /// `sha256:<hex>` of the component file.
    pub fn digest(&self) -> &str {
        &self.inner.digest
    }

    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    pub fn imports(&self) -> &[String] {
        &self.inner.imports
    }

    pub fn serves(&self, task_type: &str, version: i32) -> bool {
        self.info()
            .task_types
            .iter()
            .any(|t| t.name == task_type && t.version == version)
    }
}
