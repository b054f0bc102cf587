//! The plugins a host serves, loaded from a directory.
//!
//! A [`Registry`] is one immutable snapshot: what a call resolves against,
//! kept alive by the calls using it. [`LivePlugins`] keeps the current
//! snapshot in step with the directory and swaps in a new one atomically.
//! A file that fails to load is reported and never stops the others; the
//! version it was meant to replace keeps serving.

mod live;
mod status;

pub use live::{LivePlugins, Options};
pub use status::{PluginState, PluginStatus};

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::time::{Instant, SystemTime};

use crate::runtime::{Plugin, Runtime};

/// Size and modification time of a file: unchanged files are not reread.
#[derive(Debug, Clone, PartialEq)]
pub struct FileStamp {
    len: u64,
    modified: Option<SystemTime>,
}

/// What happened to one file in a reload.
#[derive(Debug, Clone)]
pub enum Change {
    Loaded {
        plugin: Plugin,
        took: std::time::Duration,
    },
    Replaced {
        old: Plugin,
        new: Plugin,
        took: std::time::Duration,
    },
    Removed {
        plugin: Plugin,
    },
    Failed {
        file: PathBuf,
        reason: String,
    },
}

#[derive(Debug, Clone)]
struct FileState {
    /// The bytes the serving plugin was loaded from (None: nothing serves).
    loaded: Option<(FileStamp, SystemTime)>,
    /// The last attempt that failed, and the bytes it was made on.
    failure: Option<(FileStamp, String, SystemTime)>,
    /// That failure was a conflict with another file: look again when
    /// another file changes, not before.
    conflicted: bool,
}

impl FileState {
    fn looked_at(&self, stamp: &FileStamp) -> bool {
        self.loaded.as_ref().is_some_and(|(s, _)| s == stamp)
            || self.failure.as_ref().is_some_and(|(s, ..)| s == stamp)
    }
}

/// A plugin that may serve after a reload: (plugin, newly loaded, the
/// version its file served before, load time).
type Candidate = (Plugin, bool, Option<Plugin>, Option<std::time::Duration>);

#[derive(Clone)]
pub struct Registry {
    dir: PathBuf,
    /// Serving: at most one per file, no two claiming one task type and version.
    active: Vec<Plugin>,
    /// Versions no longer serving new tasks (replaced or removed), oldest
    /// first: tasks they created still find them.
    retired: Vec<Plugin>,
    files: BTreeMap<PathBuf, FileState>,
}

impl Registry {
    /// Nothing loaded yet, watching `dir`.
    pub fn empty(dir: &Path) -> Self {
        Registry {
            dir: dir.into(),
            active: Vec::new(),
            retired: Vec::new(),
            files: BTreeMap::new(),
        }
    }

    /// Load every `.wasm` and `.cwasm` file in `dir`. Files that fail are
    /// recorded ([`Registry::status`]) and the others still serve.
    pub fn load_dir(runtime: &Runtime, dir: &Path) -> anyhow::Result<Self> {
        Ok(Registry::empty(dir)
            .reload(runtime, &Options::default(), &|_| true, false)?
            .0)
    }

