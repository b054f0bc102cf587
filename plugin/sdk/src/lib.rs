//! Write a Flyte backend plugin for a Kubernetes operator, compiled to a
//! WebAssembly component and run by the flytewasm host.
//!
//! A plugin is one type implementing [`Plugin`] and one line of
//! [`export_plugin!`]:
//!
//! ```ignore
//! use flytewasm_plugin_sdk::prelude::*;
//!
//! struct MyOperator;
//!
//! impl Plugin for MyOperator {
//!     fn describe() -> PluginInfo { /* id, task types, the kind it creates */ }
//!     fn build_resource(ctx: &TaskContext) -> Result<Value, PluginError> { /* task → object */ }
//!     fn get_task_phase(ctx: &PhaseContext, observed: &Value) -> Result<PhaseInfo, PluginError> {
//!         /* object status → Flyte phase */
//!     }
//! }
//!
//! export_plugin!(MyOperator);
//! ```
//!
//! The host does every Kubernetes call: it names the object, sets its
//! namespace, labels, annotations, owner reference and finalizer, creates it,
//! watches it, and deletes it on abort. The helpers here implement Flyte's own
//! rules so a plugin behaves like one compiled into propeller:
//! [`TaskContext::custom`] (typed `TaskTemplate.custom`), [`pod`] (pod specs
//! from the task's container), [`phase`] (phase constructors and the version
//! bump rule) and [`logs`] (log-link templates).

pub mod context;
pub mod custom;
pub mod extended_resources;
pub mod k8s_defaults;
pub mod kubeflow;
pub mod logs;
pub mod phase;
pub mod pod;
pub mod pod_status;
pub mod pod_task;
pub mod pod_template;
pub mod quantity;
pub mod resources;
pub mod template;
pub mod time;

pub use context::{PhaseContext, PreviousPhase, TaskContext};
pub use flytewasm_proto::flyteidl;
/// flytewasm's own custom-config schemas (`proto/flytewasm/`).
pub use flytewasm_proto::flytewasm as schemas;
pub use k8s_defaults::K8sDefaults;
pub use serde_json::{self, Value, json};

/// The generated WIT bindings. Plugin authors never need them; the types
/// worth naming are re-exported below.
#[doc(hidden)]
pub mod bindings {
    wit_bindgen::generate!({
        path: "../../wit",
        world: "plugin",
        pub_export_macro: true,
        export_macro_name: "__export_plugin_world",
        default_bindings_module: "flytewasm_plugin_sdk::bindings",
    });
}

use bindings::flytewasm::plugin::types as wit;
pub use wit::{
    AbortAction, DeletePropagation, ErrorKind, ExecutionError, Phase, PhaseInfo, PluginError,
    PluginInfo, PluginProperties, ResourceKind, TaskExecutionId, TaskExecutionMetadata, TaskLog,
    TaskType, Timestamp,
};

/// Everything a plugin file usually needs.
pub mod prelude {
    pub use crate::phase::PhaseInfoExt;
    pub use crate::{
        AbortAction, DeletePropagation, ErrorKind, ExecutionError, Phase, PhaseContext, PhaseInfo,
        Plugin, PluginError, PluginInfo, PluginProperties, ResourceKind, TaskContext, TaskLog,
        TaskType, Value, export_plugin, json,
    };
}

/// A Flyte backend plugin for one Kubernetes kind.
///
/// Every call runs in a fresh instance: keep no state between calls.
pub trait Plugin {
    /// Who the plugin is, the task types it serves and the kind it creates.
    fn describe() -> PluginInfo;

    /// The object to create for this task, as JSON. Leave `metadata.name`,
    /// `namespace`, owner references and finalizers to the host.
    fn build_resource(ctx: &TaskContext) -> Result<Value, PluginError>;

    /// Map the object the host observed to a Flyte phase.
    fn get_task_phase(ctx: &PhaseContext, observed: &Value) -> Result<PhaseInfo, PluginError>;

    /// How to stop the task when Flyte aborts it. The default deletes the
    /// object; return [`AbortAction::Patch`] with a JSON merge patch to, say,
    /// ask the operator to cancel gracefully.
    fn on_abort(_ctx: &PhaseContext, _observed: &Value) -> Result<AbortAction, PluginError> {
        Ok(AbortAction::Delete)
    }
}

/// Export a [`Plugin`] implementation as the component's entry points.
#[macro_export]
macro_rules! export_plugin {
    ($plugin:ty) => {
        #[doc(hidden)]
        #[allow(dead_code)]
        type __FlytewasmExported = $crate::Exported<$plugin>;
        // Only the component exports the entry points: natively (tests,
        // benchmarks) several plugins link into one binary, and their
        // symbols would clash.
        #[cfg(target_arch = "wasm32")]
        $crate::bindings::__export_plugin_world!(
            __FlytewasmExported with_types_in $crate::bindings
        );
    };
}

/// Adapts a [`Plugin`] to the WIT world: decodes what the host sends, turns
/// JSON into values and back. Used by [`export_plugin!`].
#[doc(hidden)]
pub struct Exported<P>(std::marker::PhantomData<P>);

impl<P: Plugin> bindings::Guest for Exported<P> {
    fn describe() -> PluginInfo {
        P::describe()
    }

    fn build_resource(ctx: wit::TaskContext) -> Result<String, PluginError> {
        let ctx = TaskContext::from_wit(ctx)?;
        let object = P::build_resource(&ctx)?;
        Ok(object.to_string())
    }

    fn get_task_phase(ctx: wit::PhaseContext, observed: String) -> Result<PhaseInfo, PluginError> {
        let ctx = PhaseContext::from_wit(ctx)?;
        let observed = parse_observed(&observed)?;
        P::get_task_phase(&ctx, &observed)
    }

    fn on_abort(ctx: wit::PhaseContext, observed: String) -> Result<AbortAction, PluginError> {
        let ctx = PhaseContext::from_wit(ctx)?;
        let observed = parse_observed(&observed)?;
        P::on_abort(&ctx, &observed)
    }
}

fn parse_observed(observed: &str) -> Result<Value, PluginError> {
    serde_json::from_str(observed)
        .map_err(|err| PluginError::Internal(format!("the observed object is not JSON: {err}")))
}

/// Log through the host (the line carries the plugin id). Outside the wasm
/// runtime (native tests and benchmarks) it writes to stderr.
pub fn log(level: bindings::flytewasm::plugin::host::Level, message: &str) {
    #[cfg(target_arch = "wasm32")]
    bindings::flytewasm::plugin::host::log(level, message);
    #[cfg(not(target_arch = "wasm32"))]
    eprintln!("{level:?}: {message}");
}

pub use bindings::flytewasm::plugin::host::Level as LogLevel;

/// Flyte's defaults: the host injects owner references and (when
/// configured) the finalizer, deletes on finalize when configured,
/// generates 50-character names, and deletes with its own propagation.
impl Default for PluginProperties {
    fn default() -> Self {
        PluginProperties {
            disable_inject_owner_references: false,
            disable_inject_finalizer: false,
            disable_delete_resource_on_finalize: false,
            generated_name_max_length: None,
            delete_propagation: None,
        }
    }
}

impl PluginError {
    /// The user's task is wrong; `message` names the field.
    pub fn bad_task(message: impl Into<String>) -> Self {
        PluginError::BadTask(message.into())
    }

    /// Something the plugin cannot handle that is not the user's fault.
    pub fn internal(message: impl Into<String>) -> Self {
        PluginError::Internal(message.into())
    }
}
