//! `just bench`: each plugin's calls through the host's wasm runtime (a
//! fresh Store and instance per call, as in production) against the same
//! crate compiled natively and called directly, in one process. Reports
//! medians and the wasm/native ratio; run it on a quiet machine.

use std::time::{Duration, Instant};

use flytewasm::config::HostConfig;
use flytewasm::executor::TaskRequest;
use flytewasm::runtime::wit as host;
use flytewasm::testkit::{self, kubeflow};
use flytewasm_plugin_sdk::bindings::Guest;
use flytewasm_plugin_sdk::bindings::flytewasm::plugin::types as guest;
use flytewasm_plugin_sdk::{Exported, Plugin};
use flytewasm_proto::flyteidl::core::{Container, TaskTemplate, task_template::Target};
use serde_json::{Value, json};

fn main() {
    let config: HostConfig = serde_json::from_value(json!({ "k8s": {
        "default-tolerations": [{ "key": "x/flyte", "value": "default", "operator": "Equal", "effect": "NoSchedule" }],
        "default-env-vars": { "foo": "bar" },
    } })).unwrap();
    println!("median per call over {BATCHES} batches of {PER_BATCH} calls");

    let spark = TaskRequest {
        template: TaskTemplate {
            r#type: "spark".into(),
            custom: Some(serde_json::from_value(json!({
                "mainApplicationFile": "local:///app.py",
                "executorPath": "/usr/bin/python3",
                "sparkConf": { "spark.driver.cores": "1", "spark.executor.cores": "2", "spark.executor.instances": "3",
                               "spark.driver.memory": "1g", "spark.executor.memory": "2g" },
            })).unwrap()),
            target: Some(Target::Container(Container {
                image: "ghcr.io/example/spark:3.5".into(),
                args: ["pyflyte-execute", "--inputs", "{{.input}}", "--output-prefix", "{{.outputPrefix}}"].map(String::from).to_vec(),
                ..Default::default()
            })),
            ..Default::default()
        },
        namespace: "flytesnacks-development".into(),
        name: Some("bench-n0-0".into()),
        labels: [("execution-id".to_owned(), "bench".to_owned())].into(),
        max_attempts: 1,
        ..Default::default()
    };
    let spark_app = json!({
        "metadata": { "name": "bench-n0-0", "namespace": "flytesnacks-development", "creationTimestamp": "2024-01-02T03:00:00Z" },
        "status": { "applicationState": { "state": "RUNNING" }, "driverInfo": { "podName": "bench-driver", "webUIIngressAddress": "ui" } },
    });
    compare::<flytewasm_spark::Spark>("spark", &spark, &config, |_| spark_app.clone());

    // What flytekit writes (task_type_version 1), seen running.
    let running = |job: &Value| {
        kubeflow::observed(
            job,
            json!([
                kubeflow::condition("Created", true, 0),
                kubeflow::condition("Running", true, 1)
            ]),
        )
    };
    let pytorch = kubeflow::task(
        "pytorch",
        1,
        json!({
            "masterReplicas": { "replicas": 1, "image": "image://master", "restartPolicy": "RESTART_POLICY_ALWAYS" },
            "workerReplicas": { "replicas": 4, "resources": { "limits": [{ "name": "GPU", "value": "1" }] } },
            "runPolicy": { "cleanPodPolicy": "CLEANPOD_POLICY_ALL", "backoffLimit": 3 },
        }),
    );
    compare::<flytewasm_pytorch::PyTorch>("pytorch", &pytorch, &config, running);
    let tensorflow = kubeflow::task(
        "tensorflow",
        1,
        json!({
            "chiefReplicas": { "replicas": 1 }, "workerReplicas": { "replicas": 4 }, "psReplicas": { "replicas": 2 },
            "evaluatorReplicas": { "replicas": 1 },
        }),
    );
    compare::<flytewasm_tensorflow::TensorFlow>("tensorflow", &tensorflow, &config, running);
    let mpi = kubeflow::task(
        "mpi",
        1,
        json!({
            "launcherReplicas": { "replicas": 1 }, "workerReplicas": { "replicas": 4, "command": ["/usr/sbin/sshd", "-De"] }, "slots": 2,
        }),
    );
    compare::<flytewasm_mpi::Mpi>("mpi", &mpi, &config, running);

    // What flytekitplugins-ray and -dask write, seen running.
    let ray = kubeflow::task(
        "ray",
        0,
        json!({
            "rayCluster": {
                "headGroupSpec": { "rayStartParams": { "num-cpus": "1" } },
                "workerGroupSpec": [{ "groupName": "workers", "replicas": 4, "minReplicas": 1, "maxReplicas": 8 }],
            },
            "runtimeEnvYaml": "pip:\n- numpy\n",
            "shutdownAfterJobFinishes": true, "ttlSecondsAfterFinished": 120,
        }),
    );
    compare::<flytewasm_ray::Ray>("ray", &ray, &config, |job| {
        let mut job = job.clone();
        job["metadata"] = json!({ "name": "the-job", "namespace": "ns", "creationTimestamp": "2024-01-02T03:00:00Z" });
        job["status"] = json!({ "jobDeploymentStatus": "Running", "jobStatus": "RUNNING", "rayClusterName": "the-job-raycluster-abcde" });
        job
    });
    let dask = kubeflow::task(
        "dask",
        0,
        json!({
            "scheduler": { "image": "dask:2024", "resources": { "limits": [{ "name": "CPU", "value": "2" }] } },
            "workers": { "numberOfWorkers": 4, "resources": { "limits": [{ "name": "CPU", "value": "3" }, { "name": "MEMORY", "value": "8Gi" }] } },
        }),
    );
    compare::<flytewasm_dask::Dask>("dask", &dask, &config, |job| {
        let mut job = job.clone();
        job["metadata"] = json!({ "name": "the-job", "namespace": "ns" });
        job["status"] = json!({ "jobStatus": "Running", "jobRunnerPodName": "the-job-runner" });
        job
    });
    // A plain task's pod, its container running.
    let pod = TaskRequest {
        template: TaskTemplate {
            r#type: "python-task".into(),
            custom: None,
            ..spark.template.clone()
        },
        ..spark.clone()
    };
    compare::<flytewasm_pod::Pod>("pod", &pod, &config, |pod| {
        let mut pod = pod.clone();
        pod["metadata"]["name"] = json!("bench-n0-0");
        pod["metadata"]["namespace"] = json!("ns");
        pod["metadata"]["creationTimestamp"] = json!("2024-01-02T03:00:00Z");
        let container = pod["spec"]["containers"][0]["name"].clone();
        pod["status"] = json!({ "phase": "Running", "containerStatuses": [{ "name": container, "ready": true,
            "state": { "running": { "startedAt": "2024-01-02T03:01:00Z" } } }] });
        pod
    });
}

