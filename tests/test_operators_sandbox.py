"""Ray, Dask and pod tasks (tests/operator_user_tasks.py, written with
flytekitplugins-ray, flytekitplugins-dask, flytekit's `pod_template` and
flytekitplugins-pod) run end to end on the sandbox's KubeRay, Dask-operator
and kubelet simulators: `flytewasm run --sandbox` to success, to failure and
aborted; `flytewasm serve --sandbox` through Flyte's agent protocol with the
official flyteidl stubs; and the platform-sidecar plugin hot-swapped under a
running `serve`, changing the next task's pod.

The sandbox annotation `sandbox.flytewasm.io/outcome` picks an object's
fate. § numbers refer to the project's reference notes on Flyte's operator
plugins (flyte-operators.md)."""

import pathlib
import time

import grpc
import pytest
from flyteidl.admin import agent_pb2
from flyteidl.core import execution_pb2, literals_pb2
from flyteidl.service.agent_pb2_grpc import AgentMetadataServiceStub, AsyncAgentServiceStub

import agent_support
from agent_support import GRPC, SANDBOX, category, channel, create_request, get_until_done, meta_json, plugins_listing, publish, run_task, run_then_abort, wait_for
from conftest import ROOT, load_module, serialize
from propeller_emulator import SandboxApi

HERE = pathlib.Path(__file__).resolve().parent
OUTCOME = "sandbox.flytewasm.io/outcome"
NAMESPACE = "flytesnacks-development"
Phase = execution_pb2.TaskExecution
EXAMPLES = ROOT / "target/example-plugins"
SIDECAR_NEXT = ROOT / "target/test-plugins/platform-sidecar-next.wasm"

# task → (API path of its kind, plural, how many pods its operator makes: a
# RayJob's head and one per worker replica (§F.2); a DaskJob's scheduler,
# workers and job runner (§F.3); a pod task is its pod).
KINDS = {
    "ray_groups": ("apis/ray.io/v1", "rayjobs", 1 + 2 + 1),
    "dask_groups": ("apis/kubernetes.dask.org/v1", "daskjobs", 1 + 3 + 1),
    "pod_plugin_sidecar": ("api/v1", "pods", 0),
    "pod_template_sidecar": ("api/v1", "pods", 0),
    "pod_input_args": ("api/v1", "pods", 0),
}


@pytest.fixture(scope="module")
def tasks():
    return load_module(HERE / "operator_user_tasks.py")


@pytest.fixture(scope="module")
def operator_plugins(plugins_dir):
    missing = [n for n in ("ray", "dask", "pod") if not (plugins_dir / f"{n}.wasm").exists()]
    if missing:
        pytest.fail(f"target/plugins/{{{','.join(missing)}}}.wasm missing: run `just build-plugins`")
    return plugins_dir


@pytest.fixture(scope="module")
def serialized(tasks, tmp_path_factory):
    """Task name → (TaskTemplate .pb path, TaskTemplate proto)."""
    out = tmp_path_factory.mktemp("operators")
    result = {}
    for name in [*KINDS, "plain"]:
        pb, _, template = serialize(getattr(tasks, name), out, name)
        result[name] = (pb, template)
    return result


def execution_name(prefix, name):
    return f"{prefix}{name.replace('_', '')}"[:20]


def get_object(api, name, task):
    path, plural, _ = KINDS[name]
    code, body = api.request("GET", f"{path}/namespaces/{NAMESPACE}/{plural}/{task}")
    assert code in (200, 404), (code, body)
    return body if code == 200 else None


def owned_pods(api, owner):
    """The pods an operator made for `owner` (their controller reference)."""
    return [
        p for p in api.list("pods", NAMESPACE)
        if any(ref.get("name") == owner for ref in p["metadata"].get("ownerReferences") or [])
    ]


# ---------------------------------------------------------------------------
# flytewasm run --sandbox


