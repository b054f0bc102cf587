"""Restarts lose nothing: `flytewasm serve` is killed with SIGKILL at random
points of launch, monitor, abort and finalize, started again, and the same
requests continue with the same resource_meta — as propeller would, which
repeats a call that got no answer. The cluster (`flytewasm sandbox`) is a
separate process that outlives the kills. Launch is never duplicated, an
abort asked for before a kill still removes the object, and our finalizer
never stays behind.

Each run prints its seed; FLYTEWASM_RESTART_SEED replays it, and
FLYTEWASM_RESTART_ROUNDS (default 3) sets the kills per phase."""

import json
import os
import random
import signal
import threading
import time
import urllib.parse
import urllib.request

import grpc
import pytest
from flyteidl.admin import agent_pb2
from flyteidl.service.agent_pb2_grpc import AsyncAgentServiceStub

import agent_support
from agent_support import GRPC, SANDBOX, Phase, category, channel, create_request, get_until_done

NAMESPACE = "flytesnacks-development"
FINALIZER = "flyte.org/finalizer-k8s"
SLOW = {"sandbox.flytewasm.io/step-ms": "700"}
ROUNDS = int(os.environ.get("FLYTEWASM_RESTART_ROUNDS", "3"))


@pytest.fixture(scope="module")
def rng():
    seed = int(os.environ.get("FLYTEWASM_RESTART_SEED", random.randrange(2**32)))
    print(f"restarts: seed {seed} (FLYTEWASM_RESTART_SEED={seed} replays it)")
    return random.Random(seed)


@pytest.fixture(scope="module")
def cluster(flytewasm_bin, plugins_dir, tmp_path_factory):
    kubeconfig = tmp_path_factory.mktemp("restarts") / "sandbox.kubeconfig"
    process = agent_support.sandbox(flytewasm_bin, plugins_dir, kubeconfig)
    yield process, kubeconfig
    process.stop()


class Host:
    """`flytewasm serve` against the shared cluster, restartable."""

    def __init__(self, flytewasm_bin, plugins_dir, cluster, tmp_path):
        keys = agent_support.write_meta_keys(tmp_path)
        config = agent_support.host_config(tmp_path, keys, "k8s:\n  inject-finalizer: true\n")
        self.args = (flytewasm_bin, plugins_dir, "--config", config)
        self.env = {"KUBECONFIG": str(cluster[1])}
        self.kills = 0
        self.start()

    def start(self):
        self.process = agent_support.serve(*self.args, env=self.env)
        self.agent = AsyncAgentServiceStub(channel(self.process.found[GRPC]))

    def kill_after(self, seconds):
        """SIGKILL the process `seconds` from now (from another thread)."""
        process = self.process.proc

        def kill():
            process.send_signal(signal.SIGKILL)

        timer = threading.Timer(seconds, kill)
        timer.start()
        return timer

    def restart(self):
        """Make sure it is dead (killed now if the timer has not fired), then start anew."""
        self.process.stop(signal.SIGKILL)
        self.kills += 1
        self.start()


@pytest.fixture
def host(flytewasm_bin, plugins_dir, cluster, tmp_path, request):
    host = Host(flytewasm_bin, plugins_dir, cluster, tmp_path)
    yield host
    host.process.stop()
    print(f"restarts: {request.node.name}: {host.kills} SIGKILLs of serve")


def objects(cluster, execution):
    """The SparkApplications of an execution, as the cluster has them."""
    selector = urllib.parse.quote(f"execution-id={execution}")
    url = (
        f"{cluster[0].found[SANDBOX]}/apis/sparkoperator.k8s.io/v1beta2/namespaces/{NAMESPACE}/"
        f"sparkapplications?labelSelector={selector}"
    )
    with urllib.request.urlopen(url, timeout=5) as response:
        return json.load(response)["items"]


def eventually(check, what, timeout=30):
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, what
        time.sleep(0.1)


