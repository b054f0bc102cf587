//! The agent path as propeller drives it, against the embedded sandbox:
//! CreateTask under propeller's 3 s deadline whatever the API's latency,
//! waiting on a full quota, one live attempt per node, the same terminal
//! answer from every replica until retention, a plugin that fails to look
//! retried and then cleaned up, names that belong to someone else.
//! Two `AgentService`s sharing keys stand for two replicas.

use std::sync::Arc;
use std::time::Duration;

use flytewasm::agent::AgentService;
use flytewasm::cluster::{Cluster, SHARD_LABEL, Shard};
use flytewasm::config::HostConfig;
use flytewasm::executor::{Executor, Tasks};
use flytewasm::metrics::Metrics;
use flytewasm::registry::{LivePlugins, Registry};
use flytewasm::sandbox::{Sandbox, SandboxConfig};
use flytewasm::task_service::{MetaKeys, TaskService};
use flytewasm::testkit;
use flytewasm_proto::flyteidl::admin::{
    CreateTaskRequest, DeleteTaskRequest, GetTaskRequest, Resource,
};
use flytewasm_proto::flyteidl::core::{TaskTemplate, task_execution::Phase};
use flytewasm_proto::flyteidl::service::async_agent_service_server::AsyncAgentService;
use kube::api::{DynamicObject, PostParams};
use serde_json::json;
use tonic::Request;

const NS: &str = "agent-path";
/// Propeller's default per-call deadline.
const PROPELLER_DEADLINE: Duration = Duration::from_secs(3);

struct Env {
    sandbox: Sandbox,
    replicas: Vec<AgentService>,
    config: HostConfig,
    keys: MetaKeys,
}

async fn env(config: serde_json::Value) -> Env {
    let sandbox = Sandbox::start(SandboxConfig {
        step: Duration::from_millis(50),
        ..Default::default()
    })
    .await
    .unwrap();
    let config: HostConfig = serde_json::from_value(config).unwrap();
    let keys = MetaKeys::ephemeral();
    let replicas = (0..2).map(|_| replica(&sandbox, &config, &keys)).collect();
    Env {
        sandbox,
        replicas,
        config,
        keys,
    }
}

/// One `serve` replica on the sandbox (call within the runtime it runs on).
fn replica(sandbox: &Sandbox, config: &HostConfig, keys: &MetaKeys) -> AgentService {
    sharded_replica(sandbox, config, keys, Shard::ALL)
}

/// A replica that caches only `shard`'s objects.
fn sharded_replica(
    sandbox: &Sandbox,
    config: &HostConfig,
    keys: &MetaKeys,
    shard: Shard,
) -> AgentService {
    let cluster = Cluster::new(sandbox.client().unwrap()).with_shard(shard);
    let tasks = Tasks::new(Executor::new(Arc::new(cluster), Arc::new(config.clone())));
    let registry =
        Registry::from_plugins(vec![testkit::plugin("spark"), testkit::plugin("testing")]).unwrap();
    AgentService::new(TaskService::new(
        tasks,
        LivePlugins::fixed(registry),
        Arc::new(Metrics::default()),
        keys.clone(),
        false,
    ))
}

/// CreateTask on a replica with its own runtime, which dies with it a
/// second after answering: the resource_meta.
fn accepted_by_a_replica_that_dies(env: &Env, request: CreateTaskRequest) -> Vec<u8> {
    std::thread::scope(|scope| {
        scope
            .spawn(|| {
                let runtime = tokio::runtime::Runtime::new().unwrap();
                runtime.block_on(async {
                    let doomed = replica(&env.sandbox, &env.config, &env.keys);
                    let meta = launch(&doomed, request).await;
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    meta
                })
            })
            .join()
            .unwrap()
    })
}

fn spark() -> TaskTemplate {
    testkit::spark_task(NS, "unused").template
}

fn testing(behaviour: &str) -> TaskTemplate {
    TaskTemplate {
        r#type: "testing".into(),
        custom: Some(serde_json::from_value(json!({ "behaviour": behaviour })).unwrap()),
        ..Default::default()
    }
}

/// Attempt `attempt` of node `n0` of `execution`, with the sandbox fate `outcome`.
fn create(
    template: TaskTemplate,
    execution: &str,
    attempt: u32,
    outcome: &str,
) -> CreateTaskRequest {
    let fate = [("sandbox.flytewasm.io/outcome", outcome)];
    testkit::create_request(template, NS, execution, attempt, &fate)
}

/// CreateTask under propeller's deadline: the resource_meta.
async fn launch(replica: &AgentService, request: CreateTaskRequest) -> Vec<u8> {
    tokio::time::timeout(
        PROPELLER_DEADLINE,
        replica.create_task(Request::new(request)),
    )
    .await
    .expect("CreateTask answered within propeller's deadline")
    .unwrap()
    .into_inner()
    .resource_meta
}

async fn get(replica: &AgentService, meta: &[u8]) -> Resource {
    let request = Request::new(GetTaskRequest {
        resource_meta: meta.to_vec(),
        ..Default::default()
    });
    replica
        .get_task(request)
        .await
        .unwrap()
        .into_inner()
        .resource
        .unwrap()
}

