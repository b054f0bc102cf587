//! The host's configuration file (YAML): platform Kubernetes defaults,
//! per-plugin configuration, and runtime limits.
//!
//! ```yaml
//! k8s:                       # Flyte's `plugins.k8s` keys
//!   inject-finalizer: true
//!   default-annotations: { cluster-autoscaler.kubernetes.io/safe-to-evict: "false" }
//!   default-tolerations: [...]
//! plugins:
//!   spark:                   # handed to the plugin with this id
//!     spark-history-server-url: https://spark-history.example.com
//! runtime:
//!   call-timeout: 2000       # milliseconds
//! security:
//!   resource-meta-keys: /etc/flytewasm-keys/resource-meta-keys.yaml
//!   namespaces: ["{project}-{domain}"]   # where tasks may run
//! tasks:                     # the agent path: see `TasksConfig`
//!   launch-deadline-seconds: 600
//!   retention-seconds: 3600
//! task-type-owners:          # who serves a task type two plugins claim
//!   spark: spark
//! ```

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use serde::Deserialize;
use serde_json::Value;

use crate::cluster::Propagation;
use crate::runtime::RuntimeConfig;

/// What one GetTask may take: propeller's 3 s deadline, less a margin for
/// the way back. Its cluster reads (`tasks.status-reads-within-ms`) and the
/// plugin's call (`runtime.call-timeout`) fit in it (checked at start-up);
/// the call's wait for a slot gets what they leave.
pub const GET_TASK_WITHIN: Duration = Duration::from_millis(2800);

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct HostConfig {
    #[serde(default)]
    pub k8s: K8sConfig,
    /// Plugin id → that plugin's configuration.
    #[serde(default)]
    pub plugins: BTreeMap<String, Value>,
    #[serde(default)]
    pub runtime: RuntimeConfig,
    #[serde(default)]
    pub security: SecurityConfig,
    #[serde(default)]
    pub tasks: TasksConfig,
    /// Task type name → the plugin id that serves it when two plugins claim it.
    #[serde(default)]
    pub task_type_owners: std::collections::HashMap<String, String>,
    /// `k8s-defaults` as plugins receive it, built on first use: every
    /// plugin call sends it, and the config does not change once loaded.
    #[serde(skip)]
    k8s_defaults: std::sync::OnceLock<String>,
}

/// Flyte's `plugins.k8s` section. The host uses the object-level keys; all
/// of it (pod defaults included) is passed to plugins as `k8s-defaults`.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct K8sConfig {
    #[serde(default)]
    pub inject_finalizer: bool,
    #[serde(default)]
    pub delete_resource_on_finalize: bool,
    #[serde(default = "default_annotations")]
    pub default_annotations: BTreeMap<String, String>,
    #[serde(default)]
    pub default_labels: BTreeMap<String, String>,
    /// Names of host environment variables to copy into pods.
    #[serde(default)]
    pub default_env_vars_from_env: BTreeMap<String, String>,
    /// The PodTemplate every task's pod starts from when the task names none
    /// (`executor::pod_templates`).
    #[serde(default)]
    pub default_pod_template_name: Option<String>,
    /// Pod defaults, passed through to plugins as they are.
    #[serde(flatten)]
    pub pod_defaults: serde_json::Map<String, Value>,
}

/// How tasks are carried through on the agent path, where propeller gives
/// each call a short deadline, retries a failed CreateTask as a new
/// attempt, and never calls DeleteTask after success.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields, default)]
pub struct TasksConfig {
    /// CreateTask answers within this; a launch still going on (a slow or
    /// unreachable API, a full quota) carries on in the background.
    pub create_answer_within_ms: u64,
    /// GetTask's reads of the cluster (the object when it is not cached,
    /// the host's records) take at most this together: an API server that
    /// does not answer makes a failed look (the last phase is reported),
    /// not a GetTask past propeller's deadline. The plugin's call has its
    /// own bound (`runtime.call-timeout`).
    pub status_reads_within_ms: u64,
    /// How long a launch keeps being retried (quota, unavailable API)
    /// before the task fails as a retryable system failure.
    pub launch_deadline_seconds: u64,
    /// Consecutive failed looks at a task (plugin deadline or trap, full
    /// pool, cluster read errors) before it fails as a retryable system
    /// failure and its object is cleaned up. Counted per replica.
    pub max_consecutive_failures: u32,
    /// Finished tasks keep their object (and answer GetTask with the same
    /// terminal phase) this long; then the janitor deletes it.
    pub retention_seconds: u64,
    /// Never delete finished objects (the janitor leaves them).
    pub keep_finished: bool,
    pub janitor_interval_seconds: u64,
    /// How deletes treat the object's dependents (a Job's pods).
    pub delete_propagation: Propagation,
    /// Plugin id → its own propagation (e.g. `Foreground` to delete an
    /// operator's children before the object); wins over what the plugin
    /// asks for (its `delete-propagation` property).
    pub plugin_delete_propagation: BTreeMap<String, Propagation>,
    /// How long `run` waits for an aborted object to be gone (finalizers,
    /// a garbage collector that is slow or absent) before it says so.
    pub abort_wait_seconds: u64,
    /// A namespace's watch stops after this long without a read.
    pub watch_idle_seconds: u64,
    /// An object no GetTask has confirmed this long after its creation is
    /// aborted by the janitor: propeller never got its CreateTask answer,
    /// and an abort of its node sends no DeleteTask without one. A GetTask
    /// confirms an object once it is a minute old (or half this), so this
    /// must exceed a minute plus the longest propeller may take to ask
    /// about a task (its resync, and tasks in flight over its GetTask rate
    /// limit); 0: never.
    pub unconfirmed_abort_seconds: u64,
    /// Where the host keeps outcomes and launches in progress (ConfigMaps;
    /// `executor::records`): its own namespace. Default: the cluster
    /// client's namespace (in a pod, the service account's).
    pub records_namespace: Option<String>,
}

