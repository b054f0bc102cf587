"""Kubeflow training-operator tasks (tests/kubeflow_user_tasks.py, written
with flytekitplugins-kfpytorch, -kftensorflow and -kfmpi) run end to end on
the sandbox's training-operator simulator: `flytewasm run --sandbox` to
success, to a failed job, and aborted; `flytewasm serve --sandbox` through
Flyte's agent protocol with the official flyteidl stubs.

The sandbox annotation `sandbox.flytewasm.io/outcome` (succeed | fail |
restart | run-forever) picks the job's fate. § numbers refer to the project's
reference notes on Flyte's operator plugins (flyte-operators.md), which
restate Flyte's Go plugins and tests."""

import json
import pathlib
import subprocess
import threading
import time

import pytest
from flyteidl.admin import agent_pb2
from flyteidl.core import execution_pb2
from flyteidl.service.agent_pb2_grpc import AgentMetadataServiceStub, AsyncAgentServiceStub

import agent_support
from agent_support import GRPC, SANDBOX, category, channel, create_request, get_until_done, meta_json, run_task, run_then_abort
from conftest import load_module, serialize
from propeller_emulator import SandboxApi

HERE = pathlib.Path(__file__).resolve().parent
OUTCOME = "sandbox.flytewasm.io/outcome"
NAMESPACE = "flytesnacks-development"
Phase = execution_pb2.TaskExecution

# task → (kind, plural, the pods training-operator makes for it: §F.1
# `<job>-<lowercased replica type>-<index>`, the MPI launcher `<job>-launcher`).
KINDS = {
    "pytorch_plain": ("PyTorchJob", "pytorchjobs", ["master-0", "worker-0", "worker-1"]),
    "elastic": ("PyTorchJob", "pytorchjobs", ["worker-0", "worker-1", "worker-2", "worker-3"]),
    "tf_all_roles": (
        "TFJob", "tfjobs",
        ["chief-0", "evaluator-0", "ps-0", "ps-1", "worker-0", "worker-1", "worker-2"],
    ),
    "mpi": ("MPIJob", "mpijobs", ["launcher", "worker-0", "worker-1"]),
    "horovod": ("MPIJob", "mpijobs", ["launcher", "worker-0", "worker-1"]),
}

# §A.4.4: which pods the plugin links to, in order (TF's PS/chief/evaluator
# links use Flyte's `psReplica`/`chiefReplica`/`evaluatorReplica` forms, §G.3;
# MPI has no launcher link, §G.2; elastic jobs have no master, §A.3.4).
LINKED_PODS = {
    "pytorch_plain": ["master-0", "worker-0", "worker-1"],
    "elastic": ["worker-0", "worker-1", "worker-2", "worker-3"],
    "tf_all_roles": [
        "worker-0", "worker-1", "worker-2", "psReplica-0", "psReplica-1", "chiefReplica-0", "evaluatorReplica-0",
    ],
    "mpi": ["worker-0", "worker-1"],
    "horovod": ["worker-0", "worker-1"],
}

@pytest.fixture(scope="module")
def tasks():
    return load_module(HERE / "kubeflow_user_tasks.py")


@pytest.fixture(scope="module")
def kubeflow_plugins(plugins_dir):
    missing = [n for n in ("pytorch", "tensorflow", "mpi") if not (plugins_dir / f"{n}.wasm").exists()]
    if missing:
        pytest.fail(f"target/plugins/{{{','.join(missing)}}}.wasm missing: run `just build-plugins`")
    return plugins_dir


@pytest.fixture(scope="module")
def serialized(tasks, tmp_path_factory):
    """Task name → (TaskTemplate .pb path, TaskTemplate proto)."""
    out = tmp_path_factory.mktemp("kubeflow")
    result = {}
    for name in KINDS:
        pb, _, template = serialize(getattr(tasks, name), out, name)
        result[name] = (pb, template)
    return result


def linked_pods(logs, job):
    """The pod of each log link, in order (from Flyte's default URI
    `.../#!/log/<namespace>/<pod>/pod?namespace=<namespace>`)."""
    pods = []
    for link in logs:
        marker = f"/#!/log/{NAMESPACE}/"
        assert marker in link["uri"], link
        pod = link["uri"].split(marker, 1)[1].split("/", 1)[0]
        assert pod.startswith(f"{job}-"), link
        pods.append(pod[len(job) + 1:])
    return pods


