//! What `/plugins` and `flytewasm plugins` show: every file and version.

use std::path::PathBuf;
use std::time::SystemTime;

use serde::{Deserialize, Serialize};

use super::Registry;
use crate::runtime::Tier;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PluginState {
    /// Serving new tasks.
    Serving,
    /// The file failed to load and nothing from it serves.
    Failed,
    /// An earlier version: only tasks it created use it.
    Retired,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PluginStatus {
    pub state: PluginState,
    pub file: PathBuf,
    pub id: Option<String>,
    pub version: Option<String>,
    pub digest: Option<String>,
    /// The compiler whose code serves its calls (baseline until Cranelift's is ready).
    pub tier: Option<Tier>,
    /// `name vN`.
    pub task_types: Vec<String>,
    /// RFC 3339.
    pub loaded_at: Option<String>,
    /// Why the file's latest content was refused (the version above serves on).
    pub last_error: Option<String>,
}

fn rfc3339(time: SystemTime) -> String {
    chrono::DateTime::<chrono::Utc>::from(time).to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// Files by name and errors without the directory: the listing is served
/// over HTTP, and where the host keeps its files is nobody else's business.
pub(super) fn of(registry: &Registry) -> Vec<PluginStatus> {
    let dir_prefix = format!("{}/", registry.dir.display());
    let hide_dir = |reason: &str| reason.replace(&dir_prefix, "");
    let describe = |plugin: &crate::runtime::Plugin, state| {
        let file = registry.files.get(plugin.path());
        PluginStatus {
            state,
            file: super::file_name(plugin.path()).into(),
            id: Some(plugin.id().to_owned()),
            version: Some(plugin.info().version.clone()),
            digest: Some(plugin.digest().to_owned()),
            tier: Some(plugin.tier()),
            task_types: plugin
                .info()
                .task_types
                .iter()
                .map(|t| format!("{} v{}", t.name, t.version))
                .collect(),
            loaded_at: file
                .and_then(|f| f.loaded.as_ref())
                .filter(|_| state == PluginState::Serving)
                .map(|(_, at)| rfc3339(*at)),
            last_error: file
                .and_then(|f| f.failure.as_ref())
                .filter(|_| state == PluginState::Serving)
                .map(|(_, reason, _)| hide_dir(reason)),
        }
    };
    let mut out: Vec<PluginStatus> = registry
        .active
        .iter()
        .map(|p| describe(p, PluginState::Serving))
        .collect();
    for (file, state) in &registry.files {
        let serving = registry.active.iter().any(|p| p.path() == file.as_path());
        if let Some((_, reason, _)) = state.failure.as_ref().filter(|_| !serving) {
            out.push(PluginStatus {
                state: PluginState::Failed,
                file: super::file_name(file).into(),
                id: None,
                version: None,
                digest: None,
                tier: None,
                task_types: Vec::new(),
                loaded_at: None,
                last_error: Some(hide_dir(reason)),
            });
        }
    }
    out.extend(
        registry
            .retired
            .iter()
            .rev()
            .map(|p| describe(p, PluginState::Retired)),
    );
    out
}
