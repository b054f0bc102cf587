//! Flyte's base PodTemplate: a task names one (`TaskMetadata.pod_template_name`),
//! or the platform sets `k8s.default-pod-template-name`. The host reads it
//! just before the build — from the task's namespace, else the host's own,
//! as propeller looks in the execution's namespace and then its own — and
//! hands its `template` to the plugin as `k8s-defaults.base-pod-template`
//! (the SDK merges it under the task's pod). A template the task names must
//! exist; a missing default one is no template.

use serde_json::Value;

use super::object::TaskRequest;
use crate::cluster::{Cluster, ClusterError, ResourceKind};
use crate::config::HostConfig;

/// Why a task's base PodTemplate could not be had.
#[derive(Debug, thiserror::Error)]
pub enum PodTemplateError {
    /// The task names a template that is in neither namespace.
    #[error("PodTemplate '{name}' does not exist in namespace {namespace} or {host_namespace}")]
    Missing {
        name: String,
        namespace: String,
        host_namespace: String,
    },
    /// The name the task gives is not an object name.
    #[error("PodTemplate name '{0}' is not a valid object name (a DNS-1123 subdomain)")]
    InvalidName(String),
    /// The API could not be read; worth another try.
    #[error(transparent)]
    Cluster(#[from] ClusterError),
}

fn kind() -> ResourceKind {
    ResourceKind {
        api_version: "v1".into(),
        kind: "PodTemplate".into(),
        plural: "podtemplates".into(),
    }
}

/// The `template` of the task's base PodTemplate, if it has one.
pub async fn base_template(
    cluster: &Cluster,
    config: &HostConfig,
    request: &TaskRequest,
    host_namespace: &str,
) -> Result<Option<Value>, PodTemplateError> {
    let named = request
        .template
        .metadata
        .as_ref()
        .map(|m| m.pod_template_name.as_str())
        .filter(|name| !name.is_empty());
    let Some(name) = named.or(config.k8s.default_pod_template_name.as_deref()) else {
        return Ok(None);
    };
    // The name goes into the API's URL path.
    if !super::metadata::is_dns1123(name) {
        return Err(PodTemplateError::InvalidName(name.to_owned()));
    }
    if let Some(object) = cluster
        .get_from_api(&kind(), &request.namespace, name)
        .await?
    {
        return Ok(Some(object["template"].clone()));
    }
    // A host with rights only in the tasks' namespaces (deploy's
    // namespaced-rbac) may not read its own: there is no template there.
    match cluster.get_from_api(&kind(), host_namespace, name).await {
        Ok(Some(object)) => return Ok(Some(object["template"].clone())),
        Ok(None) => {}
        Err(err) if err.code == 403 => {
            tracing::warn!(
                "cannot read PodTemplates in the host's namespace {host_namespace}: {}",
                err.message
            );
        }
        Err(err) => return Err(err.into()),
    }
    if named.is_some() {
        return Err(PodTemplateError::Missing {
            name: name.to_owned(),
            namespace: request.namespace.clone(),
            host_namespace: host_namespace.to_owned(),
        });
    }
    Ok(None)
}
