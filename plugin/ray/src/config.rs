//! The plugin's configuration, `plugins.ray` in the host config: Flyte's
//! `plugins.ray` keys (camelCase, as in propeller's config) and defaults.

use std::collections::BTreeMap;

use flytewasm_plugin_sdk::PluginError;
use flytewasm_plugin_sdk::logs::{LogConfig, LogTemplate};
use k8s_openapi::api::core::v1::Container;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct RayConfig {
    /// Delete the cluster when the job ends (a task may only turn it on).
    pub shutdown_after_job_finishes: bool,
    pub ttl_seconds_after_finished: i32,
    /// The head service's type.
    pub service_type: String,
    pub enable_ingress: bool,
    /// Head start-parameter defaults.
    pub include_dashboard: bool,
    pub dashboard_host: String,
    /// Deprecated: the node IP address when `defaults.*.ipAddress` is empty.
    #[serde(rename = "nodeIPAddress")]
    pub node_ip_address: String,
    pub remote_cluster_config: RemoteClusterConfig,
    /// Log links for Ray jobs. Unlike the global `plugins.logs`, none by default.
    pub logs: LogConfig,
    /// A container added to the head pod, reading Ray's logs from `/tmp/ray`.
    pub logs_sidecar: Option<Container>,
    /// The Ray dashboard link, shown while the job runs.
    #[serde(rename = "dashboardURLTemplate")]
    pub dashboard_url_template: Option<LogTemplate>,
    pub defaults: NodeDefaults,
    /// Off: every node gets `disable-usage-stats: true`.
    pub enable_usage_stats: bool,
    /// When set, every pod of the job runs as this service account.
    pub service_account: String,
}

impl Default for RayConfig {
    fn default() -> Self {
        RayConfig {
            shutdown_after_job_finishes: true,
            ttl_seconds_after_finished: 3600,
            service_type: "NodePort".into(),
            enable_ingress: false,
            include_dashboard: true,
            dashboard_host: "0.0.0.0".into(),
            node_ip_address: String::new(),
            remote_cluster_config: RemoteClusterConfig::default(),
            logs: LogConfig::default(),
            logs_sidecar: None,
            dashboard_url_template: None,
            defaults: NodeDefaults::default(),
            enable_usage_stats: false,
            service_account: String::new(),
        }
    }
}

/// Flyte creates Ray jobs on another cluster when this is enabled.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct RemoteClusterConfig {
    pub name: String,
    pub endpoint: String,
    pub auth: RemoteAuth,
    pub enabled: bool,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct RemoteAuth {
    pub token_path: String,
    pub ca_cert_path: String,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct NodeDefaults {
    pub head_node: NodeConfig,
    pub worker_node: NodeConfig,
}

/// Start parameters a node gets when its group names none, and its address.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct NodeConfig {
    pub start_parameters: BTreeMap<String, String>,
    pub ip_address: String,
}

impl Default for NodeConfig {
    fn default() -> Self {
        NodeConfig {
            start_parameters: [("disable-usage-stats".to_owned(), "true".to_owned())].into(),
            ip_address: "$MY_POD_IP".into(),
        }
    }
}

impl RayConfig {
    /// The configuration this plugin can honour. The host owns the one
    /// cluster client, so a remote cluster cannot be reached from here:
    /// refusing beats silently creating the job on the local cluster.
    pub fn checked(self) -> Result<Self, PluginError> {
        if self.remote_cluster_config.enabled {
            return Err(PluginError::internal(format!(
                "invalid plugin configuration: plugins.ray.remoteClusterConfig is enabled (endpoint `{}`), \
                 and remote clusters are not supported by this plugin: the host creates every object on its own cluster",
                self.remote_cluster_config.endpoint
            )));
        }
        Ok(self)
    }

    /// A node's IP address start parameter (the deprecated key fills an empty one).
    pub fn ip_address<'a>(&'a self, node: &'a NodeConfig) -> &'a str {
        if node.ip_address.is_empty() {
            &self.node_ip_address
        } else {
            &node.ip_address
        }
    }
}
