//! The janitor: what the host keeps after a task ends goes once it has
//! been kept long enough that no propeller retry still asks about it
//! (`tasks.retention-seconds`): finished objects of the plugins' kinds and
//! the host's records, all carrying our labels. Every replica runs it;
//! deletes of what another replica deleted first are fine. It also aborts
//! objects nobody ever asked about (`tasks.unconfirmed-abort-seconds`):
//! their CreateTask answer never reached propeller.

use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;

use super::carried;
use super::lifecycle::{ErrorKind, Phase, PhaseEvent, codes, plugin_kind, plugin_propagation};
use super::metadata::PLUGIN_ANNOTATION;
use super::records::{Records, TaskObject};
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

    /// One round; returns how many objects and records it deleted (or
    /// aborted).
    pub async fn sweep(&self, plugins: &[Plugin]) -> usize {
        let config = &self.executor().config().tasks;
        let aborted = self.abort_unconfirmed(plugins).await;
        if config.keep_finished {
            return aborted;
        }
        let selector = managed_with(carried::FINISHED_LABEL);
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
            deleted += self
                .each_listed(kind, &selector, |objects| {
                    self.delete_expired(kind, objects, retention, *propagation)
                })
                .await;
        }
        // Records outlive the launch deadline: a launch still retrying must
        // find the abort that stops it (and a launch record is not needed
        // past it).
        let record_retention = retention.max(chrono::Duration::seconds(
            config.launch_deadline_seconds as i64,
        ));
        let (kind, selector) = (Records::kind(), Records::selector());
        let records = self.executor().cluster().each_listed_page(
            &kind,
            Some(self.records().namespace()),
            &selector,
            |records| {
                self.delete_expired(&kind, records, record_retention, Propagation::Background)
            },
        );
        match records.await {
            Ok(records) => deleted += records,
            Err(err) => tracing::warn!("janitor: cannot list the host's records: {err}"),
        }
        if deleted > 0 {
            tracing::info!(deleted, "janitor: deleted what was kept past retention");
        }
        deleted + aborted
    }

    /// Abort, the plugin's way, live objects no GetTask has asked about
    /// within `unconfirmed-abort-seconds` of their creation (0: never),
    /// keeping an outcome for a GetTask that may still come.
    async fn abort_unconfirmed(&self, plugins: &[Plugin]) -> usize {
        let seconds = self.executor().config().tasks.unconfirmed_abort_seconds;
        if seconds == 0 {
            return 0;
        }
        let within = chrono::Duration::seconds(seconds as i64);
        // Ended objects keep the label (they were never confirmed, or
        // needed not be): the janitor leaves them to retention.
        let selector = format!(
            "{},!{}",
            managed_with(carried::UNCONFIRMED_LABEL),
            carried::FINISHED_LABEL
        );
        let mut kinds: Vec<ResourceKind> = Vec::new();
        let mut aborted = 0;
        for plugin in plugins {
            let kind = plugin_kind(plugin);
            if kinds.contains(&kind) {
                continue;
            }
            kinds.push(kind.clone());
            let kind = &kind;
            aborted += self
                .each_listed(kind, &selector, |page| async move {
                    let mut aborted = 0;
                    for listed in page {
                        if self
                            .abort_if_unasked(plugins, plugin, kind, &listed, within)
                            .await
                        {
                            aborted += 1;
                        }
                    }
                    aborted
                })
                .await;
        }
        aborted
    }

    /// Abort `listed` if it is still unconfirmed and past `within`, as it
    /// is now: a GetTask (or another janitor) may have come since the list.
    async fn abort_if_unasked(
        &self,
        plugins: &[Plugin],
        plugin: &Plugin,
        kind: &ResourceKind,
        listed: &Value,
        within: chrono::Duration,
    ) -> bool {
        let stale = carried::created_at(listed).is_some_and(|at| chrono::Utc::now() - at >= within);
        if !stale || !carried::is_live(listed) {
            return false;
        }
        let namespace = listed["metadata"]["namespace"].as_str().unwrap_or_default();
        let name = listed["metadata"]["name"].as_str().unwrap_or_default();
        let cluster = self.executor().cluster();
        let Ok(Some(object)) = cluster.get_from_api(kind, namespace, name).await else {
            return false;
        };
        if !carried::is_unconfirmed(&object) || !carried::is_live(&object) {
            return false;
        }
        // The plugin that made it, where several serve the kind.
        let maker = object["metadata"]["annotations"][PLUGIN_ANNOTATION].as_str();
        let plugin = plugins
            .iter()
            .find(|p| Some(p.id()) == maker && plugin_kind(p) == *kind)
            .unwrap_or(plugin);
        self.abort_unasked(plugin, kind, &object, within).await
    }

    async fn abort_unasked(
        &self,
        plugin: &Plugin,
        kind: &ResourceKind,
        object: &Value,
        within: chrono::Duration,
    ) -> bool {
        let Some(owner) = carried::owner_of(object) else {
            return false; // not made by this host's agent path
        };
        let namespace = object["metadata"]["namespace"].as_str().unwrap_or_default();
        let name = object["metadata"]["name"].as_str().unwrap_or_default();
        let event = PhaseEvent::failure(
            Phase::RetryableFailure,
            ErrorKind::System,
            codes::UNCONFIRMED_LAUNCH,
            format!(
                "no GetTask asked about {namespace}/{name} within {}s of its creation: its CreateTask answer never reached propeller, so it was aborted",
                within.num_seconds()
            ),
        );
        let record = TaskObject {
            namespace,
            plural: &kind.plural,
            name,
        };
        let cluster = self.executor().cluster();
        if let Err(err) = self
            .records()
            .keep_outcome(cluster, record, owner, &event)
            .await
        {
            tracing::warn!(task = %name, "janitor: cannot keep the outcome of an unconfirmed launch: {err}");
            return false;
        }
        tracing::warn!(task = %name, "janitor: aborting an object no GetTask asked about");
        self.abort_found(plugin, kind, object, &event).await;
        true
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

    /// The metadata of the objects of `kind` in this replica's shard that
    /// `selector` selects, a page at a time, in every namespace; where the
    /// host may not list cluster-wide (namespaced RBAC), in the namespaces
    /// it knows: those it has seen tasks in and those its policy names.
    /// Answers the sum of what `each` answered.
    async fn each_listed<F>(
        &self,
        kind: &ResourceKind,
        selector: &str,
        mut each: impl FnMut(Vec<Value>) -> F,
    ) -> usize
    where
        F: Future<Output = usize>,
    {
        let cluster = self.executor().cluster();
        // Each replica looks after its own shard's objects.
        let selector = &match cluster.shard().tended_selector() {
            Some(keys) => format!("{selector},{keys}"),
            None => selector.to_owned(),
        };
        let err = match cluster
            .each_listed_page(kind, None, selector, &mut each)
            .await
        {
            Ok(total) => return total,
            Err(err) => err,
        };
        if err.code != 403 {
            tracing::warn!(kind = %kind.kind, "janitor: cannot list objects ({selector}): {err}");
            return 0;
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
        let mut total = 0;
        for namespace in namespaces {
            let listed = cluster.each_listed_page(kind, Some(&namespace), selector, &mut each);
            match listed.await {
                Ok(count) => total += count,
                Err(err) => {
                    tracing::warn!(kind = %kind.kind, %namespace, "janitor: cannot list objects ({selector}): {err}")
                }
            }
        }
        total
    }
}

/// The selector of the host's objects that carry `label`.
fn managed_with(label: &str) -> String {
    format!("{}={},{label}", MANAGED_LABEL.0, MANAGED_LABEL.1)
}
