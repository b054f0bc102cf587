//! The wasm runtime: one wasmtime `Engine` per compiler tier for the
//! process, plugins compiled once (and cached precompiled), a fresh `Store`
//! per call under a deadline and a memory cap, with no ambient capabilities.
//!
//! - [`Runtime`] owns the engines and linkers; [`Runtime::load`] turns a
//!   component file into a [`Plugin`] compiled by Cranelift.
//! - [`Runtime::load_bytes_tiered`] serves a new component on Winch's code
//!   (the baseline tier, compiled in a fraction of the time) until
//!   [`Runtime::optimize`] has it compiled by Cranelift.
//! - [`Plugin`] calls the four contract functions. Every failure is a
//!   [`CallError`] naming the plugin and the call.
//! - [`slots`] shares the instance pool fairly between plugins.

pub mod answer;
mod cache;
mod call;
mod capabilities;
mod code_memory;
mod error;
mod output;
pub mod precompiled;
mod slots;

use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use wasmtime::component::{Component, Linker, types::ComponentItem};
use wasmtime::{Config, Engine, PoolingAllocationConfig};

pub use call::CallState;
pub use error::{CallError, LoadError};
pub use slots::CallSlot;

/// The generated host side of `wit/plugin.wit`.
pub mod wit {
    wasmtime::component::bindgen!({
        path: "../wit",
        world: "plugin",
        additional_derives: [PartialEq],
        // Exports are called with the async API, so a host call that
        // blocks (a WASI sleep or poll) is cancelled at the call's deadline.
        exports: { default: async },
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
    /// Linear memory a plugin may use in one call, all its memories
    /// together; also the most the host copies out of it in one transfer.
    pub memory_limit_bytes: usize,
    /// Largest answer (object JSON) a plugin may return.
    pub max_output_bytes: usize,
    /// Calls that may run at once, all plugins together (pooling allocator slots).
    pub max_concurrent_calls: u32,
    /// Slots one plugin may hold at once, so a plugin whose calls hang
    /// cannot take the others' (default: half of `max-concurrent-calls`).
    pub max_calls_per_plugin: Option<u32>,
    /// How long a call may wait for a slot before it is refused with a
    /// retryable error.
    #[serde(with = "millis")]
    pub slot_wait: Duration,
    /// What a plugin may log in one call (the `log` import, stdout and
    /// stderr together); the rest is dropped with a marker.
    pub max_log_bytes_per_call: usize,
    pub max_log_lines_per_call: usize,
    /// Where precompiled components are kept (None: no cache). Artifacts
    /// are sealed with the precompile key and checked before use.
    pub cache_dir: Option<PathBuf>,
    /// The key that seals `.cwasm` files (`flytewasm plugin compile`) and
    /// the cache; created on first use. It must not be in the cache dir:
    /// whoever can write artifacts there must not be able to read the key.
    pub precompile_key_file: Option<PathBuf>,
    /// Where plugins are hot-swapped (`serve`), compile a new component
    /// with Winch first and serve on that code while Cranelift compiles it
    /// in the background: a swap in a fraction of a second instead of
    /// seconds, then full-speed calls.
    pub baseline_tier: bool,
}

impl Default for RuntimeConfig {
    fn default() -> Self {
        RuntimeConfig {
            call_timeout: Duration::from_secs(2),
            memory_limit_bytes: 64 << 20,
            max_output_bytes: 4 << 20,
            max_concurrent_calls: 64,
            max_calls_per_plugin: None,
            slot_wait: Duration::from_secs(1),
            max_log_bytes_per_call: 64 << 10,
            max_log_lines_per_call: 200,
            cache_dir: None,
            precompile_key_file: None,
            baseline_tier: true,
        }
    }
}

impl RuntimeConfig {
    pub fn calls_per_plugin(&self) -> u32 {
        let all = self.max_concurrent_calls.max(1);
        self.max_calls_per_plugin.unwrap_or(all / 2).clamp(1, all)
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

/// Which compiler made a plugin's code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Tier {
    /// Winch: a single-pass compiler, many times faster to compile with
    /// than Cranelift; its code runs slower.
    Baseline,
    /// Cranelift.
    Optimized,
}

/// One engine and the linker for it: code from one compiler. A component
/// runs only on the engine that compiled it.
#[derive(Clone)]
struct Codegen {
    tier: Tier,
    engine: Engine,
    linker: Arc<Linker<CallState>>,
}

impl Codegen {
    fn new(tier: Tier, config: &RuntimeConfig) -> anyhow::Result<Self> {
        let mut pool = PoolingAllocationConfig::new();
        let slots = config.max_concurrent_calls.max(1);
        pool.total_component_instances(slots)
            .total_core_instances(slots * CORE_INSTANCES_PER_COMPONENT)
            .total_memories(slots * MEMORIES_PER_COMPONENT)
            .total_tables(slots * TABLES_PER_COMPONENT)
            .total_stacks(slots)
            .max_memories_per_component(MEMORIES_PER_COMPONENT)
            .max_core_instances_per_component(CORE_INSTANCES_PER_COMPONENT)
            .max_tables_per_component(TABLES_PER_COMPONENT)
            .max_memory_size(config.memory_limit_bytes)
            .pagemap_scan(wasmtime::Enabled::Auto);
        if tier == Tier::Optimized {
            // Reset a finished call's memory by zeroing it in place rather
            // than unmapping it: fresh instances start warm (wasm-host.md
            // §4). The baseline pool serves only until Cranelift's code is
            // ready, so its slots give their memory back instead of
            // doubling what idle slots keep.
            pool.linear_memory_keep_resident(16 << 20)
                .table_keep_resident(64 << 10);
        }
        let mut wasm = Config::new();
        // Linear memories keep wasmtime's default 4 GiB reservation with guard
        // pages, so compiled code needs no bounds checks; the pool reserves
        // (but does not commit) that address space per slot.
        wasm.wasm_component_model(true)
            .epoch_interruption(true)
            // Only for outside unwinders (wasmtime's own traces do without),
            // and registering it is a large part of loading a `.cwasm`.
            .native_unwind_info(false)
            .allocation_strategy(wasmtime::InstanceAllocationStrategy::Pooling(pool))
            .strategy(match tier {
                Tier::Baseline => wasmtime::Strategy::Winch,
                Tier::Optimized => wasmtime::Strategy::Cranelift,
            });
        // `perf` names plugin functions from /tmp/perf-PID.map (diagnostics).
        if std::env::var_os("FLYTEWASM_PERF_MAP").is_some() {
            wasm.profiler(wasmtime::ProfilingStrategy::PerfMap);
        }
        code_memory::configure(&mut wasm);
        let engine = Engine::new(&wasm)?;
        start_epoch_ticker(&engine);
        let mut linker = Linker::new(&engine);
        capabilities::add_to_linker(&mut linker)?;
        Ok(Codegen {
            tier,
            engine,
            linker: Arc::new(linker),
        })
    }
}

/// The engines and linkers shared by every plugin.
#[derive(Clone)]
pub struct Runtime {
    optimized: Codegen,
    /// Made on first use (`serve`'s loads, at start-up and on swaps); None
    /// if this platform's Winch cannot make one, and then everything is
    /// compiled by Cranelift.
    baseline: Arc<OnceLock<Option<Codegen>>>,
    config: Arc<RuntimeConfig>,
    precompile_key: Option<precompiled::PrecompileKey>,
    /// The pool's instance slots and each plugin's share of them: one
    /// budget for both tiers' pools.
    slots: Arc<slots::Slots>,
}

/// Per-component limits: a Rust wasip2 component is one memory and about
/// three core instances (wasm-host.md §4); anything far past that is
/// refused when it is compiled, before it can take pool entries.
const MEMORIES_PER_COMPONENT: u32 = 2;
const CORE_INSTANCES_PER_COMPONENT: u32 = 16;
const TABLES_PER_COMPONENT: u32 = 8;

impl Runtime {
    pub fn new(config: RuntimeConfig) -> anyhow::Result<Self> {
        let optimized = Codegen::new(Tier::Optimized, &config)?;
        if let (Some(dir), None) = (&config.cache_dir, &config.precompile_key_file) {
            anyhow::bail!(
                "runtime.cache-dir {} needs runtime.precompile-key-file: cached artifacts are native code and are sealed with it",
                dir.display()
            );
        }
        let precompile_key = config
            .precompile_key_file
            .as_deref()
            .map(|path| {
                if let Some(dir) = &config.cache_dir {
                    precompiled::refuse_key_inside(path, dir)?;
                }
                precompiled::PrecompileKey::load_or_create(path)
            })
            .transpose()?;
        Ok(Runtime {
            optimized,
            baseline: Arc::new(OnceLock::new()),
            slots: Arc::new(slots::Slots::new(
                config.max_concurrent_calls.max(1),
                config.calls_per_plugin(),
                config.slot_wait,
            )),
            config: Arc::new(config),
            precompile_key,
        })
    }

    /// The Winch engine, when configured and available here.
    fn baseline(&self) -> Option<&Codegen> {
        if !self.config.baseline_tier {
            return None;
        }
        self.baseline
            .get_or_init(|| {
                Codegen::new(Tier::Baseline, &self.config)
                    .inspect_err(|err| {
                        tracing::warn!(
                            "no baseline (Winch) tier, compiling with Cranelift only: {err:#}"
                        )
                    })
                    .ok()
            })
            .as_ref()
    }

    /// Compile a component for this engine, sealed with this host's key
    /// (a `.cwasm` that loads without Cranelift).
    pub fn precompile(&self, wasm: &[u8]) -> anyhow::Result<Vec<u8>> {
        let key = self.precompile_key.as_ref().ok_or_else(|| {
            anyhow::anyhow!("no precompile key: set runtime.precompile-key-file or a cache dir")
        })?;
        precompiled::compile(&self.optimized.engine, key, wasm)
    }

    /// Load a component file: digest, compile (or reuse the precompiled
    /// artifact), type-check it against the contract, and ask who it is.
    pub fn load(&self, path: &Path) -> Result<Plugin, LoadError> {
        let bytes = std::fs::read(path).map_err(|cause| LoadError::Read {
            path: path.into(),
            cause,
        })?;
        self.load_bytes(&bytes, path, &|_| Ok(()))
    }

    /// Load a component, or a `.cwasm` this host sealed (its digest is the
    /// digest of the component it was compiled from), compiled by
    /// Cranelift. `admit` sees the digest before anything is compiled or
    /// deserialized, and may refuse it.
    pub fn load_bytes(
        &self,
        bytes: &[u8],
        path: &Path,
        admit: &dyn Fn(&str) -> Result<(), String>,
    ) -> Result<Plugin, LoadError> {
        self.load_as(bytes, path, admit, false)
    }

    /// [`Runtime::load_bytes`], but a component with no Cranelift artifact
    /// in the cache is compiled by Winch (when `baseline-tier` is on):
    /// serve on it, and hand it to [`Runtime::optimize`] off the serving path.
    pub fn load_bytes_tiered(
        &self,
        bytes: &[u8],
        path: &Path,
        admit: &dyn Fn(&str) -> Result<(), String>,
    ) -> Result<Plugin, LoadError> {
        self.load_as(bytes, path, admit, true)
    }

    fn load_as(
        &self,
        bytes: &[u8],
        path: &Path,
        admit: &dyn Fn(&str) -> Result<(), String>,
        tiered: bool,
    ) -> Result<Plugin, LoadError> {
        let refused = |reason| LoadError::Refused {
            path: path.into(),
            reason,
        };
        if precompiled::is_sealed(bytes) {
            let precompiled_error = |reason| LoadError::Precompiled {
                path: path.into(),
                reason,
            };
            let engine = &self.optimized.engine;
            let sealed = precompiled::verify(engine, self.precompile_key.as_ref(), bytes)
                .map_err(precompiled_error)?;
            admit(sealed.source_digest()).map_err(refused)?;
            let digest = sealed.source_digest().to_owned();
            let component = sealed.open(engine).map_err(precompiled_error)?;
            return self.link(component, &self.optimized, digest, path, None);
        }
        let digest = precompiled::digest_of(bytes);
        admit(&digest).map_err(refused)?;
        let optimized = &self.optimized;
        if let Some(baseline) = tiered.then(|| self.baseline()).flatten() {
            // Cranelift's build, when the cache has it, serves at once.
            if let Some(component) = cache::cached(self, &optimized.engine, &digest) {
                return self.link(component, optimized, digest, path, None);
            }
            match cache::compile(self, &baseline.engine, bytes, &digest) {
                Ok(component) => {
                    let source = Some(Arc::<[u8]>::from(bytes));
                    return self.link(component, baseline, digest, path, source);
                }
                // Winch lacks some proposals Cranelift has (tail calls,
                // exceptions): such a component loads the slow way.
                Err(err) => tracing::warn!(
                    file = %path.display(),
                    "Winch cannot compile it, Cranelift will: {err:#}"
                ),
            }
        }
        let component =
            cache::compile(self, &optimized.engine, bytes, &digest).map_err(|cause| {
                LoadError::Compile {
                    path: path.into(),
                    cause,
                }
            })?;
        self.link(component, optimized, digest, path, None)
    }

    /// The same plugin compiled by Cranelift (None: it already is). Its
    /// identity is the one the baseline load established: the plugin is
    /// not asked again. Meant to run off the serving path; it takes no
    /// call slot.
    pub fn optimize(&self, plugin: &Plugin) -> Result<Option<Plugin>, LoadError> {
        let loaded = &plugin.inner;
        let Some(source) = &loaded.source else {
            return Ok(None);
        };
        let component = cache::compile(self, &self.optimized.engine, source, &loaded.digest)
            .map_err(|cause| LoadError::Compile {
                path: loaded.path.clone(),
                cause,
            })?;
        let pre = self.pre(&component, &self.optimized, &loaded.path)?;
        Ok(Some(Plugin {
            inner: Arc::new(Loaded {
                info: loaded.info.clone(),
                digest: loaded.digest.clone(),
                path: loaded.path.clone(),
                imports: loaded.imports.clone(),
                tier: Tier::Optimized,
                source: None,
                pre,
                runtime: self.clone(),
            }),
        }))
    }

    fn pre(
        &self,
        component: &Component,
        codegen: &Codegen,
        path: &Path,
    ) -> Result<wit::PluginPre<CallState>, LoadError> {
        codegen
            .linker
            .instantiate_pre(component)
            .and_then(wit::PluginPre::new)
            .map_err(|cause| LoadError::Link {
                path: path.into(),
                cause,
            })
    }

    /// Type-check a compiled component against the contract and ask who it is.
    fn link(
        &self,
        component: Component,
        codegen: &Codegen,
        digest: String,
        path: &Path,
        source: Option<Arc<[u8]>>,
    ) -> Result<Plugin, LoadError> {
        let imports = imports_of(&codegen.engine, &component);
        check_wit_version(&imports).map_err(|found| LoadError::WitVersion {
            path: path.into(),
            found,
        })?;
        let pre = self.pre(&component, codegen, path)?;
        // Ask who it is in a throwaway instance, named after its file until it says.
        let file_name = path
            .file_stem()
            .map(|s| s.to_string_lossy())
            .unwrap_or_default();
        // A load waits for a slot and runs under the deadline and memory
        // cap like any call; its share is that of the file until it says who it is.
        let info = self
            .slots
            // Loads have a share of their own: a fixed build must be able to
            // load while the broken one's calls hold the plugin's share.
            .acquire_blocking(&format!("{file_name} (loading)"), "describe")
            .and_then(|_slot| {
                call::in_fresh_instance(
                    self,
                    &pre,
                    &file_name,
                    "describe",
                    async |plugin, store| plugin.call_describe(store).await.map(Ok),
                )
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
                tier: codegen.tier,
                source,
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
    tier: Tier,
    /// The component, kept while its code is Winch's, for Cranelift.
    source: Option<Arc<[u8]>>,
    pre: wit::PluginPre<CallState>,
    runtime: Runtime,
}

impl std::fmt::Debug for Plugin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Plugin")
            .field("id", &self.id())
            .field("version", &self.info().version)
            .field("digest", &self.digest())
            .field("tier", &self.tier())
            .field("path", &self.path())
            .finish()
    }
}

impl Plugin {
    /// Wait (up to `slot-wait`) for one of this plugin's slots and one of
    /// the pool's, to be held for the call. Past the wait the call is
    /// refused with [`CallError::Busy`], which is retryable.
    /// `within` shortens the wait for a caller with a deadline of its own.
    pub async fn call_slot(
        &self,
        call: &'static str,
        within: Option<Duration>,
    ) -> Result<CallSlot, CallError> {
        self.inner
            .runtime
            .slots
            .acquire(self.id(), call, within)
            .await
    }

    /// Calls of this plugin are being refused: its share was full for a
    /// whole `slot-wait` within the last few seconds.
    pub fn saturated(&self) -> bool {
        self.inner.runtime.slots.saturated(self.id())
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

    /// Which compiler made the code calls run.
    pub fn tier(&self) -> Tier {
        self.inner.tier
    }

    /// The same loaded version (not merely the same digest).
    pub fn same(&self, other: &Plugin) -> bool {
        Arc::ptr_eq(&self.inner, &other.inner)
    }

    pub fn serves(&self, task_type: &str, version: i32) -> bool {
        self.info()
            .task_types
            .iter()
            .any(|t| t.name == task_type && t.version == version)
    }
}
