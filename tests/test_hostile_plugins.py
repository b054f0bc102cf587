"""Hostile and broken plugins cannot hurt the host. The `testing` plugin
(plugin/testing, built from source by `just build-plugins`) misbehaves as
each task asks; every case goes through `flytewasm render`, `flytewasm run
--sandbox` and the agent (`flytewasm serve`). Each time the task fails
permanently with a message naming the plugin, the call and the cause, a
metric counts it, and the host goes on serving other tasks."""

import json
import shutil
import subprocess
import urllib.request

import pytest
import yaml
from flyteidl.core import tasks_pb2
from flyteidl.service import agent_pb2_grpc

from agent_support import GRPC, HTTP, SANDBOX, Phase, channel, create_request, get_until_done, serve
from conftest import ROOT, serialize
from spark_user_tasks import minimal

# behaviour → what the failure message must say (plugin `testing` always).
TRAPS = {
    "panic": ["crashed in build-resource", "the testing plugin was asked to panic"],
    "loop": ["ran past its", "deadline in build-resource"],
    "allocate": ["ran out of memory in build-resource"],
    # Rust's stack lives in linear memory: overflowing it is an out-of-bounds trap.
    "recurse": ["crashed in build-resource", "wasm trap"],
    "huge": ["invalid answer from build-resource", "over the 4194304-byte limit"],
    "invalid-json": ["invalid answer from build-resource", "not JSON"],
    "not-json": ["invalid answer from build-resource", "not a JSON object"],
    "wrong-kind": ["invalid answer from build-resource", "v1 Secret, but the plugin declares v1 ConfigMap"],
    "cluster-scoped": ["invalid answer from build-resource", "ClusterRole, but the plugin declares"],
    "other-namespace": ["invalid answer from build-resource", "namespace `kube-system`"],
    "phase-panic": ["crashed in get-task-phase", "the testing plugin was asked to panic"],
    "phase-loop": ["ran past its", "deadline in get-task-phase"],
}
# Only the phase call misbehaves: render (which only builds) succeeds.
BUILDS_FINE = {"phase-panic", "phase-loop"}


def template(behaviour):
    return tasks_pb2.TaskTemplate(type="testing", custom={"behaviour": behaviour})


@pytest.fixture(scope="module")
def plugins(tmp_path_factory):
    """The testing plugin beside Spark, and a build whose describe() traps."""
    test_plugins = ROOT / "target/test-plugins"
    if not (test_plugins / "describe-traps.wasm").exists():
        pytest.fail("target/test-plugins/describe-traps.wasm is missing: run `just build-plugins`")
    path = tmp_path_factory.mktemp("hostile-plugins")
    shutil.copy(test_plugins / "testing.wasm", path)
    shutil.copy(test_plugins / "describe-traps.wasm", path)
    shutil.copy(ROOT / "target/plugins/spark.wasm", path)
    return path


def task_file(tmp_path, behaviour):
    path = tmp_path / f"{behaviour}.pb"
    path.write_bytes(template(behaviour).SerializeToString())
    return path


def flytewasm(flytewasm_bin, *args):
    return subprocess.run(
        [str(flytewasm_bin), *map(str, args)],
        capture_output=True,
        text=True,
        timeout=120,
        env={"FLYTEWASM_CACHE_DIR": str(ROOT / "target/flytewasm-cache"), "PATH": "/usr/bin:/bin"},
    )


def configmap(sandbox_url, meta):
    state = json.loads(meta)["state"]
    url = f"{sandbox_url}/api/v1/namespaces/{state['namespace']}/configmaps/{state['name']}"
    with urllib.request.urlopen(url, timeout=5) as response:
        return json.load(response)


def assert_names(message, behaviour):
    assert "plugin `testing`" in message, message
    for part in TRAPS[behaviour]:
        assert part in message, message


@pytest.mark.parametrize("behaviour", sorted(set(TRAPS) - BUILDS_FINE))
def test_render_reports_the_failure(flytewasm_bin, plugins, tmp_path, behaviour):
    result = flytewasm(flytewasm_bin, "render", "--plugins", plugins, task_file(tmp_path, behaviour))
    assert result.returncode == 1, result.stderr  # an error exit, not a host panic (101) or a signal
    assert "thread 'main' panicked" not in result.stderr
    assert_names(result.stderr, behaviour)


@pytest.mark.parametrize("behaviour", sorted(TRAPS))
def test_run_fails_the_task_permanently(flytewasm_bin, plugins, tmp_path, behaviour):
    result = flytewasm(
        flytewasm_bin, "run", "--sandbox", "--plugins", plugins, "--sandbox-step-ms", "50",
        "--output", "json", "--timeout", "60", task_file(tmp_path, behaviour),
    )
    assert result.returncode != 0, result.stdout
    events = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    last = events[-1]
    assert last["phase"] == "FAILED", events
    assert_names(last["error"]["message"], behaviour)