def test_run_a_ray_job_to_success(flytewasm_bin, operator_plugins, serialized, tmp_path):
    # §B.6: Ray's links come from `plugins.ray.logs` (none by default), with
    # the cluster name and job id as template variables.
    template = "http://ray/{{ .namespace }}/{{ .rayClusterName }}/{{ .rayJobID }}"
    config = {"plugins": {"ray": {"logs": {"templates": [{"displayName": "Ray Logs", "templateUris": [template]}]}}}}
    pb, _ = serialized["ray_groups"]
    code, events, stderr = run_task(flytewasm_bin, operator_plugins, pb, "rayok", config=config, tmp_path=tmp_path)
    assert code == 0, (stderr, events)
    phases = [e["phase"] for e in events]
    # §B.5: "" → Queued (Scheduling), Initializing → INITIALIZING, Running, Complete → Success.
    assert phases[-1] == "SUCCEEDED", phases
    assert "INITIALIZING" in phases and "RUNNING" in phases, phases
    assert phases.index("INITIALIZING") < phases.index("RUNNING"), phases
    links = events[-1]["logs"]
    assert [link["name"] for link in links] == ["Ray Logs"], links
    uri = links[0]["uri"]
    assert uri.startswith(f"http://ray/{NAMESPACE}/rayok-n0-0-raycluster-"), uri
    assert "{{" not in uri, uri


def test_run_a_failing_ray_job_is_a_retryable_system_failure(flytewasm_bin, operator_plugins, serialized):
    pb, _ = serialized["ray_groups"]
    code, events, stderr = run_task(flytewasm_bin, operator_plugins, pb, "rayfail", "--annotation", f"{OUTCOME}=fail")
    assert code == 1, (stderr, events)
    last = events[-1]
    # §B.5: Failed → RetryableFailure, SYSTEM, TaskFailedWithError, with the job's reason and message.
    assert (last["phase"], last["pluginPhase"]) == ("FAILED", "RETRYABLE_FAILURE"), last
    assert last["error"]["code"] == "TaskFailedWithError" and last["error"]["kind"] == "SYSTEM", last
    assert last["error"]["message"].startswith("Failed to run Ray job rayfail-n0-0 with error: [AppFailed] "), last


def test_run_a_dask_job_to_success(flytewasm_bin, operator_plugins, serialized):
    pb, _ = serialized["dask_groups"]
    code, events, stderr = run_task(flytewasm_bin, operator_plugins, pb, "daskok")
    assert code == 0, (stderr, events)
    phases = [e["phase"] for e in events]
    # §C.4: JobCreated / ClusterCreated → Initializing, Running, Successful → Success.
    assert phases[-1] == "SUCCEEDED" and "INITIALIZING" in phases and "RUNNING" in phases, phases
    # §C.5 with the default log config: the job runner's pod.
    links = events[-1]["logs"]
    assert [link["name"] for link in links] == ["Kubernetes Logs(Dask Runner Logs)"], links
    assert links[0]["uri"] == (
        f"http://localhost:30082/#!/log/{NAMESPACE}/daskok-n0-0-runner/pod?namespace={NAMESPACE}"
    ), links


def test_run_a_failing_dask_job_is_a_retryable_downstream_failure(flytewasm_bin, operator_plugins, serialized):
    pb, _ = serialized["dask_groups"]
    code, events, stderr = run_task(flytewasm_bin, operator_plugins, pb, "daskfail", "--annotation", f"{OUTCOME}=fail")
    assert code == 1, (stderr, events)
    last = events[-1]
    # §C.4: Failed → RetryableFailure (USER), DownstreamSystemError, "Dask Job failed".
    assert (last["phase"], last["pluginPhase"]) == ("FAILED", "RETRYABLE_FAILURE"), last
    assert (last["error"]["code"], last["error"]["kind"]) == ("DownstreamSystemError", "USER"), last
    assert last["error"]["message"] == "Dask Job failed", last


