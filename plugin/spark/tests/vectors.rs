//! The Spark plugin in the wasm runtime, against the test vectors of Flyte's
//! own Spark plugin (`spark_test.go`; reference/flyte-facts.md §3.9).
//! The component is `target/plugins/spark.wasm` from `just build-plugins`.

use std::collections::BTreeMap;

use flytewasm::config::HostConfig;
use flytewasm::executor::TaskRequest;
use flytewasm::runtime::{CallError, Plugin, wit};
use flytewasm::testkit;
use flytewasm_proto::flyteidl::core::{
    Container, K8sObjectMetadata, K8sPod, TaskTemplate, task_template::Target,
};
use pbjson_types::Struct;
use serde_json::{Value, json};

fn to_struct(value: Value) -> Struct {
    serde_json::from_value(value).expect("a JSON object")
}

fn spark() -> Plugin {
    testkit::plugin("spark")
}

/// The common fixture's sparkConf and custom.
fn custom() -> Value {
    json!({
        "mainClass": "MainClass",
        "mainApplicationFile": "local:///spark_app.py",
        "applicationType": "PYTHON",
        "sparkConf": {
            "spark.driver.memory": "200M",
            "spark.driver.cores": "1",
            "spark.executor.cores": "2",
            "spark.executor.instances": "3",
            "spark.executor.memory": "500M",
            "spark.flyte.feature1.enabled": "true",
            "spark.flyteorg.feature2.enabled": "true",
            "spark.flyteorg.feature3.enabled": "true",
            "spark.batchScheduler": "volcano",
        },
    })
}

fn container_target() -> Target {
    Target::Container(Container {
        image: "image://".into(),
        args: vec!["execute-spark-task".into()],
        ..Default::default()
    })
}

/// The dummy pod of the K8sPod vectors: an init container, `primary` (with
/// a plain and a secret env var) and `secondary`, an extra toleration and a
/// node selector.
fn dummy_pod_spec(extra: Value) -> Value {
    let mut spec = json!({
        "initContainers": [{ "name": "init", "image": "init-image" }],
        "containers": [
            {
                "name": "primary",
                "image": "primary-image",
                "args": ["execute-spark-task"],
                "env": [
                    { "name": "Env_Var", "value": "Env_Val" },
                    { "name": "SECRET", "valueFrom": { "secretKeyRef": { "name": "secret-name", "key": "secret-key" } } },
                ],
            },
            { "name": "secondary", "image": "secondary-image" },
        ],
        "tolerations": [{ "key": "x/flyte", "value": "extra", "operator": "Equal", "effect": "NoSchedule" }],
        "nodeSelector": { "x/custom": "foo" },
    });
    if let (Value::Object(spec), Value::Object(extra)) = (&mut spec, extra) {
        spec.extend(extra);
    }
    spec
}

fn k8s_pod_target(extra: Value) -> Target {
    Target::K8sPod(K8sPod {
        metadata: Some(K8sObjectMetadata {
            labels: [("label-2".to_owned(), "val2".to_owned())].into(),
            annotations: [("annotation-2".to_owned(), "val2".to_owned())].into(),
        }),
        pod_spec: Some(to_struct(dummy_pod_spec(extra))),
        ..Default::default()
    })
}

fn template(custom: Value, target: Target) -> TaskTemplate {
    TaskTemplate {
        r#type: "spark".into(),
        custom: Some(to_struct(custom)),
        target: Some(target),
        config: [("primary_container_name".to_owned(), "primary".to_owned())].into(),
        ..Default::default()
    }
}

/// The fixture's task execution metadata.
fn request(template: TaskTemplate, interruptible: bool) -> TaskRequest {
    TaskRequest {
        template,
        namespace: "spark-namespace".into(),
        name: Some("some-acceptable-name".into()),
        labels: BTreeMap::from([("label-1".into(), "val1".into())]),
        annotations: BTreeMap::from([("annotation-1".into(), "val1".into())]),
        service_account: "new-val".into(),
        interruptible,
        max_attempts: 1,
        ..Default::default()
    }
}

