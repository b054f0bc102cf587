//! The agent service against the lifecycle engine and the embedded
//! sandbox: what each RPC answers, and which gRPC status each kind of
//! failure becomes (a caller's mistake is never INTERNAL).

use std::sync::Arc;
use std::time::Duration;

use flytewasm::agent::AgentService;
use flytewasm::cluster::Cluster;
use flytewasm::executor::{Executor, Tasks};
use flytewasm::metrics::Metrics;
use flytewasm::registry::{LivePlugins, Registry};
use flytewasm::sandbox::{Sandbox, SandboxConfig};
use flytewasm::task_service::{MetaKeys, TaskService, decode_meta, encode_meta};
use flytewasm::testkit;
use flytewasm_proto::flyteidl::admin::{
    CreateTaskRequest, DeleteTaskRequest, GetTaskLogsRequest, GetTaskMetricsRequest,
    GetTaskRequest, Resource, agent_error,
};
use flytewasm_proto::flyteidl::core::{TaskTemplate, task_execution};
use flytewasm_proto::flyteidl::service::async_agent_service_server::AsyncAgentService;
use serde_json::json;
use tonic::{Code, Request};

const NS: &str = "agent-tests";

struct Env {
    sandbox: Sandbox,
    service: AgentService,
    keys: MetaKeys,
}

async fn env() -> Env {
    let sandbox = Sandbox::start(SandboxConfig {
        step: Duration::from_millis(50),
        ..Default::default()
    })
    .await
    .unwrap();
    let cluster = Cluster::new(sandbox.client().unwrap());
    let tasks = Tasks::new(Executor::new(Arc::new(cluster), Arc::default()));
    let registry =
        Registry::from_plugins(vec![testkit::plugin("spark"), testkit::plugin("testing")]).unwrap();
    let keys = MetaKeys::ephemeral();
    let service = AgentService::new(TaskService::new(
        tasks,
        LivePlugins::fixed(registry),
        Arc::new(Metrics::default()),
        keys.clone(),
        false,
    ));
    Env {
        sandbox,
        service,
        keys,
    }
}

/// CreateTask through `service`: the resource_meta it answered.
async fn launched(service: &AgentService, template: TaskTemplate, execution: &str) -> Vec<u8> {
    service
        .create_task(Request::new(create(template, execution)))
        .await
        .unwrap()
        .into_inner()
        .resource_meta
}

fn create(template: TaskTemplate, execution: &str) -> CreateTaskRequest {
    testkit::create_request(template, NS, execution, 0, &[])
}

fn testing(behaviour: &str) -> TaskTemplate {
    TaskTemplate {
        r#type: "testing".into(),
        custom: Some(serde_json::from_value(json!({ "behaviour": behaviour })).unwrap()),
        ..Default::default()
    }
}

fn get(meta: &[u8]) -> Request<GetTaskRequest> {
    Request::new(GetTaskRequest {
        resource_meta: meta.to_vec(),
        ..Default::default()
    })
}

async fn status_of<T: std::fmt::Debug>(
    result: Result<tonic::Response<T>, tonic::Status>,
) -> tonic::Status {
    result.expect_err("the call should fail")
}

