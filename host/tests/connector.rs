//! Flyte 2's connector services beside Flyte 1's agent services, over one
//! task service on the embedded sandbox: the same task semantics, one
//! `resource_meta` for both, and Flyte 2's message forms.

use std::sync::Arc;
use std::time::Duration;

use flytewasm::agent::AgentService;
use flytewasm::cluster::Cluster;
use flytewasm::connector::ConnectorService;
use flytewasm::executor::{Executor, Tasks};
use flytewasm::metrics::Metrics;
use flytewasm::registry::{LivePlugins, Registry};
use flytewasm::sandbox::{Sandbox, SandboxConfig};
use flytewasm::task_service::{MetaKeys, TaskService};
use flytewasm::testkit;
use flytewasm_proto::flyteidl::admin as v1;
use flytewasm_proto::flyteidl::core::TaskTemplate;
use flytewasm_proto::flyteidl::service::async_agent_service_server::AsyncAgentService;
use flytewasm_proto::flyteidl2::connector as v2;
use flytewasm_proto::flyteidl2::connector::async_connector_service_server::AsyncConnectorService;
use flytewasm_proto::flyteidl2::connector::connector_metadata_service_server::ConnectorMetadataService;
use flytewasm_proto::flyteidl2::core::task_execution::Phase;
use prost::Message;
use serde_json::json;
use tonic::{Code, Request};

const NS: &str = "connector-tests";

struct Env {
    _sandbox: Sandbox,
    service: Arc<TaskService>,
    agent: AgentService,
    connector: ConnectorService,
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
    let service = TaskService::new(
        tasks,
        LivePlugins::fixed(registry),
        Arc::new(Metrics::default()),
        MetaKeys::ephemeral(),
        false,
    );
    Env {
        _sandbox: sandbox,
        agent: AgentService::new(service.clone()),
        connector: ConnectorService::new(service.clone()),
        service,
    }
}

/// The Flyte 2 request for `template`: what Flyte 2's executor sends is
/// the v1 request's bytes (the field numbers are shared), read by v2's types.
fn create(template: TaskTemplate, execution: &str) -> v2::CreateTaskRequest {
    let v1 = testkit::create_request(template, NS, execution, 0, &[]);
    v2::CreateTaskRequest::decode(v1.encode_to_vec().as_slice()).unwrap()
}

fn testing(behaviour: &str) -> TaskTemplate {
    TaskTemplate {
        r#type: "testing".into(),
        custom: Some(serde_json::from_value(json!({ "behaviour": behaviour })).unwrap()),
        ..Default::default()
    }
}

async fn launched(env: &Env, template: TaskTemplate, execution: &str) -> Vec<u8> {
    env.connector
        .create_task(Request::new(create(template, execution)))
        .await
        .unwrap()
        .into_inner()
        .resource_meta
}

async fn v2_resource(env: &Env, meta: &[u8]) -> v2::Resource {
    env.connector
        .get_task(Request::new(v2::GetTaskRequest {
            resource_meta: meta.to_vec(),
            ..Default::default()
        }))
        .await
        .unwrap()
        .into_inner()
        .resource
        .unwrap()
}

async fn v1_resource(env: &Env, meta: &[u8]) -> v1::Resource {
    env.agent
        .get_task(Request::new(v1::GetTaskRequest {
            resource_meta: meta.to_vec(),
            ..Default::default()
        }))
        .await
        .unwrap()
        .into_inner()
        .resource
        .unwrap()
}

