"""Flyte 2's connector protocol (`flyteidl2.connector`), spoken by the
official `flyteidl2` stubs to `flytewasm serve --sandbox` as a process,
beside Flyte 1's agent protocol on the same port: a Spark task written
with flytekitplugins-spark, through CreateTask, GetTask and DeleteTask."""

import urllib.request

import grpc
import pytest
from flyteidl.admin import agent_pb2
from flyteidl.service.agent_pb2_grpc import AsyncAgentServiceStub
from flyteidl2.connector import connector_pb2
from flyteidl2.connector.service_pb2_grpc import AsyncConnectorServiceStub, ConnectorMetadataServiceStub

import agent_support
import connector_support
from agent_support import channel, sandbox_object
from connector_support import Phase, category, create_request, get_until_done


@pytest.fixture(scope="module")
def server(flytewasm_bin, plugins_dir):
    process = agent_support.serve(flytewasm_bin, plugins_dir, "--sandbox", "--sandbox-step-ms", "100")
    yield process
    code, output = process.stop()
    assert code == 0, output


@pytest.fixture(scope="module")
def connector(server):
    return AsyncConnectorServiceStub(channel(server.found[agent_support.GRPC]))


@pytest.fixture(scope="module")
def agent(server):
    return AsyncAgentServiceStub(channel(server.found[agent_support.GRPC]))


def test_list_connectors_advertises_every_plugin(server):
    metadata = ConnectorMetadataServiceStub(channel(server.found[agent_support.GRPC]))
    connectors = metadata.ListConnectors(connector_pb2.ListConnectorsRequest(), timeout=10).connectors
    by_name = {c.name: [(t.name, t.version) for t in c.supported_task_categories] for c in connectors}
    assert by_name["spark"] == [("spark", 0)], by_name
    # Every loaded plugin is a connector, with every task type it serves.
    assert ("pytorch", 1) in by_name["pytorch"] and ("ray", 1) in by_name["ray"], by_name
    assert metadata.GetConnector(connector_pb2.GetConnectorRequest(name="spark"), timeout=10).connector.name == "spark"
    with pytest.raises(grpc.RpcError) as err:
        metadata.GetConnector(connector_pb2.GetConnectorRequest(name="nope"), timeout=10)
    assert err.value.code() == grpc.StatusCode.NOT_FOUND
    assert "spark" in err.value.details()


def test_a_spark_task_runs_to_success(connector, server, template):
    # A connection is accepted (and not needed: plugins reach only the cluster).
    request = create_request(template, "v2-ok", connection=connector_support.connection())
    meta = connector.CreateTask(request, timeout=30).resource_meta
    app = sandbox_object(server, meta)
    assert app["metadata"]["name"] == "v2-ok-a0-0"
    assert app["metadata"]["namespace"] == connector_support.NAMESPACE
    assert app["metadata"]["labels"]["execution-id"] == "v2-ok"
    # The service account from `identity` (Flyte 2 leaves k8s_service_account empty).
    assert app["spec"]["driver"]["serviceAccount"] == "spark"
    assert {"name": "RUN_NAME", "value": "v2-ok"} in app["spec"]["driver"]["env"]
    resource, seen = get_until_done(connector, template, meta)
    assert resource.phase == Phase.SUCCEEDED, seen
    assert Phase.RUNNING in seen
    assert any("v2-ok-a0-0-driver" in link.uri for link in resource.log_links), resource.log_links


def test_a_failing_spark_job_is_a_retryable_failure_with_its_message(connector, template):
    meta = connector.CreateTask(
        create_request(template, "v2-fail", {"sandbox.flytewasm.io/outcome": "fail"}), timeout=30
    ).resource_meta
    resource, seen = get_until_done(connector, template, meta)
    assert resource.phase == Phase.RETRYABLE_FAILED, seen
    assert "Spark Job Failed with Error: driver container failed" in resource.message
    # Flyte 2's Resource has no state (1) and no agent_error (7): the server
    # sends neither (they would arrive as unknown fields).
    from google.protobuf import unknown_fields

    assert not list(unknown_fields.UnknownFieldSet(resource)), "fields Flyte 2's Resource does not have"


