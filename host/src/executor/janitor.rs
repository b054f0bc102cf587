//! The janitor: what the host keeps after a task ends goes once it has
//! been kept long enough that no propeller retry still asks about it
//! (`tasks.retention-seconds`): finished objects of the plugins' kinds and
//! the host's records, all carrying our labels. Every replica runs it;
//! deletes of what another replica deleted first are fine.

use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;

use super::carried;
use super::lifecycle::{plugin_kind, plugin_propagation};
use super::records::Records;
use super::tasks::Tasks;
use crate::cluster::{MANAGED_LABEL, Propagation, ResourceKind};
use crate::runtime::Plugin;

impl Tasks {
    /// Sweep every `janitor-interval`, stop idle watches, forget idle tasks.
    pub async fn janitor(self: Arc<Self>, plugins: impl Fn() -> Vec<Plugin>) {
        let config = self.executor().config().tasks.clone();
        let mut tick =
            tokio::time::interval(Duration::from_secs(config.janitor_interval_seconds.max(1)));
        loop {
            tick.tick().await;
            self.sweep(&plugins()).await;
            self.executor()
                .cluster()
                .stop_idle_watches(Duration::from_secs(config.watch_idle_seconds));
            self.forget_idle();
        }
    }

    /// One round; returns how many objects and records it deleted.
    pub async fn sweep(&self, plugins: &[Plugin]) -> usize {
        let config = &self.executor().config().tasks;
        if config.keep_finished {
            return 0;
        }
        let selector = format!(
            "{}={},{}",
            MANAGED_LABEL.0,
            MANAGED_LABEL.1,
            carried::FINISHED_LABEL
        );
        let mut deleted = 0;
        let mut kinds: Vec<(ResourceKind, Propagation)> = Vec::new();
        for plugin in plugins {
            let kind = plugin_kind(plugin);
            let keeps = plugin.info().properties.disable_delete_resource_on_finalize;
            if !keeps && !kinds.iter().any(|(k, _)| *k == kind) {
                kinds.push((kind, plugin_propagation(config, plugin)));
            }
        }
        let retention = chrono::Duration::seconds(config.retention_seconds as i64);
        for (kind, propagation) in &kinds {
            let objects = self.finished(kind, &selector).await;
            deleted += self
                .delete_expired(kind, objects, retention, *propagation)
                .await;
        }
        // Records outlive the launch deadline: a launch still retrying must
        // find the abort that stops it (and a launch record is not needed
        // past it).
        let record_retention = retention.max(chrono::Duration::seconds(
            config.launch_deadline_seconds as i64,
        ));
        let records = self
            .executor()
            .cluster()
            .list(
                &Records::kind(),
                Some(self.records().namespace()),
                &Records::selector(),
            )
            .await
            .unwrap_or_else(|err| {
                tracing::warn!("janitor: cannot list the host's records: {err}");
                Vec::new()
            });
        deleted += self
            .delete_expired(
                &Records::kind(),
                records,
                record_retention,
                Propagation::Background,
            )
            .await;
        if deleted > 0 {
            tracing::info!(deleted, "janitor: deleted what was kept past retention");
        }
        deleted
    }

    async fn delete_expired(
        &self,
        kind: &ResourceKind,
        objects: Vec<Value>,
        retention: chrono::Duration,
        propagation: Propagation,
    ) -> usize {
        let cluster = self.executor().cluster();
        let mut deleted = 0;
        for object in objects {
            let expired = carried::finished_at(&object)
                .is_some_and(|at| chrono::Utc::now() - at >= retention);
            if !expired {
                continue;
            }
            let namespace = object["metadata"]["namespace"].as_str().unwrap_or_default();
            let name = object["metadata"]["name"].as_str().unwrap_or_default();
            match cluster.delete(kind, namespace, name, propagation).await {
                Ok(()) => deleted += 1,
                Err(err) => tracing::warn!(%namespace, %name, "janitor: cannot delete: {err}"),
            }
        }
        deleted
    }

    /// Finished objects of `kind`, in every namespace; where the host may
    /// not list cluster-wide (namespaced RBAC), in the namespaces it knows:
    /// those it has seen tasks in and those its policy names.
    async fn finished(&self, kind: &ResourceKind, selector: &str) -> Vec<Value> {
        let cluster = self.executor().cluster();
        let err = match cluster.list(kind, None, selector).await {
            Ok(objects) => return objects,
            Err(err) => err,
        };
        if err.code != 403 {
            tracing::warn!(kind = %kind.kind, "janitor: cannot list finished objects: {err}");
            return Vec::new();
        }
        let mut namespaces = self.namespaces();
        let named = self
            .executor()
            .config()
            .security
            .namespaces
            .iter()
            .flatten();
        namespaces.extend(named.filter(|ns| !ns.contains('{')).cloned());
        namespaces.sort();
        namespaces.dedup();
        let mut objects = Vec::new();
        for namespace in namespaces {
            match cluster.list(kind, Some(&namespace), selector).await {
                Ok(found) => objects.extend(found),
                Err(err) => {
                    tracing::warn!(kind = %kind.kind, %namespace, "janitor: cannot list finished objects: {err}")
                }
            }
        }
        objects
    }
}