/// Vector 7's platform configuration: Kubernetes defaults and Spark features.
fn config() -> HostConfig {
    let toleration = |value: &str| json!({ "key": "x/flyte", "value": value, "operator": "Equal", "effect": "NoSchedule" });
    serde_json::from_value(json!({
        "k8s": {
            "default-tolerations": [toleration("default")],
            "interruptible-tolerations": [toleration("interruptible")],
            "default-node-selector": { "x/default": "true" },
            "interruptible-node-selector": { "x/interruptible": "true" },
            "default-affinity": { "nodeAffinity": { "requiredDuringSchedulingIgnoredDuringExecution": {
                "nodeSelectorTerms": [{ "matchExpressions": [{ "key": "x/default", "operator": "In", "values": ["true"] }] }]
            } } },
            "interruptible-node-selector-requirement": { "key": "x/interruptible", "operator": "In", "values": ["true"] },
            "non-interruptible-node-selector-requirement": { "key": "x/interruptible", "operator": "DoesNotExist" },
            "scheduler-name": "custom-scheduler",
            "enable-host-networking-pod": true,
            "default-pod-security-context": { "runAsUser": 1000 },
            "default-pod-dns-config": { "nameservers": ["8.8.8.8", "8.8.4.4"], "options": [{ "name": "ndots", "value": "1" }], "searches": ["ns1.svc.cluster-domain.example"] },
            "default-env-vars": { "foo": "bar" },
            "default-env-vars-from-env": { "fooEnv": "CARGO_PKG_NAME" },
        },
        "plugins": { "spark": {
            "features": [
                { "name": "feature1", "spark-config": { "spark.hadoop.feature1": "true" } },
                { "name": "feature2", "spark-config": { "spark.hadoop.feature2": "true" } },
            ],
        } },
    }))
    .expect("a valid host config")
}

fn build(request: &TaskRequest, config: &HostConfig) -> Result<Value, CallError> {
    let plugin = spark();
    let ctx = request.task_context(&plugin, config, testkit::fixed_now());
    let json = plugin.build_resource(&ctx)?;
    Ok(serde_json::from_str(&json).expect("the plugin returns JSON"))
}

fn names(list: &Value) -> Vec<String> {
    list.as_array()
        .unwrap()
        .iter()
        .map(|e| e["name"].as_str().unwrap().to_owned())
        .collect()
}

fn toleration_values(list: &Value) -> Vec<&str> {
    list.as_array()
        .unwrap()
        .iter()
        .map(|t| t["value"].as_str().unwrap())
        .collect()
}

/// The values of the required node-affinity term's expressions, as `key op`.
fn affinity_keys(affinity: &Value) -> Vec<String> {
    affinity["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"]
        [0]["matchExpressions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            format!(
                "{} {}",
                e["key"].as_str().unwrap(),
                e["operator"].as_str().unwrap()
            )
        })
        .collect()
}

fn assert_golden(name: &str, actual: &Value) {
    testkit::assert_golden(env!("CARGO_MANIFEST_DIR"), name, actual);
}