# ---------------------------------------------------------------------------
# flytewasm run --sandbox


@pytest.mark.parametrize("name", list(KINDS))
def test_run_to_success(flytewasm_bin, kubeflow_plugins, serialized, name):
    pb, _ = serialized[name]
    execution = f"eok{name.replace('_', '')}"[:20]
    code, events, stderr = run_task(flytewasm_bin, kubeflow_plugins, pb, execution)
    assert code == 0, (stderr, events)
    phases = [e["phase"] for e in events]
    assert phases[-1] == "SUCCEEDED", phases
    # §A.4.3: Created → Queued, Running → Running, Succeeded → Success.
    assert "QUEUED" in phases and "RUNNING" in phases, phases
    assert phases.index("QUEUED") < phases.index("RUNNING") < len(phases) - 1, phases
    last = events[-1]
    assert last["pluginPhase"] == "SUCCESS"
    assert last["task"] == f"{execution}-n0-0" and last["namespace"] == NAMESPACE
    # §A.4.4 with the default log config (Flyte's `plugins.logs`: the
    # Kubernetes dashboard at localhost:30082): the replica pods, in order.
    assert linked_pods(last["logs"], last["task"]) == LINKED_PODS[name], last["logs"]
    assert all(link["uri"].startswith("http://localhost:30082/#!/log/") for link in last["logs"])
    # §A.4.3: customInfo is the job's status; the current condition Succeeded.
    conditions = (last.get("customInfo") or {}).get("conditions") or []
    assert any(c.get("type") == "Succeeded" and c.get("status") == "True" for c in conditions), conditions


def test_run_log_links_follow_the_plugin_logs_config(flytewasm_bin, kubeflow_plugins, serialized, tmp_path):
    # §A.5 PyTorch 8 and §G.4: kubernetes-url → `<url>/#!/log/<ns>/<pod>/pod?namespace=<ns>`;
    # the master link's name is the display name + "master" (no separator).
    config = {"plugins": {"pytorch": {"logs": {"kubernetes-enabled": True, "kubernetes-url": "k8s.com"}}}}
    pb, _ = serialized["pytorch_plain"]
    code, events, stderr = run_task(flytewasm_bin, kubeflow_plugins, pb, "elogs", config=config, tmp_path=tmp_path)
    assert code == 0, (stderr, events)
    logs = events[-1]["logs"]
    assert [link["uri"] for link in logs] == [
        f"k8s.com/#!/log/{NAMESPACE}/elogs-n0-0-{pod}/pod?namespace={NAMESPACE}"
        for pod in ("master-0", "worker-0", "worker-1")
    ], logs
    assert [link["name"] for link in logs] == ["Kubernetes Logsmaster", "Kubernetes Logs", "Kubernetes Logs"], logs


@pytest.mark.parametrize("name", ["pytorch_plain", "tf_all_roles", "mpi"])
def test_run_a_failing_job_is_a_retryable_downstream_failure(flytewasm_bin, kubeflow_plugins, serialized, name):
    pb, _ = serialized[name]
    execution = f"efail{name.replace('_', '')}"[:20]
    code, events, stderr = run_task(flytewasm_bin, kubeflow_plugins, pb, execution, "--annotation", f"{OUTCOME}=fail")
    assert code == 1, (stderr, events)
    last = events[-1]
    assert last["phase"] == "FAILED", events
    # §A.4.3: a Failed condition → RetryableFailure (USER), code
    # DownstreamSystemError, message "Job failed:\n\t<reason> - <message>".
    assert last["pluginPhase"] == "RETRYABLE_FAILURE", last
    assert last["error"]["code"] == "DownstreamSystemError", last
    assert last["error"]["kind"] == "USER", last
    # The reason and message are the job's current (Failed) condition's,
    # which customInfo (the job's status, §A.4.3) carries.
    failed = [c for c in (last.get("customInfo") or {}).get("conditions") or [] if c.get("type") == "Failed"]
    assert failed and failed[0]["status"] == "True", last
    assert last["error"]["message"] == f"Job failed:\n\t{failed[0]['reason']} - {failed[0]['message']}", last
    assert "task failed: [DownstreamSystemError]" in stderr


