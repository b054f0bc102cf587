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

/// Path of a built component: `target/plugins/NAME.wasm`, else
/// `target/test-plugins/` or `target/example-plugins/`.
pub fn component_path(name: &str) -> PathBuf {
    let root = workspace_dir().join("target");
    let file = format!("{name}.wasm");
    let found = ["plugins", "test-plugins", "example-plugins"]
        .iter()
        .map(|folder| root.join(folder).join(&file))
        .find(|path| path.exists());
    found.unwrap_or_else(|| {
        panic!(
            "no component for plugin `{name}` in target/plugins, target/test-plugins or target/example-plugins: run `just build-plugins`"
        )
    })
}

/// Load a built plugin into the shared runtime.
pub fn plugin(name: &str) -> Plugin {
    let path = component_path(name);
    runtime()
        .load(&path)
        .unwrap_or_else(|err| panic!("loading {}: {err}", path.display()))
}

/// A plugin describes itself as its Flyte counterpart does: its id, task
/// types (name, version), kind (apiVersion, kind, plural) and Flyte's
/// default properties.
pub fn assert_describes(
    plugin: &Plugin,
    id: &str,
    task_types: &[(&str, i32)],
    kind: (&str, &str, &str),
) {
    let info = plugin.info();
    assert_eq!(info.id, id);
    let types: Vec<(&str, i32)> = info
        .task_types
        .iter()
        .map(|t| (t.name.as_str(), t.version))
        .collect();
    assert_eq!(types, task_types);
    assert_eq!(
        (
            info.kind.api_version.as_str(),
            info.kind.kind.as_str(),
            info.kind.plural.as_str()
        ),
        kind
    );
    let p = &info.properties;
    assert!(
        !p.disable_inject_owner_references
            && !p.disable_inject_finalizer
            && !p.disable_delete_resource_on_finalize
    );
    assert_eq!(p.generated_name_max_length, None);
    assert_eq!(p.delete_propagation, None);
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

/// Compare `actual` with `<crate_dir>/tests/golden/<name>.json`, or write
/// it when `UPDATE_GOLDEN=1`.
pub fn assert_golden(crate_dir: &str, name: &str, actual: &serde_json::Value) {
    let path = std::path::Path::new(crate_dir)
        .join("tests/golden")
        .join(format!("{name}.json"));
    let text = serde_json::to_string_pretty(actual).unwrap() + "\n";
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, text).unwrap();
        return;
    }
    let golden = std::fs::read_to_string(&path).unwrap_or_else(|_| {
        panic!(
            "missing {}: run with UPDATE_GOLDEN=1 to create it",
            path.display()
        )
    });
    assert_eq!(
        text, golden,
        "{name} differs from its golden file (UPDATE_GOLDEN=1 rewrites it)"
    );
}

/// Flyte's GPU-accelerator vector (§A.5 PyTorch 4), which every operator
/// plugin's tests repeat for each pod it builds.
pub mod gpu_accelerator {
    use serde_json::{Value, json};

    use crate::config::HostConfig;
    use crate::executor::TaskRequest;

    /// The vector's `k8s` settings.
    pub fn k8s() -> Value {
        json!({
            "gpu-device-node-label": "gpu-node-label",
            "gpu-partition-size-node-label": "gpu-partition-size",
            "gpu-resource-name": "nvidia.com/gpu",
            "add-tolerations-for-extended-resources": ["nvidia.com/gpu"],
        })
    }

    /// A host configured with them.
    pub fn config() -> HostConfig {
        serde_json::from_value(json!({ "k8s": k8s() })).expect("a valid host config")
    }

    /// Ask for `device` (and a partition) in the task's extended resources.
    pub fn ask(request: &mut TaskRequest, device: &str, partition: Option<&str>) {
        let mut gpu = json!({ "device": device });
        if let Some(partition) = partition {
            gpu["partitionSize"] = json!(partition);
        }
        request.template.extended_resources = Some(
            serde_json::from_value(json!({ "gpuAccelerator": gpu }))
                .expect("valid extended resources"),
        );
    }

