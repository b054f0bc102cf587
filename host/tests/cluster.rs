//! The lifecycle suite against whatever `KUBECONFIG` points at
//! (`just test-cluster`): a real cluster, or `flytewasm sandbox` started as
//! a separate process (how `just test` runs it). The test installs a
//! SparkApplication CRD if the cluster has none and acts as the operator by
//! patching `/status`, so no spark-operator is needed.
//!
//! Runs only with `FLYTEWASM_TEST_CLUSTER=1`; otherwise each test says it is
//! skipped and passes.

use std::sync::Arc;
use std::time::Duration;

use flytewasm::cluster::Cluster;
use flytewasm::config::HostConfig;
use flytewasm::executor::{Executor, Phase, PhaseEvent, TaskRequest, TaskState};
use flytewasm::runtime::Plugin;
use flytewasm::testkit;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{
    Api, ApiResource, DynamicObject, GroupVersionKind, Patch, PatchParams, PostParams,
};
use serde_json::json;

fn enabled() -> bool {
    let on = std::env::var("FLYTEWASM_TEST_CLUSTER").is_ok_and(|v| v == "1");
    if !on {
        eprintln!(
            "skipped: set FLYTEWASM_TEST_CLUSTER=1 (just test-cluster) to run against the KUBECONFIG cluster"
        );
    }
    on
}

fn namespace() -> String {
    std::env::var("FLYTEWASM_TEST_NAMESPACE").unwrap_or_else(|_| "default".into())
}

fn spark_apps(client: kube::Client) -> Api<DynamicObject> {
    let resource = ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("sparkoperator.k8s.io", "v1beta2", "SparkApplication"),
        "sparkapplications",
    );
    Api::namespaced_with(client, &namespace(), &resource)
}

