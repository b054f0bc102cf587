"""Flyte's agent protocol, spoken by the official `flyteidl` Python stubs
(the client Flyte's ecosystem uses) to `flytewasm serve` running as a
process: a Spark task written with flytekitplugins-spark goes through
CreateTask, GetTask and DeleteTask on the embedded sandbox."""

import json
import signal
import time
import urllib.request

import grpc
import pytest
from flyteidl.admin import agent_pb2
from flyteidl.core import execution_pb2
from flyteidl.service.agent_pb2_grpc import AgentMetadataServiceStub, AsyncAgentServiceStub

import agent_support
from agent_support import category, channel, create_request, get_until_done, sandbox_object

Phase = execution_pb2.TaskExecution


@pytest.fixture(scope="module")
def server(flytewasm_bin, plugins_dir):
    process = agent_support.serve(flytewasm_bin, plugins_dir, "--sandbox", "--sandbox-step-ms", "100")
    yield process
    code, output = process.stop()
    # SIGTERM drains and exits cleanly.
    assert code == 0, output
    assert "[serve] stopped" in output


@pytest.fixture(scope="module")
def agent(server):
    return AsyncAgentServiceStub(channel(server.found[agent_support.GRPC]))


def test_a_spark_task_runs_to_success(agent, server, template):
    meta = agent.CreateTask(create_request(template, "exec-ok"), timeout=30).resource_meta
    app = sandbox_object(server, meta)
    # Propeller's metadata reached the object.
    assert app["metadata"]["name"] == "exec-ok-n0-0"
    assert app["metadata"]["labels"]["execution-id"] == "exec-ok"
    assert app["spec"]["driver"]["serviceAccount"] == "spark"
    resource, seen = get_until_done(agent, template, meta)
    assert resource.phase == Phase.SUCCEEDED, seen
    assert Phase.RUNNING in seen
    # The plugin's log links (Flyte's default: the driver pod in a dashboard).
    assert any("exec-ok-n0-0-driver" in link.uri for link in resource.log_links), resource.log_links


def test_delete_removes_the_object_and_is_idempotent(agent, server, template):
    meta = agent.CreateTask(
        create_request(template, "exec-del", {"sandbox.flytewasm.io/outcome": "run-forever"}), timeout=30
    ).resource_meta
    assert sandbox_object(server, meta) is not None
    request = agent_pb2.DeleteTaskRequest(resource_meta=meta, task_category=category(template))
    agent.DeleteTask(request, timeout=30)
    deadline = time.monotonic() + 10
    while sandbox_object(server, meta) is not None:
        assert time.monotonic() < deadline, "the object is still in the sandbox"
        time.sleep(0.05)
    # Deleting a task whose object is gone is a success.
    agent.DeleteTask(request, timeout=30)


def test_a_failing_spark_job_fails_the_task_with_its_error(agent, template):
    meta = agent.CreateTask(
        create_request(template, "exec-fail", {"sandbox.flytewasm.io/outcome": "fail"}), timeout=30
    ).resource_meta
    resource, seen = get_until_done(agent, template, meta)
    # Flyte's Spark plugin makes a failed application a retryable failure.
    assert resource.phase == Phase.RETRYABLE_FAILED, seen
    assert "Spark Job Failed with Error: driver container failed" in resource.message
    assert resource.agent_error.code == "DownstreamSystemError"
    assert resource.agent_error.kind == agent_pb2.AgentError.RECOVERABLE


def test_an_unknown_task_type_is_not_found(agent, template):
    other = type(template)()
    other.CopyFrom(template)
    other.type = "no_such_operator"
    with pytest.raises(grpc.RpcError) as err:
        agent.CreateTask(create_request(other, "exec-nf"), timeout=30)
    assert err.value.code() == grpc.StatusCode.NOT_FOUND
    assert "no_such_operator" in err.value.details()


def test_bad_input_is_invalid_argument_naming_the_field(agent, template):
    with pytest.raises(grpc.RpcError) as err:
        agent.GetTask(agent_pb2.GetTaskRequest(resource_meta=b"{}", task_category=category(template)), timeout=10)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "resource_meta is not signed" in err.value.details()