def test_the_host_re_derives_what_a_plugin_overreaches(flytewasm_bin, plugins, tmp_path):
    result = flytewasm(flytewasm_bin, "render", "--plugins", plugins, "--execution", "e1", task_file(tmp_path, "own-metadata"))
    assert result.returncode == 0, result.stderr
    meta = yaml.safe_load(result.stdout)["metadata"]
    assert meta["name"] == "e1-n0-0"  # not the plugin's "someone-elses"
    assert meta["namespace"] == "default"
    assert meta["labels"]["execution-id"] == "e1"  # Flyte's label wins over the forged one
    assert "ownerReferences" not in meta or all(o["uid"] != "forged" for o in meta["ownerReferences"])
    assert "example.com/never-let-go" not in meta.get("finalizers", [])


def test_files_sockets_environment_and_clock_are_out_of_reach(flytewasm_bin, plugins, tmp_path):
    result = flytewasm(flytewasm_bin, "render", "--plugins", plugins, task_file(tmp_path, "probe"))
    assert result.returncode == 0, result.stderr
    seen = yaml.safe_load(result.stdout)["data"]
    assert seen["file"].startswith("denied:"), seen  # no preopened directories
    assert seen["socket"].startswith("denied:"), seen  # no network
    assert seen["env"] == "", seen  # empty environment (the host's PATH is not there)
    assert seen["clock"] == "0", seen  # a frozen clock: time comes only from the task context


def test_a_plugin_whose_describe_traps_is_refused(flytewasm_bin, plugins):
    result = flytewasm(flytewasm_bin, "plugin", "validate", plugins / "describe-traps.wasm")
    assert result.returncode != 0
    assert "describe() failed" in result.stderr and "built to trap" in result.stderr


def test_the_agent_contains_every_case_and_keeps_serving(flytewasm_bin, plugins, tmp_path):
    server = serve(flytewasm_bin, plugins, "--sandbox", "--sandbox-step-ms", "50")
    try:
        agent = agent_pb2_grpc.AsyncAgentServiceStub(channel(server.found[GRPC]))
        for i, behaviour in enumerate(sorted(TRAPS)):
            meta = agent.CreateTask(create_request(template(behaviour), f"hostile-{i}"), timeout=60).resource_meta
            resource, _ = get_until_done(agent, template(behaviour), meta, timeout=60)
            assert resource.phase == Phase.FAILED, (behaviour, resource)
            assert_names(resource.message, behaviour)

        # Overreach through the agent: the object in the cluster is the host's.
        sandbox = server.found[SANDBOX]
        meta = agent.CreateTask(create_request(template("own-metadata"), "overreach"), timeout=30).resource_meta
        created = configmap(sandbox, meta)
        assert created["metadata"]["name"] == "overreach-n0-0"
        assert created["metadata"]["labels"]["execution-id"] == "overreach"
        assert all(o.get("uid") != "forged" for o in created["metadata"].get("ownerReferences", []))
        assert "example.com/never-let-go" not in created["metadata"].get("finalizers", [])
        meta = agent.CreateTask(create_request(template("probe"), "probe"), timeout=30).resource_meta
        seen = configmap(sandbox, meta)["data"]
        assert seen["file"].startswith("denied:") and seen["socket"].startswith("denied:"), seen
        assert seen["env"] == "" and seen["clock"] == "0", seen

        # Other tasks are served as before: a Spark task runs to success.
        _, _, spark = serialize(minimal, tmp_path, "minimal")
        meta = agent.CreateTask(create_request(spark, "after-hostile"), timeout=30).resource_meta
        resource, _ = get_until_done(agent, spark, meta, timeout=60)
        assert resource.phase == Phase.SUCCEEDED

        with urllib.request.urlopen(f"{server.found[HTTP]}/metrics", timeout=5) as response:
            metrics = response.read().decode()
        errors = [line for line in metrics.splitlines() if line.startswith('flytewasm_plugin_errors_total{plugin="testing"}')]
        assert errors and float(errors[0].split()[-1]) == len(TRAPS), errors
        with urllib.request.urlopen(f"{server.found[HTTP]}/plugins", timeout=5) as response:
            listed = json.load(response)
        refused = [p for p in listed if str(p.get("file", "")).endswith("describe-traps.wasm")]
        assert refused and refused[0]["state"] != "serving" and "describe() failed" in refused[0]["lastError"], refused
    finally:
        server.stop()