/// Install a minimal SparkApplication CRD when the cluster serves none.
async fn ensure_crd(client: &kube::Client) {
    let apps = spark_apps(client.clone());
    if apps.list(&Default::default()).await.is_ok() {
        return;
    }
    let crd: CustomResourceDefinition = serde_json::from_value(json!({
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {
            "name": "sparkapplications.sparkoperator.k8s.io",
            // *.k8s.io groups need this to be accepted.
            "annotations": { "api-approved.kubernetes.io": "unapproved, test CRD installed by flytewasm's test-cluster suite" },
        },
        "spec": {
            "group": "sparkoperator.k8s.io",
            "names": { "kind": "SparkApplication", "plural": "sparkapplications", "singular": "sparkapplication", "listKind": "SparkApplicationList" },
            "scope": "Namespaced",
            "versions": [{
                "name": "v1beta2", "served": true, "storage": true,
                "subresources": { "status": {} },
                "schema": { "openAPIV3Schema": { "type": "object", "x-kubernetes-preserve-unknown-fields": true } },
            }],
        },
    }))
    .unwrap();
    match Api::<CustomResourceDefinition>::all(client.clone())
        .create(&PostParams::default(), &crd)
        .await
    {
        Ok(_) => eprintln!("installed the SparkApplication CRD"),
        // Another test of this suite installed it first.
        Err(kube::Error::Api(status)) if status.code == 409 => {}
        Err(err) => panic!("installing the SparkApplication CRD: {err}"),
    }
    for _ in 0..60 {
        if apps.list(&Default::default()).await.is_ok() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    panic!("the SparkApplication CRD was not served within 30 s");
}

struct Env {
    engine: Executor,
    apps: Api<DynamicObject>,
    spark: Plugin,
}

async fn env(config: serde_json::Value) -> Env {
    let client = kube::Client::try_default()
        .await
        .expect("a cluster in KUBECONFIG");
    ensure_crd(&client).await;
    let config: HostConfig = serde_json::from_value(config).unwrap();
    Env {
        engine: Executor::new(Arc::new(Cluster::new(client.clone())), Arc::new(config)),
        apps: spark_apps(client),
        spark: testkit::plugin("spark"),
    }
}

fn request(name: &str) -> TaskRequest {
    let mut request = testkit::spark_task(&namespace(), &format!("{name}-{}", std::process::id()));
    // On the sandbox, keep its simulator out of the way: this test is the operator.
    request
        .annotations
        .insert("sandbox.flytewasm.io/step-ms".into(), "3600000".into());
    request
}

/// Act as spark-operator: set the application's state.
async fn set_state(env: &Env, state: &TaskState, status: serde_json::Value) {
    env.apps
        .patch_status(
            &state.name,
            &PatchParams::default(),
            &Patch::Merge(json!({ "status": status })),
        )
        .await
        .unwrap();
}

/// Check until the task reports `phase` (or ends).
async fn until(
    env: &Env,
    request: &TaskRequest,
    state: &mut TaskState,
    phase: Phase,
) -> PhaseEvent {
    let mut changes = env.engine.changes(state);
    for _ in 0..100 {
        if let Some(event) = env.engine.check(&env.spark, request, state).await.unwrap()
            && (event.phase == phase || event.phase.is_terminal())
        {
            return event;
        }
        env.engine
            .wait_for_change(state, &mut changes, Duration::from_millis(500))
            .await;
    }
    panic!("never reached {phase:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_spark_application_moves_through_its_states_to_success() {
    if !enabled() {
        return;
    }
    let env = env(json!({})).await;
    let request = request("cluster-ok");
    let (mut state, event) = env.engine.launch(&env.spark, &request).await.unwrap();
    assert_eq!(event.phase, Phase::Queued);
    set_state(
        &env,
        &state,
        json!({ "applicationState": { "state": "SUBMITTED" } }),
    )
    .await;
    until(&env, &request, &mut state, Phase::Initializing).await;
    set_state(
        &env,
        &state,
        json!({ "applicationState": { "state": "RUNNING" }, "driverInfo": { "podName": "d" } }),
    )
    .await;
    let running = until(&env, &request, &mut state, Phase::Running).await;
    assert_eq!(running.phase, Phase::Running);
    set_state(
        &env,
        &state,
        json!({ "applicationState": { "state": "COMPLETED" } }),
    )
    .await;
    assert_eq!(
        until(&env, &request, &mut state, Phase::Success)
            .await
            .phase,
        Phase::Success
    );
    env.engine.finalize(&env.spark, &state).await.unwrap();
    env.engine
        .abort(&env.spark, &request, &state)
        .await
        .unwrap(); // clean up
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_application_is_a_retryable_failure() {
    if !enabled() {
        return;
    }
    let env = env(json!({})).await;
    let request = request("cluster-fail");
    let (mut state, _) = env.engine.launch(&env.spark, &request).await.unwrap();
    set_state(
        &env,
        &state,
        json!({ "applicationState": { "state": "FAILED", "errorMessage": "boom" } }),
    )
    .await;
    let event = until(&env, &request, &mut state, Phase::RetryableFailure).await;
    assert_eq!(
        event.error.unwrap().message,
        "Spark Job Failed with Error: boom"
    );
    env.engine
        .abort(&env.spark, &request, &state)
        .await
        .unwrap();
    env.engine
        .wait_gone(&state, Duration::from_secs(30))
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn abort_and_finalize_remove_the_object_held_by_a_finalizer() {
    if !enabled() {
        return;
    }
    let env = env(json!({ "k8s": { "inject-finalizer": true } })).await;
    let request = request("cluster-abort");
    let (state, _) = env.engine.launch(&env.spark, &request).await.unwrap();
    let app = env.apps.get(&state.name).await.unwrap();
    assert_eq!(
        app.metadata.finalizers.unwrap(),
        ["flyte.org/finalizer-k8s"]
    );
    env.engine
        .abort(&env.spark, &request, &state)
        .await
        .unwrap();
    let held = env.apps.get(&state.name).await.unwrap();
    assert!(
        held.metadata.deletion_timestamp.is_some(),
        "the finalizer holds it"
    );
    env.engine.finalize(&env.spark, &state).await.unwrap();
    env.engine
        .wait_gone(&state, Duration::from_secs(30))
        .await
        .expect("gone after finalize");
}
