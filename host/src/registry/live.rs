//! Keeping the served plugins in step with their directory, without a
//! restart (Envoy's model, reference/wasm-host.md §1.4): a new or changed
//! file is loaded off the serving path and swapped in whole; calls in
//! flight finish on the snapshot they started with.
//!
//! A new component is served first on Winch's code, which compiles in a
//! fraction of Cranelift's time; one background thread then compiles it
//! with Cranelift and swaps that in the same way (calls in flight finish
//! on the code they started on).
//!
//! A file is read only once it is complete: when its writer closes it, when
//! it is renamed into place (the safe way to publish), or when nothing has
//! written to it for [`QUIET`]. A rescan every [`RESCAN`] catches volumes
//! that send no change events.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::mpsc::{RecvTimeoutError, Sender, channel};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use notify::event::{AccessKind, AccessMode, EventKind, ModifyKind};
use notify::{RecursiveMode, Watcher};

use super::{AllowList, Change, Registry};
use crate::metrics::Metrics;
use crate::runtime::{Plugin, Runtime, Tier};

/// How long a file must go unwritten before a half-finished write is ruled out.
pub const QUIET: Duration = Duration::from_millis(300);
/// Look at the directory this often even without events.
pub const RESCAN: Duration = Duration::from_secs(10);

/// What may serve.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Plugin id → the sha256 digests allowed for it; None: any.
    pub allow_list: Option<AllowList>,
    /// Task type name → the plugin id that serves it when two claim it.
    pub owners: HashMap<String, String>,
}

impl Options {
    /// A digest listed for some plugin (checked before compiling: an
    /// unlisted file never reaches Cranelift or the deserializer).
    pub(super) fn admit_digest(&self, digest: &str) -> Result<(), String> {
        match &self.allow_list {
            Some(list) if !list.values().flatten().any(|d| d == digest) => {
                Err(format!("digest {digest} is not on the allow-list"))
            }
            _ => Ok(()),
        }
    }

    pub(super) fn check_allowed(&self, plugin: &Plugin) -> Result<(), String> {
        let Some(list) = &self.allow_list else {
            return Ok(());
        };
        match list.get(plugin.id()) {
            Some(digests) if digests.iter().any(|d| d == plugin.digest()) => Ok(()),
            Some(_) => Err(format!(
                "plugin `{}` {} is not on the allow-list (its digest {} is not listed for `{}`)",
                plugin.id(),
                plugin.info().version,
                plugin.digest(),
                plugin.id()
            )),
            None => Err(format!(
                "plugin `{}` is not on the allow-list (no digests are listed for it)",
                plugin.id()
            )),
        }
    }

    pub(super) fn owns_any(&self, plugin: &Plugin) -> bool {
        plugin
            .info()
            .task_types
            .iter()
            .any(|t| self.owners.get(&t.name).is_some_and(|id| id == plugin.id()))
    }
}

/// The current snapshot of a plugin directory.
pub struct LivePlugins {
    current: ArcSwap<Registry>,
    runtime: Option<Runtime>,
    options: Options,
    metrics: Option<Arc<Metrics>>,
    /// One reload at a time.
    reloading: Mutex<()>,
    /// Bumped after each swap that changed something.
    swaps: tokio::sync::watch::Sender<u64>,
    /// Plugins serving on the baseline tier, to be compiled by Cranelift.
    to_optimize: Option<Mutex<Sender<Plugin>>>,
}

impl LivePlugins {
    /// Load the directory now (files that fail are reported, not fatal).
    pub fn load(
        runtime: Runtime,
        dir: &Path,
        options: Options,
        metrics: Option<Arc<Metrics>>,
    ) -> anyhow::Result<Arc<Self>> {
        let (to_optimize, queue) = channel();
        let live = Arc::new(LivePlugins {
            current: ArcSwap::from_pointee(Registry::empty(dir)),
            runtime: Some(runtime.clone()),
            options,
            metrics,
            reloading: Mutex::new(()),
            swaps: tokio::sync::watch::Sender::new(0),
            to_optimize: Some(Mutex::new(to_optimize)),
        });
        let weak = Arc::downgrade(&live);
        std::thread::Builder::new()
            .name("flytewasm-optimize".into())
            .spawn(move || optimize(weak, runtime, queue))?;
        live.reload_with(&|_| true)?;
        Ok(live)
    }

    /// A fixed set that never reloads (tests, embedders).
    pub fn fixed(registry: Registry) -> Arc<Self> {
        Arc::new(LivePlugins {
            current: ArcSwap::from_pointee(registry),
            runtime: None,
            options: Options::default(),
            metrics: None,
            reloading: Mutex::new(()),
            swaps: tokio::sync::watch::Sender::new(0),
            to_optimize: None,
        })
    }

    /// The snapshot to resolve against; it stays valid while held.
    pub fn current(&self) -> Arc<Registry> {
        self.current.load_full()
    }

    /// Told after each swap that changed what is served (e.g. to
    /// register a new plugin's kind with a sandbox).
    pub fn subscribe(&self) -> tokio::sync::watch::Receiver<u64> {
        self.swaps.subscribe()
    }

    /// Look at the directory now.
    pub fn reload(&self) -> anyhow::Result<Vec<Change>> {
        self.reload_with(&|_| true)
    }