    /// A pod spec steered to `device`'s nodes: the required node-selector
    /// term and the tolerations, then (when `tolerates_gpu`, from
    /// `add-tolerations-for-extended-resources`) the GPU resource's own.
    pub fn assert_steered(
        spec: &Value,
        device: &str,
        partition: Option<&str>,
        tolerates_gpu: bool,
        which: &str,
    ) {
        let mut expressions =
            vec![json!({ "key": "gpu-node-label", "operator": "In", "values": [device] })];
        let toleration = |key: &str, value: &str| json!({ "key": key, "value": value, "operator": "Equal", "effect": "NoSchedule" });
        let mut tolerations = vec![toleration("gpu-node-label", device)];
        if let Some(partition) = partition {
            expressions.push(
                json!({ "key": "gpu-partition-size", "operator": "In", "values": [partition] }),
            );
            tolerations.push(toleration("gpu-partition-size", partition));
        }
        if tolerates_gpu {
            tolerations.push(
                json!({ "key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule" }),
            );
        }
        assert_eq!(
            spec["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"],
            json!([{ "matchExpressions": expressions }]),
            "{which}"
        );
        assert_eq!(spec["tolerations"], json!(tolerations), "{which}");
    }
}

/// Fixtures for the Kubeflow plugins' tests (pytorch, tensorflow, mpi), after
/// the common fixture of Flyte's kfoperators tests.
pub mod kubeflow {
    use std::collections::BTreeMap;

    use serde_json::{Value, json};

    use super::fixed_now;
    use crate::config::HostConfig;
    use crate::executor::TaskRequest;
    use crate::runtime::{CallError, Plugin, wit};
    use flytewasm_proto::flyteidl::core::{
        Container, KeyValuePair, Resources, TaskTemplate, resources::ResourceEntry,
        resources::ResourceName, task_template::Target,
    };

    /// Resource entries as flytekit writes them: `(name, quantity)`.
    pub fn entries(items: &[(ResourceName, &str)]) -> Vec<ResourceEntry> {
        items
            .iter()
            .map(|(name, value)| ResourceEntry {
                name: *name as i32,
                value: (*value).into(),
            })
            .collect()
    }

    /// A `task_type` task at `version` with `custom`: image `image://`, args
    /// `[test-args]`, env `Env_Var=Env_Val`, requests cpu 100m / memory
    /// 512Mi / 1 GPU, limits cpu 1000m / memory 1Gi / 1 GPU; object
    /// `the-job` in `kubeflow-namespace`, with execution labels and
    /// annotations.
    pub fn task(task_type: &str, version: i32, custom: Value) -> TaskRequest {
        use ResourceName::{Cpu, Gpu, Memory};
        TaskRequest {
            template: TaskTemplate {
                r#type: task_type.into(),
                task_type_version: version,
                custom: Some(serde_json::from_value(custom).expect("a JSON object")),
                target: Some(Target::Container(Container {
                    image: "image://".into(),
                    args: vec!["test-args".into()],
                    env: vec![KeyValuePair {
                        key: "Env_Var".into(),
                        value: "Env_Val".into(),
                    }],
                    resources: Some(Resources {
                        requests: entries(&[(Cpu, "100m"), (Memory, "512Mi"), (Gpu, "1")]),
                        limits: entries(&[(Cpu, "1000m"), (Memory, "1Gi"), (Gpu, "1")]),
                    }),
                    ..Default::default()
                })),
                ..Default::default()
            },
            namespace: "kubeflow-namespace".into(),
            name: Some("the-job".into()),
            labels: BTreeMap::from([("label-key".into(), "label-value".into())]),
            annotations: BTreeMap::from([("annotation-key".into(), "annotation-value".into())]),
            max_attempts: 1,
            ..Default::default()
        }
    }

    /// `request` with other resources on the task's container (none when
    /// both are empty).
    ///
    /// Flyte's fixtures put the task's resources in the execution's
    /// overrides, which a role's own resources replace whole; the host has no
    /// execution overrides, so its fixtures put them on the container, and a
    /// role's resources win over those key by key. A vector saying "exactly
    /// the role's resources" therefore needs a container without any.
    pub fn with_task_resources(
        mut request: TaskRequest,
        requests: &[(ResourceName, &str)],
        limits: &[(ResourceName, &str)],
    ) -> TaskRequest {
        if let Some(Target::Container(c)) = &mut request.template.target {
            c.resources = (!(requests.is_empty() && limits.is_empty())).then(|| Resources {
                requests: entries(requests),
                limits: entries(limits),
            });
        }
        request
    }

    /// A replica's pod template carries the fixture's execution label and
    /// annotation (§A.5: "template annotations/labels include the execution ones").
    pub fn assert_execution_metadata(template: &Value, role: &str) {
        let meta = &template["metadata"];
        assert_eq!(
            (
                meta["labels"]["label-key"].as_str(),
                meta["annotations"]["annotation-key"].as_str()
            ),
            (Some("label-value"), Some("annotation-value")),
            "{role}"
        );
    }