    /// A registry of plugins already loaded (tests, embedders).
    pub fn from_plugins(plugins: Vec<Plugin>) -> anyhow::Result<Self> {
        let mut registry = Registry::empty(Path::new("(given plugins)"));
        for plugin in plugins {
            if let Some(reason) = registry.conflict(&plugin) {
                anyhow::bail!("{reason}");
            }
            registry.active.push(plugin);
        }
        Ok(registry)
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The plugin serving new tasks of this type.
    pub fn find(&self, task_type: &str, version: i32) -> Option<&Plugin> {
        self.active.iter().find(|p| p.serves(task_type, version))
    }

    /// The plugin for a task type, or an error that lists what is served.
    pub fn resolve(&self, task_type: &str, version: i32) -> anyhow::Result<&Plugin> {
        self.find(task_type, version).ok_or_else(|| {
            let served: Vec<String> = self
                .active
                .iter()
                .flat_map(|p| {
                    p.info()
                        .task_types
                        .iter()
                        .map(move |t| format!("{} v{} ({})", t.name, t.version, p.id()))
                })
                .collect();
            let served = if served.is_empty() {
                "none".to_owned()
            } else {
                served.join(", ")
            };
            anyhow::anyhow!(
                "no plugin serves task type `{task_type}` (version {version}) in {}; served: {served}",
                self.dir.display()
            )
        })
    }

    /// The plugin for a task created by `id` at `digest`: that exact build
    /// when `pinned` and still loaded, else the newest build with that id
    /// (serving, or retired when its file was removed).
    pub fn for_task(&self, id: &str, digest: &str, pinned: bool) -> Option<&Plugin> {
        let all = || self.active.iter().chain(self.retired.iter().rev());
        pinned
            .then(|| all().find(|p| p.digest() == digest))
            .flatten()
            .or_else(|| all().find(|p| p.id() == id))
    }

    /// The plugins serving new tasks.
    pub fn plugins(&self) -> &[Plugin] {
        &self.active
    }

    /// Every file and plugin version: serving, failed, retired.
    pub fn status(&self) -> Vec<PluginStatus> {
        status::of(self)
    }

    /// Look at the directory again and return the next snapshot. Files
    /// `ready` says are still being written are left as they were. When
    /// `tiered`, new components may come in on the baseline tier
    /// ([`Runtime::load_bytes_tiered`]).
    pub fn reload(
        &self,
        runtime: &Runtime,
        options: &Options,
        ready: &dyn Fn(&Path) -> bool,
        tiered: bool,
    ) -> anyhow::Result<(Registry, Vec<Change>)> {
        let entries = std::fs::read_dir(&self.dir).map_err(|err| {
            anyhow::anyhow!("cannot read plugin directory {}: {err}", self.dir.display())
        })?;
        let mut on_disk: Vec<(PathBuf, FileStamp)> = entries
            .filter_map(|e| e.ok())
            .map(|e| e.path())
            .filter(|p| is_plugin_file(p))
            .filter_map(|p| std::fs::metadata(&p).ok().map(|m| (p, stamp(&m))))
            .collect();
        on_disk.sort_by(|a, b| a.0.cmp(&b.0));

        let mut next = Registry {
            dir: self.dir.clone(),
            active: Vec::new(),
            retired: self.retired.clone(),
            files: BTreeMap::new(),
        };
        let mut changes = Vec::new();
        let mut candidates: Vec<Candidate> = Vec::new();
        // A file appeared, went or changed (conflicted ones aside).
        let others_changed = on_disk.len() != self.files.len()
            || on_disk.iter().any(|(path, stamp)| {
                self.files
                    .get(path)
                    .is_none_or(|state| !state.conflicted && !state.looked_at(stamp))
            });
        for (path, file_stamp) in &on_disk {
            let previous = self.active.iter().find(|p| p.path() == path.as_path());
            let state = self.files.get(path).cloned().unwrap_or(FileState {
                loaded: None,
                failure: None,
                conflicted: false,
            });
            let unchanged = state.looked_at(file_stamp) && !(state.conflicted && others_changed);
            if unchanged || !ready(path) {
                if let Some(previous) = previous {
                    candidates.push((previous.clone(), false, None, None));
                }
                next.files.insert(path.clone(), state);
                continue;
            }
            let started = Instant::now();
            // Err: why, and whether to try again even if the file stays as it is.
            let loaded = std::fs::read(path)
                .map_err(|err| {
                    (
                        format!("cannot read plugin {}: {err}", path.display()),
                        false,
                    )
                })
                .and_then(|bytes| {
                    // The allow-list is checked on the digest before anything is compiled.
                    let admit = |digest: &str| options.admit_digest(digest);
                    let loaded = if tiered {
                        runtime.load_bytes_tiered(&bytes, path, &admit)
                    } else {
                        runtime.load_bytes(&bytes, path, &admit)
                    };
                    loaded.map_err(|err| (err.to_string(), err.is_transient()))
                })
                .and_then(|plugin| {
                    options
                        .check_allowed(&plugin)
                        .map(|()| plugin)
                        .map_err(|reason| (reason, false))
                });
            let now = SystemTime::now();
            match loaded {
                Ok(plugin) if previous.is_some_and(|p| p.digest() == plugin.digest()) => {
                    // Same bytes, touched: keep the version serving.
                    candidates.push((previous.unwrap().clone(), false, None, None));
                    next.files.insert(
                        path.clone(),
                        FileState {
                            loaded: Some((file_stamp.clone(), state.loaded.map_or(now, |l| l.1))),
                            failure: None,
                            conflicted: false,
                        },
                    );
                }
                Ok(plugin) => {
                    candidates.push((plugin, true, previous.cloned(), Some(started.elapsed())));
                    next.files.insert(
                        path.clone(),
                        FileState {
                            loaded: Some((file_stamp.clone(), now)),
                            failure: None,
                            conflicted: false,
                        },
                    );
                }
                Err((reason, transient)) => {
                    tracing::error!(file = %path.display(), "plugin not loaded: {reason}");
                    changes.push(Change::Failed {
                        file: path.clone(),
                        reason: reason.clone(),
                    });
                    if let Some(previous) = previous {
                        candidates.push((previous.clone(), false, None, None));
                    }
                    // A load that found no free slot is tried again on the next look.
                    let stamp = if transient {
                        FileStamp {
                            len: 0,
                            modified: None,
                        }
                    } else {
                        file_stamp.clone()
                    };
                    next.files.insert(
                        path.clone(),
                        FileState {
                            loaded: state.loaded,
                            failure: Some((stamp, reason, now)),
                            conflicted: false,
                        },
                    );
                }
            }
        }

        // Who serves a task type both claim: the configured owner, else the
        // version already serving, else the first file by name.
        candidates.sort_by_key(|(plugin, new, ..)| {
            (!options.owns_any(plugin), *new, plugin.path().to_owned())
        });
        // Two new files with one id, and neither serving yet: no file wins.
        let mut by_id: HashMap<&str, Vec<&Candidate>> = HashMap::new();
        for candidate in &candidates {
            by_id.entry(candidate.0.id()).or_default().push(candidate);
        }
        let ambiguous: HashMap<String, String> = by_id
            .into_iter()
            .filter(|(_, claims)| claims.len() > 1 && claims.iter().all(|c| c.1))
            .map(|(id, claims)| {
                let files: Vec<String> = claims.iter().map(|c| file_name(c.0.path())).collect();
                let reason = format!(
                    "plugin id `{id}` is claimed by {}: two files may not claim one id; remove one",
                    files.join(" and ")
                );
                (id.to_owned(), reason)
            })
            .collect();
        for (plugin, new, previous, took) in candidates {
            let conflict = ambiguous
                .get(plugin.id())
                .cloned()
                .or_else(|| next.conflict(&plugin));
            if let Some(reason) = conflict {
                tracing::error!(file = %plugin.path().display(), "plugin not loaded: {reason}");
                changes.push(Change::Failed {
                    file: plugin.path().into(),
                    reason: reason.clone(),
                });
                // The version this file served before keeps serving.
                let keep = previous.filter(|p| next.conflict(p).is_none());
                let state = next.files.get_mut(plugin.path()).expect("listed above");
                let refused = state.loaded.take().map(|l| l.0).unwrap_or(FileStamp {
                    len: 0,
                    modified: None,
                });
                state.failure = Some((refused, reason, SystemTime::now()));
                state.conflicted = true;
                if let Some(previous) = keep {
                    state.loaded = Some((
                        FileStamp {
                            len: 0,
                            modified: None,
                        },
                        SystemTime::now(),
                    ));
                    next.active.push(previous);
                }
                continue;
            }
            if new {
                let took = took.unwrap_or_default();
                match previous {
                    Some(old) => {
                        tracing::info!(
                            plugin = plugin.id(),
                            from = old.info().version,
                            to = plugin.info().version,
                            digest = plugin.digest(),
                            "plugin replaced"
                        );
                        next.retire(old.clone());
                        changes.push(Change::Replaced {
                            old,
                            new: plugin.clone(),
                            took,
                        });
                    }
                    None => {
                        tracing::info!(plugin = plugin.id(), version = plugin.info().version, digest = plugin.digest(), file = %plugin.path().display(), "plugin loaded");
                        changes.push(Change::Loaded {
                            plugin: plugin.clone(),
                            took,
                        });
                    }
                }
            }
            next.active.push(plugin);
        }
        // Removed files: their plugins stop taking new tasks.
        for plugin in &self.active {
            let gone = !on_disk.iter().any(|(path, _)| path == plugin.path());
            if gone {
                tracing::info!(plugin = plugin.id(), file = %plugin.path().display(), "plugin file removed: no new tasks");
                next.retire(plugin.clone());
                changes.push(Change::Removed {
                    plugin: plugin.clone(),
                });
            }
        }
        next.active.sort_by(|a, b| a.path().cmp(b.path()));
        Ok((next, changes))
    }

    /// Why `plugin` cannot serve beside the active ones: another file
    /// has its id (tasks find their plugin by id), or serves one of its
    /// task types.
    fn conflict(&self, plugin: &Plugin) -> Option<String> {
        if let Some(other) = self.active.iter().find(|p| p.id() == plugin.id()) {
            return Some(format!(
                "plugin id `{}` is already served by {} ({}); two files may not claim one id: remove one",
                plugin.id(),
                file_name(other.path()),
                other.digest()
            ));
        }
        plugin.info().task_types.iter().find_map(|t| {
            self.find(&t.name, t.version).map(|other| {
                format!(
                    "plugin `{}` claims task type `{}` version {}, already served by `{}` ({}); \
                     set task-type-owners in the host config to choose",
                    plugin.id(),
                    t.name,
                    t.version,
                    other.id(),
                    file_name(other.path())
                )
            })
        })
    }

    /// Whether this exact loaded version serves new tasks here.
    pub fn serving(&self, plugin: &Plugin) -> bool {
        self.active.iter().any(|p| p.same(plugin))
    }

    /// This snapshot with `from` (one loaded version) replaced by `to`
    /// wherever it serves; None when it no longer does.
    pub fn upgraded(&self, from: &Plugin, to: &Plugin) -> Option<Registry> {
        let mut next = self.clone();
        let mut found = false;
        for plugin in next.active.iter_mut().chain(next.retired.iter_mut()) {
            if plugin.same(from) {
                *plugin = to.clone();
                found = true;
            }
        }
        found.then_some(next)
    }

    fn retire(&mut self, plugin: Plugin) {
        self.retired.retain(|p| p.digest() != plugin.digest());
        self.retired.push(plugin);
    }
}

/// A plugin file as callers see it: its name, not where the host keeps it.
pub fn file_name(path: &Path) -> String {
    path.file_name()
        .map(|name| name.to_string_lossy().into_owned())
        .unwrap_or_default()
}

fn is_plugin_file(path: &Path) -> bool {
    path.extension()
        .is_some_and(|ext| ext == "wasm" || ext == "cwasm")
}

fn stamp(metadata: &std::fs::Metadata) -> FileStamp {
    FileStamp {
        len: metadata.len(),
        modified: metadata.modified().ok(),
    }
}

/// Digests allowed per plugin id (the allow-list file, YAML).
pub type AllowList = HashMap<String, Vec<String>>;
