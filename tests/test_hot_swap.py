"""Hot swap under load: `flytewasm serve --sandbox` watches its plugin
directory while tasks are in flight and a client calls GetTask in a loop
the whole time. The Spark plugin is replaced by a rebuilt version, broken,
and removed; no GetTask call fails, in-flight tasks complete, and new tasks
use whatever version serves. (Finer cases — slow writes, future contract
versions, the allow-list, sealed .cwasm — are in host/tests/hot_swap.rs.)"""

import hashlib
import subprocess
import threading
import time
import urllib.request

import grpc
import pytest
from flyteidl.admin import agent_pb2
from flyteidl.service.agent_pb2_grpc import AsyncAgentServiceStub

import agent_support
from agent_support import category, channel, create_request, get_until_done, plugins_listing, publish, sandbox_object, wait_for
from conftest import ROOT

NEXT = ROOT / "target/test-plugins/spark-next.wasm"
WIT_NEXT = ROOT / "target/test-plugins/wit-next.wasm"


def sha256(data):
    return "sha256:" + hashlib.sha256(data).hexdigest()


class GetTaskLoop(threading.Thread):
    """GetTask on every known task, over and over, counting failures."""

    def __init__(self, agent, template):
        super().__init__(daemon=True)
        self.agent, self.template = agent, template
        self.metas, self.calls, self.failures = [], 0, []
        self.stopping = threading.Event()

    def run(self):
        while not self.stopping.is_set():
            for meta in list(self.metas):
                try:
                    self.agent.GetTask(
                        agent_pb2.GetTaskRequest(resource_meta=meta, task_category=category(self.template)), timeout=10
                    )
                    self.calls += 1
                except grpc.RpcError as err:
                    self.failures.append(f"{err.code()}: {err.details()}")
            time.sleep(0.005)