def answered(call):
    """Run a call that the host may be killed during; None when it got no answer."""
    try:
        return call()
    except grpc.RpcError as err:
        assert err.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.CANCELLED, grpc.StatusCode.UNKNOWN), err
        return None


def test_launch_is_not_duplicated(host, cluster, template, rng):
    for round in range(ROUNDS):
        execution = f"restart-launch-{round}"
        request = create_request(template, execution, SLOW)
        timer = host.kill_after(rng.uniform(0.0, 0.3))
        first = answered(lambda: host.agent.CreateTask(request, timeout=10))
        timer.join()
        host.restart()
        # Propeller repeats a create it got no answer for; even a second
        # create of an answered one must not make another object.
        meta = host.agent.CreateTask(request, timeout=30).resource_meta
        if first is not None:
            same = ("pluginId", "namespace", "name", "execution")
            before, after = agent_support.meta_json(first.resource_meta), agent_support.meta_json(meta)
            assert {k: before[k] for k in same} == {k: after[k] for k in same}
        assert len(objects(cluster, execution)) == 1
        resource, _ = get_until_done(host.agent, template, meta, timeout=60)
        assert resource.phase == Phase.SUCCEEDED


def test_monitoring_survives_kills(host, cluster, template, rng):
    meta = host.agent.CreateTask(create_request(template, "restart-monitor", SLOW), timeout=30).resource_meta
    phases = []
    for _ in range(ROUNDS):
        timer = host.kill_after(rng.uniform(0.1, 0.8))
        while True:
            resource = answered(
                lambda: host.agent.GetTask(
                    agent_pb2.GetTaskRequest(resource_meta=meta, task_category=category(template)), timeout=10
                ).resource
            )
            if resource is None:
                break
            phases.append(resource.phase)
            time.sleep(0.05)
        timer.join()
        host.restart()
    resource, seen = get_until_done(host.agent, template, meta, timeout=60)
    assert resource.phase == Phase.SUCCEEDED, phases + seen
    assert len(objects(cluster, "restart-monitor")) == 1


def test_an_abort_asked_before_a_kill_still_removes_the_object(host, cluster, template, rng):
    for round in range(ROUNDS):
        execution = f"restart-abort-{round}"
        meta = host.agent.CreateTask(create_request(template, execution, SLOW), timeout=30).resource_meta
        time.sleep(rng.uniform(0.0, 1.0))
        delete = agent_pb2.DeleteTaskRequest(resource_meta=meta, task_category=category(template))
        timer = host.kill_after(rng.uniform(0.0, 0.05))
        done = answered(lambda: host.agent.DeleteTask(delete, timeout=10))
        timer.join()
        host.restart()
        if done is None:
            host.agent.DeleteTask(delete, timeout=30)  # propeller repeats an unanswered abort
        eventually(lambda: objects(cluster, execution) == [], f"{execution}: the aborted object is still there")


def test_finalizers_are_removed_despite_kills(host, cluster, template, rng):
    for round in range(ROUNDS):
        execution = f"restart-finalize-{round}"
        meta = host.agent.CreateTask(create_request(template, execution, SLOW), timeout=30).resource_meta
        assert FINALIZER in objects(cluster, execution)[0]["metadata"].get("finalizers", [])
        # Kill around the moment the task ends (three steps of 700 ms), when
        # the first GetTask that sees the end answers and then records it,
        # removing the finalizer in the same write.
        timer = host.kill_after(rng.uniform(1.8, 2.6))
        while answered(
            lambda: host.agent.GetTask(
                agent_pb2.GetTaskRequest(resource_meta=meta, task_category=category(template)), timeout=10
            )
        ):
            time.sleep(0.05)
        timer.join()
        host.restart()
        resource, _ = get_until_done(host.agent, template, meta, timeout=60)
        assert resource.phase == Phase.SUCCEEDED
        # That write follows the answer (EndWrites::Background), so it may land just after.
        eventually(
            lambda: FINALIZER not in objects(cluster, execution)[0]["metadata"].get("finalizers", []),
            f"{execution}: the finalizer is still on the object",
        )
