"""Hostile and broken plugins cannot hurt the host. The `testing` plugin
(plugin/testing, built from source by `just build-plugins`) misbehaves as
each task asks; every case goes through `flytewasm render`, `flytewasm run
--sandbox` and the agent (`flytewasm serve`). Each time the task fails
permanently with a message naming the plugin, the call and the cause, a
metric counts it, and the host goes on serving other tasks."""

import json
import shutil
import subprocess
import threading
import time
import urllib.error
import urllib.request

import grpc

import pytest
import yaml
from flyteidl.admin import agent_pb2
from flyteidl.core import tasks_pb2
from flyteidl.service import agent_pb2_grpc

import agent_support
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
    # Blocking WASI calls end at the deadline like any loop.
    "sleep": ["ran past its", "deadline in build-resource"],
    "poll-far": ["ran past its", "deadline in build-resource"],
    "log-flood": ["ran past its", "deadline in build-resource"],
    "phase-panic": ["crashed in get-task-phase", "the testing plugin was asked to panic"],
    "phase-loop": ["ran past its", "deadline in get-task-phase"],
    "phase-sleep": ["ran past its", "deadline in get-task-phase"],
}
# Only the phase call misbehaves: render (which only builds) succeeds.
BUILDS_FINE = {"phase-panic", "phase-loop", "phase-sleep"}


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
        env={
            "FLYTEWASM_CACHE_DIR": str(ROOT / "target/flytewasm-cache"),
            "FLYTEWASM_PRECOMPILE_KEY": str(ROOT / "target/flytewasm-test-keys/precompile.key"),
            "PATH": "/usr/bin:/bin",
        },
    )


def configmap(sandbox_url, meta, wait=30):
    """The task's object. CreateTask answers within its bound and the launch
    may land after it (a plugin that floods stderr builds slowly), so a
    missing object is looked for again for `wait` seconds."""
    state = agent_support.meta_json(meta)
    url = f"{sandbox_url}/api/v1/namespaces/{state['namespace']}/configmaps/{state['name']}"
    deadline = time.monotonic() + wait
    while True:
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                return json.load(response)
        except urllib.error.HTTPError as err:
            if err.code != 404 or time.monotonic() > deadline:
                raise
        time.sleep(0.1)


def cleaned_up(sandbox_url, meta, wait=30):
    """Whether the task's object is gone within `wait` seconds (the host
    cleans up after it answers)."""
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        try:
            configmap(sandbox_url, meta, wait=0)
        except urllib.error.HTTPError as err:
            if err.code == 404:
                return True
            raise
        time.sleep(0.1)
    return False


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
    # A plugin that fails to map a phase is a look that went wrong, not the
    # task's end: retried, then a retryable system failure that cleans up.
    config = agent_support.host_config(
        tmp_path, agent_support.write_meta_keys(tmp_path), "tasks:\n  max-consecutive-failures: 3\n"
    )
    server = serve(flytewasm_bin, plugins, "--sandbox", "--sandbox-step-ms", "50", "--config", config)
    try:
        agent = agent_pb2_grpc.AsyncAgentServiceStub(channel(server.found[GRPC]))
        for i, behaviour in enumerate(sorted(TRAPS)):
            meta = agent.CreateTask(create_request(template(behaviour), f"hostile-{i}"), timeout=60).resource_meta
            resource, _ = get_until_done(agent, template(behaviour), meta, timeout=60)
            if behaviour in BUILDS_FINE:
                assert resource.phase == Phase.RETRYABLE_FAILED, (behaviour, resource)
                assert resource.agent_error.code == "SystemFailure", resource
                assert "3 looks at the task failed in a row" in resource.message, resource.message
                assert cleaned_up(server.found[SANDBOX], meta), "the object is cleaned up"
            else:
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
        # One per failed call: each build trap once, each phase trap on each of its 3 looks.
        expected = len(TRAPS) - len(BUILDS_FINE) + 3 * len(BUILDS_FINE)
        assert errors and float(errors[0].split()[-1]) == expected, errors
        with urllib.request.urlopen(f"{server.found[HTTP]}/plugins", timeout=5) as response:
            listed = json.load(response)
        refused = [p for p in listed if str(p.get("file", "")).endswith("describe-traps.wasm")]
        assert refused and refused[0]["state"] != "serving" and "describe() failed" in refused[0]["lastError"], refused
    finally:
        server.stop()


