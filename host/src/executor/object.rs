//! Launch preparation: call the plugin's `build-resource`, check what it
//! returned, and set the metadata the host owns (Flyte's `addObjectMetadata`).
//! Nothing the plugin returns is trusted for name, namespace, owner
//! references or finalizers: the host derives them itself.

use std::collections::BTreeMap;
use std::time::SystemTime;

use flytewasm_proto::flyteidl::core::TaskTemplate;
use prost::Message;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use super::carried;
use super::metadata::{self, Execution};
use crate::config::HostConfig;
use crate::runtime::{CallError, Plugin, wit};

/// Everything needed to build one task's object. Plain data: the agent
/// service keeps it in `resource_meta`, so any replica can ask the plugin
/// about the task later.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct TaskRequest {
    /// Kept as base64 protobuf: compact, and exactly what the plugin reads.
    #[serde(with = "template_bytes")]
    pub template: TaskTemplate,
    pub execution: Execution,
    pub namespace: String,
    /// Use this object name instead of the generated one.
    pub name: Option<String>,
    /// Task execution labels and annotations (propeller's, or the agent request's).
    pub labels: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
    pub service_account: String,
    pub interruptible: bool,
    pub max_attempts: u32,
    pub environment: BTreeMap<String, String>,
    pub input_prefix: String,
    pub output_prefix: String,
    pub raw_output_prefix: String,
    /// Owner reference to set (the workflow object), when there is one.
    pub owner: Option<Value>,
    pub console_url: Option<String>,
    /// The task's base PodTemplate (its `template`), looked up just before
    /// the build (`executor::pod_templates`); never carried.
    #[serde(skip)]
    pub base_pod_template: Option<Value>,
}

/// The object ready to be created, and where it came from.
#[derive(Debug, Clone)]
pub struct PreparedObject {
    pub object: Value,
    pub name: String,
    pub namespace: String,
    pub plugin_id: String,
    pub plugin_digest: String,
}

#[derive(Debug, thiserror::Error)]
pub enum PrepareError {
    /// The plugin failed or refused the task (the message says why).
    #[error(transparent)]
    Plugin(#[from] CallError),
    #[error("the object is {size} bytes, over the {limit}-byte limit")]
    TooLarge { size: usize, limit: usize },
    #[error("{0}")]
    ContextTooLarge(String),
}

impl PrepareError {
    /// Flyte's failure code for this error.
    pub fn code(&self) -> &'static str {
        match self {
            PrepareError::Plugin(_) => super::lifecycle::codes::FAILED_TO_BUILD_RESOURCE,
            PrepareError::TooLarge { .. } | PrepareError::ContextTooLarge(_) => "EntityTooLarge",
        }
    }
}

impl TaskRequest {
    /// The object name: the one asked for, or Flyte's generated name.
    pub fn object_name(&self, plugin: &Plugin) -> String {
        let max_len = plugin
            .info()
            .properties
            .generated_name_max_length
            .map_or(metadata::DEFAULT_NAME_LENGTH, |len| len as usize);
        let name = match &self.name {
            Some(name) => name.clone(),
            None => {
                let attempt = self.execution.retry_attempt.to_string();
                metadata::generated_name(
                    &[&self.execution.name, &self.execution.node_id, &attempt],
                    max_len,
                )
            }
        };
        metadata::dns1123_name(&name)
    }

    /// The `task-context` handed to the plugin.
    pub fn task_context(
        &self,
        plugin: &Plugin,
        config: &HostConfig,
        now: SystemTime,
    ) -> wit::TaskContext {
        let pairs = |map: &BTreeMap<String, String>| {
            map.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
        };
        let id = self.template.id.clone().unwrap_or_default();
        let now = now
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or_default();
        wit::TaskContext {
            task_template: self.template.encode_to_vec(),
            metadata: wit::TaskExecutionMetadata {
                generated_name: self.object_name(plugin),
                namespace: self.namespace.clone(),
                labels: pairs(&self.labels),
                annotations: pairs(&self.annotations),
                service_account: self.service_account.clone(),
                interruptible: self.interruptible,
                max_attempts: self.max_attempts,
                environment: pairs(&self.environment),
                id: wit::TaskExecutionId {
                    project: self.execution.project.clone(),
                    domain: self.execution.domain.clone(),
                    name: self.execution.name.clone(),
                    node_id: self.execution.node_id.clone(),
                    retry_attempt: self.execution.retry_attempt,
                    task_project: id.project,
                    task_domain: id.domain,
                    task_name: id.name,
                    task_version: id.version,
                },
                console_url: self.console_url.clone(),
            },
            input_prefix: self.input_prefix.clone(),
            output_prefix: self.output_prefix.clone(),
            raw_output_prefix: self.raw_output_prefix.clone(),
            k8s_defaults: match &self.base_pod_template {
                None => config.k8s_defaults_json().to_owned(),
                Some(template) => {
                    let mut defaults: Value = serde_json::from_str(config.k8s_defaults_json())
                        .expect("the host writes its k8s defaults as JSON");
                    defaults["base-pod-template"] = template.clone();
                    defaults.to_string()
                }
            },
            plugin_config: config.plugin_config_json(plugin.id()),
            now: wit::Timestamp {
                seconds: now.as_secs() as i64,
                nanos: now.subsec_nanos(),
            },
        }
    }
}