impl Default for TasksConfig {
    fn default() -> Self {
        TasksConfig {
            create_answer_within_ms: 150,
            status_reads_within_ms: 800,
            launch_deadline_seconds: 600,
            max_consecutive_failures: 10,
            retention_seconds: 3600,
            keep_finished: false,
            janitor_interval_seconds: 60,
            delete_propagation: Propagation::Background,
            plugin_delete_propagation: BTreeMap::new(),
            abort_wait_seconds: 60,
            watch_idle_seconds: 300,
            unconfirmed_abort_seconds: 3600,
            records_namespace: None,
        }
    }
}

impl TasksConfig {
    /// Settings that would break what the host promises propeller.
    pub fn check(&self) -> Result<(), String> {
        if self.create_answer_within_ms >= 3000 {
            return Err(format!(
                "tasks.create-answer-within-ms: {} is not below propeller's 3000 ms CreateTask deadline",
                self.create_answer_within_ms
            ));
        }
        if self.status_reads_within_ms == 0 || self.status_reads_within_ms >= 3000 {
            return Err(format!(
                "tasks.status-reads-within-ms: {} must be above 0 and below propeller's 3000 ms GetTask deadline",
                self.status_reads_within_ms
            ));
        }
        if self.max_consecutive_failures == 0 {
            return Err("tasks.max-consecutive-failures: must be at least 1".into());
        }
        if self.janitor_interval_seconds == 0 {
            return Err("tasks.janitor-interval-seconds: must be at least 1".into());
        }
        Ok(())
    }

    /// The propagation for a plugin's deletes: this host's setting for the
    /// plugin, else what the plugin `asked` for, else the default.
    pub fn propagation(&self, plugin_id: &str, asked: Option<Propagation>) -> Propagation {
        self.plugin_delete_propagation
            .get(plugin_id)
            .copied()
            .or(asked)
            .unwrap_or(self.delete_propagation)
    }
}

/// Who may ask for what.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields, default)]
pub struct SecurityConfig {
    /// The keys file that signs and verifies `resource_meta` (shared by
    /// every replica; see `task_service::MetaKeys`). `serve` needs it, except on
    /// the sandbox, which makes a key for the process.
    pub resource_meta_keys: Option<std::path::PathBuf>,
    /// The namespaces tasks may run in; absent: any. An entry is a name or
    /// a pattern with `{project}` and `{domain}` (Flyte's default
    /// `{project}-{domain}` layout), filled from the task's execution.
    /// The caller names the project and domain, so a pattern only matches
    /// a domain listed in `domains` and a project that is a DNS label:
    /// `kube` + `system` never makes `kube-system`.
    pub namespaces: Option<Vec<String>>,
    /// The Flyte domains `{domain}` may stand for.
    pub domains: Vec<String>,
}

impl Default for SecurityConfig {
    fn default() -> Self {
        SecurityConfig {
            resource_meta_keys: None,
            namespaces: None,
            domains: ["development", "staging", "production"]
                .map(String::from)
                .to_vec(),
        }
    }
}

/// A DNS-1123 label: what a Flyte project id is.
fn is_dns_label(text: &str) -> bool {
    !text.is_empty()
        && text.len() <= 63
        && text
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !text.starts_with('-')
        && !text.ends_with('-')
}

impl SecurityConfig {
    /// Whether a task of `project`/`domain` may run in `namespace`; the
    /// error says what is allowed.
    pub fn check_namespace(
        &self,
        namespace: &str,
        project: &str,
        domain: &str,
    ) -> Result<(), String> {
        let Some(allowed) = &self.namespaces else {
            return Ok(());
        };
        let fill = |pattern: &str| {
            if pattern.contains("{domain}") && !self.domains.iter().any(|d| d == domain) {
                return None;
            }
            if pattern.contains("{project}") && !is_dns_label(project) {
                return None;
            }
            Some(
                pattern
                    .replace("{project}", project)
                    .replace("{domain}", domain),
            )
        };
        if allowed
            .iter()
            .any(|pattern| fill(pattern).as_deref() == Some(namespace))
        {
            return Ok(());
        }
        Err(format!(
            "namespace `{namespace}` is not allowed for {project}/{domain} by this host's policy (security.namespaces: {})",
            allowed.join(", ")
        ))
    }
}

