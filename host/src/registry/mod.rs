//! The plugins a host serves, found in a directory and indexed by task type.

use std::path::{Path, PathBuf};

use crate::runtime::{LoadError, Plugin, Runtime};

/// Loaded plugins and the files that failed to load.
pub struct Registry {
    plugins: Vec<Plugin>,
    failures: Vec<LoadError>,
    dir: PathBuf,
}

impl Registry {
    /// Load every `.wasm` file in `dir`. A file that fails is recorded and
    /// the others still serve; two plugins claiming one task type is an error.
    pub fn load_dir(runtime: &Runtime, dir: &Path) -> anyhow::Result<Self> {
        let entries = std::fs::read_dir(dir).map_err(|err| {
            anyhow::anyhow!("cannot read plugin directory {}: {err}", dir.display())
        })?;
        let mut files: Vec<PathBuf> = entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|ext| ext == "wasm"))
            .collect();
        files.sort();
        let mut registry = Registry {
            plugins: Vec::new(),
            failures: Vec::new(),
            dir: dir.into(),
        };
        for file in files {
            match runtime.load(&file) {
                Ok(plugin) => registry.add(plugin)?,
                Err(err) => {
                    tracing::error!("{err}");
                    registry.failures.push(err);
                }
            }
        }
        Ok(registry)
    }

    /// A registry of plugins already loaded (tests, embedders).
    pub fn from_plugins(plugins: Vec<Plugin>) -> anyhow::Result<Self> {
        let mut registry = Registry {
            plugins: Vec::new(),
            failures: Vec::new(),
            dir: PathBuf::from("(given plugins)"),
        };
        for plugin in plugins {
            registry.add(plugin)?;
        }
        Ok(registry)
    }

    fn add(&mut self, plugin: Plugin) -> anyhow::Result<()> {
        for task_type in &plugin.info().task_types {
            if let Some(other) = self.find(&task_type.name, task_type.version) {
                anyhow::bail!(
                    "plugins `{}` ({}) and `{}` ({}) both serve task type `{}` version {}",
                    other.id(),
                    other.path().display(),
                    plugin.id(),
                    plugin.path().display(),
                    task_type.name,
                    task_type.version
                );
            }
        }
        self.plugins.push(plugin);
        Ok(())
    }

    pub fn find(&self, task_type: &str, version: i32) -> Option<&Plugin> {
        self.plugins.iter().find(|p| p.serves(task_type, version))
    }

    /// The plugin for a task type, or an error that lists what is served.
    pub fn resolve(&self, task_type: &str, version: i32) -> anyhow::Result<&Plugin> {
        self.find(task_type, version).ok_or_else(|| {
            let served: Vec<String> = self
                .plugins
                .iter()
                .flat_map(|p| p.info().task_types.iter().map(move |t| format!("{} v{} ({})", t.name, t.version, p.id())))
                .collect();
            let served = if served.is_empty() { "none".to_owned() } else { served.join(", ") };
            anyhow::anyhow!(
                "no plugin serves task type `{task_type}` (version {version}) in {}; served: {served}",
                self.dir.display()
            )
        })
    }

    pub fn plugins(&self) -> &[Plugin] {
        &self.plugins
    }

    pub fn failures(&self) -> &[LoadError] {
        &self.failures
    }
}