def test_plugins_swap_under_load(flytewasm_bin, plugins_dir, template, tmp_path):
    if not NEXT.exists():
        pytest.fail(f"{NEXT} does not exist: run `just build-plugins`")
    directory = tmp_path / "plugins"
    directory.mkdir()
    old_bytes, new_bytes = (plugins_dir / "spark.wasm").read_bytes(), NEXT.read_bytes()
    publish(directory, "spark.wasm", old_bytes)
    server = agent_support.serve(flytewasm_bin, directory, "--sandbox", "--sandbox-step-ms", "100")
    loop = None
    try:
        agent = AsyncAgentServiceStub(channel(server.found[agent_support.GRPC]))
        loop = GetTaskLoop(agent, template)
        loop.start()
        slow = {"sandbox.flytewasm.io/step-ms": "700"}
        before = [agent.CreateTask(create_request(template, f"swap-old{i}", slow), timeout=30).resource_meta for i in range(3)]
        loop.metas.extend(before)
        assert agent_support.meta_json(before[0])["pluginDigest"] == sha256(old_bytes)

        # A rebuilt plugin lands: new tasks get it, running ones carry on.
        publish(directory, "spark.wasm", new_bytes)
        wait_for("the new version serves", lambda: any(
            p["state"] == "serving" and p["version"] == "0.1.0-next" for p in plugins_listing(server)))
        after = agent.CreateTask(create_request(template, "swap-new", slow), timeout=30).resource_meta
        loop.metas.append(after)
        assert agent_support.meta_json(after)["pluginDigest"] == sha256(new_bytes)
        app = sandbox_object(server, after)
        assert app["metadata"]["annotations"]["flytewasm.io/plugin-digest"] == sha256(new_bytes)
        listing = plugins_listing(server)
        assert any(p["state"] == "retired" and p["digest"] == sha256(old_bytes) for p in listing), listing

        # A broken file is refused; the version serving keeps serving.
        publish(directory, "spark.wasm", b"\0asm\x0d\0\x01\0 truncated")
        wait_for("the broken file is refused", lambda: any(
            p.get("lastError") and "spark.wasm" in p["file"] for p in plugins_listing(server)))
        listed = subprocess.run(
            [str(flytewasm_bin), "plugins", "--addr", server.found[agent_support.HTTP]],
            capture_output=True, text=True, timeout=30,
        )
        assert listed.returncode == 0, listed.stderr
        assert "0.1.0-next" in listed.stdout and "not a valid WebAssembly component" in listed.stdout, listed.stdout
        still = agent.CreateTask(create_request(template, "swap-broken", slow), timeout=30).resource_meta
        assert agent_support.meta_json(still)["pluginDigest"] == sha256(new_bytes)

        # A plugin for a future contract version is refused by name.
        publish(directory, "future.wasm", WIT_NEXT.read_bytes())
        wait_for("the future-contract plugin is refused", lambda: any(
            "future.wasm" in p["file"] and "@0.2.0" in (p.get("lastError") or "") for p in plugins_listing(server)))

        # Written slowly in place: never read half-written.
        with open(directory / "spark.wasm", "wb") as f:
            step = len(old_bytes) // 10 + 1
            for start in range(0, len(old_bytes), step):
                f.write(old_bytes[start:start + step])
                f.flush()
                time.sleep(0.03)
                serving = [p for p in plugins_listing(server) if p["state"] == "serving"]
                assert [p["version"] for p in serving] == ["0.1.0-next"], serving
        wait_for("the slowly written file serves", lambda: any(
            p["state"] == "serving" and p["version"] == "0.1.0" and not p.get("lastError")
            for p in plugins_listing(server)))
        loop.metas.append(agent.CreateTask(create_request(template, "swap-slow", slow), timeout=30).resource_meta)

        for meta in before + [after]:
            resource, seen = get_until_done(agent, template, meta)
            assert resource.phase == 3, seen  # SUCCEEDED

        # Removed: no new tasks of that type; existing ones still answer.
        (directory / "spark.wasm").unlink()
        wait_for("the task type is gone", lambda: not any(p["state"] == "serving" for p in plugins_listing(server)))
        with pytest.raises(grpc.RpcError) as err:
            agent.CreateTask(create_request(template, "swap-gone"), timeout=30)
        assert err.value.code() == grpc.StatusCode.NOT_FOUND
        resource, _ = get_until_done(agent, template, still)
        assert resource.phase == 3

        loop.stopping.set()
        loop.join(timeout=30)
        assert loop.failures == [], loop.failures[:5]
        assert loop.calls > 50, loop.calls
        metrics = urllib.request.urlopen(f"{server.found[agent_support.HTTP]}/metrics").read().decode()
        assert 'flytewasm_plugin_swaps_total{plugin="spark"} 3' in metrics, metrics
        assert "flytewasm_plugin_load_failures_total" in metrics
    finally:
        if loop is not None:
            loop.stopping.set()
        code, output = server.stop()
        assert code == 0, output


def test_the_allow_list_refuses_unlisted_plugins(flytewasm_bin, plugins_dir, tmp_path):
    directory = tmp_path / "plugins"
    directory.mkdir()
    old_bytes = (plugins_dir / "spark.wasm").read_bytes()
    publish(directory, "spark.wasm", old_bytes)
    allow = tmp_path / "allow.yaml"
    allow.write_text(f"spark: ['{sha256(old_bytes)}']\n")
    server = agent_support.serve(flytewasm_bin, directory, "--sandbox", "--allow-list", allow)
    try:
        publish(directory, "spark.wasm", NEXT.read_bytes())
        wait_for("the unlisted build is refused", lambda: any(
            "not on the allow-list" in (p.get("lastError") or "") for p in plugins_listing(server)))
        serving = [p for p in plugins_listing(server) if p["state"] == "serving"]
        assert [p["digest"] for p in serving] == [sha256(old_bytes)]
    finally:
        code, output = server.stop()
        assert code == 0, output