@pytest.mark.parametrize("name", ["pod_plugin_sidecar", "pod_template_sidecar"])
def test_run_a_pod_task_to_success(flytewasm_bin, operator_plugins, serialized, name):
    pb, _ = serialized[name]
    execution = execution_name("pok", name)
    code, events, stderr = run_task(flytewasm_bin, operator_plugins, pb, execution)
    assert code == 0, (stderr, events)
    phases = [e["phase"] for e in events]
    assert phases[-1] == "SUCCEEDED" and "RUNNING" in phases, phases
    # §D.4: the link to the pod's first container, named ` (User)`.
    links = events[-1]["logs"]
    assert [link["name"] for link in links] == ["Kubernetes Logs (User)"], links
    assert f"/#!/log/{NAMESPACE}/{execution}-n0-0/pod" in links[0]["uri"], links


# §D.4: what each failing pod is reported as (phase, plugin phase, error code,
# kind). A waiting container's code is `<Ready condition reason>|<waiting
# reason>`; a kubelet gives the Ready condition the reason ContainersNotReady.
POD_FAILURES = {
    "fail": ("FAILED", "RETRYABLE_FAILURE", "Error", "USER"),
    "oom-killed": ("FAILED", "RETRYABLE_FAILURE", "OOMKilled", "USER"),
    "invalid-image-name": ("FAILED", "PERMANENT_FAILURE", "ContainersNotReady|InvalidImageName", "USER"),
    "preempted": ("FAILED", "RETRYABLE_FAILURE", "Interrupted", "SYSTEM"),
    # An eviction kills the containers (exit 137): a system failure too.
    "evicted": ("FAILED", "RETRYABLE_FAILURE", "Interrupted", "SYSTEM"),
    "node-shutdown": ("FAILED", "RETRYABLE_FAILURE", "Interrupted", "SYSTEM"),
}


@pytest.mark.parametrize("outcome", list(POD_FAILURES))
def test_run_a_failing_pod_is_reported_as_flyte_does(flytewasm_bin, operator_plugins, serialized, outcome):
    pb, _ = serialized["pod_plugin_sidecar"]
    execution = execution_name("pfail", outcome)
    code, events, stderr = run_task(flytewasm_bin, operator_plugins, pb, execution, "--annotation", f"{OUTCOME}={outcome}")
    assert code == 1, (stderr, events)
    last = events[-1]
    phase, plugin_phase, error_code, kind = POD_FAILURES[outcome]
    assert (last["phase"], last["pluginPhase"]) == (phase, plugin_phase), last
    assert (last["error"]["code"], last["error"]["kind"]) == (error_code, kind), last


def test_run_an_image_pull_backoff_fails_after_its_grace_period(flytewasm_bin, operator_plugins, serialized, tmp_path):
    # §D.4: ImagePullBackOff is Initializing within `image-pull-backoff-grace-period`,
    # then a retryable failure (a grace period of 0s: at once).
    pb, _ = serialized["pod_plugin_sidecar"]
    config = {"k8s": {"image-pull-backoff-grace-period": "0s"}}
    code, events, stderr = run_task(
        flytewasm_bin, operator_plugins, pb, "ppullbackoff", "--annotation", f"{OUTCOME}=image-pull-backoff",
        config=config, tmp_path=tmp_path,
    )
    assert code == 1, (stderr, events)
    last = events[-1]
    assert (last["phase"], last["pluginPhase"]) == ("FAILED", "RETRYABLE_FAILURE"), last
    assert last["error"]["code"].endswith("|ImagePullBackOff"), last
    assert last["error"]["message"].startswith("Grace period [0s] exceeded|"), last


@pytest.mark.parametrize("name", ["ray_groups", "dask_groups", "pod_plugin_sidecar"])
def test_run_aborted_removes_the_object_and_its_pods(flytewasm_bin, operator_plugins, serialized, standalone_sandbox, name):
    api, kubeconfig = standalone_sandbox
    pb, _ = serialized[name]
    _, plural, pods = KINDS[name]
    execution = execution_name("abort", name)
    task = f"{execution}-n0-0"

    def running():
        # The object runs, with every pod its operator makes.
        obj = get_object(api, name, task)
        phase = ((obj or {}).get("status") or {}).get("phase")
        started = obj is not None and (plural != "pods" or phase == "Running")
        return started and len(owned_pods(api, task)) == pods, (obj and obj.get("status"), len(owned_pods(api, task)))

    def gone():
        obj = get_object(api, name, task)
        return obj is None and not owned_pods(api, task), (obj and obj.get("status"), len(owned_pods(api, task)))

    run_then_abort(flytewasm_bin, operator_plugins, pb, execution, kubeconfig, running, gone)