/// GetTask round robin over the replicas until `done` holds; every phase seen.
async fn until(env: &Env, meta: &[u8], done: impl Fn(&Resource) -> bool) -> (Resource, Vec<i32>) {
    until_on(&env.replicas, meta, done).await
}

/// GetTask round robin over `replicas` until `done` holds; every phase seen.
async fn until_on(
    replicas: &[AgentService],
    meta: &[u8],
    done: impl Fn(&Resource) -> bool,
) -> (Resource, Vec<i32>) {
    let mut phases = Vec::new();
    for round in 0..1200 {
        let resource = get(&replicas[round % replicas.len()], meta).await;
        if phases.last() != Some(&resource.phase) {
            phases.push(resource.phase);
        }
        if done(&resource) {
            return (resource, phases);
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("not reached; phases seen: {phases:?}");
}

/// A ResourceQuota that lets one SparkApplication into the namespace.
async fn room_for_one_app(env: &Env) {
    let quotas = testkit::objects(&env.sandbox, NS, "v1", "ResourceQuota", "resourcequotas");
    let quota: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "ResourceQuota",
        "metadata": { "name": "one-app" },
        "spec": { "hard": { "count/sparkapplications.sparkoperator.k8s.io": "1" } },
    }))
    .unwrap();
    quotas.create(&PostParams::default(), &quota).await.unwrap();
}