def test_run_a_restarting_job_keeps_running_then_succeeds(flytewasm_bin, kubeflow_plugins, serialized, tmp_path):
    # §A.4.3 / §A.5 PyTorch 5: a current Restarting condition is Running,
    # not a failure. `run` prints a line only when the phase (or its version
    # or reason) changes, and Running and Restarting are both Running
    # (version 0), so the job itself is watched while `run` goes on: on a
    # sandbox of its own with slow steps, so Restarting lasts long enough to
    # be seen.
    kubeconfig = tmp_path / "sandbox.kubeconfig"
    sandbox = agent_support.Process(
        [flytewasm_bin, "sandbox", "--port", "0", "--plugins", kubeflow_plugins,
         "--kubeconfig", kubeconfig, "--step-ms", "600"],
        wait_for=[SANDBOX],
    )
    pb, _ = serialized["pytorch_plain"]
    job = "erestart-n0-0"
    run = subprocess.Popen(
        [str(flytewasm_bin), "run", "--plugins", str(kubeflow_plugins), "--output", "json", "--timeout", "90",
         "--execution", "erestart", "--annotation", f"{OUTCOME}=restart", str(pb)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**agent_support.ENV, "KUBECONFIG": str(kubeconfig)},
    )
    events = []

    def read():
        for line in run.stdout:
            if line.startswith("{"):
                events.append(json.loads(line))

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    # What `run` had printed at each look that found the job restarting.
    while_restarting = []
    try:
        api = SandboxApi(sandbox.found[SANDBOX])
        deadline = time.monotonic() + 120
        while run.poll() is None:
            assert time.monotonic() < deadline, events
            obj = get_job(api, "pytorchjobs", job)
            conditions = ((obj or {}).get("status") or {}).get("conditions") or []
            if any(c["type"] == "Restarting" and c["status"] == "True" for c in conditions):
                while_restarting.append([e["phase"] for e in events])
            time.sleep(0.05)
        reader.join(timeout=30)
        stderr = run.stderr.read()
    finally:
        if run.poll() is None:
            run.kill()
            run.wait()
        sandbox.stop()
    assert run.returncode == 0, (stderr, events)
    assert while_restarting, ("the job was never seen restarting", events)
    # While the job restarted, the last thing `run` had said was RUNNING.
    assert all(phases and phases[-1] == "RUNNING" for phases in while_restarting), while_restarting
    # Restarting and running again are no new phase: RUNNING once, then SUCCEEDED.
    phases = [e["phase"] for e in events]
    assert phases[phases.index("RUNNING"):] == ["RUNNING", "SUCCEEDED"], phases
    assert events[-1]["pluginPhase"] == "SUCCESS", events[-1]


def job_pods(api, job):
    return sorted(p["metadata"]["name"][len(job) + 1:] for p in api.list("pods", NAMESPACE) if p["metadata"]["name"].startswith(f"{job}-"))


def get_job(api, plural, job):
    code, body = api.request("GET", f"apis/kubeflow.org/v1/namespaces/{NAMESPACE}/{plural}/{job}")
    assert code in (200, 404), (code, body)
    return body if code == 200 else None


@pytest.mark.parametrize("name", ["pytorch_plain", "tf_all_roles", "mpi"])
def test_run_aborted_removes_the_job_and_its_pods(flytewasm_bin, kubeflow_plugins, serialized, standalone_sandbox, name):
    api, kubeconfig = standalone_sandbox
    pb, _ = serialized[name]
    kind, plural, pods = KINDS[name]
    execution = f"eabort{name.replace('_', '')}"[:20]
    job = f"{execution}-n0-0"

    def running():
        # The job runs and training-operator's pods for every replica exist (§F.1).
        obj = get_job(api, plural, job)
        return obj is not None and obj["kind"] == kind and job_pods(api, job) == pods, (obj, job_pods(api, job))

    def gone():
        obj = get_job(api, plural, job)
        return obj is None and not job_pods(api, job), (obj, job_pods(api, job))

    run_then_abort(flytewasm_bin, kubeflow_plugins, pb, execution, kubeconfig, running, gone)


# ---------------------------------------------------------------------------
# flytewasm serve --sandbox, with the official flyteidl stubs


@pytest.fixture(scope="module")
def server(flytewasm_bin, kubeflow_plugins):
    process = agent_support.serve(flytewasm_bin, kubeflow_plugins, "--sandbox", "--sandbox-step-ms", "100")
    yield process
    code, output = process.stop()
    assert code == 0, output


@pytest.fixture(scope="module")
def agent(server):
    return AsyncAgentServiceStub(channel(server.found[GRPC]))