fn default_annotations() -> BTreeMap<String, String> {
    BTreeMap::from([(
        "cluster-autoscaler.kubernetes.io/safe-to-evict".into(),
        "false".into(),
    )])
}

impl Default for K8sConfig {
    fn default() -> Self {
        K8sConfig {
            inject_finalizer: false,
            delete_resource_on_finalize: false,
            default_annotations: default_annotations(),
            default_labels: BTreeMap::new(),
            default_env_vars_from_env: BTreeMap::new(),
            default_pod_template_name: None,
            pod_defaults: serde_json::Map::new(),
        }
    }
}

impl HostConfig {
    pub fn load(path: &Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path)
            .map_err(|err| anyhow::anyhow!("cannot read config file {}: {err}", path.display()))?;
        let config: HostConfig = serde_yaml::from_str(&text)
            .map_err(|err| anyhow::anyhow!("invalid config file {}: {err}", path.display()))?;
        config
            .check()
            .map_err(|err| anyhow::anyhow!("invalid config file {}: {err}", path.display()))?;
        Ok(config)
    }

    /// Settings that would break what the host promises propeller.
    pub fn check(&self) -> Result<(), String> {
        self.tasks.check()?;
        let get_task =
            Duration::from_millis(self.tasks.status_reads_within_ms) + self.runtime.call_timeout;
        if get_task > GET_TASK_WITHIN {
            return Err(format!(
                "tasks.status-reads-within-ms ({}) and runtime.call-timeout ({} ms) add up to more than the {} ms a GetTask has within propeller's 3000 ms deadline",
                self.tasks.status_reads_within_ms,
                self.runtime.call_timeout.as_millis(),
                GET_TASK_WITHIN.as_millis()
            ));
        }
        Ok(())
    }

    /// The `k8s-defaults` JSON plugins receive. Environment taken from the
    /// host's own environment is resolved here, once: plugins have none.
    pub fn k8s_defaults_json(&self) -> &str {
        self.k8s_defaults.get_or_init(|| self.build_k8s_defaults())
    }

    fn build_k8s_defaults(&self) -> String {
        let mut all = self.k8s.pod_defaults.clone();
        let from_env: BTreeMap<String, String> = self
            .k8s
            .default_env_vars_from_env
            .iter()
            .map(|(name, host_var)| (name.clone(), std::env::var(host_var).unwrap_or_default()))
            .collect();
        all.insert(
            "default-env-vars-from-env".into(),
            serde_json::json!(from_env),
        );
        all.insert(
            "default-annotations".into(),
            serde_json::json!(self.k8s.default_annotations),
        );
        all.insert(
            "default-labels".into(),
            serde_json::json!(self.k8s.default_labels),
        );
        Value::Object(all).to_string()
    }

    /// The configuration of one plugin, as JSON (`null` when none).
    pub fn plugin_config_json(&self, plugin_id: &str) -> String {
        self.plugins
            .get(plugin_id)
            .cloned()
            .unwrap_or(Value::Null)
            .to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn get_task_bounds_must_fit_propellers_deadline() {
        let config = |yaml: &str| serde_yaml::from_str::<HostConfig>(yaml).unwrap().check();
        assert!(config("{}").is_ok(), "the defaults fit");
        let err = config("runtime: { call-timeout: 2500 }").unwrap_err();
        assert!(err.contains("runtime.call-timeout (2500 ms)"), "{err}");
        let err = config("tasks: { status-reads-within-ms: 1000 }").unwrap_err();
        assert!(err.contains("status-reads-within-ms (1000)"), "{err}");
        assert!(
            config("tasks: { status-reads-within-ms: 300 }\nruntime: { call-timeout: 2500 }")
                .is_ok()
        );
    }

    #[test]
    fn namespace_patterns_are_filled_from_the_execution() {
        let policy = SecurityConfig {
            namespaces: Some(vec!["{project}-{domain}".into(), "shared".into()]),
            ..SecurityConfig::default()
        };
        assert!(
            policy
                .check_namespace("flytesnacks-development", "flytesnacks", "development")
                .is_ok()
        );
        assert!(policy.check_namespace("shared", "any", "thing").is_ok());
        let err = policy
            .check_namespace("kube-system", "flytesnacks", "development")
            .unwrap_err();
        assert!(
            err.contains("`kube-system` is not allowed") && err.contains("{project}-{domain}"),
            "{err}"
        );
        // Another project's namespace is not this one's.
        assert!(
            policy
                .check_namespace("other-development", "flytesnacks", "development")
                .is_err()
        );
        assert!(
            SecurityConfig::default()
                .check_namespace("anything", "p", "d")
                .is_ok()
        );
    }
}