/// Poll `check` every 25 ms until it holds; fail naming `what` after 5 s.
async fn eventually<F: std::future::Future<Output = bool>>(
    what: &str,
    mut check: impl FnMut() -> F,
) {
    for _ in 0..200 {
        if check().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("not within 5 s: {what}");
}

fn phase(p: Phase) -> impl Fn(&Resource) -> bool {
    move |r| r.phase == p as i32
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_answers_within_propellers_deadline_while_the_api_is_slow() {
    let env = env(json!({})).await;
    // Every request takes 4 s: more than propeller's 3 s deadline.
    env.sandbox.faults().set_latency(Duration::from_secs(4));
    let meta = launch(&env.replicas[0], create(spark(), "slow", 0, "succeed")).await;
    env.sandbox.faults().clear();
    let (done, phases) = until(&env, &meta, phase(Phase::Succeeded)).await;
    assert_eq!(done.phase, Phase::Succeeded as i32, "{phases:?}");
    let apps = testkit::spark_apps(&env.sandbox, NS)
        .list(&Default::default())
        .await
        .unwrap();
    assert_eq!(apps.items.len(), 1, "one object for the task");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_quota_waits_for_resources_and_then_runs() {
    let env = env(json!({})).await;
    room_for_one_app(&env).await;

    let first = launch(
        &env.replicas[0],
        create(spark(), "holder", 0, "run-forever"),
    )
    .await;
    until(&env, &first, phase(Phase::Running)).await;
    let second = launch(&env.replicas[0], create(spark(), "waiter", 0, "succeed")).await;
    let (waiting, _) = until(&env, &second, |r| r.phase != Phase::Queued as i32).await;
    assert_eq!(
        waiting.phase,
        Phase::WaitingForResources as i32,
        "{}",
        waiting.message
    );
    assert!(
        waiting.message.contains("exceeded quota"),
        "{}",
        waiting.message
    );

    // The first task is aborted: its slot frees, and the second runs.
    env.replicas[1]
        .delete_task(Request::new(DeleteTaskRequest {
            resource_meta: first,
            ..Default::default()
        }))
        .await
        .unwrap();
    let (done, phases) = until(&env, &second, phase(Phase::Succeeded)).await;
    assert_eq!(done.phase, Phase::Succeeded as i32, "{phases:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_later_attempt_aborts_the_earlier_one() {
    let env = env(json!({})).await;
    let apps = testkit::spark_apps(&env.sandbox, NS);
    let first = launch(
        &env.replicas[0],
        create(spark(), "retried", 0, "run-forever"),
    )
    .await;
    until(&env, &first, phase(Phase::Running)).await;
    // Propeller gave up on attempt 0 (its answer was lost, say) and starts attempt 1.
    let second = launch(&env.replicas[1], create(spark(), "retried", 1, "succeed")).await;
    until(&env, &second, phase(Phase::Succeeded)).await;
    assert!(
        apps.get_opt("retried-n0-0").await.unwrap().is_none(),
        "attempt 0 was aborted"
    );
    assert!(apps.get_opt("retried-n0-1").await.unwrap().is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_name_taken_by_someone_else_fails_the_task_and_touches_nothing() {
    let env = env(json!({})).await;
    let apps = testkit::spark_apps(&env.sandbox, NS);
    let theirs: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "sparkoperator.k8s.io/v1beta2", "kind": "SparkApplication",
        "metadata": { "name": "taken-n0-0", "annotations": { "owner": "someone" } },
        "spec": {},
    }))
    .unwrap();
    apps.create(&PostParams::default(), &theirs).await.unwrap();
    let meta = launch(&env.replicas[0], create(spark(), "taken", 0, "succeed")).await;
    let (failed, _) = until(&env, &meta, |r| r.phase == Phase::Failed as i32).await;
    let error = failed.agent_error.unwrap();
    assert_eq!(error.code, "ObjectNameCollision", "{}", failed.message);
    assert!(failed.message.contains("taken-n0-0"), "{}", failed.message);
    let still = apps.get("taken-n0-0").await.unwrap();
    assert_eq!(still.metadata.annotations.unwrap()["owner"], "someone");
}

/// A task whose object went and whose name someone else then took: an
/// abort leaves the newcomer's object alone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_abort_does_not_touch_an_object_that_is_not_the_tasks() {
    let env = env(json!({})).await;
    let apps = testkit::spark_apps(&env.sandbox, NS);
    let meta = launch(
        &env.replicas[0],
        create(spark(), "swapped", 0, "run-forever"),
    )
    .await;
    until(&env, &meta, phase(Phase::Running)).await;
    apps.delete("swapped-n0-0", &Default::default())
        .await
        .unwrap();
    for _ in 0..100 {
        if apps.get_opt("swapped-n0-0").await.unwrap().is_none() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let theirs: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "sparkoperator.k8s.io/v1beta2", "kind": "SparkApplication",
        "metadata": { "name": "swapped-n0-0", "annotations": { "owner": "someone" } },
        "spec": {},
    }))
    .unwrap();
    apps.create(&PostParams::default(), &theirs).await.unwrap();
    env.replicas[1]
        .delete_task(Request::new(DeleteTaskRequest {
            resource_meta: meta.clone(),
            ..Default::default()
        }))
        .await
        .unwrap();
    let still = apps.get("swapped-n0-0").await.unwrap();
    assert_eq!(still.metadata.annotations.unwrap()["owner"], "someone");
    assert!(still.metadata.deletion_timestamp.is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_terminal_answer_is_the_same_everywhere_until_the_janitor_removes_the_object() {
    let env =
        env(json!({ "k8s": { "inject-finalizer": true }, "tasks": { "retention-seconds": 0 } }))
            .await;
    let apps = testkit::spark_apps(&env.sandbox, NS);
    let meta = launch(&env.replicas[0], create(spark(), "done", 0, "succeed")).await;
    let (done, _) = until(&env, &meta, phase(Phase::Succeeded)).await;
    // Every later GetTask, on either replica, gives the same answer.
    for replica in &env.replicas {
        for _ in 0..3 {
            let again = get(replica, &meta).await;
            assert_eq!(again.phase, done.phase);
            assert_eq!(again.message, done.message);
        }
    }
    let app = apps.get("done-n0-0").await.unwrap();
    let labels = app.metadata.labels.unwrap();
    assert_eq!(labels["flytewasm.io/finished"], "true");
    assert!(
        app.metadata.finalizers.unwrap_or_default().is_empty(),
        "released"
    );

    let plugins = [testkit::plugin("spark")];
    let deleted = env.replicas[1].service().tasks().sweep(&plugins).await;
    assert_eq!(deleted, 1);
    assert!(apps.get_opt("done-n0-0").await.unwrap().is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_janitor_keeps_finished_objects_within_retention() {
    let env = env(json!({ "tasks": { "retention-seconds": 3600 } })).await;
    let meta = launch(&env.replicas[0], create(spark(), "kept", 0, "succeed")).await;
    until(&env, &meta, phase(Phase::Succeeded)).await;
    // Marked finished (what the janitor lists), and still kept.
    let apps = testkit::spark_apps(&env.sandbox, NS);
    finished_within(&apps, "kept-n0-0", Duration::from_secs(10)).await;
    let deleted = env.replicas[0]
        .service()
        .tasks()
        .sweep(&[testkit::plugin("spark")])
        .await;
    assert_eq!(deleted, 0);
    assert!(apps.get_opt("kept-n0-0").await.unwrap().is_some());
    let again = get(&env.replicas[1], &meta).await;
    assert_eq!(again.phase, Phase::Succeeded as i32);
}

/// A look at an object that has not changed since a look that answered the
/// same is answered again without reading it or calling the plugin; a
/// change to the object is seen at once. No look writes to a young object.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unchanged_object_is_answered_again_and_a_change_is_seen() {
    let env = env(json!({})).await;
    let replica = &env.replicas[0..1];
    let meta = launch(&replica[0], create(spark(), "steady", 0, "run-forever")).await;
    until_on(replica, &meta, phase(Phase::Running)).await;
    let settled = || {
        let text = replica[0].service().metrics().encode();
        text.lines()
            .find_map(|l| {
                l.strip_prefix("flytewasm_settled_looks_total ")?
                    .parse::<u64>()
                    .ok()
            })
            .unwrap_or(0)
    };
    // Once a look answers what the one before did, looks repeat it.
    eventually("looks are answered again", || async {
        get(&replica[0], &meta).await;
        settled() >= 3
    })
    .await;
    assert_eq!(get(&replica[0], &meta).await.phase, Phase::Running as i32);
    // Confirming the launch waits for half of `unconfirmed-abort-seconds`
    // (an hour): a task that ends sooner never costs that write.
    let apps = testkit::spark_apps(&env.sandbox, NS);
    let labels = apps.get("steady-n0-0").await.unwrap().metadata.labels;
    assert_eq!(labels.unwrap()["flytewasm.io/unconfirmed"], "true");

    let done = json!({ "status": { "applicationState": { "state": "COMPLETED" } } });
    apps.patch_status(
        "steady-n0-0",
        &kube::api::PatchParams::default(),
        &kube::api::Patch::Merge(&done),
    )
    .await
    .unwrap();
    until_on(replica, &meta, phase(Phase::Succeeded)).await;
}

/// The janitor reads what it sweeps a page at a time: more finished
/// objects than one page holds are all collected.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_janitor_sweeps_more_objects_than_one_page_holds() {
    let env = env(json!({ "tasks": { "retention-seconds": 0 } })).await;
    let apps = testkit::spark_apps(&env.sandbox, NS);
    let count = flytewasm::cluster::LIST_PAGE as usize + 3;
    for i in 0..count {
        let finished: DynamicObject = serde_json::from_value(json!({
            "apiVersion": "sparkoperator.k8s.io/v1beta2", "kind": "SparkApplication",
            "metadata": {
                "name": format!("finished-{i}"),
                "labels": { "app.kubernetes.io/managed-by": "flytewasm", "flytewasm.io/finished": "true" },
                "annotations": { "flytewasm.io/finished-at": "2026-01-01T00:00:00Z" },
            },
            "spec": {},
        }))
        .unwrap();
        apps.create(&PostParams::default(), &finished)
            .await
            .unwrap();
    }
    let swept = env.replicas[0]
        .service()
        .tasks()
        .sweep(&[testkit::plugin("spark")])
        .await;
    assert_eq!(swept, count);
    assert!(
        apps.list(&Default::default())
            .await
            .unwrap()
            .items
            .is_empty()
    );
}

/// Wait until the object is labelled finished (its end recorded).
async fn finished_within(apps: &kube::Api<DynamicObject>, name: &str, within: Duration) {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let app = apps.get(name).await.unwrap();
        if app
            .metadata
            .labels
            .is_some_and(|l| l.get("flytewasm.io/finished").is_some_and(|v| v == "true"))
        {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{name} was not marked finished within {within:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_end_write_that_fails_is_tried_again_without_another_get_task() {
    let env = env(json!({})).await;
    let apps = testkit::spark_apps(&env.sandbox, NS);
    let meta = launch(&env.replicas[0], create(spark(), "unmarked", 0, "succeed")).await;
    // Marking the object finished fails for longer than the client retries.
    env.sandbox
        .faults()
        .fail_next_on("patch", "sparkapplications", 500, 14);
    until(&env, &meta, phase(Phase::Succeeded)).await;
    // Propeller asks nothing more after success: the mark lands anyway.
    finished_within(&apps, "unmarked-n0-0", Duration::from_secs(60)).await;
    let served = env.sandbox.faults().errors_served();
    assert_eq!(served.get("patch 500"), Some(&14), "{served:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_task_answers_within_propellers_deadline_while_the_api_does_not() {
    let env = env(json!({})).await;
    // The object is not there yet and the API takes 5 s per answer: the
    // replica that did not accept the task must read the API (the object,
    // the records), and answers before propeller's deadline anyway.
    env.sandbox.faults().set_latency(Duration::from_secs(5));
    let meta = launch(
        &env.replicas[0],
        create(spark(), "unanswered", 0, "succeed"),
    )
    .await;
    for _ in 0..2 {
        let answer = tokio::time::timeout(PROPELLER_DEADLINE, get(&env.replicas[1], &meta))
            .await
            .expect("GetTask answered within propeller's deadline");
        assert_eq!(answer.phase, Phase::Queued as i32, "{}", answer.message);
    }
    assert!(
        env.replicas[1]
            .service()
            .tasks()
            .failing(&flytewasm::task_service::decode_meta(&meta, &env.keys).unwrap()),
        "a look that ran out of time counts as failed"
    );
    env.sandbox.faults().clear();
    let (done, phases) = until(&env, &meta, phase(Phase::Succeeded)).await;
    assert_eq!(done.phase, Phase::Succeeded as i32, "{phases:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_killed_during_a_slow_create_leaves_the_launch_to_another() {
    let env = env(json!({})).await;
    // Creates of the kind keep failing (a webhook timing out, say): the
    // first try outlasts the answer, the client retrying for seconds.
    env.sandbox
        .faults()
        .fail_next_on("create", "sparkapplications", 503, 1000);
    let meta = accepted_by_a_replica_that_dies(&env, create(spark(), "mid-create", 0, "succeed"));
    env.sandbox.faults().clear();
    let apps = testkit::spark_apps(&env.sandbox, NS);
    assert!(apps.get_opt("mid-create-n0-0").await.unwrap().is_none());
    // The launch was recorded while the try was still going: the surviving
    // replica carries it on.
    let (done, phases) = until(&env, &meta, phase(Phase::Succeeded)).await;
    assert_eq!(done.phase, Phase::Succeeded as i32, "{phases:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plugin_that_fails_to_look_is_retried_then_fails_the_task_and_cleans_up() {
    let env = env(json!({ "tasks": { "max-consecutive-failures": 3 } })).await;
    let meta = launch(
        &env.replicas[0],
        create(testing("phase-panic"), "flaky", 0, ""),
    )
    .await;
    // The first failed looks report the last known phase, not a failure.
    let first = get(&env.replicas[0], &meta).await;
    assert_eq!(first.phase, Phase::Queued as i32, "{}", first.message);
    let second = get(&env.replicas[0], &meta).await;
    assert_eq!(second.phase, Phase::Queued as i32);
    let third = get(&env.replicas[0], &meta).await;
    assert_eq!(
        third.phase,
        Phase::RetryableFailed as i32,
        "{}",
        third.message
    );
    assert_eq!(third.agent_error.unwrap().code, "SystemFailure");
    assert!(
        third.message.contains("asked to panic"),
        "{}",
        third.message
    );
    // Cleaned up, and the other replica says the same.
    let configmaps = testkit::objects(&env.sandbox, NS, "v1", "ConfigMap", "configmaps");
    let mut gone = false;
    for _ in 0..100 {
        if configmaps.get_opt("flaky-n0-0").await.unwrap().is_none() {
            gone = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(gone, "the object was deleted");
    let elsewhere = get(&env.replicas[1], &meta).await;
    assert_eq!(elsewhere.phase, Phase::RetryableFailed as i32);
    assert_eq!(elsewhere.message, third.message);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failure_that_asks_for_cleanup_keeps_its_answer_in_a_record() {
    let env = env(json!({})).await;
    let meta = launch(
        &env.replicas[0],
        create(testing("fail-with-cleanup"), "pull", 0, ""),
    )
    .await;
    let (failed, _) = until(&env, &meta, phase(Phase::RetryableFailed)).await;
    let configmaps = testkit::objects(&env.sandbox, NS, "v1", "ConfigMap", "configmaps");
    for _ in 0..100 {
        if configmaps.get_opt("pull-n0-0").await.unwrap().is_none() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        configmaps.get_opt("pull-n0-0").await.unwrap().is_none(),
        "cleaned up"
    );
    for replica in &env.replicas {
        let again = get(replica, &meta).await;
        assert_eq!(again.phase, Phase::RetryableFailed as i32);
        assert_eq!(again.message, failed.message);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_abort_before_a_slow_launch_lands_leaves_nothing_running() {
    let env = env(json!({})).await;
    env.sandbox.faults().set_latency(Duration::from_secs(2));
    let meta = launch(&env.replicas[0], create(spark(), "early", 0, "run-forever")).await;
    // The abort reaches the other replica while the create is still in flight.
    env.replicas[1]
        .delete_task(Request::new(DeleteTaskRequest {
            resource_meta: meta.clone(),
            ..Default::default()
        }))
        .await
        .unwrap();
    env.sandbox.faults().clear();
    let (aborted, _) = until(&env, &meta, phase(Phase::Failed)).await;
    assert_eq!(aborted.agent_error.unwrap().code, "Aborted");
    let apps = testkit::spark_apps(&env.sandbox, NS);
    for _ in 0..200 {
        let live = apps.get_opt("early-n0-0").await.unwrap();
        if live.is_none_or(|o| o.metadata.deletion_timestamp.is_some()) {
            tokio::time::sleep(Duration::from_secs(1)).await;
            let later = apps.get_opt("early-n0-0").await.unwrap();
            assert!(later.is_none_or(|o| o.metadata.deletion_timestamp.is_some()));
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the aborted task's object is still running");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watches_cache_only_our_objects_without_managed_fields() {
    let env = env(json!({})).await;
    let apps = testkit::spark_apps(&env.sandbox, NS);
    for i in 0..50 {
        let foreign: DynamicObject = serde_json::from_value(json!({
            "apiVersion": "sparkoperator.k8s.io/v1beta2", "kind": "SparkApplication",
            "metadata": { "name": format!("foreign-{i}"), "annotations": { "bulk": "x".repeat(10_000) } },
            "spec": {},
        }))
        .unwrap();
        apps.create(&PostParams::default(), &foreign).await.unwrap();
    }
    let meta = launch(&env.replicas[0], create(spark(), "ours", 0, "run-forever")).await;
    until(&env, &meta, phase(Phase::Running)).await;
    let cluster = env.replicas[0].service().executor().cluster();
    assert_eq!(cluster.cached_objects(), 1, "only our object is cached");
    // The API server keeps who wrote what; the cached copy does not.
    let kind = flytewasm::executor::lifecycle::plugin_kind(&testkit::plugin("spark"));
    let stored = cluster
        .get_from_api(&kind, NS, "ours-n0-0")
        .await
        .unwrap()
        .unwrap();
    assert!(stored["metadata"]["managedFields"].is_array(), "{stored}");
    let cached = cluster.get(&kind, NS, "ours-n0-0").await.unwrap().unwrap();
    assert!(cached["metadata"]["managedFields"].is_null(), "{cached}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_launch_whose_replica_died_is_carried_on_by_another() {
    let env = env(json!({})).await;
    room_for_one_app(&env).await;
    let holder = launch(
        &env.replicas[1],
        create(spark(), "holder", 0, "run-forever"),
    )
    .await;
    until(&env, &holder, phase(Phase::Running)).await;

    // A replica on its own runtime accepts the task, waits on the quota a
    // moment (recording the launch), and dies with its runtime.
    let meta = accepted_by_a_replica_that_dies(&env, create(spark(), "orphaned", 0, "succeed"));
    let apps = testkit::spark_apps(&env.sandbox, NS);
    assert!(apps.get_opt("orphaned-n0-0").await.unwrap().is_none());

    // The surviving replica carries the launch on: waiting, then running
    // once the quota has room.
    let (waiting, _) = until(&env, &meta, |r| {
        r.phase == Phase::WaitingForResources as i32
    })
    .await;
    assert!(
        waiting.message.contains("exceeded quota"),
        "{}",
        waiting.message
    );
    env.replicas[1]
        .delete_task(Request::new(DeleteTaskRequest {
            resource_meta: holder,
            ..Default::default()
        }))
        .await
        .unwrap();
    let (done, phases) = until(&env, &meta, phase(Phase::Succeeded)).await;
    assert_eq!(done.phase, Phase::Succeeded as i32, "{phases:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_that_never_saw_the_object_knows_it_was_deleted() {
    let env = env(json!({})).await;
    let meta = launch(&env.replicas[0], create(spark(), "lost", 0, "run-forever")).await;
    until(&env, &meta, phase(Phase::Running)).await;
    let apps = testkit::spark_apps(&env.sandbox, NS);
    apps.delete("lost-n0-0", &Default::default()).await.unwrap();
    eventually("the object is gone", || async {
        apps.get_opt("lost-n0-0").await.unwrap().is_none()
    })
    .await;
    // A third replica, which never looked at the task: the object existed
    // when CreateTask answered, so it is gone, not still to be created.
    let fresh = replica(&env.sandbox, &env.config, &env.keys);
    let answer = get(&fresh, &meta).await;
    assert_eq!(
        answer.phase,
        Phase::RetryableFailed as i32,
        "{}",
        answer.message
    );
    assert_eq!(
        answer.agent_error.unwrap().code,
        "ResourceDeletedExternally"
    );
    let seen = get(&env.replicas[0], &meta).await;
    assert_eq!(seen.message, answer.message);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn while_the_object_goes_every_replica_answers_from_the_outcome_record() {
    let env = env(json!({ "tasks": { "max-consecutive-failures": 2 } })).await;
    let meta = launch(
        &env.replicas[0],
        create(testing("phase-panic"), "held", 0, ""),
    )
    .await;
    // Someone else's finalizer keeps the object while it is deleted.
    let configmaps = testkit::objects(&env.sandbox, NS, "v1", "ConfigMap", "configmaps");
    let hold = json!({ "metadata": { "finalizers": ["example.com/hold"] } });
    configmaps
        .patch(
            "held-n0-0",
            &kube::api::PatchParams::default(),
            &kube::api::Patch::Merge(&hold),
        )
        .await
        .unwrap();
    // Two failed looks on one replica fail the task, which is cleaned up.
    get(&env.replicas[0], &meta).await;
    let failed = get(&env.replicas[0], &meta).await;
    assert_eq!(
        failed.phase,
        Phase::RetryableFailed as i32,
        "{}",
        failed.message
    );
    eventually("the cleanup deleted the object", || async {
        let object = configmaps.get("held-n0-0").await.unwrap();
        object.metadata.deletion_timestamp.is_some()
    })
    .await;
    // The other replica has not counted a failed look of its own: it
    // answers what the first did, not the last phase it knows.
    let elsewhere = get(&env.replicas[1], &meta).await;
    assert_eq!(elsewhere.phase, failed.phase, "{}", elsewhere.message);
    assert_eq!(elsewhere.message, failed.message);
    assert_eq!(elsewhere.agent_error.unwrap().code, "SystemFailure");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_launch_that_cannot_land_by_its_deadline_fails_retryable() {
    let env = env(json!({ "tasks": { "launch-deadline-seconds": 2 } })).await;
    room_for_one_app(&env).await;
    let holder = launch(&env.replicas[0], create(spark(), "first", 0, "run-forever")).await;
    until(&env, &holder, phase(Phase::Running)).await;
    let meta = launch(&env.replicas[0], create(spark(), "second", 0, "succeed")).await;
    let (failed, phases) = until(&env, &meta, phase(Phase::RetryableFailed)).await;
    assert!(
        phases.contains(&(Phase::WaitingForResources as i32)),
        "{phases:?}"
    );
    assert_eq!(failed.agent_error.unwrap().code, "LaunchDeadlineExceeded");
    assert!(
        failed.message.contains("exceeded quota"),
        "{}",
        failed.message
    );
    let apps = testkit::spark_apps(&env.sandbox, NS);
    assert!(apps.get_opt("second-n0-0").await.unwrap().is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_janitor_removes_the_host_s_records_and_idle_watches() {
    let env = env(json!({
        "tasks": { "retention-seconds": 0, "launch-deadline-seconds": 1 }
    }))
    .await;
    let meta = launch(
        &env.replicas[0],
        create(testing("fail-with-cleanup"), "recorded", 0, ""),
    )
    .await;
    until(&env, &meta, phase(Phase::RetryableFailed)).await;
    let tasks = env.replicas[0].service().tasks();
    let records = testkit::objects(
        &env.sandbox,
        tasks.records().namespace(),
        "v1",
        "ConfigMap",
        "configmaps",
    );
    let ours = kube::api::ListParams::default().labels("flytewasm.io/record");
    eventually("an outcome record is kept", || async {
        !records.list(&ours).await.unwrap().items.is_empty()
    })
    .await;
    let kept = records.list(&ours).await.unwrap().items.len();
    assert_eq!(kept, 1, "the outcome record");
    // A launch record whose drop failed, from an earlier run.
    let stale = json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {
            "name": "launch-stale",
            "labels": { "app.kubernetes.io/managed-by": "flytewasm", "flytewasm.io/record": "launch" },
            "annotations": { "flytewasm.io/finished-at": "2020-01-01T00:00:00Z" },
        },
    });
    records
        .create(
            &PostParams::default(),
            &serde_json::from_value(stale).unwrap(),
        )
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let plugins = [testkit::plugin("testing")];
    tasks.sweep(&plugins).await;
    assert!(records.list(&ours).await.unwrap().items.is_empty());

    let cluster = tasks.executor().cluster();
    assert!(cluster.open_watches() > 0);
    cluster.stop_idle_watches(Duration::ZERO);
    assert_eq!(cluster.open_watches(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_object_nobody_asks_about_is_aborted_by_the_janitor() {
    let env = env(json!({ "tasks": { "unconfirmed-abort-seconds": 1 } })).await;
    // Propeller lost this CreateTask's answer and then aborted the node:
    // no GetTask or DeleteTask will ever come for it.
    let lost = launch(&env.replicas[0], create(spark(), "lost", 0, "run-forever")).await;
    // This one propeller has: it asks.
    let kept = launch(&env.replicas[0], create(spark(), "kept", 0, "run-forever")).await;
    until(&env, &kept, phase(Phase::Running)).await;
    let apps = testkit::spark_apps(&env.sandbox, NS);
    // Propeller keeps asking: a GetTask past half the window confirms it.
    eventually("a GetTask confirms the launch", || async {
        get(&env.replicas[0], &kept).await;
        let labels = apps
            .get("kept-n0-0")
            .await
            .unwrap()
            .metadata
            .labels
            .unwrap();
        !labels.contains_key("flytewasm.io/unconfirmed")
    })
    .await;
    let unasked = apps.get("lost-n0-0").await.unwrap();
    assert_eq!(
        unasked.metadata.labels.unwrap()["flytewasm.io/unconfirmed"],
        "true"
    );

    tokio::time::sleep(Duration::from_millis(1100)).await;
    let tasks = env.replicas[1].service().tasks();
    let swept = tasks.sweep(&[testkit::plugin("spark")]).await;
    assert_eq!(swept, 1, "only the object nobody asked about");
    let left = apps.get_opt("lost-n0-0").await.unwrap();
    assert!(
        left.is_none_or(|o| o.metadata.deletion_timestamp.is_some()),
        "aborted"
    );
    let running = apps.get("kept-n0-0").await.unwrap();
    assert!(
        running.metadata.deletion_timestamp.is_none(),
        "the asked-about one runs on"
    );
    // A GetTask that comes after all gets a clear, retryable answer.
    let late = get(&env.replicas[0], &lost).await;
    assert_eq!(
        late.phase,
        Phase::RetryableFailed as i32,
        "{}",
        late.message
    );
    assert_eq!(late.agent_error.unwrap().code, "UnconfirmedLaunch");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_launch_with_no_record_left_is_over_a_minute_on() {
    let env = env(json!({})).await;
    // A task whose launch was still going when CreateTask answered (so its
    // meta does not say the object existed), and whose object is gone.
    let meta = launch(
        &env.replicas[0],
        create(spark(), "unsure", 0, "run-forever"),
    )
    .await;
    until(&env, &meta, phase(Phase::Running)).await;
    let apps = testkit::spark_apps(&env.sandbox, NS);
    apps.delete("unsure-n0-0", &Default::default())
        .await
        .unwrap();
    eventually("the object is gone", || async {
        apps.get_opt("unsure-n0-0").await.unwrap().is_none()
    })
    .await;
    let ticket = |accepted_ago: i64| {
        let mut ticket = flytewasm::task_service::decode_meta(&meta, &env.keys).unwrap();
        ticket.launched = false;
        ticket.accepted_at = chrono::Utc::now().timestamp() - accepted_ago;
        flytewasm::task_service::encode_meta(&ticket, &env.keys).unwrap()
    };
    // Within a minute of CreateTask, a launch record may still be on its way.
    let fresh = replica(&env.sandbox, &env.config, &env.keys);
    let early = get(&fresh, &ticket(5)).await;
    assert_eq!(early.phase, Phase::Queued as i32, "{}", early.message);
    // Past it, no record means the launch is over: the object was made and is gone.
    let other = replica(&env.sandbox, &env.config, &env.keys);
    let late = get(&other, &ticket(120)).await;
    assert_eq!(
        late.phase,
        Phase::RetryableFailed as i32,
        "{}",
        late.message
    );
    assert_eq!(late.agent_error.unwrap().code, "ResourceDeletedExternally");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_janitor_finishes_an_unconfirmed_object_its_plugin_patches() {
    let env = env(json!({ "tasks": { "unconfirmed-abort-seconds": 1 } })).await;
    launch(
        &env.replicas[0],
        create(testing("patch-on-abort"), "patched", 0, ""),
    )
    .await;
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let tasks = env.replicas[1].service().tasks();
    let plugins = [testkit::plugin("testing")];
    assert_eq!(tasks.sweep(&plugins).await, 1);
    let configmaps = testkit::objects(&env.sandbox, NS, "v1", "ConfigMap", "configmaps");
    let object = configmaps.get("patched-n0-0").await.unwrap();
    let labels = object.metadata.labels.unwrap();
    assert_eq!(labels["flytewasm.io/finished"], "true", "marked ended");
    assert_eq!(labels["flytewasm.io/unconfirmed"], "true");
    // Not aborted again on the next round.
    assert_eq!(tasks.sweep(&plugins).await, 0);
}

/// Three replicas split the objects between their watch caches (propeller
/// round-robins among them): each caches only its shard's objects, and
/// every replica answers for every task, reading the others' objects from
/// the API server.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sharded_replicas_cache_their_share_and_answer_every_task() {
    let env = env(json!({})).await;
    let replicas: Vec<AgentService> = (0..3)
        .map(|i| {
            let shard = Shard::new(i, 3).unwrap();
            sharded_replica(&env.sandbox, &env.config, &env.keys, shard)
        })
        .collect();
    let mut metas = Vec::new();
    for i in 0..12 {
        let request = create(spark(), &format!("shard{i}"), 0, "run-forever");
        metas.push(launch(&replicas[i % 3], request).await);
    }
    // Each replica is asked about every task, as round robin does.
    for round in 0..3 {
        for (i, meta) in metas.iter().enumerate() {
            let replica = &replicas[(i + round) % 3];
            until_on(std::slice::from_ref(replica), meta, |r| {
                r.phase == Phase::Running as i32
            })
            .await;
        }
    }
    let apps = testkit::spark_apps(&env.sandbox, NS)
        .list(&Default::default())
        .await
        .unwrap();
    assert_eq!(apps.items.len(), 12);
    let mut per_shard = [0; 3];
    for app in &apps.items {
        let name = app.metadata.name.as_deref().unwrap();
        let key = Shard::key_of(name);
        assert_eq!(
            app.metadata.labels.as_ref().unwrap()[SHARD_LABEL],
            key.to_string()
        );
        let owner = (0..3)
            .find(|i| Shard::new(*i, 3).unwrap().owns(name))
            .unwrap();
        per_shard[owner as usize] += 1;
    }
    for (i, replica) in replicas.iter().enumerate() {
        let cluster = replica.service().executor().cluster();
        assert_eq!(
            cluster.cached_objects(),
            per_shard[i],
            "replica {i} caches its share only: {per_shard:?}"
        );
    }
    assert_eq!(per_shard.iter().sum::<usize>(), 12);
}

/// With shards, each replica's janitor collects its own share of the
/// finished objects, and the first shard's also the objects with no shard
/// key (made by an older release): nothing is left to nobody.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_shard_s_janitor_collects_its_share_and_the_first_the_unkeyed() {
    let env = env(json!({ "tasks": { "retention-seconds": 0 } })).await;
    let replicas: Vec<AgentService> = (0..2)
        .map(|i| {
            sharded_replica(
                &env.sandbox,
                &env.config,
                &env.keys,
                Shard::new(i, 2).unwrap(),
            )
        })
        .collect();
    let apps = testkit::spark_apps(&env.sandbox, NS);
    let mut names = Vec::new();
    for i in 0..6 {
        let meta = launch(
            &replicas[i % 2],
            create(spark(), &format!("swept{i}"), 0, "succeed"),
        )
        .await;
        until_on(&replicas[i % 2..=i % 2], &meta, |r| {
            r.phase == Phase::Succeeded as i32
        })
        .await;
        let name = format!("swept{i}-n0-0");
        finished_within(&apps, &name, Duration::from_secs(10)).await;
        names.push(name);
    }
    // Finished under an older release: managed, no shard key.
    let old: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "sparkoperator.k8s.io/v1beta2", "kind": "SparkApplication",
        "metadata": {
            "name": "older-release",
            "labels": { "app.kubernetes.io/managed-by": "flytewasm", "flytewasm.io/finished": "true" },
            "annotations": { "flytewasm.io/finished-at": "2026-01-01T00:00:00Z" },
        },
        "spec": {},
    }))
    .unwrap();
    apps.create(&PostParams::default(), &old).await.unwrap();
    let second: Vec<&String> = names
        .iter()
        .filter(|n| Shard::new(1, 2).unwrap().owns(n))
        .collect();

    let plugins = [testkit::plugin("spark")];
    let swept = replicas[1].service().tasks().sweep(&plugins).await;
    assert_eq!(
        swept,
        second.len(),
        "the second shard collects its own share"
    );
    assert!(apps.get_opt("older-release").await.unwrap().is_some());
    let swept = replicas[0].service().tasks().sweep(&plugins).await;
    assert_eq!(
        swept,
        names.len() - second.len() + 1,
        "the first: its share and the unkeyed"
    );
    let left = apps.list(&Default::default()).await.unwrap();
    assert!(
        left.items.is_empty(),
        "nothing left: {:?}",
        left.items
            .iter()
            .map(|o| &o.metadata.name)
            .collect::<Vec<_>>()
    );
}