def test_a_task_the_plugin_refuses_fails_permanently_naming_the_field(agent, template):
    # Not a create error, which propeller would retry: a FAILED task, as
    # Flyte's Spark plugin reports a task it cannot build.
    broken = type(template)()
    broken.CopyFrom(template)
    broken.custom["executorPath"] = 12
    meta = agent.CreateTask(create_request(broken, "exec-bad"), timeout=30).resource_meta
    resource, _ = get_until_done(agent, broken, meta)
    assert resource.phase == Phase.FAILED
    assert "executorPath" in resource.message
    assert resource.agent_error.code == "FailedToBuildResource"
    agent.DeleteTask(agent_pb2.DeleteTaskRequest(resource_meta=meta, task_category=category(broken)), timeout=10)


def test_list_agents_advertises_the_spark_plugin(server):
    metadata = AgentMetadataServiceStub(channel(server.found[agent_support.GRPC]))
    agents = metadata.ListAgents(agent_pb2.ListAgentsRequest(), timeout=10).agents
    spark = [a for a in agents if a.name == "spark"]
    assert spark, agents
    assert [(c.name, c.version) for c in spark[0].supported_task_categories] == [("spark", 0)]
    assert not spark[0].is_sync
    assert metadata.GetAgent(agent_pb2.GetAgentRequest(name="spark"), timeout=10).agent.name == "spark"
    with pytest.raises(grpc.RpcError) as err:
        metadata.GetAgent(agent_pb2.GetAgentRequest(name="nope"), timeout=10)
    assert err.value.code() == grpc.StatusCode.NOT_FOUND


def test_health_and_metrics(server, agent, template):
    http = server.found[agent_support.HTTP]
    assert urllib.request.urlopen(f"{http}/healthz").status == 200
    assert b"ready" in urllib.request.urlopen(f"{http}/readyz").read()
    metrics = urllib.request.urlopen(f"{http}/metrics").read().decode()
    assert 'flytewasm_calls_total{protocol="agent",rpc="CreateTask",plugin="spark",code="Ok"}' in metrics
    assert "flytewasm_call_duration_seconds_bucket" in metrics
    assert 'flytewasm_task_phases_total{plugin="spark",phase="SUCCEEDED"}' in metrics


def test_a_restarted_server_resumes_from_resource_meta(flytewasm_bin, plugins_dir, template, tmp_path):
    kubeconfig = tmp_path / "sandbox.kubeconfig"
    cluster = agent_support.sandbox(flytewasm_bin, plugins_dir, kubeconfig)
    env = {"KUBECONFIG": str(kubeconfig)}
    # The two processes share the key that signs resource_meta, as replicas do.
    config = agent_support.host_config(tmp_path, agent_support.write_meta_keys(tmp_path))
    try:
        first = agent_support.serve(
            flytewasm_bin, plugins_dir, "--config", config, env={**env, "FLYTEWASM_LOG_FORMAT": "json"}
        )
        agent = AsyncAgentServiceStub(channel(first.found[agent_support.GRPC]))
        meta = agent.CreateTask(
            create_request(template, "exec-restart", {"sandbox.flytewasm.io/step-ms": "1500"}), timeout=30
        ).resource_meta
        # The launch may land after CreateTask's answer: kill once it has.
        deadline = time.monotonic() + 30
        while '"task launched"' not in first.output() and time.monotonic() < deadline:
            time.sleep(0.05)
        _, output = first.stop(signal.SIGKILL)
        # Structured logs: one JSON object a line, with the task's fields.
        logs = [json.loads(line) for line in output.splitlines() if line.startswith("{")]
        launched = [entry for entry in logs if entry["fields"]["message"] == "task launched"]
        assert launched and launched[0]["fields"]["name"] == "exec-restart-n0-0", output

        second = agent_support.serve(flytewasm_bin, plugins_dir, "--config", config, env=env)
        agent = AsyncAgentServiceStub(channel(second.found[agent_support.GRPC]))
        resource, seen = get_until_done(agent, template, meta)
        assert resource.phase == Phase.SUCCEEDED, seen
        code, output = second.stop()
        assert code == 0, output
    finally:
        cluster.stop()


def self_signed(directory):
    """A certificate for localhost / 127.0.0.1 and its key, as PEM files."""
    import datetime
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "tls.crt", directory / "tls.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return cert_path, key_path


