//! The lifecycle engine against the embedded sandbox, over HTTP through
//! kube-rs: Flyte's launch / monitor / abort / finalize semantics, with
//! faults injected by the sandbox.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use flytewasm::cluster::Cluster;
use flytewasm::config::HostConfig;
use flytewasm::executor::drive::{Outcome, run_to_completion};
use flytewasm::executor::lifecycle::Aborted;
use flytewasm::executor::{
    EndWrites, Executor, Phase, PhaseEvent, TaskError, TaskRequest, TaskState, Tasks,
};
use flytewasm::runtime::Plugin;
use flytewasm::sandbox::{Sandbox, SandboxConfig};
use flytewasm::testkit;
use flytewasm_proto::flyteidl::core::TaskTemplate;
use kube::api::{Api, ApiResource, DynamicObject, GroupVersionKind};
use serde_json::json;

const NS: &str = "tests";

struct Env {
    sandbox: Sandbox,
    engine: Executor,
}

async fn env(config: serde_json::Value) -> Env {
    env_on(
        SandboxConfig {
            step: Duration::from_millis(100),
            ..Default::default()
        },
        config,
    )
    .await
}

async fn env_on(sandbox: SandboxConfig, config: serde_json::Value) -> Env {
    let sandbox = Sandbox::start(sandbox).await.unwrap();
    let cluster = Cluster::new(sandbox.client().unwrap());
    let config: HostConfig = serde_json::from_value(config).unwrap();
    Env {
        engine: Executor::new(Arc::new(cluster), Arc::new(config)),
        sandbox,
    }
}

fn spark_request(name: &str, outcome: &str) -> TaskRequest {
    let mut request = testkit::spark_task(NS, name);
    request
        .annotations
        .insert("sandbox.flytewasm.io/outcome".into(), outcome.into());
    request
}

fn testing_request(name: &str, behaviour: &str) -> TaskRequest {
    TaskRequest {
        template: TaskTemplate {
            r#type: "testing".into(),
            custom: Some(serde_json::from_value(json!({ "behaviour": behaviour })).unwrap()),
            ..Default::default()
        },
        namespace: NS.into(),
        name: Some(name.into()),
        ..Default::default()
    }
}

/// The objects of a kind, read through a separate client (as kubectl would).
fn api(env: &Env, api_version: &str, kind: &str, plural: &str) -> Api<DynamicObject> {
    let (group, version) = api_version.rsplit_once('/').unwrap_or(("", api_version));
    let resource =
        ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk(group, version, kind), plural);
    Api::namespaced_with(env.sandbox.client().unwrap(), NS, &resource)
}

fn spark_apps(env: &Env) -> Api<DynamicObject> {
    api(
        env,
        "sparkoperator.k8s.io/v1beta2",
        "SparkApplication",
        "sparkapplications",
    )
}

/// Drive a task to its end (bounded), collecting its events.
async fn run(
    env: &Env,
    plugin: &Plugin,
    request: &TaskRequest,
    stop_after: Option<Duration>,
) -> (Outcome, Vec<PhaseEvent>) {
    let mut events = Vec::new();
    let stop = async move {
        match stop_after {
            Some(after) => tokio::time::sleep(after).await,
            None => std::future::pending().await,
        }
    };
    let outcome = tokio::time::timeout(
        Duration::from_secs(60),
        run_to_completion(
            &Tasks::with_end_writes(env.engine.clone(), EndWrites::Inline),
            plugin,
            request,
            |_, e| events.push(e.clone()),
            stop,
        ),
    )
    .await
    .expect("the task ends within a minute")
    .expect("no cluster error");
    (outcome, events)
}

fn phases(events: &[PhaseEvent]) -> Vec<&'static str> {
    events.iter().map(|e| e.phase.event_phase()).collect()
}

