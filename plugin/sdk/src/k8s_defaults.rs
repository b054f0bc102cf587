//! The platform's Kubernetes defaults (Flyte's `plugins.k8s` section), as
//! the host passes them in `task-context.k8s-defaults`. Keys are Flyte's
//! config names, so an existing propeller config section can be reused.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    Affinity, NodeSelectorRequirement, PodDNSConfig, PodSecurityContext, SecurityContext,
    Toleration,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", default)]
pub struct K8sDefaults {
    /// Tolerations added to every pod.
    pub default_tolerations: Vec<Toleration>,
    /// Node selector every pod gets (the pod's own keys win).
    pub default_node_selector: BTreeMap<String, String>,
    /// Affinity for pods that set none.
    pub default_affinity: Option<Affinity>,
    /// Tolerations added to pods of interruptible tasks.
    pub interruptible_tolerations: Vec<Toleration>,
    /// Node selector added to pods of interruptible tasks.
    pub interruptible_node_selector: BTreeMap<String, String>,
    /// Required node-affinity term added to pods of interruptible tasks.
    pub interruptible_node_selector_requirement: Option<NodeSelectorRequirement>,
    /// Required node-affinity term added to pods of other tasks.
    pub non_interruptible_node_selector_requirement: Option<NodeSelectorRequirement>,
    /// Tolerations added when a pod requests a resource (e.g. `nvidia.com/gpu`).
    pub resource_tolerations: BTreeMap<String, Vec<Toleration>>,
    /// Scheduler for pods that name none.
    pub scheduler_name: String,
    /// Pod security context for pods that set none.
    pub default_pod_security_context: Option<PodSecurityContext>,
    /// Security context for primary containers that set none.
    pub default_security_context: Option<SecurityContext>,
    /// Run pods on the host network.
    pub enable_host_networking_pod: Option<bool>,
    /// DNS config for pods that set none.
    pub default_pod_dns_config: Option<PodDNSConfig>,
    /// Environment added to every container.
    pub default_env_vars: BTreeMap<String, String>,
    /// Environment taken from the host's own environment (the host resolves
    /// the values before handing them over: a plugin has no environment).
    pub default_env_vars_from_env: BTreeMap<String, String>,
    /// Annotations for every object (the host applies them; pod-building
    /// plugins such as Spark copy them onto pods too).
    pub default_annotations: BTreeMap<String, String>,
    /// Labels for every object.
    pub default_labels: BTreeMap<String, String>,
    /// CPU request of a primary container that asks for none (Flyte: 1000m).
    pub default_cpus: Option<String>,
    /// Memory request of a primary container that asks for none (Flyte: 1024Mi).
    pub default_memory: Option<String>,
    /// The platform's resource defaults and limits (propeller's `task-resources`,
    /// Kubernetes resource names); defaults win over `default-cpus`/`default-memory`.
    pub task_resources: TaskResources,
    /// The resource a task's GPU request becomes (Flyte: `nvidia.com/gpu`).
    pub gpu_resource_name: Option<String>,
    /// Node label naming a node's GPU model (Flyte: `k8s.amazonaws.com/accelerator`).
    pub gpu_device_node_label: Option<String>,
    /// Node label naming a node's GPU partition size (Flyte: `k8s.amazonaws.com/gpu-partition-size`).
    pub gpu_partition_size_node_label: Option<String>,
    /// Requirement for tasks that ask for an unpartitioned GPU (default: no partition label).
    pub gpu_unpartitioned_node_selector_requirement: Option<NodeSelectorRequirement>,
    /// Toleration for tasks that ask for an unpartitioned GPU.
    pub gpu_unpartitioned_toleration: Option<Toleration>,
    /// Resources (e.g. `nvidia.com/gpu`) whose requests get an `Exists`/`NoSchedule` toleration.
    pub add_tolerations_for_extended_resources: Vec<String>,
    /// The task's base PodTemplate (its `template`: metadata and spec), which
    /// the host looked up for this build (Flyte's `pod_template_name`, or
    /// `default-pod-template-name`). Its containers named `default` and
    /// `primary` (`default-init`, `primary-init`) are templates for the task's.
    pub base_pod_template: Option<serde_json::Value>,
    /// Distributed jobs report the earliest failure of their workers (Flyte's
    /// `enable-distributed-error-aggregation`).
    pub enable_distributed_error_aggregation: bool,
    /// How long a pod's container may wait in `CreateContainerError` before
    /// the task fails (Go duration; Flyte: `3m`).
    pub create_container_error_grace_period: Option<String>,
    /// The same for `CreateContainerConfigError` (Flyte: `0s`, at once).
    pub create_container_config_error_grace_period: Option<String>,
    /// How long a pod may back off pulling its image before the task fails
    /// (Flyte: `3m`).
    pub image_pull_backoff_grace_period: Option<String>,
    /// How long a pod may stay Pending before the task fails (Flyte: `0s`,
    /// never).
    pub pod_pending_timeout: Option<String>,
}

/// Propeller's `task-resources`: what a task gets when it asks for nothing,
/// and the most it may get.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct TaskResources {
    pub defaults: BTreeMap<String, Quantity>,
    pub limits: BTreeMap<String, Quantity>,
}

impl K8sDefaults {
    pub fn gpu_resource_name(&self) -> &str {
        self.gpu_resource_name
            .as_deref()
            .unwrap_or("nvidia.com/gpu")
    }

    pub fn gpu_device_node_label(&self) -> &str {
        self.gpu_device_node_label
            .as_deref()
            .unwrap_or("k8s.amazonaws.com/accelerator")
    }

    pub fn gpu_partition_size_node_label(&self) -> &str {
        self.gpu_partition_size_node_label
            .as_deref()
            .unwrap_or("k8s.amazonaws.com/gpu-partition-size")
    }

    pub fn create_container_error_grace_period(&self) -> &str {
        self.create_container_error_grace_period
            .as_deref()
            .unwrap_or("3m")
    }

    pub fn create_container_config_error_grace_period(&self) -> &str {
        self.create_container_config_error_grace_period
            .as_deref()
            .unwrap_or("0s")
    }

    pub fn image_pull_backoff_grace_period(&self) -> &str {
        self.image_pull_backoff_grace_period
            .as_deref()
            .unwrap_or("3m")
    }

    pub fn pod_pending_timeout(&self) -> &str {
        self.pod_pending_timeout.as_deref().unwrap_or("0s")
    }

    pub fn default_cpu(&self) -> String {
        self.platform_default("cpu", self.default_cpus.as_deref(), "1000m")
    }

    pub fn default_memory(&self) -> String {
        self.platform_default("memory", self.default_memory.as_deref(), "1024Mi")
    }

    fn platform_default(&self, name: &str, configured: Option<&str>, flyte: &str) -> String {
        match self.task_resources.defaults.get(name) {
            Some(quantity) => quantity.0.clone(),
            None => configured.unwrap_or(flyte).to_owned(),
        }
    }
}