def test_tls_serves_only_tls_clients(flytewasm_bin, plugins_dir, tmp_path):
    cert, key = self_signed(tmp_path)
    server = agent_support.serve(flytewasm_bin, plugins_dir, "--sandbox", "--tls-cert", cert, "--tls-key", key)
    try:
        address = server.found[agent_support.GRPC]
        assert "(TLS)" in server.output()
        credentials = grpc.ssl_channel_credentials(root_certificates=cert.read_bytes())
        with grpc.secure_channel(address, credentials, options=[("grpc.ssl_target_name_override", "localhost")]) as ch:
            agents = AgentMetadataServiceStub(ch).ListAgents(agent_pb2.ListAgentsRequest(), timeout=10).agents
            assert "spark" in [a.name for a in agents]
        with grpc.insecure_channel(address) as ch:
            with pytest.raises(grpc.RpcError) as err:
                AgentMetadataServiceStub(ch).ListAgents(agent_pb2.ListAgentsRequest(), timeout=5)
            assert err.value.code() == grpc.StatusCode.UNAVAILABLE
    finally:
        code, output = server.stop()
        assert code == 0, output


def certificate_authority(directory):
    """A CA, and a function that issues it a server or client certificate
    (PEM files), for mutual TLS."""
    import datetime
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    now = datetime.datetime.now(datetime.timezone.utc)

    def builder(subject, issuer, public_key):
        return (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(issuer)
            .public_key(public_key)
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
        )

    def pem_files(name, cert, key):
        cert_path, key_path = directory / f"{name}.crt", directory / f"{name}.key"
        cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        key_path.write_bytes(
            key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
        )
        return cert_path, key_path

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "flytewasm test CA")])
    ca = (
        builder(ca_name, ca_name, ca_key.public_key())
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    ca_path, _ = pem_files("ca", ca, ca_key)

    def issue(name, client):
        key = ec.generate_private_key(ec.SECP256R1())
        usage = ExtendedKeyUsageOID.CLIENT_AUTH if client else ExtendedKeyUsageOID.SERVER_AUTH
        cert = builder(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]), ca_name, key.public_key())
        cert = cert.add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        cert = cert.add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        if not client:
            cert = cert.add_extension(
                x509.SubjectAlternativeName([x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                critical=False,
            )
        return pem_files(name, cert.sign(ca_key, hashes.SHA256()), key)

    return ca_path, issue


def test_mutual_tls_refuses_clients_without_a_certificate_from_the_ca(flytewasm_bin, plugins_dir, tmp_path):
    ca, issue = certificate_authority(tmp_path)
    server_cert, server_key = issue("localhost", client=False)
    client_cert, client_key = issue("propeller", client=True)
    server = agent_support.serve(
        flytewasm_bin, plugins_dir, "--sandbox",
        "--tls-cert", server_cert, "--tls-key", server_key, "--tls-client-ca", ca,
    )
    try:
        address = server.found[agent_support.GRPC]
        assert "client certificates required" in server.output()
        options = [("grpc.ssl_target_name_override", "localhost")]

        def list_agents(credentials):
            with grpc.secure_channel(address, credentials, options=options) as ch:
                return AgentMetadataServiceStub(ch).ListAgents(agent_pb2.ListAgentsRequest(), timeout=10).agents

        with_cert = grpc.ssl_channel_credentials(
            root_certificates=ca.read_bytes(),
            private_key=client_key.read_bytes(),
            certificate_chain=client_cert.read_bytes(),
        )
        assert "spark" in [a.name for a in list_agents(with_cert)]
        with pytest.raises(grpc.RpcError) as err:
            list_agents(grpc.ssl_channel_credentials(root_certificates=ca.read_bytes()))
        assert err.value.code() == grpc.StatusCode.UNAVAILABLE
        # A certificate from another CA is refused too.
        elsewhere = tmp_path / "elsewhere"
        elsewhere.mkdir()
        _, other_issue = certificate_authority(elsewhere)
        stranger_cert, stranger_key = other_issue("stranger", client=True)
        stranger = grpc.ssl_channel_credentials(
            root_certificates=ca.read_bytes(),
            private_key=stranger_key.read_bytes(),
            certificate_chain=stranger_cert.read_bytes(),
        )
        with pytest.raises(grpc.RpcError) as err:
            list_agents(stranger)
        assert err.value.code() == grpc.StatusCode.UNAVAILABLE
    finally:
        code, output = server.stop()
        assert code == 0, output