/// Both calls of plugin `P` (component `component`) in wasm and natively,
/// on `request`, and on the object `observed` makes of what it built.
fn compare<P: Plugin>(
    component: &str,
    request: &TaskRequest,
    config: &HostConfig,
    observed: impl Fn(&Value) -> Value,
) {
    let plugin = testkit::plugin(component);
    let ctx = request.task_context(&plugin, config, testkit::fixed_now());
    let phase_ctx = testkit::phase_context(ctx.clone(), host::Phase::Queued, 0, "");

    // Same answers both ways, or the comparison means nothing.
    let wasm_object = plugin.build_resource(&ctx).unwrap();
    let native_object = Exported::<P>::build_resource(to_guest(&ctx)).unwrap();
    assert_eq!(
        wasm_object, native_object,
        "{component}: wasm and native build different objects"
    );
    let observed = observed(&serde_json::from_str(&wasm_object).unwrap()).to_string();

    println!("{component}:");
    report(
        "build-resource",
        measure(|| drop(plugin.build_resource(&ctx).unwrap())),
        measure(|| drop(Exported::<P>::build_resource(to_guest(&ctx)).unwrap())),
    );
    let guest_phase = guest::PhaseContext {
        task: to_guest(&phase_ctx.task),
        previous_phase: guest::Phase::Queued,
        previous_version: 0,
        previous_reason: String::new(),
    };
    report(
        "get-task-phase",
        measure(|| drop(plugin.get_task_phase(&phase_ctx, &observed).unwrap())),
        measure(|| {
            drop(Exported::<P>::get_task_phase(guest_phase.clone(), observed.clone()).unwrap())
        }),
    );
}

const BATCHES: usize = 30;
const PER_BATCH: usize = 100;

/// Median time per call across batches (after a warm-up batch).
fn measure(mut call: impl FnMut()) -> Duration {
    for _ in 0..PER_BATCH {
        call();
    }
    let mut batches: Vec<Duration> = (0..BATCHES)
        .map(|_| {
            let start = Instant::now();
            for _ in 0..PER_BATCH {
                call();
            }
            start.elapsed() / PER_BATCH as u32
        })
        .collect();
    batches.sort();
    batches[BATCHES / 2]
}

fn report(name: &str, wasm: Duration, native: Duration) {
    println!(
        "  {name:<16} wasm (fresh instance) {:>9.1} µs   native {:>8.1} µs   ratio {:.2}x",
        wasm.as_secs_f64() * 1e6,
        native.as_secs_f64() * 1e6,
        wasm.as_secs_f64() / native.as_secs_f64()
    );
}

/// The host's task context as the guest's bindings type (same record).
fn to_guest(ctx: &host::TaskContext) -> guest::TaskContext {
    let m = &ctx.metadata;
    guest::TaskContext {
        task_template: ctx.task_template.clone(),
        metadata: guest::TaskExecutionMetadata {
            generated_name: m.generated_name.clone(),
            namespace: m.namespace.clone(),
            labels: m.labels.clone(),
            annotations: m.annotations.clone(),
            service_account: m.service_account.clone(),
            interruptible: m.interruptible,
            max_attempts: m.max_attempts,
            environment: m.environment.clone(),
            id: guest::TaskExecutionId {
                project: m.id.project.clone(),
                domain: m.id.domain.clone(),
                name: m.id.name.clone(),
                node_id: m.id.node_id.clone(),
                retry_attempt: m.id.retry_attempt,
                task_project: m.id.task_project.clone(),
                task_domain: m.id.task_domain.clone(),
                task_name: m.id.task_name.clone(),
                task_version: m.id.task_version.clone(),
            },
            console_url: m.console_url.clone(),
        },
        input_prefix: ctx.input_prefix.clone(),
        output_prefix: ctx.output_prefix.clone(),
        raw_output_prefix: ctx.raw_output_prefix.clone(),
        k8s_defaults: ctx.k8s_defaults.clone(),
        plugin_config: ctx.plugin_config.clone(),
        now: guest::Timestamp {
            seconds: ctx.now.seconds,
            nanos: ctx.now.nanos,
        },
    }
}