    /// The object the plugin builds for `request`.
    pub fn build(
        plugin: &Plugin,
        request: &TaskRequest,
        config: &HostConfig,
    ) -> Result<Value, CallError> {
        let ctx = request.task_context(plugin, config, fixed_now());
        Ok(serde_json::from_str(&plugin.build_resource(&ctx)?).expect("the plugin returns JSON"))
    }

    /// The phase the plugin reads from `job`, after `previous`.
    pub fn phase(
        plugin: &Plugin,
        request: &TaskRequest,
        config: &HostConfig,
        job: &Value,
        previous: (wit::Phase, u32, &str),
    ) -> Result<wit::PhaseInfo, CallError> {
        let ctx = request.task_context(plugin, config, fixed_now());
        let ctx = super::phase_context(ctx, previous.0, previous.1, previous.2);
        plugin.get_task_phase(&ctx, &job.to_string())
    }

    /// The container named `name` of role `role` in a job's `specs_key`
    /// (`pytorchReplicaSpecs`...).
    pub fn container<'a>(job: &'a Value, specs_key: &str, role: &str, name: &str) -> &'a Value {
        job["spec"][specs_key][role]["template"]["spec"]["containers"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|c| c["name"] == name)
            .unwrap_or_else(|| panic!("{role} has a `{name}` container"))
    }

    /// The log links (name, URI) for the job the plugin builds for
    /// `request`, running in `namespace`, with Kubernetes links to `k8s.com`.
    pub fn log_links(
        plugin: &Plugin,
        request: &TaskRequest,
        namespace: &str,
    ) -> Vec<(String, String)> {
        let logs = json!({ "kubernetes-enabled": true, "kubernetes-url": "k8s.com" });
        log_links_with(plugin, request, logs, |job| {
            job["metadata"]["namespace"] = json!(namespace)
        })
    }

    /// The (name, URI) links with the plugin's `logs` config, for its job as
    /// [`observed`] running, then changed by `adjust` (its name, times...).
    pub fn log_links_with(
        plugin: &Plugin,
        request: &TaskRequest,
        logs: Value,
        adjust: impl FnOnce(&mut Value),
    ) -> Vec<(String, String)> {
        let config: HostConfig =
            serde_json::from_value(json!({ "plugins": { plugin.id(): { "logs": logs } } }))
                .unwrap();
        let job = build(plugin, request, &config).unwrap();
        let mut job = observed(&job, json!([condition("Running", true, 0)]));
        adjust(&mut job);
        let info = phase(plugin, request, &config, &job, (wit::Phase::Queued, 0, "")).unwrap();
        info.logs.into_iter().map(|l| (l.name, l.uri)).collect()
    }

    /// §0.3.6's Kubeflow common vector: the URIs of the links for a task
    /// whose config asks for the dynamic link `test-dynamic-link`
    /// (`https://some-service.com/{{.taskConfig.dynamicParam}}`) with
    /// `dynamicParam: dynamic-value`.
    pub fn dynamic_link_uris(plugin: &Plugin, mut request: TaskRequest) -> Vec<String> {
        request.template.config = [
            ("link_type", "test-dynamic-link"),
            ("dynamicParam", "dynamic-value"),
        ]
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .into();
        let logs = json!({ "dynamic-log-links": { "test-dynamic-link": {
            "templateUris": ["https://some-service.com/{{.taskConfig.dynamicParam}}"]
        } } });
        log_links_with(plugin, &request, logs, |_| {})
            .into_iter()
            .map(|(_, uri)| uri)
            .collect()
    }

    /// The Kubernetes dashboard link to `pod` that [`log_links`] configures.
    pub fn dashboard_link(namespace: &str, pod: &str) -> String {
        format!("k8s.com/#!/log/{namespace}/{pod}/pod?namespace={namespace}")
    }

    /// RFC 3339 time `minutes` after the fixed clock.
    pub fn at(minutes: i64) -> String {
        let now = fixed_now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64;
        chrono::DateTime::from_timestamp(now + minutes * 60, 0)
            .unwrap()
            .format("%Y-%m-%dT%H:%M:%SZ")
            .to_string()
    }

    /// A condition of `kind` with `status`, changed `minutes` after the clock.
    pub fn condition(kind: &str, status: bool, minutes: i64) -> Value {
        json!({ "type": kind, "status": if status { "True" } else { "False" }, "reason": format!("Job{kind}"),
                "message": format!("the job is {kind}"), "lastTransitionTime": at(minutes), "lastUpdateTime": at(minutes) })
    }

    /// `job` (a built object) named `the-job`, created now, started, with these conditions.
    pub fn observed(job: &Value, conditions: Value) -> Value {
        let mut job = job.clone();
        job["metadata"] = json!({ "name": "the-job", "namespace": "kubeflow-namespace", "creationTimestamp": at(0) });
        job["status"] = json!({ "conditions": conditions, "startTime": at(0) });
        job
    }

    /// The condition → phase table every Kubeflow plugin follows
    /// (reference/flyte-operators.md §A.4, §A.5 PyTorch 5–7 and Common 2; the
    /// SDK's own tests hold Common 1, the current condition), checked for the
    /// plugin `plugin` on its object `job`.
    pub fn assert_phase_table(plugin: &Plugin, request: &TaskRequest, job: &Value, operator: &str) {
        use wit::Phase::*;
        let config = HostConfig::default();
        let c = condition;
        let look = |conditions: Value| {
            phase(
                plugin,
                request,
                &config,
                &observed(job, conditions),
                (Queued, 0, ""),
            )
            .unwrap()
        };
        let table = [
            (json!([c("Created", true, 0)]), Queued, "JobCreated"),
            (
                json!([c("Created", true, 0), c("Running", true, 1)]),
                Running,
                "",
            ),
            (
                json!([
                    c("Created", true, 0),
                    c("Running", false, 1),
                    c("Succeeded", true, 2)
                ]),
                Success,
                "",
            ),
            (
                json!([
                    c("Created", true, 0),
                    c("Running", false, 1),
                    c("Failed", true, 2)
                ]),
                RetryableFailure,
                "Job failed:\n\tJobFailed - the job is Failed",
            ),
            (
                json!([
                    c("Created", true, 0),
                    c("Running", false, 1),
                    c("Failed", true, 2),
                    c("Restarting", true, 3)
                ]),
                Running,
                "",
            ),
            (
                json!([c("Created", true, 0), c("Suspended", true, 1)]),
                Queued,
                "Suspended",
            ),
            (
                json!([
                    c("Created", true, 0),
                    c("Suspended", true, 1),
                    c("Running", true, 2)
                ]),
                Running,
                "",
            ),
        ];
        for (conditions, expected, reason) in table {
            let info = look(conditions.clone());
            assert_eq!(
                (info.phase, info.reason.as_str()),
                (expected, reason),
                "{operator}: conditions {conditions}"
            );
            let status: Value = serde_json::from_str(info.custom_info.as_deref().unwrap()).unwrap();
            assert_eq!(
                status["conditions"], conditions,
                "custom info is the job's status"
            );
        }
        let failed = look(json!([c("Failed", true, 2)]));
        let error = failed.error.unwrap();
        assert_eq!(
            (error.code.as_str(), error.kind),
            ("DownstreamSystemError", wit::ErrorKind::User)
        );

        // A condition type Flyte does not know: nothing new (the previous phase).
        let info = phase(
            plugin,
            request,
            &config,
            &observed(job, json!([c("Paused", true, 0)])),
            (Running, 2, ""),
        )
        .unwrap();
        assert_eq!((info.phase, info.version), (Running, 2));
        // Equal times: the later condition in the list. Our choice, not
        // parity: Flyte sorts with Go's unstable `sort.Slice`, so which of two
        // equal conditions it takes is not known.
        let info = look(json!([c("Running", true, 1), c("Succeeded", true, 1)]));
        assert_eq!(info.phase, Success);

        // No conditions yet: queued. A list none of which is true: an error, not a phase.
        let mut fresh = observed(job, json!(null));
        fresh["status"] = json!({ "startTime": at(0) });
        let info = phase(plugin, request, &config, &fresh, (Queued, 0, "")).unwrap();
        assert_eq!((info.phase, info.reason.as_str()), (Queued, "JobCreated"));
        // §G.9: an empty list counts as present.
        for conditions in [json!([{ "type": "unknown" }]), json!([])] {
            let none_true = observed(job, conditions);
            let err = phase(plugin, request, &config, &none_true, (Queued, 0, "")).unwrap_err();
            assert!(
                err.to_string().contains("found no current condition"),
                "{err}"
            );
        }

        // An operator that never started the job within the timeout: an error;
        // a suspended job is left waiting.
        let mut young = observed(job, json!([c("Created", true, 0)]));
        young["status"].as_object_mut().unwrap().remove("startTime");
        let info = phase(plugin, request, &config, &young, (Queued, 0, "")).unwrap();
        assert_eq!(info.phase, Queued, "a young job without a start time waits");
        let mut stale = observed(job, json!([c("Created", true, -60)]));
        stale["metadata"]["creationTimestamp"] = json!(at(-60));
        stale["status"].as_object_mut().unwrap().remove("startTime");
        let err = phase(plugin, request, &config, &stale, (Queued, 0, "")).unwrap_err();
        assert!(
            err.to_string().contains(&format!(
                "kubeflow operator hasn't updated the {operator} custom resource"
            )),
            "{err}"
        );
        stale["spec"]["runPolicy"]["suspend"] = json!(true);
        assert_eq!(
            phase(plugin, request, &config, &stale, (Queued, 0, ""))
                .unwrap()
                .phase,
            Queued
        );

        // Only the reason changed: a new version (Flyte's phase-version rule).
        let info = phase(
            plugin,
            request,
            &config,
            &observed(job, json!([c("Created", true, 0)])),
            (Queued, 0, "task submitted to K8s"),
        )
        .unwrap();
        assert_eq!((info.phase, info.version), (Queued, 1));
    }
}