/// Check until the task reaches `phase` (or any terminal phase).
async fn follow_until(
    env: &Env,
    plugin: &Plugin,
    request: &TaskRequest,
    state: &mut TaskState,
    phase: Phase,
) -> PhaseEvent {
    let mut changes = env.engine.changes(state);
    let mut last = None;
    for _ in 0..200 {
        if let Some(event) = env.engine.check(plugin, request, state).await.unwrap() {
            let done = event.phase == phase || event.phase.is_terminal();
            last = Some(event.clone());
            if done {
                return event;
            }
        }
        env.engine
            .wait_for_change(state, &mut changes, Duration::from_millis(500))
            .await;
    }
    panic!("never reached {phase:?}; last event {last:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_spark_task_runs_to_success() {
    let env = env(json!({})).await;
    let (outcome, events) = run(
        &env,
        &testkit::plugin("spark"),
        &spark_request("ok", "succeed"),
        None,
    )
    .await;
    assert!(matches!(outcome, Outcome::Succeeded(_)), "{outcome:?}");
    let seen = phases(&events);
    assert_eq!(seen.first(), Some(&"QUEUED"));
    for phase in ["INITIALIZING", "RUNNING", "SUCCEEDED"] {
        assert!(seen.contains(&phase), "{seen:?}");
    }
    assert!(
        events
            .iter()
            .any(|e| e.logs.iter().any(|l| l.uri.contains("ok-driver"))),
        "driver log link"
    );
    let app = spark_apps(&env).get("ok").await.unwrap();
    assert_eq!(
        app.metadata.annotations.unwrap()["flytewasm.io/plugin"],
        "spark"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_and_submission_failed_are_retryable_failures() {
    let env = env(json!({})).await;
    let spark = testkit::plugin("spark");
    for (name, outcome, message) in [
        (
            "fails",
            "fail",
            "Spark Job Failed with Error: driver container failed",
        ),
        (
            "no-submit",
            "submission-fail",
            "Spark Job  Submission Failed with Error: failed to run spark-submit",
        ),
    ] {
        let (outcome, _) = run(&env, &spark, &spark_request(name, outcome), None).await;
        let Outcome::Failed(event) = outcome else {
            panic!("{name}: {outcome:?}")
        };
        assert_eq!(event.phase, Phase::RetryableFailure);
        let error = event.error.unwrap();
        assert_eq!(
            (error.code.as_str(), error.kind.as_str()),
            ("DownstreamSystemError", "USER")
        );
        assert!(
            error.message.starts_with(message),
            "{name}: {}",
            error.message
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_aborted_object_that_does_not_go_is_reported_not_gone() {
    // A foreground delete on a server without a garbage collector: the
    // object stays, held by `foregroundDeletion`.
    let env = env_on(
        SandboxConfig {
            step: Duration::from_millis(100),
            garbage_collector: false,
            ..Default::default()
        },
        json!({ "tasks": { "delete-propagation": "Foreground", "abort-wait-seconds": 2 } }),
    )
    .await;
    let (outcome, _) = run(
        &env,
        &testkit::plugin("spark"),
        &spark_request("held-up", "run-forever"),
        Some(Duration::from_millis(800)),
    )
    .await;
    let Outcome::AbortedNotGone(why) = outcome else {
        panic!("{outcome:?}");
    };
    assert!(why.contains("still there 2s after its delete"), "{why}");
    assert!(why.contains("foregroundDeletion"), "{why}");
    let app = spark_apps(&env).get("held-up").await.unwrap();
    assert!(app.metadata.deletion_timestamp.is_some());
}

fn batch_request(name: &str, outcome: &str) -> TaskRequest {
    let mut request = spark_request(name, outcome);
    request.template.r#type = "batch_job".into();
    request.template.custom = Some(serde_json::from_value(json!({})).unwrap());
    request
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_job_is_deleted_in_the_foreground_its_plugin_asks_for() {
    // Without a garbage collector a foreground delete leaves the Job held
    // by `foregroundDeletion` (its pods would go first): the plugin's
    // `delete-propagation` reached the API server. A platform's per-plugin
    // setting wins over the plugin's.
    let no_gc = || SandboxConfig {
        step: Duration::from_millis(100),
        garbage_collector: false,
        ..Default::default()
    };
    let jobs = |env: &Env| api(env, "batch/v1", "Job", "jobs");
    let plugin = testkit::plugin("batch-job");
    let env = env_on(no_gc(), json!({ "tasks": { "abort-wait-seconds": 2 } })).await;
    let (outcome, _) = run(
        &env,
        &plugin,
        &batch_request("asks", "run-forever"),
        Some(Duration::from_millis(800)),
    )
    .await;
    let Outcome::AbortedNotGone(why) = outcome else {
        panic!("{outcome:?}");
    };
    assert!(why.contains("foregroundDeletion"), "{why}");
    let job = jobs(&env).get("asks").await.unwrap();
    assert!(job.metadata.deletion_timestamp.is_some());

    let env = env_on(
        no_gc(),
        json!({ "tasks": { "abort-wait-seconds": 2, "plugin-delete-propagation": { "batch-job": "Background" } } }),
    )
    .await;
    let (outcome, _) = run(
        &env,
        &plugin,
        &batch_request("overridden", "run-forever"),
        Some(Duration::from_millis(800)),
    )
    .await;
    assert!(
        matches!(outcome, Outcome::Aborted(Aborted::Deleted)),
        "{outcome:?}"
    );
    assert!(jobs(&env).get_opt("overridden").await.unwrap().is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn abort_deletes_the_object_and_it_is_gone() {
    let env = env(json!({})).await;
    let (outcome, events) = run(
        &env,
        &testkit::plugin("spark"),
        &spark_request("endless", "run-forever"),
        Some(Duration::from_millis(800)),
    )
    .await;
    assert!(
        matches!(outcome, Outcome::Aborted(Aborted::Deleted)),
        "{outcome:?}"
    );
    assert!(
        phases(&events).contains(&"RUNNING"),
        "{:?}",
        phases(&events)
    );
    let err = spark_apps(&env).get("endless").await.unwrap_err();
    assert!(
        matches!(err, kube::Error::Api(ref s) if s.code == 404),
        "{err:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn abort_with_a_plugin_that_patches_keeps_the_object_patched() {
    let env = env(json!({})).await;
    let (outcome, _) = run(
        &env,
        &testkit::plugin("testing"),
        &testing_request("patched", "patch-on-abort"),
        Some(Duration::from_millis(300)),
    )
    .await;
    assert!(
        matches!(outcome, Outcome::Aborted(Aborted::Patched)),
        "{outcome:?}"
    );
    let object = api(&env, "v1", "ConfigMap", "configmaps")
        .get("patched")
        .await
        .unwrap();
    assert_eq!(object.metadata.annotations.unwrap()["aborted"], "true");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn launching_twice_adopts_the_existing_object() {
    let env = env(json!({})).await;
    let spark = testkit::plugin("spark");
    let request = spark_request("twice", "run-forever");
    let (first, event) = env.engine.launch(&spark, &request).await.unwrap();
    let (second, again) = env.engine.launch(&spark, &request).await.unwrap();
    assert_eq!((event.phase, again.phase), (Phase::Queued, Phase::Queued));
    assert_eq!(first, second);
    assert_eq!(
        spark_apps(&env)
            .list(&Default::default())
            .await
            .unwrap()
            .items
            .len(),
        1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_object_deleted_behind_our_back_is_resource_deleted_externally() {
    let env = env(json!({})).await;
    let spark = testkit::plugin("spark");
    let request = spark_request("vanishes", "run-forever");
    let (mut state, _) = env.engine.launch(&spark, &request).await.unwrap();
    follow_until(&env, &spark, &request, &mut state, Phase::Running).await;
    spark_apps(&env)
        .delete("vanishes", &Default::default())
        .await
        .unwrap();
    let event = follow_until(&env, &spark, &request, &mut state, Phase::RetryableFailure).await;
    assert_eq!(event.phase, Phase::RetryableFailure);
    let error = event.error.unwrap();
    assert_eq!(
        (error.code.as_str(), error.kind.as_str()),
        ("ResourceDeletedExternally", "SYSTEM")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deletion_timestamp_while_running_is_unexpected_object_deletion() {
    let env = env(json!({ "k8s": { "inject-finalizer": true } })).await;
    let spark = testkit::plugin("spark");
    let request = spark_request("doomed", "run-forever");
    let (mut state, _) = env.engine.launch(&spark, &request).await.unwrap();
    follow_until(&env, &spark, &request, &mut state, Phase::Running).await;
    // The finalizer holds the object: deleting only marks it.
    spark_apps(&env)
        .delete("doomed", &Default::default())
        .await
        .unwrap();
    let event = follow_until(&env, &spark, &request, &mut state, Phase::RetryableFailure).await;
    assert_eq!(event.error.unwrap().code, "UnexpectedObjectDeletion");
    env.engine.finalize(&spark, &state).await.unwrap();
    env.engine
        .wait_gone(&state, Duration::from_secs(10))
        .await
        .expect("gone once the finalizer is removed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_finalizer_is_injected_and_removed_despite_a_conflict() {
    let env = env(json!({ "k8s": { "inject-finalizer": true } })).await;
    let spark = testkit::plugin("spark");
    let request = spark_request("held", "succeed");
    let (mut state, _) = env.engine.launch(&spark, &request).await.unwrap();
    let app = spark_apps(&env).get("held").await.unwrap();
    assert_eq!(
        app.metadata.finalizers.unwrap(),
        ["flyte.org/finalizer-k8s"]
    );
    follow_until(&env, &spark, &request, &mut state, Phase::Success).await;

    env.sandbox.faults().fail_next("patch", 409, 1);
    let patches_before = env.sandbox.faults().requests("patch");
    env.engine.finalize(&spark, &state).await.unwrap();
    let app = spark_apps(&env).get("held").await.unwrap();
    assert!(
        app.metadata.finalizers.unwrap_or_default().is_empty(),
        "finalizer removed"
    );
    assert_eq!(
        env.sandbox.faults().requests("patch") - patches_before,
        2,
        "the conflicting patch was retried once"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delete_on_finalize_removes_the_object() {
    let env = env(json!({ "k8s": { "delete-resource-on-finalize": true } })).await;
    let (outcome, _) = run(
        &env,
        &testkit::plugin("spark"),
        &spark_request("cleaned", "succeed"),
        None,
    )
    .await;
    assert!(matches!(outcome, Outcome::Succeeded(_)));
    assert!(spark_apps(&env).get_opt("cleaned").await.unwrap().is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_errors_and_dropped_watches_do_not_stop_a_task() {
    let env = env(json!({})).await;
    let faults = env.sandbox.faults();
    faults.fail_next("create", 500, 2);
    faults.fail_next("get", 503, 2);
    faults.fail_next("watch", 500, 1);
    faults.set_latency(Duration::from_millis(20));
    let dropper = {
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = stop.clone();
        let drops = async move {
            while !flag.load(std::sync::atomic::Ordering::Relaxed) {
                tokio::time::sleep(Duration::from_millis(150)).await;
                faults.drop_watches();
            }
        };
        (stop, drops)
    };
    let (stop, drops) = dropper;
    // Slow steps, so watches are dropped while the task is running.
    let mut request = spark_request("bumpy", "succeed");
    request
        .annotations
        .insert("sandbox.flytewasm.io/step-ms".into(), "600".into());
    let task = async {
        let result = run(&env, &testkit::plugin("spark"), &request, None).await;
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        result
    };
    let ((outcome, _), ()) = tokio::join!(task, drops);
    assert!(matches!(outcome, Outcome::Succeeded(_)), "{outcome:?}");
    // One watch failed (500), one resumed after back-off, and at least one
    // more was opened because a running watch was dropped.
    assert!(
        faults.requests("watch") >= 3,
        "the watch was re-established after a drop: {:?}",
        faults.request_counts()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_tasks_share_one_watch_and_nobody_polls() {
    let env = env(json!({})).await;
    let spark = testkit::plugin("spark");
    let requests: Vec<TaskRequest> = (0..50)
        .map(|i| spark_request(&format!("many-{i}"), "succeed"))
        .collect();
    let runs = requests
        .iter()
        .map(|request| run(&env, &spark, request, None));
    let outcomes = futures::future::join_all(runs).await;
    assert!(
        outcomes
            .iter()
            .all(|(o, _)| matches!(o, Outcome::Succeeded(_)))
    );
    let counts = env.sandbox.faults().request_counts();
    let total: u64 = counts.values().sum();
    eprintln!(
        "API requests for 50 tasks: {counts:?} ({:.1} per task)",
        total as f64 / 50.0
    );
    // One create per task. A launch that lands after its answer was due (50
    // at once on two cores) also records itself, and drops the record once
    // landed: a create and a delete of a ConfigMap.
    let (creates, deletes) = (counts["create"], counts.get("delete").copied().unwrap_or(0));
    assert_eq!(
        creates.checked_sub(deletes),
        Some(50),
        "one object per task: {counts:?}"
    );
    assert!(
        counts.get("list").copied().unwrap_or(0) <= 2,
        "one shared list: {counts:?}"
    );
    // One shared watch, resumed (not re-listed) when the server ends it: the
    // sandbox, like kube-apiserver, ends a watcher that falls behind, which
    // 50 tasks on two busy cores can make happen. A watch per task would be 50.
    assert!(
        counts.get("watch").copied().unwrap_or(0) < 10,
        "one shared watch: {counts:?}"
    );
    // Reads come from the watch cache; only a task checked before the watch
    // saw its object reads the API. Besides: the patch that records each
    // task's end, and a launch that lands after its answer (50 at once on
    // two cores) records itself and looks for an abort's tombstone. Polling
    // would be dozens per task.
    assert!(total < 50 * 8, "no per-task polling: {counts:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failure_that_leaves_the_object_running_kills_it() {
    let env = env(json!({})).await;
    let (outcome, _) = run(
        &env,
        &testkit::plugin("testing"),
        &testing_request("stuck", "fail-with-cleanup"),
        None,
    )
    .await;
    let Outcome::Failed(event) = outcome else {
        panic!("{outcome:?}")
    };
    assert_eq!(event.error.unwrap().code, "ImagePullBackOff");
    let maps = api(&env, "v1", "ConfigMap", "configmaps");
    assert!(maps.get_opt("stuck").await.unwrap().is_none(), "cleaned up");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_errors_are_classified_as_flyte_does() {
    let env = env(json!({})).await;
    let spark = testkit::plugin("spark");
    for (code, phase, error) in [
        (422, Phase::PermanentFailure, "BadTaskFormat"),
        (400, Phase::PermanentFailure, "BadTaskFormat"),
        (403, Phase::RetryableFailure, "RuntimeFailure"),
        (413, Phase::PermanentFailure, "EntityTooLarge"),
    ] {
        env.sandbox.faults().fail_next("create", code, 1);
        let (_, event) = env
            .engine
            .launch(
                &spark,
                &spark_request(&format!("refused-{code}"), "succeed"),
            )
            .await
            .unwrap();
        assert_eq!(event.phase, phase, "{code}");
        assert_eq!(event.error.unwrap().code, error, "{code}");
    }
    // A plugin that refuses the task fails it before anything is created.
    let mut bad = spark_request("bad", "succeed");
    bad.template.custom = None;
    let (_, event) = env.engine.launch(&spark, &bad).await.unwrap();
    assert_eq!(
        (event.phase, event.error.unwrap().code.as_str()),
        (Phase::PermanentFailure, "FailedToBuildResource")
    );
    assert_eq!(env.sandbox.faults().requests("create"), 4);
}

/// `request` in the test namespace, named, with the outcome the sandbox's
/// operator or kubelet plays for it.
fn in_sandbox(mut request: TaskRequest, name: &str, outcome: &str) -> TaskRequest {
    request.namespace = NS.into();
    request.name = Some(name.into());
    request
        .annotations
        .insert("sandbox.flytewasm.io/outcome".into(), outcome.into());
    request
}

/// Run `request` to success; it ran on the way. Its events, for the test's
/// own checks.
async fn succeeds(env: &Env, plugin: &Plugin, request: &TaskRequest) -> Vec<PhaseEvent> {
    let (outcome, events) = run(env, plugin, request, None).await;
    assert!(matches!(outcome, Outcome::Succeeded(_)), "{outcome:?}");
    let seen = phases(&events);
    assert!(seen.contains(&"RUNNING"), "{seen:?}");
    events
}

/// Run `request` to a failure in `phase`; the failure's error.
async fn fails(env: &Env, plugin: &Plugin, request: &TaskRequest, phase: Phase) -> TaskError {
    let (outcome, _) = run(env, plugin, request, None).await;
    let Outcome::Failed(event) = outcome else {
        panic!("{outcome:?}")
    };
    assert_eq!(event.phase, phase);
    event.error.unwrap()
}

/// Abort `request` once it has run: its object (in `objects`) is deleted,
/// then the garbage collector takes the pods it owns (named `<name>-…`).
/// `meanwhile` runs alongside the task, to look at its pods before they go.
async fn aborted_takes_its_pods<T>(
    env: &Env,
    plugin: &Plugin,
    request: &TaskRequest,
    objects: &Api<DynamicObject>,
    meanwhile: impl Future<Output = T>,
) -> T {
    let ((outcome, events), seen) = tokio::join!(
        run(env, plugin, request, Some(Duration::from_millis(1500))),
        meanwhile
    );
    assert!(
        matches!(outcome, Outcome::Aborted(Aborted::Deleted)),
        "{outcome:?}"
    );
    assert!(
        phases(&events).contains(&"RUNNING"),
        "{:?}",
        phases(&events)
    );
    let name = request.name.as_deref().unwrap();
    let err = objects.get(name).await.unwrap_err();
    assert!(
        matches!(err, kube::Error::Api(ref s) if s.code == 404),
        "{err:?}"
    );
    let prefix = format!("{name}-");
    for _ in 0..100 {
        let left = pods(env).list(&Default::default()).await.unwrap();
        if !left.items.iter().any(|p| {
            p.metadata
                .name
                .as_deref()
                .is_some_and(|n| n.starts_with(&prefix))
        }) {
            return seen;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("the aborted job's pods are still there");
}

fn pytorch_request(name: &str, outcome: &str) -> TaskRequest {
    let custom =
        json!({ "masterReplicas": { "replicas": 1 }, "workerReplicas": { "replicas": 2 } });
    in_sandbox(testkit::kubeflow::task("pytorch", 1, custom), name, outcome)
}

fn pods(env: &Env) -> Api<DynamicObject> {
    api(env, "v1", "Pod", "pods")
}

/// A training job runs to success through the operator's conditions, with
/// a log link per replica; aborted, the job and its replica pods are gone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pytorch_job_runs_and_an_aborted_one_takes_its_pods() {
    let env = env(json!({})).await;
    let plugin = testkit::plugin("pytorch");
    let events = succeeds(&env, &plugin, &pytorch_request("trained", "succeed")).await;
    assert_eq!(phases(&events).first(), Some(&"QUEUED"));
    let pods_linked: Vec<&str> = events
        .last()
        .unwrap()
        .logs
        .iter()
        .map(|l| l.uri.as_str())
        .collect();
    for pod in ["trained-master-0", "trained-worker-1"] {
        assert!(
            pods_linked.iter().any(|u| u.contains(pod)),
            "{pods_linked:?}"
        );
    }

    let jobs = api(&env, "kubeflow.org/v1", "PyTorchJob", "pytorchjobs");
    let endless = pytorch_request("endless", "run-forever");
    aborted_takes_its_pods(&env, &plugin, &endless, &jobs, async {}).await;
}

fn ray_request(name: &str, outcome: &str) -> TaskRequest {
    let custom = json!({ "rayCluster": { "headGroupSpec": {}, "workerGroupSpec": [{ "groupName": "workers", "replicas": 2 }] },
                         "shutdownAfterJobFinishes": true });
    in_sandbox(testkit::kubeflow::task("ray", 0, custom), name, outcome)
}

/// A RayJob goes through KubeRay's deployment statuses with its cluster's
/// head and worker pods; a failed one is a retryable system failure;
/// aborted, the job and its pods are gone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ray_job_runs_and_an_aborted_one_takes_its_pods() {
    let env = env(json!({})).await;
    let plugin = testkit::plugin("ray");
    let events = succeeds(&env, &plugin, &ray_request("ray-ok", "succeed")).await;
    assert!(
        phases(&events).contains(&"INITIALIZING"),
        "{:?}",
        phases(&events)
    );
    let cluster_pods = pods(&env)
        .list(&kube::api::ListParams::default().labels("ray.io/node-type"))
        .await
        .unwrap();
    let types: Vec<_> = cluster_pods
        .items
        .iter()
        .filter(|p| p.metadata.owner_references.as_ref().unwrap()[0].name == "ray-ok")
        .map(|p| p.metadata.labels.as_ref().unwrap()["ray.io/node-type"].clone())
        .collect();
    assert_eq!(
        (
            types.iter().filter(|t| *t == "head").count(),
            types.iter().filter(|t| *t == "worker").count()
        ),
        (1, 2),
        "{types:?}"
    );

    let failing = ray_request("ray-fails", "fail");
    let error = fails(&env, &plugin, &failing, Phase::RetryableFailure).await;
    assert_eq!(
        (error.code.as_str(), error.kind.as_str()),
        ("TaskFailedWithError", "SYSTEM")
    );
    assert!(
        error
            .message
            .starts_with("Failed to run Ray job ray-fails with error: [AppFailed]"),
        "{}",
        error.message
    );

    let jobs = api(&env, "ray.io/v1", "RayJob", "rayjobs");
    let endless = ray_request("ray-endless", "run-forever");
    aborted_takes_its_pods(&env, &plugin, &endless, &jobs, async {}).await;
}

fn dask_request(name: &str, outcome: &str) -> TaskRequest {
    let custom = json!({ "scheduler": {}, "workers": { "numberOfWorkers": 2 } });
    in_sandbox(testkit::kubeflow::task("dask", 0, custom), name, outcome)
}

/// A DaskJob runs to success through the Dask operator's statuses, linked
/// to its runner pod; a failed one is a retryable failure; aborted, the job
/// and its cluster's pods (which know the scheduler's address) are gone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dask_job_runs_and_an_aborted_one_takes_its_pods() {
    let env = env(json!({})).await;
    let plugin = testkit::plugin("dask");
    let events = succeeds(&env, &plugin, &dask_request("crunched", "succeed")).await;
    assert_eq!(phases(&events).first(), Some(&"INITIALIZING"));
    // Each operator status seen while initializing (unknown, job created,
    // cluster created) is an event of its own: a new version.
    let initializing: Vec<(&str, u32)> = events
        .iter()
        .filter(|e| e.phase == Phase::Initializing)
        .map(|e| (e.reason.as_str(), e.version))
        .collect();
    assert!(
        initializing.windows(2).all(|w| w[0].1 < w[1].1),
        "{initializing:?}"
    );
    let last = events.last().unwrap();
    assert!(
        last.logs
            .iter()
            .any(|l| l.name == "Kubernetes Logs(Dask Runner Logs)"
                && l.uri.contains("/crunched-runner/")),
        "{:?}",
        last.logs
    );

    let error = fails(
        &env,
        &plugin,
        &dask_request("broken", "fail"),
        Phase::RetryableFailure,
    )
    .await;
    assert_eq!(
        (error.code.as_str(), error.message.as_str()),
        ("DownstreamSystemError", "Dask Job failed")
    );

    // While the endless job runs, its cluster's pods appear.
    let cluster_pods = async {
        for _ in 0..100 {
            let list = pods(&env)
                .list(&kube::api::ListParams::default().labels("dask.org/cluster-name=endless"))
                .await
                .unwrap();
            if list.items.len() == 4 {
                return list.items;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("the endless job's cluster never had its 4 pods");
    };
    let jobs = api(&env, "kubernetes.dask.org/v1", "DaskJob", "daskjobs");
    let endless = dask_request("endless", "run-forever");
    let cluster_pods = aborted_takes_its_pods(&env, &plugin, &endless, &jobs, cluster_pods).await;
    let mut components: Vec<&str> = cluster_pods
        .iter()
        .map(|p| p.metadata.labels.as_ref().unwrap()["dask.org/component"].as_str())
        .collect();
    components.sort();
    assert_eq!(components, ["job-runner", "scheduler", "worker", "worker"]);
    let runner = cluster_pods
        .iter()
        .find(|p| p.metadata.name.as_deref() == Some("endless-runner"))
        .expect("the runner pod is <job>-runner");
    assert!(
        runner.data["spec"]["containers"][0]["env"]
            .as_array()
            .unwrap()
            .contains(&json!({ "name": "DASK_SCHEDULER_ADDRESS",
                               "value": format!("tcp://endless-scheduler.{NS}.svc.cluster.local:8786") })),
        "{:?}",
        runner.data["spec"]
    );
}

/// Flyte's base PodTemplate: the one a task names, from its namespace (a
/// missing one fails the task); else the platform default, from the
/// host's namespace (a missing one is no template).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_base_pod_template_sits_under_the_task_pod() {
    let templates = |env: &Env, namespace: &str| {
        let resource = ApiResource::from_gvk_with_plural(
            &GroupVersionKind::gvk("", "v1", "PodTemplate"),
            "podtemplates",
        );
        Api::<DynamicObject>::namespaced_with(env.sandbox.client().unwrap(), namespace, &resource)
    };
    let create = |name: &str, env_value: &str| {
        serde_json::from_value::<DynamicObject>(json!({
            "apiVersion": "v1", "kind": "PodTemplate", "metadata": { "name": name },
            "template": {
                "metadata": { "labels": { "platform": env_value } },
                "spec": {
                    "containers": [{ "name": "default", "image": "unused", "env": [{ "name": "PLATFORM", "value": env_value }] }],
                    "tolerations": [{ "key": "platform", "operator": "Exists" }],
                },
            },
        }))
        .unwrap()
    };
    let env = env(json!({ "k8s": { "default-pod-template-name": "fallback" } })).await;
    templates(&env, NS)
        .create(&Default::default(), &create("named", "named"))
        .await
        .unwrap();
    templates(&env, "default")
        .create(&Default::default(), &create("fallback", "default"))
        .await
        .unwrap();
    let plugin = testkit::plugin("pytorch");
    let jobs = api(&env, "kubeflow.org/v1", "PyTorchJob", "pytorchjobs");
    let worker =
        |job: &DynamicObject| job.data["spec"]["pytorchReplicaSpecs"]["Worker"]["template"].clone();

    let mut request = pytorch_request("named", "succeed");
    request.template.metadata =
        Some(serde_json::from_value(json!({ "podTemplateName": "named" })).unwrap());
    let (_, event) = env.engine.launch(&plugin, &request).await.unwrap();
    assert_eq!(event.phase, Phase::Queued, "{event:?}");
    let template = worker(&jobs.get("named").await.unwrap());
    let container = &template["spec"]["containers"][0];
    assert_eq!(container["name"], "pytorch");
    assert_eq!(container["image"], "image://", "the task's own fields win");
    assert_eq!(
        container["env"][0],
        json!({ "name": "PLATFORM", "value": "named" })
    );
    assert_eq!(template["spec"]["tolerations"][0]["key"], "platform");
    assert_eq!(template["metadata"]["labels"]["platform"], "named");

    // No name: the platform's default, from the host's namespace.
    let (_, event) = env
        .engine
        .launch(&plugin, &pytorch_request("defaulted", "succeed"))
        .await
        .unwrap();
    assert_eq!(event.phase, Phase::Queued, "{event:?}");
    let template = worker(&jobs.get("defaulted").await.unwrap());
    assert_eq!(
        template["spec"]["containers"][0]["env"][0]["value"],
        "default"
    );

    let mut request = pytorch_request("missing", "succeed");
    request.template.metadata =
        Some(serde_json::from_value(json!({ "podTemplateName": "nope" })).unwrap());
    let (_, event) = env.engine.launch(&plugin, &request).await.unwrap();
    assert_eq!(event.phase, Phase::PermanentFailure);
    let error = event.error.unwrap();
    assert_eq!(error.code, "BadTaskSpecification");
    assert!(
        error.message.contains("PodTemplate 'nope' does not exist"),
        "{}",
        error.message
    );
    assert!(jobs.get("missing").await.is_err(), "nothing is created");

    // A name that is not an object name never reaches the API's URL.
    let mut request = pytorch_request("traversal", "succeed");
    request.template.metadata =
        Some(serde_json::from_value(json!({ "podTemplateName": "../../secrets/x" })).unwrap());
    let (_, event) = env.engine.launch(&plugin, &request).await.unwrap();
    assert_eq!(event.phase, Phase::PermanentFailure);
    assert!(
        event
            .error
            .unwrap()
            .message
            .contains("not a valid object name")
    );
}

fn pod_request(name: &str, outcome: &str) -> TaskRequest {
    in_sandbox(testkit::pod::python_task(), name, outcome)
}

/// A plain `@task` runs as one Pod, through the kubelet's statuses, with
/// its `(User)` log link (reference/flyte-operators.md §D.4).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pod_task_runs_to_success() {
    let env = env(json!({})).await;
    let plugin = testkit::plugin("pod");
    let events = succeeds(&env, &plugin, &pod_request("hello", "succeed")).await;
    assert!(
        events.iter().any(|e| e
            .logs
            .iter()
            .any(|l| l.name == "Kubernetes Logs (User)" && l.uri.contains("/hello/"))),
        "{events:?}"
    );
}

/// An image pull backing off is initializing within its grace period; an
/// invalid image name fails at once, for good, and the pod is cleaned up
/// (§D.4).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn image_errors_are_initializing_or_permanent_failures() {
    let env = env(json!({})).await;
    let plugin = testkit::plugin("pod");
    let request = pod_request("backoff", "image-pull-backoff");
    let (mut state, _) = env.engine.launch(&plugin, &request).await.unwrap();
    let event = follow_until(&env, &plugin, &request, &mut state, Phase::Initializing).await;
    assert_eq!(event.phase, Phase::Initializing, "{event:?}");
    assert!(
        event.reason.contains("ContainersNotReady|ErrImagePull")
            || event.reason.contains("ContainersNotReady|ImagePullBackOff"),
        "{}",
        event.reason
    );

    let bad_image = pod_request("bad-image", "invalid-image-name");
    let error = fails(&env, &plugin, &bad_image, Phase::PermanentFailure).await;
    assert_eq!(
        (error.code.as_str(), error.kind.as_str()),
        ("ContainersNotReady|InvalidImageName", "USER")
    );
    assert!(
        pods(&env).get_opt("bad-image").await.unwrap().is_none(),
        "cleaned up"
    );
}

/// An aborted pod task's Pod is deleted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_aborted_pod_task_deletes_its_pod() {
    let env = env(json!({})).await;
    let plugin = testkit::plugin("pod");
    let endless = pod_request("endless-pod", "run-forever");
    aborted_takes_its_pods(&env, &plugin, &endless, &pods(&env), async {}).await;
}

/// The platform's sidecar is a native one: the task succeeds on its primary
/// container (§D.4), and the kubelet stops the sidecar, so the pod ends too
/// instead of holding its node share until the janitor's turn.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_with_the_platform_sidecar_ends_with_its_container() {
    let env = env(json!({})).await;
    let plugin = testkit::plugin("platform-sidecar");
    let request = pod_request("with-agent", "succeed");
    let (outcome, _) = run(&env, &plugin, &request, None).await;
    assert!(matches!(outcome, Outcome::Succeeded(_)), "{outcome:?}");
    let name = request.object_name(&plugin);
    let pod = pods(&env).get(&name).await.unwrap();
    assert_eq!(pod.data["status"]["phase"], "Succeeded");
    let sidecar = &pod.data["status"]["initContainerStatuses"][0];
    assert_eq!(sidecar["name"], "platform-agent");
    assert_eq!(sidecar["state"]["terminated"]["exitCode"], 0);
}