# ---------------------------------------------------------------------------
# flytewasm serve --sandbox, with the official flyteidl stubs


@pytest.fixture(scope="module")
def server(flytewasm_bin, operator_plugins):
    process = agent_support.serve(flytewasm_bin, operator_plugins, "--sandbox", "--sandbox-step-ms", "100")
    yield process
    code, output = process.stop()
    assert code == 0, output


@pytest.fixture(scope="module")
def agent(server):
    return AsyncAgentServiceStub(channel(server.found[GRPC]))


def served_object(server, meta, name):
    state = meta_json(meta)
    return get_object(SandboxApi(server.found[SANDBOX]), name, state["name"]), state["name"]


def test_list_agents_advertises_the_task_types(server):
    metadata = AgentMetadataServiceStub(channel(server.found[GRPC]))
    agents = {a.name: a for a in metadata.ListAgents(agent_pb2.ListAgentsRequest(), timeout=10).agents}
    categories = {name: sorted((c.name, c.version) for c in agents[name].supported_task_categories)
                  for name in ("ray", "dask", "pod")}
    assert ("ray", 0) in categories["ray"] and categories["dask"] == [("dask", 0)], categories
    # §D.1: the pod plugin serves sidecar tasks of every version flytekit wrote, and plain container tasks.
    for served in [("sidecar", 0), ("sidecar", 1), ("sidecar", 2), ("python-task", 0), ("container", 0)]:
        assert served in categories["pod"], categories


@pytest.mark.parametrize("name", ["ray_groups", "dask_groups", "pod_plugin_sidecar", "pod_template_sidecar"])
def test_serve_runs_each_kind_to_success(agent, server, serialized, name):
    _, template = serialized[name]
    execution = execution_name("sok", name)
    meta = agent.CreateTask(create_request(template, execution), timeout=30).resource_meta
    obj, task = served_object(server, meta, name)
    assert obj is not None and task == f"{execution}-n0-0"
    # Propeller's metadata reached the object (§0.3.2).
    assert obj["metadata"]["labels"]["execution-id"] == execution
    resource, seen = get_until_done(agent, template, meta, timeout=90)
    assert resource.phase == Phase.SUCCEEDED, (seen, resource.message)
    assert Phase.RUNNING in seen, seen


def test_serve_renders_a_pod_task_s_input_args_from_the_request(agent, server, serialized):
    # §0.3.7 / flyte-facts §4.5: `{{.Inputs.x}}` in a K8sPod's containers
    # takes the CreateTask's input values, printed as Flyte prints them.
    _, template = serialized["pod_input_args"]

    def primitive(**value):
        return literals_pb2.Literal(scalar=literals_pb2.Scalar(primitive=literals_pb2.Primitive(**value)))

    inputs = {"n": primitive(integer=7), "tag": primitive(string_value="nightly"), "scale": primitive(float_value=1e6)}
    request = create_request(template, "sinputargs")
    request.inputs.CopyFrom(literals_pb2.LiteralMap(literals=inputs))
    meta = agent.CreateTask(request, timeout=30).resource_meta
    obj, _ = served_object(server, meta, "pod_input_args")
    watcher = next(c for c in obj["spec"]["containers"] if c["name"] == "watcher")
    assert watcher["args"] == ["--every", "7", "--tag=nightly", "1e+06"], watcher
    resource, seen = get_until_done(agent, template, meta, timeout=90)
    assert resource.phase == Phase.SUCCEEDED, (seen, resource.message)

    # An input the request lacks: the task can never run, and nothing is created.
    request = create_request(template, "sinputmissing")
    request.inputs.CopyFrom(literals_pb2.LiteralMap(literals={"n": inputs["n"]}))
    with pytest.raises(grpc.RpcError) as refused:
        agent.CreateTask(request, timeout=30)
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "requested input is not found [tag]" in refused.value.details(), refused.value.details()
    assert get_object(SandboxApi(server.found[SANDBOX]), "pod_input_args", "sinputmissing-n0-0") is None


