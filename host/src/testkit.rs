//! Helpers for tests that run plugins in the wasm runtime — the plugin
//! crates' own tests and the host's. Components come from `just
//! build-plugins` (`target/plugins`, `target/test-plugins`).

use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::{Duration, SystemTime};

use crate::executor::TaskRequest;
use crate::runtime::{Plugin, Runtime, RuntimeConfig, wit};
use flytewasm_proto::flyteidl::core::{Container, TaskTemplate, task_template::Target};

/// The workspace root.
pub fn workspace_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("host/ is in the workspace")
        .to_owned()
}

/// Runtime settings for tests: the default limits, and a precompiled
/// artifact cache under `target/` so each component compiles once per build
/// (sealed with a key kept beside it, not in it).
pub fn runtime_config() -> RuntimeConfig {
    let target = workspace_dir().join("target");
    RuntimeConfig {
        cache_dir: Some(target.join("flytewasm-cache")),
        precompile_key_file: Some(target.join("flytewasm-test-keys/precompile.key")),
        ..RuntimeConfig::default()
    }
}

/// One runtime shared by the tests of a test binary.
pub fn runtime() -> &'static Runtime {
    static RUNTIME: OnceLock<Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| Runtime::new(runtime_config()).expect("creating the wasm runtime"))
}

/// Path of a built component: `target/plugins/NAME.wasm`, else `target/test-plugins/NAME.wasm`.
pub fn component_path(name: &str) -> PathBuf {
    let root = workspace_dir().join("target");
    let served = root.join("plugins").join(format!("{name}.wasm"));
    if served.exists() {
        return served;
    }
    let test = root.join("test-plugins").join(format!("{name}.wasm"));
    assert!(
        test.exists(),
        "no component for plugin `{name}` in target/plugins or target/test-plugins: run `just build-plugins`"
    );
    test
}

/// Load a built plugin into the shared runtime.
pub fn plugin(name: &str) -> Plugin {
    let path = component_path(name);
    runtime()
        .load(&path)
        .unwrap_or_else(|err| panic!("loading {}: {err}", path.display()))
}

/// A fixed clock for deterministic outputs: 2024-01-02T03:04:05Z.
pub fn fixed_now() -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(1_704_164_645)
}

/// The phase context for `task` after a previous phase.
pub fn phase_context(
    task: wit::TaskContext,
    previous: wit::Phase,
    version: u32,
    reason: &str,
) -> wit::PhaseContext {
    wit::PhaseContext {
        task,
        previous_phase: previous,
        previous_version: version,
        previous_reason: reason.into(),
    }
}

/// A minimal Spark task (as flytekitplugins-spark writes one) named `name`
/// in `namespace`.
pub fn spark_task(namespace: &str, name: &str) -> TaskRequest {
    TaskRequest {
        template: TaskTemplate {
            r#type: "spark".into(),
            custom: Some(
                serde_json::from_value(
                    serde_json::json!({ "mainApplicationFile": "local:///app.py" }),
                )
                .unwrap(),
            ),
            target: Some(Target::Container(Container {
                image: "spark:3".into(),
                args: vec!["pyflyte-execute".into()],
                ..Default::default()
            })),
            ..Default::default()
        },
        namespace: namespace.into(),
        name: Some(name.into()),
        max_attempts: 1,
        ..Default::default()
    }
}

/// A task of `task_type` running the container `image` (with Flyte's
/// input-path argument template), its config `custom` in
/// TaskTemplate.custom; object `tests/task1`, inputs under `s3://bucket/in`.
/// What plugin crates' tests start from.
pub fn container_task(
    task_type: &str,
    custom: Option<serde_json::Value>,
    image: &str,
) -> TaskRequest {
    TaskRequest {
        template: TaskTemplate {
            r#type: task_type.into(),
            custom: custom.map(|c| serde_json::from_value(c).expect("a JSON object")),
            target: Some(Target::Container(Container {
                image: image.into(),
                args: vec![
                    "pyflyte-execute".into(),
                    "--inputs".into(),
                    "{{.input}}".into(),
                ],
                ..Default::default()
            })),
            ..Default::default()
        },
        namespace: "tests".into(),
        name: Some("task1".into()),
        input_prefix: "s3://bucket/in".into(),
        max_attempts: 1,
        ..Default::default()
    }
}

/// VmHWM, the peak resident set in KiB, of a process (`"self"` or a pid);
/// 0 where /proc is not available.
pub fn peak_rss_kib(pid: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

/// Objects of one kind in `namespace` of a sandbox, through kube-rs.
pub fn objects(
    sandbox: &crate::sandbox::Sandbox,
    namespace: &str,
    api_version: &str,
    kind: &str,
    plural: &str,
) -> kube::Api<kube::api::DynamicObject> {
    let (group, version) = api_version.rsplit_once('/').unwrap_or(("", api_version));
    let resource = kube::api::ApiResource::from_gvk_with_plural(
        &kube::api::GroupVersionKind::gvk(group, version, kind),
        plural,
    );
    kube::Api::namespaced_with(sandbox.client().unwrap(), namespace, &resource)
}

/// The SparkApplications in `namespace` of a sandbox.
pub fn spark_apps(
    sandbox: &crate::sandbox::Sandbox,
    namespace: &str,
) -> kube::Api<kube::api::DynamicObject> {
    objects(
        sandbox,
        namespace,
        "sparkoperator.k8s.io/v1beta2",
        "SparkApplication",
        "sparkapplications",
    )
}

/// The CreateTaskRequest propeller sends for attempt `attempt` of node `n0`
/// of execution `execution` (project `p`, domain `d`) in `namespace`, with
/// these task execution annotations (the sandbox's fate annotations go here).
pub fn create_request(
    template: TaskTemplate,
    namespace: &str,
    execution: &str,
    attempt: u32,
    annotations: &[(&str, &str)],
) -> flytewasm_proto::flyteidl::admin::CreateTaskRequest {
    use flytewasm_proto::flyteidl::admin::{CreateTaskRequest, TaskExecutionMetadata};
    use flytewasm_proto::flyteidl::core::{
        NodeExecutionIdentifier, TaskExecutionIdentifier, WorkflowExecutionIdentifier,
    };
    CreateTaskRequest {
        template: Some(template),
        output_prefix: "s3://bucket/out".into(),
        task_execution_metadata: Some(TaskExecutionMetadata {
            task_execution_id: Some(TaskExecutionIdentifier {
                node_execution_id: Some(NodeExecutionIdentifier {
                    node_id: "n0".into(),
                    execution_id: Some(WorkflowExecutionIdentifier {
                        project: "p".into(),
                        domain: "d".into(),
                        name: execution.into(),
                        ..Default::default()
                    }),
                }),
                retry_attempt: attempt,
                ..Default::default()
            }),
            namespace: namespace.into(),
            annotations: annotations
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            ..Default::default()
        }),
        inputs: None,
    }
}

/// VmRSS, the resident set now in KiB, of a process; 0 where /proc is not
/// available.
pub fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}
