//! What a plugin is handed: the decoded task and its execution metadata.

use prost::Message;
use serde::de::DeserializeOwned;

use crate::bindings::flytewasm::plugin::types as wit;
use crate::flyteidl::core::TaskTemplate;
use crate::{K8sDefaults, Phase, PluginError, TaskExecutionMetadata, Timestamp, Value};

/// One task execution, as the plugin sees it.
#[derive(Debug, Clone)]
pub struct TaskContext {
    /// The task, decoded from the protobuf the host sent.
    pub template: TaskTemplate,
    pub metadata: TaskExecutionMetadata,
    pub input_prefix: String,
    pub output_prefix: String,
    pub raw_output_prefix: String,
    /// The platform's Kubernetes defaults (Flyte's `plugins.k8s` config).
    pub k8s_defaults: K8sDefaults,
    /// This plugin's configuration; read it with [`TaskContext::plugin_config`].
    pub plugin_config: Value,
    /// The host's clock at the time of the call.
    pub now: Timestamp,
}

impl TaskContext {
    /// Build a context from its parts (tests and native callers).
    pub fn new(
        template: TaskTemplate,
        metadata: TaskExecutionMetadata,
        k8s_defaults: K8sDefaults,
        plugin_config: Value,
    ) -> Self {
        TaskContext {
            template,
            metadata,
            input_prefix: String::new(),
            output_prefix: String::new(),
            raw_output_prefix: String::new(),
            k8s_defaults,
            plugin_config,
            now: Timestamp {
                seconds: 0,
                nanos: 0,
            },
        }
    }

    /// Decode what the host sent. A template that does not decode is the
    /// user's problem; unreadable JSON from the host is not.
    pub fn from_wit(ctx: wit::TaskContext) -> Result<Self, PluginError> {
        let template = TaskTemplate::decode(ctx.task_template.as_slice()).map_err(|err| {
            PluginError::bad_task(format!(
                "the task template is not a valid flyteidl.core.TaskTemplate: {err}"
            ))
        })?;
        let k8s_defaults = serde_json::from_str(&ctx.k8s_defaults).map_err(|err| {
            PluginError::internal(format!("the host's k8s defaults are not valid: {err}"))
        })?;
        let plugin_config = serde_json::from_str(&ctx.plugin_config).map_err(|err| {
            PluginError::internal(format!("the plugin configuration is not JSON: {err}"))
        })?;
        Ok(TaskContext {
            template,
            metadata: ctx.metadata,
            input_prefix: ctx.input_prefix,
            output_prefix: ctx.output_prefix,
            raw_output_prefix: ctx.raw_output_prefix,
            k8s_defaults,
            plugin_config,
            now: ctx.now,
        })
    }

    /// `TaskTemplate.custom` read into a typed message with the proto3 JSON
    /// mapping, as Flyte's Go plugins do. See [`crate::custom`].
    pub fn custom<T: DeserializeOwned>(&self) -> Result<T, PluginError> {
        crate::custom::from_template(&self.template)
    }

    /// This plugin's configuration from the host's config file, into the
    /// plugin's own type. An invalid configuration is the operator's mistake,
    /// reported as an internal error naming the problem.
    pub fn plugin_config<T: DeserializeOwned + Default>(&self) -> Result<T, PluginError> {
        if self.plugin_config.is_null() {
            return Ok(T::default());
        }
        serde_json::from_value(self.plugin_config.clone())
            .map_err(|err| PluginError::internal(format!("invalid plugin configuration: {err}")))
    }

    /// The host's clock in milliseconds since the Unix epoch.
    pub fn now_millis(&self) -> i64 {
        self.now.seconds * 1000 + i64::from(self.now.nanos / 1_000_000)
    }

    /// `TaskTemplate.config`, the task's string map (e.g. `primary_container_name`).
    pub fn template_config(&self, key: &str) -> Option<&str> {
        self.template.config.get(key).map(String::as_str)
    }
}

/// What the host reported last time it asked.
#[derive(Debug, Clone)]
pub struct PreviousPhase {
    pub phase: Phase,
    pub version: u32,
    pub reason: String,
}

/// [`TaskContext`] plus the previous phase: what `get-task-phase` and
/// `on-abort` see.
#[derive(Debug, Clone)]
pub struct PhaseContext {
    pub task: TaskContext,
    pub previous: PreviousPhase,
}

impl PhaseContext {
    pub fn from_wit(ctx: wit::PhaseContext) -> Result<Self, PluginError> {
        Ok(PhaseContext {
            task: TaskContext::from_wit(ctx.task)?,
            previous: PreviousPhase {
                phase: ctx.previous_phase,
                version: ctx.previous_version,
                reason: ctx.previous_reason,
            },
        })
    }
}

impl std::ops::Deref for PhaseContext {
    type Target = TaskContext;

    fn deref(&self) -> &TaskContext {
        &self.task
    }
}