// Vector 7: container target, interruptible task.
#[test]
fn builds_the_spark_application_from_a_container_task() {
    let app = build(
        &request(template(custom(), container_target()), true),
        &config(),
    )
    .unwrap();
    let spec = &app["spec"];
    assert_eq!(app["apiVersion"], "sparkoperator.k8s.io/v1beta2");
    assert_eq!(app["kind"], "SparkApplication");
    assert_eq!(spec["mainClass"], "MainClass");
    assert_eq!(spec["mainApplicationFile"], "local:///spark_app.py");
    assert_eq!(spec["type"], "Python");
    assert_eq!(spec["mode"], "cluster");
    assert_eq!(spec["arguments"], json!(["execute-spark-task"]));
    assert_eq!(spec["image"], "image://");
    assert_eq!(spec["batchScheduler"], "volcano");
    assert_eq!(
        spec["restartPolicy"],
        json!({ "type": "OnFailure", "onSubmissionFailureRetries": 14 })
    );

    let (driver, executor) = (&spec["driver"], &spec["executor"]);
    assert_eq!(
        (&driver["cores"], &driver["memory"]),
        (&json!(1), &json!("200M"))
    );
    assert_eq!(
        (
            &executor["cores"],
            &executor["instances"],
            &executor["memory"]
        ),
        (&json!(2), &json!(3), &json!("500M"))
    );
    for pod in [driver, executor] {
        assert_eq!(pod["serviceAccount"], "new-val");
        assert_eq!(pod["schedulerName"], "custom-scheduler");
        assert_eq!(pod["hostNetwork"], true);
        assert_eq!(pod["podSecurityContext"]["runAsUser"], 1000);
        assert_eq!(
            pod["dnsConfig"]["nameservers"],
            json!(["8.8.8.8", "8.8.4.4"])
        );
        assert_eq!(pod["image"], "image://");
    }

    let conf = &spec["sparkConf"];
    assert_eq!(conf["spark.hadoop.feature1"], "true");
    assert_eq!(conf["spark.hadoop.feature2"], "true");
    assert_eq!(
        conf["spark.flyteorg.feature3.enabled"], "true",
        "no such feature: kept verbatim"
    );
    assert!(
        conf.get("spark.flyte.feature1.enabled").is_none(),
        "an expanded flag is not kept"
    );
    assert_eq!(conf["spark.executor.instances"], "3");
    assert_eq!(conf["spark.kubernetes.driver.limit.cores"], "1");
    assert_eq!(conf["spark.kubernetes.executor.limit.cores"], "2");
    assert_eq!(
        conf["spark.kubernetes.executor.podNamePrefix"],
        "some-acceptable-name"
    );
    assert_eq!(
        conf["spark.kubernetes.driverEnv.FLYTE_START_TIME"],
        "1704164645000"
    );

    // The driver is never interruptible; executors follow the task.
    assert_eq!(toleration_values(&driver["tolerations"]), ["default"]);
    assert_eq!(driver["nodeSelector"], json!({ "x/default": "true" }));
    assert_eq!(
        affinity_keys(&driver["affinity"]),
        ["x/default In", "x/interruptible DoesNotExist"]
    );
    assert_eq!(
        toleration_values(&executor["tolerations"]),
        ["interruptible", "default"]
    );
    assert_eq!(
        executor["nodeSelector"],
        json!({ "x/default": "true", "x/interruptible": "true" })
    );
    assert_eq!(
        affinity_keys(&executor["affinity"]),
        ["x/default In", "x/interruptible In"]
    );

    let env = |pod: &Value, name: &str| {
        pod["env"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["name"] == name)
            .map(|e| e["value"].clone())
    };
    assert_eq!(env(driver, "FLYTE_MAX_ATTEMPTS"), Some(json!("1")));
    assert_eq!(env(driver, "foo"), Some(json!("bar")));
    assert_eq!(env(executor, "foo"), Some(json!("bar")));
    assert_eq!(
        env(driver, "fooEnv"),
        Some(json!("flytewasm-spark")),
        "resolved by the host"
    );
    assert_golden("container_interruptible", &app);
}

// Vector 8: request cores win over cores; a non-interruptible task.
#[test]
fn request_cores_set_the_core_limits_and_nothing_is_interruptible() {
    let mut custom = custom();
    custom["sparkConf"]["spark.kubernetes.driver.request.cores"] = json!("3");
    custom["sparkConf"]["spark.kubernetes.executor.request.cores"] = json!("4");
    let app = build(
        &request(template(custom, container_target()), false),
        &config(),
    )
    .unwrap();
    let spec = &app["spec"];
    assert_eq!(
        spec["sparkConf"]["spark.kubernetes.driver.limit.cores"],
        "3"
    );
    assert_eq!(
        spec["sparkConf"]["spark.kubernetes.executor.limit.cores"],
        "4"
    );
    for pod in [&spec["driver"], &spec["executor"]] {
        assert_eq!(toleration_values(&pod["tolerations"]), ["default"]);
        assert_eq!(pod["nodeSelector"], json!({ "x/default": "true" }));
        assert_eq!(
            affinity_keys(&pod["affinity"]),
            ["x/default In", "x/interruptible DoesNotExist"]
        );
    }
}