def test_floods_never_fail_the_task_nor_flood_the_log(flytewasm_bin, plugins):
    """1 MB on stderr still creates the object; a `log` loop ends at the
    deadline; the host's log grows by the per-call budget, not megabytes."""
    server = serve(flytewasm_bin, plugins, "--sandbox", "--sandbox-step-ms", "50")
    try:
        agent = agent_pb2_grpc.AsyncAgentServiceStub(channel(server.found[GRPC]))
        before = len(server.output())
        meta = agent.CreateTask(create_request(template("stderr-flood"), "flood-stderr"), timeout=60).resource_meta
        assert configmap(server.found[SANDBOX], meta)["data"]["behaviour"] == "stderr-flood"
        meta = agent.CreateTask(create_request(template("log-flood"), "flood-log"), timeout=60).resource_meta
        resource, _ = get_until_done(agent, template("log-flood"), meta, timeout=60)
        assert resource.phase == Phase.FAILED and "deadline in build-resource" in resource.message
        grown = len(server.output()) - before
        # Two calls, each within 64 KiB of output plus log framing (it was 54 MB in 2 s).
        assert grown < 1 << 20, grown
        assert "plugin output truncated" in server.output()
    finally:
        server.stop()


def test_a_huge_phase_answer_reaches_the_caller_bounded(flytewasm_bin, plugins):
    """20 MB of phase reason and message: propeller reads at most 4 MiB, so
    the host cuts them (with a marker) and the task can still be read."""
    server = serve(flytewasm_bin, plugins, "--sandbox", "--sandbox-step-ms", "50")
    try:
        agent = agent_pb2_grpc.AsyncAgentServiceStub(channel(server.found[GRPC]))
        meta = agent.CreateTask(create_request(template("phase-huge"), "huge-phase"), timeout=60).resource_meta
        resource, _ = get_until_done(agent, template("phase-huge"), meta, timeout=60)
        assert resource.phase == Phase.FAILED
        assert resource.ByteSize() < 1 << 20, resource.ByteSize()
        assert resource.message.endswith("bytes cut]"), resource.message[-100:]
    finally:
        server.stop()


def readyz(server):
    try:
        with urllib.request.urlopen(f"{server.found[HTTP]}/readyz", timeout=5) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as err:
        return err.code, err.read().decode()


def test_a_saturated_plugin_starves_no_other_and_readiness_says_so(flytewasm_bin, plugins, tmp_path):
    """80 CreateTasks whose plugin sleeps hold every slot that plugin may
    have: /readyz reports it, a Spark task is still served, and readiness
    comes back once the sleeping calls reach their deadline."""
    server = serve(flytewasm_bin, plugins, "--sandbox", "--sandbox-step-ms", "50")
    try:
        address = server.found[GRPC]
        assert readyz(server)[0] == 200
        outcomes = []

        def blocked(i):
            stub = agent_pb2_grpc.AsyncAgentServiceStub(grpc.insecure_channel(address))
            try:
                stub.CreateTask(create_request(template("sleep"), f"sleeper-{i}"), timeout=30)
                outcomes.append("answered")
            except grpc.RpcError as err:
                outcomes.append(err.code())

        callers = [threading.Thread(target=blocked, args=(i,)) for i in range(80)]
        for caller in callers:
            caller.start()
        status, reason = eventually(lambda: readyz(server), lambda r: r[0] == 503, "not ready while saturated")
        assert "every call slot of plugin testing is taken" in reason, reason

        agent = agent_pb2_grpc.AsyncAgentServiceStub(channel(address))
        _, _, spark = serialize(minimal, tmp_path, "minimal")
        meta = agent.CreateTask(create_request(spark, "while-saturated"), timeout=30).resource_meta
        for caller in callers:
            caller.join(timeout=60)
        assert len(outcomes) == 80
        # Every blocked call ended: a failure at its deadline, or refused as busy (retryable).
        assert set(outcomes) <= {"answered", grpc.StatusCode.UNAVAILABLE}, set(outcomes)
        resource, _ = get_until_done(agent, spark, meta, timeout=60)
        assert resource.phase == Phase.SUCCEEDED
        eventually(lambda: readyz(server), lambda r: r[0] == 200, "ready again")
    finally:
        server.stop()


def eventually(probe, done, what, timeout=30):
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if done(value):
            return value
        assert time.monotonic() < deadline, f"{what}: last {value}"
        time.sleep(0.05)


