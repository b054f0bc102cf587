//! `just bench`: the Spark plugin's calls through the host's wasm runtime (a
//! fresh Store and instance per call, as in production) against the same
//! crate compiled natively and called directly, in one process. Reports
//! medians and the wasm/native ratio; run it on a quiet machine.

use std::time::{Duration, Instant};

use flytewasm::config::HostConfig;
use flytewasm::executor::TaskRequest;
use flytewasm::runtime::wit as host;
use flytewasm::testkit;
use flytewasm_plugin_sdk::bindings::Guest;
use flytewasm_plugin_sdk::bindings::flytewasm::plugin::types as guest;
use flytewasm_proto::flyteidl::core::{Container, TaskTemplate, task_template::Target};
use serde_json::json;

type Native = flytewasm_plugin_sdk::Exported<flytewasm_spark::Spark>;

fn main() {
    let plugin = testkit::plugin("spark");
    let request = TaskRequest {
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
    let config: HostConfig = serde_json::from_value(json!({ "k8s": {
        "default-tolerations": [{ "key": "x/flyte", "value": "default", "operator": "Equal", "effect": "NoSchedule" }],
        "default-env-vars": { "foo": "bar" },
    } })).unwrap();
    let ctx = request.task_context(&plugin, &config, testkit::fixed_now());
    let phase_ctx =
        testkit::phase_context(ctx.clone(), host::Phase::Initializing, 0, "job submitted");
    let observed = json!({
        "metadata": { "name": "bench-n0-0", "namespace": "flytesnacks-development", "creationTimestamp": "2024-01-02T03:00:00Z" },
        "status": { "applicationState": { "state": "RUNNING" }, "driverInfo": { "podName": "bench-driver", "webUIIngressAddress": "ui" } },
    })
    .to_string();

    // Same answers both ways, or the comparison means nothing.
    let wasm_object = plugin.build_resource(&ctx).unwrap();
    let native_object = Native::build_resource(to_guest(&ctx)).unwrap();
    assert_eq!(
        wasm_object, native_object,
        "wasm and native build different objects"
    );

    println!("Spark plugin, median per call over {BATCHES} batches of {PER_BATCH} calls");
    report(
        "build-resource",
        measure(|| drop(plugin.build_resource(&ctx).unwrap())),
        measure(|| drop(Native::build_resource(to_guest(&ctx)).unwrap())),
    );
    let guest_phase = guest::PhaseContext {
        task: to_guest(&phase_ctx.task),
        previous_phase: guest::Phase::Initializing,
        previous_version: 0,
        previous_reason: "job submitted".into(),
    };
    report(
        "get-task-phase",
        measure(|| drop(plugin.get_task_phase(&phase_ctx, &observed).unwrap())),
        measure(|| drop(Native::get_task_phase(guest_phase.clone(), observed.clone()).unwrap())),
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
        "{name:<16} wasm (fresh instance) {:>9.1} µs   native {:>8.1} µs   ratio {:.2}x",
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