// Vector 9.
#[test]
fn a_task_without_custom_is_a_bad_task() {
    let mut template = template(custom(), container_target());
    template.custom = None;
    let err = build(&request(template, false), &config()).unwrap_err();
    assert!(err.is_bad_task(), "{err}");
    assert!(err.to_string().contains("TaskTemplate.custom"), "{err}");
}

#[test]
fn a_task_without_application_file_or_class_is_a_bad_task() {
    let err = build(
        &request(
            template(json!({ "sparkConf": {} }), container_target()),
            false,
        ),
        &config(),
    )
    .unwrap_err();
    assert!(err.is_bad_task());
    assert!(
        err.to_string()
            .contains("either mainApplicationFile or mainClass must be set"),
        "{err}"
    );
}

#[test]
fn a_wrong_typed_field_is_named() {
    let mut custom = custom();
    custom["sparkConf"] = json!(["not", "a", "map"]);
    let err = build(
        &request(template(custom, container_target()), false),
        &config(),
    )
    .unwrap_err();
    assert!(err.is_bad_task());
    assert!(
        err.to_string().contains("TaskTemplate.custom.sparkConf"),
        "{err}"
    );
}

// Vector 10: a K8sPod target.
#[test]
fn builds_from_a_k8s_pod_task() {
    let app = build(
        &request(template(custom(), k8s_pod_target(json!({}))), true),
        &config(),
    )
    .unwrap();
    let spec = &app["spec"];
    assert_eq!(
        spec["restartPolicy"],
        json!({ "type": "OnFailure", "onSubmissionFailureRetries": 14 })
    );
    let (driver, executor) = (&spec["driver"], &spec["executor"]);
    for pod in [driver, executor] {
        assert_eq!(pod["annotations"]["annotation-1"], "val1");
        assert_eq!(pod["annotations"]["annotation-2"], "val2");
        assert_eq!(
            pod["annotations"]["cluster-autoscaler.kubernetes.io/safe-to-evict"],
            "false"
        );
        assert_eq!(
            pod["labels"],
            json!({ "label-1": "val1", "label-2": "val2" })
        );
        assert_eq!(pod["image"], "primary-image");
    }
    assert_eq!(
        names(&driver["env"]),
        [
            "Env_Var",
            "SECRET",
            "FLYTE_INTERNAL_EXECUTION_ID",
            "FLYTE_INTERNAL_EXECUTION_PROJECT",
            "FLYTE_INTERNAL_EXECUTION_DOMAIN",
            "FLYTE_ATTEMPT_NUMBER",
            "foo",
            "fooEnv",
            "FLYTE_MAX_ATTEMPTS"
        ]
    );
    assert_eq!(
        driver["env"][1]["valueFrom"]["secretKeyRef"]["key"],
        "secret-key"
    );
    assert_eq!(
        toleration_values(&driver["tolerations"]),
        ["default", "extra"]
    );
    assert_eq!(
        driver["nodeSelector"],
        json!({ "x/default": "true", "x/custom": "foo" })
    );
    let mut executor_tolerations = toleration_values(&executor["tolerations"]);
    executor_tolerations.sort();
    assert_eq!(executor_tolerations, ["default", "extra", "interruptible"]);
    assert_eq!(
        executor["nodeSelector"],
        json!({ "x/default": "true", "x/custom": "foo", "x/interruptible": "true" })
    );
    assert_golden("k8s_pod_interruptible", &app);
}

// Vector 11.
#[test]
fn the_priority_class_reaches_driver_and_executor() {
    let app = build(
        &request(
            template(
                custom(),
                k8s_pod_target(json!({ "priorityClassName": "high-priority" })),
            ),
            false,
        ),
        &config(),
    )
    .unwrap();
    assert_eq!(app["spec"]["driver"]["priorityClassName"], "high-priority");
    assert_eq!(
        app["spec"]["executor"]["priorityClassName"],
        "high-priority"
    );

    let app = build(
        &request(template(custom(), k8s_pod_target(json!({}))), false),
        &config(),
    )
    .unwrap();
    assert!(app["spec"]["driver"].get("priorityClassName").is_none());
    assert!(app["spec"]["executor"].get("priorityClassName").is_none());
}