def test_serve_delete_removes_a_ray_job_and_its_pods(agent, server, serialized):
    _, template = serialized["ray_groups"]
    meta = agent.CreateTask(create_request(template, "sdelray", {OUTCOME: "run-forever"}), timeout=30).resource_meta
    api = SandboxApi(server.found[SANDBOX])
    deadline = time.monotonic() + 60
    while True:
        obj, task = served_object(server, meta, "ray_groups")
        if obj is not None and len(owned_pods(api, task)) == KINDS["ray_groups"][2]:
            break
        assert time.monotonic() < deadline, (obj and obj.get("status"), len(owned_pods(api, task)))
        time.sleep(0.1)
    agent.DeleteTask(agent_pb2.DeleteTaskRequest(resource_meta=meta, task_category=category(template)), timeout=30)
    deadline = time.monotonic() + 30
    while served_object(server, meta, "ray_groups")[0] is not None or owned_pods(api, task):
        assert time.monotonic() < deadline, ("still there", len(owned_pods(api, task)))
        time.sleep(0.1)


# ---------------------------------------------------------------------------
# The seed's platform sidecar, changed by hot-swapping one file


def sidecar_images(server, meta):
    state = meta_json(meta)
    api = SandboxApi(server.found[SANDBOX])
    code, pod = api.request("GET", f"api/v1/namespaces/{state['namespace']}/pods/{state['name']}")
    assert code == 200, (code, pod)
    primary = pod["metadata"]["annotations"]["primary_container_name"]
    assert [c["name"] for c in pod["spec"]["containers"]] == [primary]
    return {c["name"]: c["image"] for c in pod["spec"]["initContainers"]}


def test_the_platform_sidecar_is_swapped_under_a_running_serve(flytewasm_bin, serialized, tmp_path):
    plugin = EXAMPLES / "platform-sidecar.wasm"
    for path in (plugin, SIDECAR_NEXT):
        if not path.exists():
            pytest.fail(f"{path} does not exist: run `just build-plugins`")
    directory = tmp_path / "plugins"
    directory.mkdir()
    publish(directory, "platform-sidecar.wasm", plugin.read_bytes())
    _, template = serialized["plain"]  # a plain @task: the user asks for no sidecar
    server = agent_support.serve(flytewasm_bin, directory, "--sandbox", "--sandbox-step-ms", "100")
    try:
        agent = AsyncAgentServiceStub(channel(server.found[GRPC]))
        before = agent.CreateTask(create_request(template, "sidecar-old"), timeout=30).resource_meta
        old = sidecar_images(server, before)
        assert list(old) == ["platform-agent"], old

        # The platform team ships a new sidecar: one file, replaced in place.
        publish(directory, "platform-sidecar.wasm", SIDECAR_NEXT.read_bytes())
        wait_for("the new platform-sidecar serves", lambda: any(
            p["state"] == "serving" and p["version"].endswith("-next") for p in plugins_listing(server)))
        after = agent.CreateTask(create_request(template, "sidecar-new"), timeout=30).resource_meta
        new = sidecar_images(server, after)
        assert list(new) == ["platform-agent"] and new != old, (old, new)

        # Both tasks run to success: the phase follows the task's container
        # (§D.4), and the pod ends with it (the kubelet stops a native sidecar).
        for meta in (before, after):
            resource, seen = get_until_done(agent, template, meta, timeout=60)
            assert resource.phase == Phase.SUCCEEDED, (seen, resource.message)
            state = meta_json(meta)
            code, pod = SandboxApi(server.found[SANDBOX]).request(
                "GET", f"api/v1/namespaces/{state['namespace']}/pods/{state['name']}")
            assert pod["status"]["phase"] == "Succeeded", pod["status"]
    finally:
        code, output = server.stop()
    assert code == 0, output