/// Build the object for `request` with `plugin`, as it will be created.
pub fn prepare(
    plugin: &Plugin,
    config: &HostConfig,
    request: &TaskRequest,
    now: SystemTime,
) -> Result<PreparedObject, PrepareError> {
    let ctx = request.task_context(plugin, config, now);
    let json = plugin.build_resource(&ctx)?;
    let mut object = check_object(plugin, &json, &request.namespace)?;
    let name = ctx.metadata.generated_name;
    let identity = carried::identity(request, &name).map_err(PrepareError::ContextTooLarge)?;
    inject_metadata(&mut object, plugin, config, request, &name, identity);

    let size = object.to_string().len();
    let limit = config.runtime.max_output_bytes;
    if size > limit {
        return Err(PrepareError::TooLarge { size, limit });
    }
    Ok(PreparedObject {
        object,
        name,
        namespace: request.namespace.clone(),
        plugin_id: plugin.id().to_owned(),
        plugin_digest: plugin.digest().to_owned(),
    })
}

/// The answer must be one JSON object of the declared kind, in the task's
/// namespace (or none).
fn check_object(plugin: &Plugin, json: &str, namespace: &str) -> Result<Value, CallError> {
    let invalid = |reason: String| CallError::InvalidOutput {
        plugin: plugin.id().into(),
        call: "build-resource",
        reason,
    };
    let object: Value =
        serde_json::from_str(json).map_err(|err| invalid(format!("not JSON: {err}")))?;
    if !object.is_object() {
        return Err(invalid("not a JSON object".into()));
    }
    let kind = &plugin.info().kind;
    let (api_version, object_kind) = (object["apiVersion"].as_str(), object["kind"].as_str());
    if api_version != Some(kind.api_version.as_str()) || object_kind != Some(kind.kind.as_str()) {
        return Err(invalid(format!(
            "a {} {}, but the plugin declares {} {}",
            api_version.unwrap_or("(no apiVersion)"),
            object_kind.unwrap_or("(no kind)"),
            kind.api_version,
            kind.kind
        )));
    }
    if !object["metadata"].is_null() && !object["metadata"].is_object() {
        return Err(invalid("metadata is not an object".into()));
    }
    if let Some(other) = object["metadata"]["namespace"]
        .as_str()
        .filter(|ns| !ns.is_empty() && *ns != namespace)
    {
        return Err(invalid(format!(
            "the object is for namespace `{other}`, the task runs in `{namespace}`"
        )));
    }
    Ok(object)
}

fn inject_metadata(
    object: &mut Value,
    plugin: &Plugin,
    config: &HostConfig,
    request: &TaskRequest,
    name: &str,
    (own_labels, own_annotations): (BTreeMap<String, String>, BTreeMap<String, String>),
) {
    let properties = &plugin.info().properties;
    let template_meta = request
        .template
        .metadata
        .as_ref()
        .and_then(|m| m.metadata.as_ref());
    let (secret_labels, secret_annotations) = metadata::security_metadata(&request.template);

    let meta = object["metadata"].take();
    let own = |field: &str| -> BTreeMap<String, String> {
        meta.get(field)
            .and_then(|v| serde_json::from_value(v.clone()).ok())
            .unwrap_or_default()
    };
    // Later sources win: platform defaults, the plugin's, the task's, the execution's.
    let mut labels = config.k8s.default_labels.clone();
    labels.extend(own("labels"));
    labels.extend(template_meta.map(|m| m.labels.clone()).unwrap_or_default());
    labels.extend(request.labels.clone());
    labels.extend(secret_labels);
    labels.extend(own_labels);
    let mut annotations = config.k8s.default_annotations.clone();
    annotations.extend(own("annotations"));
    annotations.extend(
        template_meta
            .map(|m| m.annotations.clone())
            .unwrap_or_default(),
    );
    annotations.extend(request.annotations.clone());
    annotations.extend(secret_annotations);
    annotations.insert(metadata::PLUGIN_ANNOTATION.into(), plugin.id().into());
    annotations.insert(metadata::DIGEST_ANNOTATION.into(), plugin.digest().into());
    annotations.extend(own_annotations);

    let mut out = Map::new();
    out.insert("name".into(), json!(name));
    out.insert("namespace".into(), json!(request.namespace));
    out.insert("labels".into(), json!(labels));
    out.insert("annotations".into(), json!(annotations));
    if let Some(owner) = request
        .owner
        .as_ref()
        .filter(|_| !properties.disable_inject_owner_references)
    {
        out.insert("ownerReferences".into(), json!([owner]));
    }
    if config.k8s.inject_finalizer && !properties.disable_inject_finalizer {
        out.insert("finalizers".into(), json!([metadata::FINALIZER]));
    }
    object["metadata"] = Value::Object(out);
}

mod template_bytes {
    use data_encoding::BASE64;
    use flytewasm_proto::flyteidl::core::TaskTemplate;
    use prost::Message;
    use serde::{Deserialize, Deserializer, Serializer, de::Error};

    pub fn serialize<S: Serializer>(template: &TaskTemplate, out: S) -> Result<S::Ok, S::Error> {
        out.serialize_str(&BASE64.encode(&template.encode_to_vec()))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(input: D) -> Result<TaskTemplate, D::Error> {
        let text = String::deserialize(input)?;
        let bytes = BASE64
            .decode(text.as_bytes())
            .map_err(|err| D::Error::custom(format!("template is not base64: {err}")))?;
        TaskTemplate::decode(bytes.as_slice())
            .map_err(|err| D::Error::custom(format!("template is not a TaskTemplate: {err}")))
    }
}