// Vector 12: driverPod / executorPod overlays.
#[test]
fn driver_and_executor_pod_overlays_are_merged() {
    let overlay = |role: &str| {
        let mut pod = dummy_pod_spec(json!({}));
        pod["tolerations"] = json!([{ "key": "x/flyte", "value": role, "operator": "Equal", "effect": "NoSchedule" }]);
        pod["nodeSelector"] = json!({ "x/custom": format!("foo-{role}") });
        json!({
            "podSpec": pod,
            "metadata": { "labels": { "label": format!("label-{role}") }, "annotations": { "annotation": format!("annotation-{role}") } },
            "primaryContainerName": "primary",
        })
    };
    let mut custom = custom();
    custom["driverPod"] = overlay("driver");
    custom["executorPod"] = overlay("executor");
    let app = build(
        &request(template(custom, k8s_pod_target(json!({}))), true),
        &config(),
    )
    .unwrap();
    let spec = &app["spec"];
    assert_eq!(
        spec["arguments"],
        json!(["execute-spark-task", "execute-spark-task"]),
        "lists are appended"
    );
    assert_eq!(spec["driver"]["env"].as_array().unwrap().len(), 11);
    assert_eq!(
        spec["driver"]["nodeSelector"],
        json!({ "x/default": "true", "x/custom": "foo-driver" })
    );
    assert_eq!(
        spec["executor"]["nodeSelector"],
        json!({ "x/default": "true", "x/custom": "foo-executor", "x/interruptible": "true" })
    );
    assert_eq!(spec["driver"]["labels"]["label"], "label-driver");
    assert_eq!(spec["executor"]["labels"]["label"], "label-executor");
    assert_eq!(
        spec["executor"]["annotations"]["annotation"],
        "annotation-executor"
    );
    assert_golden("pod_overlays", &app);
}

#[test]
fn describes_itself_like_flytes_spark_plugin() {
    testkit::assert_describes(
        &spark(),
        "spark",
        &[("spark", 0)],
        (
            "sparkoperator.k8s.io/v1beta2",
            "SparkApplication",
            "sparkapplications",
        ),
    );
}

// ---- Phases (vectors 1–6 and 13) ----

const CLOUDWATCH: &str = "https://console.aws.amazon.com/cloudwatch/home?region=us-east-1#logStream:group=/kubernetes/flyte;prefix=";

/// The fixture's SparkApplication in `state`.
fn app(state: &str) -> Value {
    json!({
        "apiVersion": "sparkoperator.k8s.io/v1beta2",
        "kind": "SparkApplication",
        "metadata": { "name": "spark-app-name", "namespace": "spark-namespace", "creationTimestamp": "2024-01-02T03:00:00Z" },
        "status": {
            "applicationState": { "state": state, "errorMessage": "the error" },
            "sparkApplicationId": "app-id",
            "driverInfo": { "podName": "spark-pod", "webUIIngressAddress": "spark-ui.flyte" },
            "terminationTime": "2024-01-02T03:10:00Z",
        },
    })
}

fn log_config() -> Value {
    let cloudwatch = |prefix: &str| {
        json!({
            "cloudwatch-enabled": true,
            "cloudwatch-template-uri": format!("{CLOUDWATCH}{prefix}{{{{ .podName }}}};streamFilter=typeLogStreamPrefix"),
        })
    };
    let mut user = cloudwatch("var.log.containers.");
    user["kubernetes-enabled"] = json!(true);
    user["kubernetes-url"] = json!("k8s.com");
    json!({
        "user": user,
        "system": cloudwatch("system_log.var.log.containers."),
        "all-user": cloudwatch("var.log.containers."),
        "mixed": { "kubernetes-enabled": true, "kubernetes-url": "k8s.com" },
    })
}

fn phase_with(state: &str, plugin_config: Value, task_config: &[(&str, &str)]) -> wit::PhaseInfo {
    phase_after(
        &app(state),
        plugin_config,
        task_config,
        wit::Phase::NotReady,
        0,
        "",
    )
}

