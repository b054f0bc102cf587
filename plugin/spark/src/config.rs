//! The Spark plugin's configuration (Flyte's `plugins.spark` section), from
//! the host config file's `plugins.spark`.

use std::collections::BTreeMap;

use flytewasm_plugin_sdk::logs::LogConfig;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", default)]
pub struct SparkConfig {
    /// Spark conf every application starts from; the task's keys win.
    pub spark_config_default: BTreeMap<String, String>,
    /// Bundles of conf a task switches on with `spark.flyte.<name>.enabled=true`.
    pub features: Vec<Feature>,
    /// Base URL of the Spark history server, for finished applications.
    pub spark_history_server_url: String,
    pub logs: SparkLogs,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", default)]
pub struct Feature {
    pub name: String,
    pub spark_config: BTreeMap<String, String>,
}

/// Which log links to show for which pods.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", default)]
pub struct SparkLogs {
    /// The driver pod's logs, which mix user and Spark output.
    pub mixed: LogConfig,
    /// User logs (driver pod).
    pub user: LogConfig,
    /// Spark's own logs (named after the application).
    pub system: LogConfig,
    /// All user logs including spark-submit; shown while pending.
    pub all_user: LogConfig,
}

impl Default for SparkConfig {
    fn default() -> Self {
        SparkConfig {
            spark_config_default: BTreeMap::new(),
            features: Vec::new(),
            spark_history_server_url: String::new(),
            logs: SparkLogs::default(),
        }
    }
}

impl Default for SparkLogs {
    /// Flyte's default: the driver's logs in a local Kubernetes dashboard.
    fn default() -> Self {
        SparkLogs {
            mixed: LogConfig::flyte_default(),
            user: LogConfig::default(),
            system: LogConfig::default(),
            all_user: LogConfig::default(),
        }
    }
}
