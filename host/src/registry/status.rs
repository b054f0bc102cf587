//! What `/plugins` and `flytewasm plugins` show: every file and version.

use std::path::PathBuf;
use std::time::SystemTime;

use serde::{Deserialize, Serialize};

use super::Registry;

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

pub(super) fn of(registry: &Registry) -> Vec<PluginStatus> {
    let describe = |plugin: &crate::runtime::Plugin, state| {
        let file = registry.files.get(plugin.path());
        PluginStatus {
            state,
            file: plugin.path().to_owned(),
            id: Some(plugin.id().to_owned()),
            version: Some(plugin.info().version.clone()),
            digest: Some(plugin.digest().to_owned()),
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
                .map(|(_, reason, _)| reason.clone()),
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
                file: file.clone(),
                id: None,
                version: None,
                digest: None,
                task_types: Vec::new(),
                loaded_at: None,
                last_error: Some(reason.clone()),
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