fn phase_after(
    observed: &Value,
    plugin_config: Value,
    task_config: &[(&str, &str)],
    previous: wit::Phase,
    version: u32,
    reason: &str,
) -> wit::PhaseInfo {
    let plugin = spark();
    let mut template = template(custom(), container_target());
    template.config = task_config
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let mut host = HostConfig::default();
    host.plugins.insert("spark".into(), plugin_config);
    let ctx = request(template, false).task_context(&plugin, &host, testkit::fixed_now());
    let ctx = testkit::phase_context(ctx, previous, version, reason);
    plugin
        .get_task_phase(&ctx, &observed.to_string())
        .expect("a phase")
}

fn uris(info: &wit::PhaseInfo) -> Vec<&str> {
    info.logs.iter().map(|l| l.uri.as_str()).collect()
}

// Vector 1.
#[test]
fn every_state_maps_to_flytes_phase() {
    use wit::Phase::*;
    let table = [
        ("", Queued, "job queued"),
        ("SUBMITTED", Initializing, "job submitted"),
        ("RUNNING", Running, ""),
        ("COMPLETED", Success, ""),
        ("INVALIDATING", Running, ""),
        ("FAILING", Running, ""),
        ("PENDING_RERUN", Running, ""),
        ("SUCCEEDING", Running, ""),
        ("UNKNOWN", Running, ""),
        ("SOMETHING_NEW", Running, ""),
        (
            "SUBMISSION_FAILED",
            RetryableFailure,
            "Spark Job  Submission Failed with Error: the error",
        ),
        (
            "FAILED",
            RetryableFailure,
            "Spark Job Failed with Error: the error",
        ),
    ];
    for (state, phase, reason) in table {
        let info = phase_with(state, json!(null), &[]);
        assert_eq!(info.phase, phase, "state {state:?}");
        assert_eq!(info.reason, reason, "state {state:?}");
        assert!(
            info.custom_info.is_some(),
            "state {state:?} carries task info"
        );
        match phase {
            RetryableFailure => {
                let error = info.error.expect("a failure has an error");
                assert_eq!(
                    (error.code.as_str(), error.kind),
                    ("DownstreamSystemError", wit::ErrorKind::User)
                );
                assert_eq!(error.message, reason);
            }
            _ => assert!(info.error.is_none()),
        }
    }
}

#[test]
fn a_missing_status_is_queued() {
    let info = phase_after(
        &json!({ "metadata": { "name": "x" } }),
        json!(null),
        &[],
        wit::Phase::Queued,
        0,
        "task submitted to K8s",
    );
    assert_eq!(
        (info.phase, info.version, info.reason.as_str()),
        (wit::Phase::Queued, 1, "job queued")
    );
}

// Vector 2.
#[test]
fn a_new_reason_bumps_the_phase_version() {
    let info = phase_after(
        &app("SUBMITTED"),
        json!(null),
        &[],
        wit::Phase::Initializing,
        0,
        "task submitted to K8s",
    );
    assert_eq!((info.phase, info.version), (wit::Phase::Initializing, 1));
    let again = phase_after(
        &app("SUBMITTED"),
        json!(null),
        &[],
        wit::Phase::Initializing,
        1,
        "job submitted",
    );
    assert_eq!(again.version, 0, "same reason: no new version");
}

// Vector 3.
#[test]
fn running_shows_every_log_link_and_the_driver_ui() {
    let info = phase_with("RUNNING", json!({ "logs": log_config() }), &[]);
    assert_eq!(
        uris(&info),
        [
            "k8s.com/#!/log/spark-namespace/spark-pod/pod?namespace=spark-namespace",
            "k8s.com/#!/log/spark-namespace/spark-pod/pod?namespace=spark-namespace",
            &format!("{CLOUDWATCH}var.log.containers.spark-pod;streamFilter=typeLogStreamPrefix"),
            &format!(
                "{CLOUDWATCH}system_log.var.log.containers.spark-app-name;streamFilter=typeLogStreamPrefix"
            ),
            &format!(
                "{CLOUDWATCH}var.log.containers.spark-app-name;streamFilter=typeLogStreamPrefix"
            ),
            "https://spark-ui.flyte",
        ]
    );
    let names: Vec<&str> = info.logs.iter().map(|l| l.name.as_str()).collect();
    assert_eq!(names[0], "Kubernetes Logs(Driver Logs)");
    assert_eq!(names[2], "Cloudwatch Logs(User Logs)");
    assert_eq!(names[5], "Spark Driver UI");
    let custom: Value = serde_json::from_str(info.custom_info.as_deref().unwrap()).unwrap();
    assert_eq!(custom, json!({ "sparkDriverUI": "https://spark-ui.flyte" }));
}