/// Fixtures for the pod plugins' tests (pod, platform-sidecar), after
/// Flyte's pod plugin tests.
pub mod pod {
    use serde_json::{Value, json};

    use super::kubeflow::at;
    use crate::executor::TaskRequest;

    /// A task from its TaskTemplate in protobuf's JSON mapping (as flytekit
    /// writes it); object `tests/task1` of execution
    /// `flytesnacks/development/f1a2b3c4` node `n0`, inputs under
    /// `s3://bucket/in`, execution service account `service-account`.
    pub fn task(template: Value) -> TaskRequest {
        TaskRequest {
            template: serde_json::from_value(template).expect("a TaskTemplate in JSON"),
            execution: crate::executor::metadata::Execution {
                project: "flytesnacks".into(),
                domain: "development".into(),
                name: "f1a2b3c4".into(),
                node_id: "n0".into(),
                retry_attempt: 0,
            },
            namespace: "tests".into(),
            name: Some("task1".into()),
            service_account: "service-account".into(),
            input_prefix: "s3://bucket/in".into(),
            output_prefix: "s3://bucket/out/n0/0".into(),
            raw_output_prefix: "s3://bucket/raw/f1a2b3c4".into(),
            max_attempts: 1,
            ..Default::default()
        }
    }

    /// A plain `@task` as flytekit writes it: `python-task` version 0, the
    /// pyflyte-execute command, requests cpu 500m / memory 256Mi, limits
    /// memory 512Mi.
    pub fn python_task() -> TaskRequest {
        task(json!({
            "type": "python-task",
            "metadata": { "runtime": { "type": "FLYTE_SDK", "flavor": "python" } },
            "container": {
                "image": "ghcr.io/flyteorg/flytekit:py3.12-1.16.24",
                "args": ["pyflyte-execute", "--inputs", "{{.input}}", "--output-prefix", "{{.outputPrefix}}",
                         "--raw-output-data-prefix", "{{.rawOutputDataPrefix}}", "--resolver",
                         "flytekit.core.python_auto_container.default_task_resolver", "--", "task-module",
                         "workflows.hello", "task-name", "say_hello"],
                "resources": {
                    "requests": [{ "name": "CPU", "value": "500m" }, { "name": "MEMORY", "value": "256Mi" }],
                    "limits": [{ "name": "MEMORY", "value": "512Mi" }],
                },
            },
        }))
    }

    /// `pod` as the host observes it: `tests/task1`, created at the fixed
    /// clock, with `status`.
    pub fn observed(pod: &Value, status: Value) -> Value {
        let mut pod = pod.clone();
        pod["metadata"]["name"] = json!("task1");
        pod["metadata"]["namespace"] = json!("tests");
        pod["metadata"]["uid"] = json!("0000-uid");
        pod["metadata"]["creationTimestamp"] = json!(at(0));
        pod["status"] = status;
        pod
    }

    /// A container status named `name` in `state` (`{"running": {...}}`...).
    pub fn container(name: &str, state: Value) -> Value {
        json!({ "name": name, "ready": false, "restartCount": 0, "image": "", "imageID": "", "state": state })
    }

    /// A terminated state with `exit_code` and `reason`.
    pub fn terminated(exit_code: i32, reason: &str) -> Value {
        json!({ "terminated": { "exitCode": exit_code, "reason": reason, "finishedAt": at(0) } })
    }
}