def test_a_task_the_plugin_refuses_fails_permanently(connector, template):
    broken = connector_support.v2_template(template)
    broken.custom["executorPath"] = 12
    meta = connector.CreateTask(create_request(broken, "v2-bad"), timeout=30).resource_meta
    resource, _ = get_until_done(connector, broken, meta)
    assert resource.phase == Phase.FAILED
    assert "executorPath" in resource.message


def test_delete_removes_the_object_and_is_idempotent(connector, server, template):
    meta = connector.CreateTask(
        create_request(template, "v2-del", {"sandbox.flytewasm.io/outcome": "run-forever"}), timeout=30
    ).resource_meta
    assert sandbox_object(server, meta) is not None
    request = connector_pb2.DeleteTaskRequest(resource_meta=meta, task_category=category(template))
    connector.DeleteTask(request, timeout=30)
    agent_support.wait_for("the object to go", lambda: sandbox_object(server, meta) is None, timeout=10)
    connector.DeleteTask(request, timeout=30)


def test_callers_mistakes_are_not_found_or_invalid_argument(connector, template):
    other = connector_support.v2_template(template)
    other.type = "no_such_operator"
    with pytest.raises(grpc.RpcError) as err:
        connector.CreateTask(create_request(other, "v2-nf"), timeout=30)
    assert err.value.code() == grpc.StatusCode.NOT_FOUND
    assert "no_such_operator" in err.value.details()

    no_template = create_request(template, "v2-none")
    no_template.ClearField("template")
    with pytest.raises(grpc.RpcError) as err:
        connector.CreateTask(no_template, timeout=30)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert err.value.details().startswith("template")

    with pytest.raises(grpc.RpcError) as err:
        connector.GetTask(connector_pb2.GetTaskRequest(resource_meta=b"{}", task_category=category(template)), timeout=10)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "resource_meta is not signed" in err.value.details()


def test_one_resource_meta_for_both_protocols(connector, agent, template):
    """A task created through Flyte 1's protocol is polled and aborted
    through Flyte 2's, and the reverse: a Flyte 1 and a Flyte 2 deployment
    can share one flytewasm, and a migration needs no drain."""
    by_v1 = agent.CreateTask(
        agent_support.create_request(template, "by-v1", {"sandbox.flytewasm.io/outcome": "run-forever"}),
        timeout=30,
    ).resource_meta
    by_v2 = connector.CreateTask(
        create_request(template, "by-v2", {"sandbox.flytewasm.io/outcome": "run-forever"}), timeout=30
    ).resource_meta
    for meta in (by_v1, by_v2):
        def running():
            v2 = connector.GetTask(connector_pb2.GetTaskRequest(resource_meta=meta), timeout=10).resource
            v1 = agent.GetTask(agent_pb2.GetTaskRequest(resource_meta=meta), timeout=10).resource
            return v2.phase == Phase.RUNNING and v1.phase == Phase.RUNNING

        agent_support.wait_for("both protocols to see the task running", running)
    connector.DeleteTask(connector_pb2.DeleteTaskRequest(resource_meta=by_v1), timeout=30)
    agent.DeleteTask(agent_pb2.DeleteTaskRequest(resource_meta=by_v2), timeout=30)
    for meta in (by_v1, by_v2):
        resource = connector.GetTask(connector_pb2.GetTaskRequest(resource_meta=meta), timeout=10).resource
        assert (resource.phase, resource.message) == (Phase.FAILED, "the task was aborted"), resource


def test_metrics_name_the_protocol(server, connector, template):
    http = server.found[agent_support.HTTP]
    connector.CreateTask(create_request(template, "v2-metrics"), timeout=30)
    metrics = urllib.request.urlopen(f"{http}/metrics").read().decode()
    assert 'flytewasm_calls_total{protocol="connector",rpc="CreateTask",plugin="spark",code="Ok"}' in metrics
    assert 'flytewasm_call_duration_seconds_count{protocol="connector",rpc="GetTask"}' in metrics