// Vector 4.
#[test]
fn submitted_shows_the_logs_and_all_user_logs_while_pending() {
    let info = phase_with("SUBMITTED", json!({ "logs": log_config() }), &[]);
    assert_eq!(info.logs.len(), 5);
    let pending: Vec<bool> = info.logs.iter().map(|l| l.show_while_pending).collect();
    assert_eq!(pending, [false, false, false, false, true]);
    assert_eq!(
        serde_json::from_str::<Value>(info.custom_info.as_deref().unwrap()).unwrap(),
        json!({})
    );
}

// Vector 5.
#[test]
fn failed_links_the_history_server() {
    let mut logs = log_config();
    logs["mixed"] = json!({});
    let info = phase_with(
        "FAILED",
        json!({ "logs": logs, "spark-history-server-url": "spark-history.flyte" }),
        &[],
    );
    assert_eq!(
        uris(&info),
        [
            "k8s.com/#!/log/spark-namespace/spark-pod/pod?namespace=spark-namespace",
            &format!("{CLOUDWATCH}var.log.containers.spark-pod;streamFilter=typeLogStreamPrefix"),
            &format!(
                "{CLOUDWATCH}system_log.var.log.containers.spark-app-name;streamFilter=typeLogStreamPrefix"
            ),
            &format!(
                "{CLOUDWATCH}var.log.containers.spark-app-name;streamFilter=typeLogStreamPrefix"
            ),
            "spark-history.flyte/history/app-id",
        ]
    );
    let custom: Value = serde_json::from_str(info.custom_info.as_deref().unwrap()).unwrap();
    assert_eq!(
        custom,
        json!({ "sparkHistoryUI": "spark-history.flyte/history/app-id" })
    );
}

// Vector 6.
#[test]
fn log_links_carry_start_and_finish_times() {
    let config = json!({ "logs": { "mixed": {
        "cloudwatch-enabled": true,
        "cloudwatch-template-uri": "https://logs/?start={{ .podUnixStartTime }}&end={{ .podUnixFinishTime }}",
    } } });
    let running = phase_with("RUNNING", config.clone(), &[]);
    assert_eq!(running.logs[0].uri, "https://logs/?start=1704164400&end=0");
    let completed = phase_with("COMPLETED", config, &[]);
    assert_eq!(
        completed.logs[0].uri,
        "https://logs/?start=1704164400&end=1704165000"
    );
}

// Vector 13.
#[test]
fn dynamic_log_links_use_the_task_config() {
    let config = json!({ "logs": { "mixed": { "dynamic-log-links": {
        "test-dynamic-link": { "templateUris": ["https://some-service.com/{{.taskConfig.dynamicParam}}"] }
    } } } });
    let info = phase_with(
        "RUNNING",
        config,
        &[
            ("link_type", "test-dynamic-link"),
            ("dynamicParam", "dynamic-value"),
        ],
    );
    assert!(
        uris(&info).contains(&"https://some-service.com/dynamic-value"),
        "{:?}",
        uris(&info)
    );
}

#[test]
fn the_default_configuration_links_the_driver_in_the_local_dashboard() {
    let info = phase_with("RUNNING", json!(null), &[]);
    assert_eq!(
        info.logs[0].uri,
        "http://localhost:30082/#!/log/spark-namespace/spark-pod/pod?namespace=spark-namespace"
    );
}

#[test]
fn aborting_deletes_the_application() {
    let plugin = spark();
    let ctx = request(template(custom(), container_target()), false).task_context(
        &plugin,
        &HostConfig::default(),
        testkit::fixed_now(),
    );
    let ctx = testkit::phase_context(ctx, wit::Phase::Running, 0, "");
    assert!(matches!(
        plugin.on_abort(&ctx, &app("RUNNING").to_string()).unwrap(),
        wit::AbortAction::Delete
    ));
}