#[tokio::test]
async fn create_then_get_follows_the_object_to_success() {
    let env = env().await;
    let template = testkit::spark_task(NS, "unused").template;
    let meta = launched(&env.service, template, "ok").await;
    let decoded = decode_meta(&meta, &env.keys).unwrap();
    assert_eq!(decoded.plugin_id, "spark");
    assert_eq!(decoded.name, "ok-n0-0");
    assert_eq!(decoded.namespace, NS);

    let mut phases = Vec::new();
    for _ in 0..200 {
        let resource = env
            .service
            .get_task(get(&meta))
            .await
            .unwrap()
            .into_inner()
            .resource
            .unwrap();
        if phases.last() != Some(&resource.phase) {
            phases.push(resource.phase);
        }
        if resource.phase == task_execution::Phase::Succeeded as i32 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        phases.last(),
        Some(&(task_execution::Phase::Succeeded as i32)),
        "{phases:?}"
    );
    assert!(phases.contains(&(task_execution::Phase::Running as i32)));
    let metrics = env.service.service().metrics().encode();
    assert!(metrics.contains(r#"flytewasm_task_phases_total{plugin="spark",phase="SUCCEEDED"}"#));
}

#[tokio::test]
async fn an_unknown_task_type_is_not_found() {
    let env = env().await;
    let mut template = testing("succeed");
    template.r#type = "nope".into();
    let status = status_of(
        env.service
            .create_task(Request::new(create(template, "x")))
            .await,
    )
    .await;
    assert_eq!(status.code(), Code::NotFound);
    assert!(status.message().contains("`nope`"), "{}", status.message());
}

/// Create, then the resource GetTask reports (the first one).
async fn created_then_got(env: &Env, template: TaskTemplate, execution: &str) -> Resource {
    let meta = env
        .service
        .create_task(Request::new(create(template, execution)))
        .await
        .expect("a task that fails at launch is still created, failed")
        .into_inner()
        .resource_meta;
    env.service
        .get_task(get(&meta))
        .await
        .unwrap()
        .into_inner()
        .resource
        .unwrap()
}

#[tokio::test]
async fn a_task_the_plugin_refuses_fails_permanently_naming_the_field() {
    // Not a create error (propeller would retry it): a FAILED task, as
    // Flyte's k8s plugin manager reports a task it cannot build.
    let env = env().await;
    let resource = created_then_got(&env, testing("bad-task"), "bad").await;
    assert_eq!(resource.phase, task_execution::Phase::Failed as i32);
    let error = resource.agent_error.unwrap();
    assert_eq!(error.code, "FailedToBuildResource");
    assert_eq!(error.kind, agent_error::Kind::NonRecoverable as i32);
    assert!(
        resource.message.contains("`bad-task` is not allowed"),
        "{}",
        resource.message
    );

    // A Spark task with a mistyped field: the message names it.
    let mut template = testkit::spark_task(NS, "unused").template;
    template.custom = Some(serde_json::from_value(json!({ "mainApplicationFile": 12 })).unwrap());
    let resource = created_then_got(&env, template, "typo").await;
    assert_eq!(resource.phase, task_execution::Phase::Failed as i32);
    assert!(
        resource.message.contains("mainApplicationFile"),
        "{}",
        resource.message
    );
    assert_eq!(
        env.sandbox.faults().requests("create"),
        0,
        "nothing was created"
    );
}

#[tokio::test]
async fn missing_request_fields_are_invalid_argument() {
    let env = env().await;
    let mut request = create(testing("succeed"), "x");
    request.template = None;
    let status = status_of(env.service.create_task(Request::new(request)).await).await;
    assert_eq!(status.code(), Code::InvalidArgument);
    assert!(
        status.message().starts_with("template:"),
        "{}",
        status.message()
    );

    let mut request = create(testing("succeed"), "x");
    request.task_execution_metadata = None;
    let status = status_of(env.service.create_task(Request::new(request)).await).await;
    assert_eq!(status.code(), Code::InvalidArgument);
    assert!(status.message().starts_with("task_execution_metadata:"));
}

#[tokio::test]
async fn a_plugin_that_crashes_fails_the_task_permanently() {
    let env = env().await;
    let resource = created_then_got(&env, testing("panic"), "boom").await;
    assert_eq!(resource.phase, task_execution::Phase::Failed as i32);
    assert_eq!(resource.agent_error.unwrap().code, "FailedToBuildResource");
    // The plugin, the call and the panic's own words.
    for part in ["testing", "build-resource", "asked to panic"] {
        assert!(resource.message.contains(part), "{}", resource.message);
    }
    let metrics = env.service.service().metrics().encode();
    assert!(
        metrics.contains(r#"flytewasm_plugin_errors_total{plugin="testing"} 1"#),
        "{metrics}"
    );
}

#[tokio::test]
async fn bad_resource_meta_is_invalid_argument_naming_the_field() {
    let env = env().await;
    // Unsigned bytes are refused before they are read; signed ones (as a
    // holder of the key could write) are checked field by field.
    let signed = |bytes: &[u8]| env.keys.sign(bytes);
    for (meta, expected) in [
        (b"".to_vec(), "resource_meta is empty"),
        (b"{not json".to_vec(), "resource_meta is not signed"),
        (
            signed(b"{not json"),
            "resource_meta is not flytewasm's JSON",
        ),
        (signed(br#"{"version": 9}"#), "resource_meta version 9"),
        (
            signed(br#"{"version": 1, "state": {}}"#),
            "resource_meta.state",
        ),
    ] {
        let status = status_of(env.service.get_task(get(&meta)).await).await;
        assert_eq!(status.code(), Code::InvalidArgument, "{}", status.message());
        assert!(
            status.message().starts_with(expected),
            "{expected}: {}",
            status.message()
        );
        let status = status_of(
            env.service
                .delete_task(Request::new(DeleteTaskRequest {
                    resource_meta: meta.clone(),
                    ..Default::default()
                }))
                .await,
        )
        .await;
        assert_eq!(status.code(), Code::InvalidArgument);
    }
}

#[tokio::test]
async fn delete_is_idempotent_and_the_task_then_reads_aborted() {
    let env = env().await;
    let mut request = create(testkit::spark_task(NS, "unused").template, "del");
    request
        .task_execution_metadata
        .as_mut()
        .unwrap()
        .annotations
        .insert("sandbox.flytewasm.io/outcome".into(), "run-forever".into());
    let meta = env
        .service
        .create_task(Request::new(request))
        .await
        .unwrap()
        .into_inner()
        .resource_meta;
    let delete = || {
        Request::new(DeleteTaskRequest {
            resource_meta: meta.clone(),
            ..Default::default()
        })
    };
    env.service.delete_task(delete()).await.unwrap();
    env.service.delete_task(delete()).await.unwrap();
    let resource = env
        .service
        .get_task(get(&meta))
        .await
        .unwrap()
        .into_inner()
        .resource
        .unwrap();
    assert_eq!(resource.phase, task_execution::Phase::Failed as i32);
    assert_eq!(resource.agent_error.unwrap().code, "Aborted");
    let app = testkit::spark_apps(&env.sandbox, NS);
    assert!(app.get_opt("del-n0-0").await.unwrap().is_none(), "deleted");
}

#[tokio::test]
async fn a_task_from_an_unloaded_plugin_is_not_found() {
    let env = env().await;
    let meta = launched(&env.service, testing("succeed"), "gone").await;
    let mut decoded = decode_meta(&meta, &env.keys).unwrap();
    decoded.plugin_id = "retired".into();
    let status = status_of(
        env.service
            .get_task(get(&encode_meta(&decoded, &env.keys).unwrap()))
            .await,
    )
    .await;
    assert_eq!(status.code(), Code::NotFound);
    assert!(
        status.message().contains("`retired`"),
        "{}",
        status.message()
    );
}

/// An API server that fails every create does not fail CreateTask
/// (propeller would start another attempt): the task waits, QUEUED with
/// the reason, and runs once the API answers again.
#[tokio::test]
async fn an_unreachable_cluster_is_waited_for() {
    let env = env().await;
    env.sandbox.faults().fail_next("create", 500, 1000);
    let meta = launched(&env.service, testing("succeed"), "down").await;
    let resource = |meta: Vec<u8>| {
        let service = &env.service;
        async move {
            let answer = service.get_task(get(&meta)).await.unwrap();
            answer.into_inner().resource.unwrap()
        }
    };
    let mut seen = None;
    for _ in 0..600 {
        let now = resource(meta.clone()).await;
        if now.message.contains("waiting to create the object") {
            seen = Some(now);
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut now = seen.expect("GetTask says why it waits");
    assert_eq!(now.phase, task_execution::Phase::Queued as i32);
    env.sandbox.faults().clear();
    for _ in 0..600 {
        now = resource(meta.clone()).await;
        if now.phase == task_execution::Phase::Running as i32 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        now.phase,
        task_execution::Phase::Running as i32,
        "created once the API answers: {}",
        now.message
    );
}

#[tokio::test]
async fn metrics_and_logs_are_unimplemented() {
    let env = env().await;
    let status = status_of(
        env.service
            .get_task_metrics(Request::new(GetTaskMetricsRequest::default()))
            .await,
    )
    .await;
    assert_eq!(status.code(), Code::Unimplemented);
    let status = env
        .service
        .get_task_logs(Request::new(GetTaskLogsRequest::default()))
        .await
        .err()
        .unwrap();
    assert_eq!(status.code(), Code::Unimplemented);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_drains_calls_in_flight() {
    use flytewasm_proto::flyteidl::service::async_agent_service_client::AsyncAgentServiceClient;

    let Env {
        sandbox: _sandbox,
        service,
        keys,
    } = env().await;
    // The plugin spins in get-task-phase until its call deadline (2 s).
    let slow = launched(&service, testing("phase-loop"), "drain").await;
    let _ = keys;

    let grpc = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let http = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = grpc.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(flytewasm::server::serve(
        service.service().clone(),
        grpc,
        http,
        None,
        async {
            let _ = stopped.await;
        },
    ));
    let mut client = AsyncAgentServiceClient::connect(format!("http://{address}"))
        .await
        .unwrap();
    let call = tokio::spawn(async move {
        client
            .get_task(GetTaskRequest {
                resource_meta: slow,
                ..Default::default()
            })
            .await
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.send(()).unwrap();

    let resource = call
        .await
        .unwrap()
        .expect("the call in flight is answered, not cut off")
        .into_inner()
        .resource
        .unwrap();
    // A plugin past its deadline is a look that failed, not the task's end:
    // the last known phase.
    assert_eq!(resource.phase, task_execution::Phase::Queued as i32);
    server.await.unwrap().unwrap();
    assert!(
        tokio::net::TcpStream::connect(address).await.is_err(),
        "still listening after shutdown"
    );
}

#[tokio::test]
async fn resource_meta_pointing_at_another_object_touches_nothing() {
    let env = env().await;
    // Someone else's task, and ours.
    let theirs = launched(&env.service, testing("run"), "theirs").await;
    let ours = launched(&env.service, testing("run"), "ours").await;
    let target = decode_meta(&theirs, &env.keys).unwrap();

    // Our resource_meta, edited to name their object (and then another
    // namespace), and signed again as only a holder of the key could: even
    // a signed meta cannot point at an object its task does not make.
    let mut forged: serde_json::Value = serde_json::from_slice(meta_json(&ours)).unwrap();
    forged["name"] = target.name.clone().into();
    let mut elsewhere = forged.clone();
    elsewhere["namespace"] = "kube-system".into();
    let deletes_before = env.sandbox.faults().requests("delete");
    for forged in [forged, elsewhere] {
        let bytes = env.keys.sign(forged.to_string().as_bytes());
        refused_by_get_and_delete(&env, bytes, "is not the object of this task").await;
    }
    assert_eq!(
        env.sandbox.faults().requests("delete"),
        deletes_before,
        "nothing deleted"
    );
    // Their task is still there and still theirs.
    let resource = env
        .service
        .get_task(get(&theirs))
        .await
        .unwrap()
        .into_inner()
        .resource
        .unwrap();
    assert_eq!(resource.phase, task_execution::Phase::Running as i32);
}

/// The JSON inside a signed resource_meta (after the key id, before the MAC).
fn meta_json(meta: &[u8]) -> &[u8] {
    let start = meta.iter().position(|b| *b == b'{').unwrap();
    &meta[start..meta.len() - 32]
}

/// GetTask and DeleteTask both refuse `meta` as INVALID_ARGUMENT, saying `expected`.
async fn refused_by_get_and_delete(env: &Env, meta: Vec<u8>, expected: &str) {
    let got = status_of(env.service.get_task(get(&meta)).await).await;
    let deleted = status_of(
        env.service
            .delete_task(Request::new(DeleteTaskRequest {
                resource_meta: meta,
                ..Default::default()
            }))
            .await,
    )
    .await;
    for status in [got, deleted] {
        assert_eq!(status.code(), Code::InvalidArgument, "{}", status.message());
        assert!(status.message().contains(expected), "{}", status.message());
    }
}

/// What an attacker who can reach the port but has no key can do with a
/// genuine resource_meta: edit it consistently (another execution, another
/// namespace, another kind), or replay one from another deployment. Every
/// variant is refused as INVALID_ARGUMENT and nothing in the cluster is
/// written.
#[tokio::test]
async fn forged_or_foreign_resource_meta_is_refused_and_touches_nothing() {
    let env = env().await;
    let genuine = launched(&env.service, testing("run"), "victim").await;
    let payload_at = genuine.iter().position(|b| *b == b'{').unwrap();
    let (header, json_and_tag) = genuine.split_at(payload_at);
    let payload = &json_and_tag[..json_and_tag.len() - 32];
    let tag = &json_and_tag[json_and_tag.len() - 32..];
    let meta: serde_json::Value = serde_json::from_slice(payload).unwrap();

    let mut other_execution = meta.clone();
    other_execution["execution"]["name"] = "someone-else".into();
    other_execution["name"] = "someone-else-n0-0".into();
    let mut other_namespace = meta.clone();
    other_namespace["namespace"] = "kube-system".into();
    let mut other_plugin = meta.clone();
    other_plugin["pluginId"] = "spark".into();
    let mut forgeries: Vec<Vec<u8>> = [other_execution, other_namespace, other_plugin]
        .iter()
        .map(|edited| [header, edited.to_string().as_bytes(), tag].concat())
        .collect();
    // Unsigned JSON, as an older host wrote it.
    forgeries.push(payload.to_vec());
    // A genuine meta of another deployment (another key under the same id).
    let elsewhere = MetaKeys::ephemeral();
    forgeries.push(elsewhere.sign(payload));

    let writes = |env: &Env| {
        ["create", "delete", "patch", "update"]
            .iter()
            .map(|verb| env.sandbox.faults().requests(verb))
            .sum::<u64>()
    };
    let before = writes(&env);
    for bytes in forgeries {
        refused_by_get_and_delete(&env, bytes, "resource_meta").await;
    }
    assert_eq!(writes(&env), before, "a forged meta wrote to the cluster");
    // The genuine one still works.
    assert!(env.service.get_task(get(&genuine)).await.is_ok());
}

/// The namespace policy refuses a task outside it at CreateTask with a
/// permanent failure that says why, and creates nothing.
#[tokio::test]
async fn a_task_outside_the_namespace_policy_fails_and_creates_nothing() {
    let sandbox = Sandbox::start(SandboxConfig::default()).await.unwrap();
    let cluster = Cluster::new(sandbox.client().unwrap());
    let config: flytewasm::config::HostConfig =
        serde_yaml::from_str("security:\n  namespaces: [\"{project}-{domain}\"]\n").unwrap();
    let tasks = Tasks::new(Executor::new(Arc::new(cluster), Arc::new(config)));
    let keys = MetaKeys::ephemeral();
    let service = AgentService::new(TaskService::new(
        tasks,
        LivePlugins::fixed(Registry::from_plugins(vec![testkit::plugin("testing")]).unwrap()),
        Arc::new(Metrics::default()),
        keys.clone(),
        false,
    ));
    let creates = sandbox.faults().requests("create");
    let meta = launched(&service, testing("run"), "elsewhere").await;
    assert_eq!(
        sandbox.faults().requests("create"),
        creates,
        "nothing created"
    );
    let resource = service
        .get_task(get(&meta))
        .await
        .unwrap()
        .into_inner()
        .resource
        .unwrap();
    assert_eq!(resource.phase, task_execution::Phase::Failed as i32);
    assert!(
        resource.message.contains("is not allowed")
            && resource.message.contains("{project}-{domain}"),
        "{}",
        resource.message
    );
}

/// gRPC health (`grpc.health.v1`) follows readiness: SERVING with plugins
/// and a cluster that answers, NOT_SERVING for a replica with no plugin.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_health_follows_readiness() {
    use tonic_health::pb::health_check_response::ServingStatus;
    use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};

    let env = env().await;
    let empty = {
        let cluster = Cluster::new(env.sandbox.client().unwrap());
        AgentService::new(TaskService::new(
            Tasks::new(Executor::new(Arc::new(cluster), Arc::default())),
            LivePlugins::fixed(Registry::from_plugins(Vec::new()).unwrap()),
            Arc::new(Metrics::default()),
            MetaKeys::ephemeral(),
            false,
        ))
    };
    for (service, expected) in [
        (env.service, ServingStatus::Serving),
        (empty, ServingStatus::NotServing),
    ] {
        let grpc = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let http = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = grpc.local_addr().unwrap();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(flytewasm::server::serve(
            service.service().clone(),
            grpc,
            http,
            None,
            async {
                let _ = stopped.await;
            },
        ));
        let channel = tonic::transport::Endpoint::from_shared(format!("http://{address}"))
            .unwrap()
            .connect()
            .await
            .unwrap();
        let mut health = HealthClient::new(channel);
        for name in [
            "",
            "flyteidl.service.AsyncAgentService",
            "flyteidl2.connector.AsyncConnectorService",
        ] {
            let mut status = None;
            for _ in 0..100 {
                let answer = health
                    .check(HealthCheckRequest {
                        service: name.into(),
                    })
                    .await
                    .map(|r| r.into_inner().status());
                status = answer.ok();
                if status == Some(expected) {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            assert_eq!(status, Some(expected), "service `{name}`");
        }
        let _ = stop.send(());
        server.await.unwrap().unwrap();
    }
}
