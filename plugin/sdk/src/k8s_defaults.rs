//! The platform's Kubernetes defaults (Flyte's `plugins.k8s` section), as
//! the host passes them in `task-context.k8s-defaults`. Keys are Flyte's
//! config names, so an existing propeller config section can be reused.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    Affinity, NodeSelectorRequirement, PodDNSConfig, PodSecurityContext, SecurityContext,
    Toleration,
};
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
}