def test_no_cluster_is_not_ready(flytewasm_bin, plugins, tmp_path):
    kubeconfig = tmp_path / "nowhere.kubeconfig"
    kubeconfig.write_text(
        "apiVersion: v1\nkind: Config\ncurrent-context: nowhere\n"
        "clusters: [{name: nowhere, cluster: {server: 'http://127.0.0.1:1'}}]\n"
        "contexts: [{name: nowhere, context: {cluster: nowhere, user: nobody}}]\n"
        "users: [{name: nobody, user: {}}]\n"
    )
    config = agent_support.host_config(tmp_path, agent_support.write_meta_keys(tmp_path))
    server = serve(flytewasm_bin, plugins, "--config", config, env={"KUBECONFIG": str(kubeconfig)})
    try:
        status, reason = eventually(lambda: readyz(server), lambda r: r[0] == 503, "not ready without a cluster")
        assert "the cluster is not answering" in reason, reason
    finally:
        server.stop()


def test_serve_refuses_to_start_without_resource_meta_keys(flytewasm_bin, plugins):
    result = flytewasm(flytewasm_bin, "serve", "--plugins", plugins, "--grpc", "127.0.0.1:0", "--http", "127.0.0.1:0")
    assert result.returncode != 0
    assert "security.resource-meta-keys" in result.stderr, result.stderr


def test_resource_meta_from_elsewhere_or_edited_is_refused(flytewasm_bin, plugins):
    """Consistent edits of a genuine meta (another execution, namespace or
    kind) and a genuine meta of another deployment are INVALID_ARGUMENT,
    and the cluster is not written to."""
    ours = serve(flytewasm_bin, plugins, "--sandbox", "--sandbox-step-ms", "50")
    theirs = serve(flytewasm_bin, plugins, "--sandbox", "--sandbox-step-ms", "50")
    try:
        agent = agent_pb2_grpc.AsyncAgentServiceStub(channel(ours.found[GRPC]))
        other = agent_pb2_grpc.AsyncAgentServiceStub(channel(theirs.found[GRPC]))
        genuine = agent.CreateTask(create_request(template("run"), "victim"), timeout=30).resource_meta
        foreign = other.CreateTask(create_request(template("run"), "victim"), timeout=30).resource_meta
        start = genuine.index(b"{")
        header, payload, tag = genuine[:start], agent_support.meta_json(genuine), genuine[-32:]
        edits = []
        for path, value in [
            (("execution", "name"), "another-execution"),
            (("namespace",), "kube-system"),
            (("name",), "kube-proxy"),
            (("pluginId",), "spark"),
        ]:
            edited = json.loads(json.dumps(payload))
            node = edited
            for key in path[:-1]:
                node = node[key]
            node[path[-1]] = value
            edits.append(header + json.dumps(edited).encode() + tag)
        for meta in [*edits, foreign]:
            for call in (agent.GetTask, agent.DeleteTask):
                request_type = agent_pb2.GetTaskRequest if call == agent.GetTask else agent_pb2.DeleteTaskRequest
                with pytest.raises(grpc.RpcError) as err:
                    call(request_type(resource_meta=meta), timeout=10)
                assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT, err.value.details()
                assert "resource_meta" in err.value.details()
        # The victim's object is untouched and still running.
        assert configmap(ours.found[SANDBOX], genuine)["data"]["behaviour"] == "run"
        resource = agent.GetTask(agent_pb2.GetTaskRequest(resource_meta=genuine), timeout=10).resource
        assert resource.phase == Phase.RUNNING
    finally:
        ours.stop()
        theirs.stop()


def test_a_task_outside_the_namespace_policy_is_refused(flytewasm_bin, plugins, tmp_path):
    config = agent_support.host_config(
        tmp_path, agent_support.write_meta_keys(tmp_path), '  namespaces: ["{project}-{domain}"]\n'
    )
    server = serve(flytewasm_bin, plugins, "--sandbox", "--config", config)
    try:
        agent = agent_pb2_grpc.AsyncAgentServiceStub(channel(server.found[GRPC]))
        allowed = agent.CreateTask(create_request(template("run"), "inside"), timeout=30).resource_meta
        assert configmap(server.found[SANDBOX], allowed)["data"]["behaviour"] == "run"
        request = create_request(template("run"), "outside")
        request.task_execution_metadata.namespace = "kube-system"
        meta = agent.CreateTask(request, timeout=30).resource_meta
        resource = agent.GetTask(agent_pb2.GetTaskRequest(resource_meta=meta), timeout=10).resource
        assert resource.phase == Phase.FAILED
        assert "namespace `kube-system` is not allowed" in resource.message, resource.message
        url = f"{server.found[SANDBOX]}/api/v1/namespaces/kube-system/configmaps/outside-n0-0"
        with pytest.raises(urllib.error.HTTPError) as err:
            urllib.request.urlopen(url, timeout=5)
        assert err.value.code == 404
    finally:
        server.stop()