/// Polls through Flyte 2's GetTask until a terminal phase.
async fn until_done(env: &Env, meta: &[u8]) -> (v2::Resource, Vec<i32>) {
    let mut phases = Vec::new();
    for _ in 0..300 {
        let resource = v2_resource(env, meta).await;
        if phases.last() != Some(&resource.phase) {
            phases.push(resource.phase);
        }
        if [Phase::Succeeded, Phase::Failed, Phase::RetryableFailed]
            .iter()
            .any(|p| *p as i32 == resource.phase)
        {
            return (resource, phases);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("no terminal phase: {phases:?}");
}

#[tokio::test]
async fn list_and_get_connectors_advertise_every_plugin() {
    let env = env().await;
    let listed = env
        .connector
        .list_connectors(Request::new(v2::ListConnectorsRequest {}))
        .await
        .unwrap()
        .into_inner()
        .connectors;
    let spark = listed.iter().find(|c| c.name == "spark").expect("spark");
    assert!(
        spark
            .supported_task_categories
            .iter()
            .any(|c| c.name == "spark" && c.version == 0),
        "{spark:?}"
    );
    assert!(listed.iter().any(|c| c.name == "testing"));
    let got = env
        .connector
        .get_connector(Request::new(v2::GetConnectorRequest {
            name: "spark".into(),
        }))
        .await
        .unwrap()
        .into_inner()
        .connector
        .unwrap();
    assert_eq!(&got, spark);
    let missing = env
        .connector
        .get_connector(Request::new(v2::GetConnectorRequest {
            name: "nope".into(),
        }))
        .await
        .unwrap_err();
    assert_eq!(missing.code(), Code::NotFound);
    assert!(missing.message().contains("spark"), "{}", missing.message());
}

#[tokio::test]
async fn a_spark_task_runs_to_success_through_flyte_2s_protocol() {
    let env = env().await;
    let meta = launched(&env, testkit::spark_task(NS, "unused").template, "v2ok").await;
    let (done, phases) = until_done(&env, &meta).await;
    assert_eq!(done.phase, Phase::Succeeded as i32, "{phases:?}");
    assert!(phases.contains(&(Phase::Running as i32)), "{phases:?}");
    let metrics = env.service.metrics().encode();
    assert!(
        metrics.contains(
            r#"flytewasm_calls_total{protocol="connector",rpc="CreateTask",plugin="spark",code="Ok"} 1"#
        ),
        "{metrics}"
    );
}

/// A failure is the phase and the message (v2's Resource has no
/// agent_error): retryable or permanent as through the agent protocol.
#[tokio::test]
async fn failures_reach_flyte_2_as_phase_and_message() {
    let env = env().await;
    for (behaviour, phase, message) in [
        (
            "fail-with-cleanup",
            Phase::RetryableFailed,
            "the image cannot be pulled",
        ),
        ("bad-task", Phase::Failed, "is not allowed"),
    ] {
        let meta = launched(&env, testing(behaviour), behaviour).await;
        let (done, _) = until_done(&env, &meta).await;
        assert_eq!(done.phase, phase as i32, "{behaviour}: {done:?}");
        assert!(done.message.contains(message), "{behaviour}: {done:?}");
        let v1 = v1_resource(&env, &meta).await;
        assert_eq!((v1.phase, v1.message), (done.phase, done.message));
    }
}

/// One resource_meta: a task created by either protocol is read and
/// aborted through the other.
#[tokio::test]
async fn either_protocol_answers_for_the_others_task() {
    let env = env().await;
    let by_v1 = env
        .agent
        .create_task(Request::new(testkit::create_request(
            testing("run"),
            NS,
            "byv1",
            0,
            &[],
        )))
        .await
        .unwrap()
        .into_inner()
        .resource_meta;
    let by_v2 = launched(&env, testing("run"), "byv2").await;
    for meta in [&by_v1, &by_v2] {
        let mut running = false;
        for _ in 0..200 {
            let (a, b) = (v1_resource(&env, meta).await, v2_resource(&env, meta).await);
            assert_eq!(a.phase, b.phase);
            if b.phase == Phase::Running as i32 {
                running = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(running);
    }
    env.connector
        .delete_task(Request::new(v2::DeleteTaskRequest {
            resource_meta: by_v1.clone(),
            ..Default::default()
        }))
        .await
        .unwrap();
    env.agent
        .delete_task(Request::new(v1::DeleteTaskRequest {
            resource_meta: by_v2.clone(),
            ..Default::default()
        }))
        .await
        .unwrap();
    // DeleteTask is idempotent through either protocol.
    for meta in [&by_v1, &by_v2] {
        env.connector
            .delete_task(Request::new(v2::DeleteTaskRequest {
                resource_meta: meta.clone(),
                ..Default::default()
            }))
            .await
            .unwrap();
    }
}

#[tokio::test]
async fn callers_mistakes_are_named() {
    let env = env().await;
    let unknown = TaskTemplate {
        r#type: "no-such-type".into(),
        ..Default::default()
    };
    let status = env
        .connector
        .create_task(Request::new(create(unknown, "unknown")))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::NotFound);
    assert!(
        status.message().contains("no-such-type"),
        "{}",
        status.message()
    );

    let mut no_template = create(testing("run"), "none");
    no_template.template = None;
    let status = env
        .connector
        .create_task(Request::new(no_template))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    assert!(
        status.message().starts_with("template"),
        "{}",
        status.message()
    );

    let status = env
        .connector
        .get_task(Request::new(v2::GetTaskRequest {
            resource_meta: b"forged".to_vec(),
            ..Default::default()
        }))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
}