    fn reload_with(&self, ready: &dyn Fn(&Path) -> bool) -> anyhow::Result<Vec<Change>> {
        let Some(runtime) = &self.runtime else {
            return Ok(Vec::new());
        };
        let _one_at_a_time = self.reloading.lock().unwrap();
        let tiered = self.to_optimize.is_some();
        let (next, changes) = self
            .current
            .load()
            .reload(runtime, &self.options, ready, tiered)?;
        if let Some(metrics) = self.metrics.as_ref().filter(|_| !changes.is_empty()) {
            record(metrics, &next, &changes);
        }
        // Swapped even when nothing changed: the snapshot remembers what was looked at.
        self.current.store(Arc::new(next));
        if !changes.is_empty() {
            self.swaps.send_modify(|count| *count += 1);
        }
        // After the swap: the optimizing thread compiles what serves.
        if let Some(queue) = &self.to_optimize {
            let queue = queue.lock().unwrap();
            for change in &changes {
                if let Change::Loaded { plugin, .. } | Change::Replaced { new: plugin, .. } = change
                    && plugin.tier() == Tier::Baseline
                {
                    let _ = queue.send(plugin.clone());
                }
            }
        }
        Ok(changes)
    }

    /// Follow the directory until the returned watcher is dropped.
    pub fn watch(self: &Arc<Self>) -> anyhow::Result<DirWatcher> {
        let dir = self.current().dir().to_owned();
        let (events, receiver) = channel();
        let mut watcher = notify::recommended_watcher(events)?;
        watcher.watch(&dir, RecursiveMode::NonRecursive)?;
        let live = Arc::downgrade(self);
        std::thread::Builder::new()
            .name("flytewasm-plugins".into())
            .spawn(move || follow(live, receiver))?;
        Ok(DirWatcher { _watcher: watcher })
    }

    /// Swap `from` (serving on the baseline tier) for `to`, its Cranelift
    /// build, in whichever snapshot serves it now.
    fn upgrade(&self, from: &Plugin, to: &Plugin) -> bool {
        let _one_at_a_time = self.reloading.lock().unwrap();
        match self.current.load().upgraded(from, to) {
            Some(next) => {
                self.current.store(Arc::new(next));
                true
            }
            None => false,
        }
    }
}

/// The optimizing thread: one Cranelift compile at a time, of versions
/// still serving new tasks (after a burst of publishes, only the last;
/// versions kept for their tasks keep Winch's code).
fn optimize(live: Weak<LivePlugins>, runtime: Runtime, queue: std::sync::mpsc::Receiver<Plugin>) {
    for plugin in queue {
        let held = live
            .upgrade()
            .is_some_and(|live| live.current().serving(&plugin));
        if !held {
            continue;
        }
        let started = Instant::now();
        let optimized = runtime.optimize(&plugin);
        let Some(live) = live.upgrade() else { return };
        match optimized {
            Ok(Some(optimized)) => {
                if live.upgrade(&plugin, &optimized) {
                    tracing::info!(
                        plugin = plugin.id(),
                        digest = plugin.digest(),
                        took_ms = started.elapsed().as_millis() as u64,
                        "plugin now runs Cranelift's code"
                    );
                }
            }
            Ok(None) => {}
            // It serves on Winch's code, which is correct, only slower.
            Err(err) => tracing::warn!(
                plugin = plugin.id(),
                "plugin stays on the baseline tier: {err}"
            ),
        }
    }
}

/// Stops following the directory when dropped.
pub struct DirWatcher {
    _watcher: notify::RecommendedWatcher,
}

fn record(metrics: &Metrics, registry: &Registry, changes: &[Change]) {
    for change in changes {
        match change {
            Change::Loaded { plugin, took }
            | Change::Replaced {
                new: plugin, took, ..
            } => metrics.plugin_swap(plugin.id(), *took),
            Change::Failed { file, .. } => metrics.plugin_load_failure(&file.display().to_string()),
            Change::Removed { .. } => {}
        }
    }
    metrics.plugins_loaded(registry.plugins().len());
}

/// The watch loop: sort events into "complete now" and "being written",
/// and reload when something is due.
fn follow(
    live: Weak<LivePlugins>,
    events: std::sync::mpsc::Receiver<notify::Result<notify::Event>>,
) {
    let mut writing: HashMap<PathBuf, Instant> = HashMap::new();
    let mut complete: HashSet<PathBuf> = HashSet::new();
    let mut due = Instant::now() + RESCAN;
    loop {
        match events.recv_timeout(due.saturating_duration_since(Instant::now())) {
            Ok(Ok(event)) => {
                let now = Instant::now();
                for path in event.paths.iter().filter(|p| super::is_plugin_file(p)) {
                    match event.kind {
                        // Closed after writing, or renamed into place: whole.
                        EventKind::Access(AccessKind::Close(AccessMode::Write))
                        | EventKind::Modify(ModifyKind::Name(_)) => {
                            writing.remove(path);
                            complete.insert(path.clone());
                            due = now;
                        }
                        EventKind::Remove(_) => due = now,
                        EventKind::Create(_) | EventKind::Modify(_) => {
                            writing.insert(path.clone(), now);
                            due = due.min(now + QUIET);
                        }
                        _ => {}
                    }
                }
                if Instant::now() < due {
                    continue;
                }
            }
            Ok(Err(err)) => tracing::warn!("plugin directory watch: {err}"),
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => return,
        }
        let Some(live) = live.upgrade() else { return };
        let ready = |path: &Path| {
            complete.contains(path) || writing.get(path).is_none_or(|at| at.elapsed() >= QUIET)
        };
        if let Err(err) = live.reload_with(&ready) {
            tracing::error!("reloading plugins: {err:#}");
        }
        complete.clear();
        writing.retain(|_, at| at.elapsed() < QUIET);
        due = writing
            .values()
            .map(|at| *at + QUIET)
            .min()
            .unwrap_or(Instant::now() + RESCAN);
    }
}