def sandbox_job(server, meta, plural):
    state = meta_json(meta)
    api = SandboxApi(server.found[SANDBOX])
    code, body = api.request("GET", f"apis/kubeflow.org/v1/namespaces/{state['namespace']}/{plural}/{state['name']}")
    assert code in (200, 404), (code, body)
    return (body if code == 200 else None), api, state["name"]


def test_list_agents_advertises_the_kubeflow_task_types(server):
    metadata = AgentMetadataServiceStub(channel(server.found[GRPC]))
    agents = {a.name: a for a in metadata.ListAgents(agent_pb2.ListAgentsRequest(), timeout=10).agents}
    # §A.1: one plugin per task type; task_type_version 0 (legacy) and 1 (kubeflow).
    for name in ("pytorch", "tensorflow", "mpi"):
        assert name in agents, list(agents)
        categories = sorted((c.name, c.version) for c in agents[name].supported_task_categories)
        assert categories == [(name, 0), (name, 1)], (name, categories)
        assert not agents[name].is_sync
        assert metadata.GetAgent(agent_pb2.GetAgentRequest(name=name), timeout=10).agent.name == name


@pytest.mark.parametrize("name", ["pytorch_plain", "elastic", "tf_all_roles", "mpi"])
def test_serve_runs_each_kind_to_success(agent, server, serialized, name):
    _, template = serialized[name]
    kind, plural, _ = KINDS[name]
    execution = f"sok{name.replace('_', '')}"[:20]
    meta = agent.CreateTask(create_request(template, execution), timeout=30).resource_meta
    job, _, job_name = sandbox_job(server, meta, plural)
    assert job is not None and job["kind"] == kind
    # Propeller's metadata reached the object (§0.3.2) and the replica templates (§A.3.1).
    assert job_name == f"{execution}-n0-0"
    assert job["metadata"]["labels"]["execution-id"] == execution
    specs = job["spec"][{"pytorchjobs": "pytorchReplicaSpecs", "tfjobs": "tfReplicaSpecs", "mpijobs": "mpiReplicaSpecs"}[plural]]
    for replica in specs.values():
        assert replica["template"]["metadata"]["labels"]["execution-id"] == execution
        assert replica["template"]["spec"]["serviceAccountName"] == "spark"  # the request's k8s_service_account
    resource, seen = get_until_done(agent, template, meta, timeout=60)
    assert resource.phase == Phase.SUCCEEDED, (seen, resource.message)
    assert Phase.RUNNING in seen, seen
    uris = [link.uri for link in resource.log_links]
    assert [u.split(f"/#!/log/{NAMESPACE}/{job_name}-", 1)[1].split("/", 1)[0] for u in uris] == LINKED_PODS[name], uris


def test_serve_a_failing_job_is_retryable(agent, serialized):
    _, template = serialized["pytorch_plain"]
    meta = agent.CreateTask(create_request(template, "sfail", {OUTCOME: "fail"}), timeout=30).resource_meta
    resource, seen = get_until_done(agent, template, meta, timeout=60)
    assert resource.phase == Phase.RETRYABLE_FAILED, (seen, resource.message)
    assert resource.message.startswith("Job failed:"), resource.message
    assert resource.agent_error.code == "DownstreamSystemError"
    assert resource.agent_error.kind == agent_pb2.AgentError.RECOVERABLE


def test_serve_delete_removes_the_job_and_its_pods(agent, server, serialized):
    _, template = serialized["pytorch_plain"]
    meta = agent.CreateTask(create_request(template, "sdel", {OUTCOME: "run-forever"}), timeout=30).resource_meta
    deadline = time.monotonic() + 60
    while True:
        job, api, name = sandbox_job(server, meta, "pytorchjobs")
        if job is not None and job_pods(api, name) == KINDS["pytorch_plain"][2]:
            break
        assert time.monotonic() < deadline, (job and job.get("status"), job_pods(api, name))
        time.sleep(0.1)
    agent.DeleteTask(agent_pb2.DeleteTaskRequest(resource_meta=meta, task_category=category(template)), timeout=30)
    deadline = time.monotonic() + 30
    while sandbox_job(server, meta, "pytorchjobs")[0] is not None or job_pods(api, name):
        assert time.monotonic() < deadline, ("still there", job_pods(api, name))
        time.sleep(0.1)
