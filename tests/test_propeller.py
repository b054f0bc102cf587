"""`flytewasm serve` as FlytePropeller uses it: the propeller emulator
(`propeller_emulator.Emulator`) drives node executions against `serve`
replicas round robin, with propeller's attempts, deadlines, resyncs and
aborts, while `flytewasm sandbox` (a separate process, one per test) plays
the cluster and, where a test says so, injects faults.

Each test checks several independent properties and reports every one of
them (`[ok]` / `[FAIL]` lines with -s), then fails if any failed, so one run
shows all that holds and all that does not. Objects are found by the labels
the host puts on them (`execution-id`, `node-id`, `app.kubernetes.io/
managed-by`, `flytewasm.io/attempt`), never by decoding resource_meta.

FLYTEWASM_PROPELLER_FOREIGN sets the number of foreign objects of the
bounded-memory test (default 10,000)."""

import http.client
import json
import os
import re
import signal
import threading
import time
import urllib.parse
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import pytest
from flytekit import task
from flytekitplugins.flytewasm import BatchJob

import agent_support
from agent_support import GRPC, HTTP, SANDBOX
from conftest import serialize
from propeller_emulator import (
    ATTEMPT_LABEL,
    MANAGED_BY,
    NAMESPACE,
    Emulator,
    LiveObjectSampler,
    NodeSpec,
    SandboxApi,
    PHASE,
    faults_served,
    finished,
    live,
)

OUTCOME = "sandbox.flytewasm.io/outcome"
STEP = "sandbox.flytewasm.io/step-ms"
RESYNC = 0.4
TERMINAL = ("SUCCEEDED", "FAILED", "RETRYABLE_FAILED")


@task(task_config=BatchJob(parallelism=2, completions=2))
def crunch(n: int) -> int:
    return n


@pytest.fixture(scope="module")
def batch_template(tmp_path_factory):
    """A `batch_job` TaskTemplate, serialized by flytekit."""
    _, _, template = serialize(crunch, tmp_path_factory.mktemp("batch"), "crunch")
    assert template.type == "batch_job"
    return template


# ---------------------------------------------------------------------------
# Processes: one sandbox per test, serve replicas against it


def tasks_section(**overrides):
    """The host config's `tasks:` section: the defaults, with `overrides`
    (Python names: retention_seconds=3 → retention-seconds: 3)."""
    values = {
        "create-answer-within-ms": 150,
        "launch-deadline-seconds": 600,
        "max-consecutive-failures": 10,
        "retention-seconds": 3600,
        "keep-finished": False,
        "janitor-interval-seconds": 60,
        "delete-propagation": "Background",
    }
    values.update({k.replace("_", "-"): v for k, v in overrides.items()})
    lines = [f"  {k}: {json.dumps(v)}" for k, v in values.items()]
    return "tasks:\n" + "\n".join(lines) + "\n"


class Replica:
    """One `flytewasm serve` process."""

    def __init__(self, process):
        self.process = process
        self.address = process.found[GRPC]
        self.http = process.found[HTTP]
        self.pid = process.proc.pid

    def kill(self):
        self.process.proc.send_signal(signal.SIGKILL)
        self.process.proc.wait(10)

    def rss_bytes(self):
        try:
            with open(f"/proc/{self.pid}/status") as f:
                match = re.search(r"VmRSS:\s+(\d+) kB", f.read())
            return int(match.group(1)) * 1024 if match else None
        except FileNotFoundError:
            return None

    def metric(self, name):
        """The sum of a Prometheus metric's samples (every label set), or None."""
        text = urllib.request.urlopen(f"{self.http}/metrics", timeout=5).read().decode()
        values = [
            float(m.group(1))
            for m in re.finditer(rf"^{re.escape(name)}(?:{{[^}}]*}})?\s+(\S+)$", text, re.MULTILINE)
        ]
        return sum(values) if values else None


class Cluster:
    """A `flytewasm sandbox` process and the serve replicas against it, all
    sharing one resource_meta keys file."""

    def __init__(self, flytewasm_bin, plugins_dir, tmp_path, *sandbox_args):
        self.bin, self.plugins, self.tmp = flytewasm_bin, plugins_dir, tmp_path
        self.kubeconfig = tmp_path / "sandbox.kubeconfig"
        # As agent_support.sandbox starts it, plus `sandbox_args`.
        self.sandbox = agent_support.Process(
            [flytewasm_bin, "sandbox", "--port", "0", "--plugins", plugins_dir,
             "--kubeconfig", self.kubeconfig, "--step-ms", "100", *sandbox_args],
            wait_for=[SANDBOX],
        )
        self.api = SandboxApi(self.sandbox.found[SANDBOX])
        self.keys = agent_support.write_meta_keys(tmp_path)
        self.replicas = []
        self.configs = 0

    def serve(self, *args, **tasks):
        """A replica with the `tasks` settings and the extra flags `args`."""
        self.configs += 1
        config = self.tmp / f"host-{self.configs}.yaml"
        config.write_text(f"security:\n  resource-meta-keys: {self.keys}\n{tasks_section(**tasks)}")
        process = agent_support.serve(
            self.bin, self.plugins, "--config", config, *args, env={"KUBECONFIG": str(self.kubeconfig)}
        )
        replica = Replica(process)
        self.replicas.append(replica)
        return replica

    def stop(self):
        for replica in self.replicas:
            if replica.process.proc.poll() is None:
                replica.process.stop(signal.SIGKILL)
        self.sandbox.stop()


@pytest.fixture
def cluster(flytewasm_bin, plugins_dir, tmp_path):
    cluster = Cluster(flytewasm_bin, plugins_dir, tmp_path)
    yield cluster
    cluster.stop()


@pytest.fixture
def cluster_without_gc(flytewasm_bin, plugins_dir, tmp_path):
    """A sandbox without its garbage collector, whose pass over every
    object after each change makes 10,000 creates quadratic (the bounded
    memory test deletes nothing with dependents)."""
    cluster = Cluster(flytewasm_bin, plugins_dir, tmp_path, "--no-garbage-collector")
    yield cluster
    cluster.stop()


# ---------------------------------------------------------------------------
# Checking


class Checks:
    """Named checks, all evaluated; `done()` prints them and fails the test
    listing every one that failed."""

    def __init__(self, name):
        self.name = name
        self.results = []

    def __call__(self, ok, what, detail=""):
        self.results.append((bool(ok), what, str(detail)[:1500]))
        return bool(ok)

    def attempt(self, action, what):
        """Run a setup step; a failure is a failed check, not a crash."""
        try:
            action()
            return self(True, what)
        except Exception as err:
            return self(False, what, repr(err)[:600])

    def done(self):
        for ok, what, detail in self.results:
            print(f"  [{'ok' if ok else 'FAIL'}] {what}" + ("" if ok or not detail else f" -- {detail}"))
        failed = [f"{what}: {detail}" for ok, what, detail in self.results if not ok]
        assert not failed, f"{self.name}: {len(failed)} of {len(self.results)} checks failed:\n" + "\n".join(failed)


def summary(name, emulator, api=None, extra=""):
    """The one line a test prints: nodes, attempts (by how they ended),
    outcomes, calls, call errors, and the faults the sandbox served."""
    s = emulator.summary()
    served = ""
    if api is not None:
        try:
            served = f", faults served {faults_served(api.fault_state())}"
        except Exception as err:
            served = f", faults served unknown ({err!r:.80})"
    print(
        f"\npropeller: {name}: {s['nodes']} nodes, {s['attempts']} attempts {s['attempt_ends']}, "
        f"outcomes {s['outcomes']}, calls {s['calls']}, call errors {s['errors'] or 0}{served}{extra}"
    )


def wait_until(check, timeout, interval=0.2):
    deadline = time.monotonic() + timeout
    while True:
        if check():
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(interval)


def objects_of(api, key, kinds=("sparkapplications", "jobs"), namespace=NAMESPACE):
    selector = f"execution-id={key[0]},node-id={key[1]}"
    return [obj for plural in kinds for obj in api.list(plural, namespace, selector)]


def check_outcomes(checks, emulator, expected):
    """Every node ended as its fate says (SUCCEEDED / FAILED / ABORTED)."""
    wrong = [r.describe() for key, r in emulator.records.items() if r.outcome != expected[key]]
    counts = {o: sum(1 for v in expected.values() if v == o) for o in set(expected.values())}
    checks(not wrong, f"every node ends as it should {counts}", wrong)


def check_no_attempt_lost(checks, emulator, expected, what):
    """No attempt failed for any reason but the task's own: a succeeding
    node took one attempt, a failing node's attempts all ended on the
    task's failure, none on a create error or a system failure."""
    bad = []
    for key, r in emulator.records.items():
        ends = [a.end for a in r.attempts]
        if expected[key] == "SUCCEEDED" and ends != ["SUCCEEDED"]:
            bad.append(r.describe())
        elif expected[key] == "FAILED" and any(e not in ("RETRYABLE_FAILED", "FAILED") for e in ends):
            bad.append(r.describe())
    checks(not bad, f"no attempt failed because of {what}", bad)


def check_one_live(checks, sampler):
    checks(
        not sampler.violations,
        f"never more than one live object per node ({sampler.samples} samples)",
        sampler.violations[:10],
    )
    checks(sampler.samples > 10, f"the cluster was sampled ({sampler.samples} samples, errors {dict(sampler.errors)})")


def check_objects_seen(checks, sampler, emulator, keys=None):
    """Not vacuous: every node (of `keys`, else all) that was created had an
    object seen."""
    unseen = [
        r.key
        for r in emulator.records.values()
        if (keys is None or r.key in keys)
        and any(a.create and a.create.code == "OK" for a in r.attempts)
        and not sampler.seen.get(r.key)
    ]
    checks(not unseen, "every created node's object was seen in the cluster (by execution-id/node-id)", unseen[:10])


def check_labels(checks, sampler, emulator):
    """Every object carries managed-by and an attempt label naming one of
    the node's attempts; nothing in the namespace is unaccounted for."""
    attempts = {key: {str(a.retry_attempt) for a in r.attempts} for key, r in emulator.records.items()}
    bad = []
    for ident, labels in sampler.labels.items():
        key = (labels.get("execution-id"), labels.get("node-id"))
        if key not in attempts:
            continue
        if labels.get(MANAGED_BY) != "flytewasm" or labels.get(ATTEMPT_LABEL) not in attempts[key]:
            bad.append(f"{ident[2]}: {MANAGED_BY}={labels.get(MANAGED_BY)} {ATTEMPT_LABEL}={labels.get(ATTEMPT_LABEL)}")
    checks(
        not bad,
        f"every object is labelled {MANAGED_BY}=flytewasm and {ATTEMPT_LABEL}=<its attempt>",
        f"{len(bad)} of {len(sampler.labels)}: {bad[:5]}",
    )
    checks(not sampler.unattributed, "no object without execution-id/node-id labels", sorted(sampler.unattributed)[:5])


def check_no_delete_after_success(checks, emulator):
    """The emulator's own log: DeleteTask only for aborted nodes, only
    after their abort — never after a task ended."""
    bad = []
    for call in emulator.calls:
        if call.rpc != "DeleteTask":
            continue
        record = emulator.records[call.node]
        if record.abort_requested is None or call.at < record.abort_requested - 0.01:
            bad.append((call.node, "not aborted", call.at))
        attempt = record.attempts[call.attempt]
        if attempt.end in TERMINAL:
            bad.append((call.node, call.attempt, "after it ended", attempt.end))
    deletes = sum(1 for c in emulator.calls if c.rpc == "DeleteTask")
    checks(not bad, f"DeleteTask only to abort ({deletes} calls), never after a task ended", bad[:10])


def check_aborted_gone(checks, emulator, api, expected, timeout=15, kinds=("sparkapplications", "jobs")):
    aborted = [key for key, fate in expected.items() if fate == "ABORTED"]
    remaining = {}

    def gone():
        remaining.clear()
        for key in aborted:
            names = [o["metadata"]["name"] for o in objects_of(api, key, kinds)]
            if names:
                remaining[key] = names
        return not remaining

    checks(aborted and wait_until(gone, timeout), f"the {len(aborted)} aborted nodes' objects are gone", remaining)
    not_deleted = [emulator.records[k].describe() for k in aborted if emulator.records[k].deleted is None]
    checks(not not_deleted, "every aborted node's DeleteTask answered OK", not_deleted)


def check_same_terminal_answer(checks, emulator, addresses):
    """GetTask for a finished task, to each replica directly with the same
    resource_meta: the same terminal answer everywhere, the one the node
    ended on."""
    bad = []
    finished = [r for r in emulator.records.values() if r.outcome in ("SUCCEEDED", "FAILED") and r.resource_meta]
    for record in finished:
        answers = [emulator.get_task_on(address, record, timeout=10) for address in addresses]
        if len(set(answers)) != 1 or answers[0][0] not in TERMINAL or answers[0][0] != record.final[0]:
            bad.append(f"{record.key}: ended {record.final[0]}; replicas answer {answers}")
    checks(
        finished and not bad,
        f"the same terminal answer from each of {len(addresses)} replicas ({len(finished)} finished tasks)",
        bad[:8],
    )


# ---------------------------------------------------------------------------
# 1. Two replicas, round robin, one SIGKILLed and replaced midway


def test_two_replicas_round_robin_survive_a_kill(cluster, template):
    checks = Checks("round robin")
    a, b = cluster.serve(), cluster.serve()
    sampler = LiveObjectSampler(cluster.api, namespace=NAMESPACE).start()
    nodes, expected = [], {}
    for i in range(40):
        spec = NodeSpec(f"rr-{i // 10}", f"n{i % 10}", template, start_after=i * 0.1)
        fate = i % 10
        if fate <= 5:  # succeeds after ~2 s
            spec.annotations = {OUTCOME: "succeed", STEP: "700"}
            expected[spec.key] = "SUCCEEDED"
        elif fate <= 7:  # fails every attempt
            spec.annotations = {OUTCOME: "fail", STEP: "300"}
            expected[spec.key] = "FAILED"
        elif fate == 8:  # never ends: aborted
            spec.annotations = {OUTCOME: "run-forever", STEP: "300"}
            spec.abort_after = 2.0 + (i % 4) * 0.5
            expected[spec.key] = "ABORTED"
        else:  # would succeed after ~6 s: aborted midway
            spec.annotations = {OUTCOME: "succeed", STEP: "2000"}
            spec.abort_after = 2.5
            expected[spec.key] = "ABORTED"
        nodes.append(spec)

    emulator = Emulator([a.address, b.address], resync=RESYNC, max_attempts=4)
    emulator.start(nodes)
    time.sleep(2.5)
    # Mid-run, with creates, looks and aborts in flight. Calls to b fail
    # until the endpoints drop it (its readiness goes with the process);
    # the replacement pod joins the Service once it serves.
    b.kill()
    time.sleep(0.6)
    emulator.set_replicas([a.address])
    replacement = cluster.serve()
    emulator.set_replicas([a.address, replacement.address])
    emulator.wait(timeout=60)
    killed_calls = sum(1 for c in emulator.calls if c.replica == b.address and c.code != "OK")

    check_outcomes(checks, emulator, expected)
    check_aborted_gone(checks, emulator, cluster.api, expected)
    sampler.stop()
    check_one_live(checks, sampler)
    check_objects_seen(checks, sampler, emulator)
    check_labels(checks, sampler, emulator)
    check_same_terminal_answer(checks, emulator, [a.address, replacement.address])
    check_no_delete_after_success(checks, emulator)
    checks(killed_calls > 0, f"the kill was felt: {killed_calls} calls to the killed replica failed")
    checks(not emulator.callback_errors, "the emulator ran cleanly", emulator.callback_errors)
    summary("round robin + SIGKILL", emulator, extra=f", {killed_calls} calls failed on the killed replica")
    checks.done()


def shard_keys(index, count, keys=32):
    """The shard keys replica `index` of `count` caches (a contiguous range)."""
    return range(index * keys // count, (index + 1) * keys // count)


def test_three_sharded_replicas_each_cache_their_share(cluster, template):
    """Three replicas split the objects between their watch caches
    (`--shard-index`/`--shard-count`); propeller round-robins among them,
    so most looks land on a replica that reads another shard's object from
    the API. Every node still ends as it should."""
    checks = Checks("sharded replicas")
    replicas = [cluster.serve("--shard-index", str(i), "--shard-count", "3") for i in range(3)]
    sampler = LiveObjectSampler(cluster.api, namespace=NAMESPACE).start()
    nodes, expected = [], {}
    for i in range(30):
        spec = NodeSpec(f"shard-{i // 10}", f"n{i % 10}", template, start_after=i * 0.05)
        if i % 5 == 4:
            spec.annotations = {OUTCOME: "run-forever", STEP: "300"}
            spec.abort_after = 2.0
            expected[spec.key] = "ABORTED"
        elif i % 5 == 3:
            spec.annotations = {OUTCOME: "fail", STEP: "300"}
            expected[spec.key] = "FAILED"
        else:
            spec.annotations = {OUTCOME: "succeed", STEP: "500"}
            expected[spec.key] = "SUCCEEDED"
        nodes.append(spec)
    emulator = Emulator([r.address for r in replicas], resync=RESYNC, max_attempts=2)
    emulator.start(nodes)
    emulator.wait(timeout=90)

    check_outcomes(checks, emulator, expected)
    check_aborted_gone(checks, emulator, cluster.api, expected)
    sampler.stop()
    check_one_live(checks, sampler)
    check_same_terminal_answer(checks, emulator, [r.address for r in replicas])
    check_no_delete_after_success(checks, emulator)
    objects = cluster.api.list("sparkapplications", NAMESPACE, f"{MANAGED_BY}")
    keys = [int(o["metadata"]["labels"]["flytewasm.io/shard-key"]) for o in objects]
    for index, replica in enumerate(replicas):
        share = sum(1 for k in keys if k in shard_keys(index, 3))
        cached = replica.metric("flytewasm_watch_cached_objects")
        checks(cached is not None and 0 < cached <= share, f"replica {index} caches its share only: {cached} of its {share}")
    checks(len(set(keys)) > 1, f"the objects spread over shard keys: {sorted(set(keys))}")
    checks(not emulator.callback_errors, "the emulator ran cleanly", emulator.callback_errors)
    summary("3 sharded replicas, round robin", emulator)
    checks.done()


# ---------------------------------------------------------------------------
# 2. Slow writes: longer than propeller's deadline


def test_create_answers_within_the_deadline_when_writes_are_slow(cluster, template):
    checks = Checks("slow writes")
    a, b = cluster.serve(), cluster.serve()
    sampler = LiveObjectSampler(cluster.api, namespace=NAMESPACE).start()
    slow = checks.attempt(lambda: cluster.api.faults(writeLatencyMs=4000), "the sandbox takes writeLatencyMs=4000")

    # Not vacuous: a write straight to the sandbox takes the 4 s too.
    measured = {}

    def timed_write():
        started = time.monotonic()
        body = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "latency-probe"}, "data": {}}
        measured["code"], _ = cluster.api.request("POST", f"api/v1/namespaces/{NAMESPACE}/configmaps", body, timeout=15)
        measured["seconds"] = time.monotonic() - started

    probe = threading.Thread(target=timed_write)
    probe.start()

    nodes = [
        NodeSpec(f"slow-{i // 6}", f"n{i % 6}", template, {OUTCOME: "succeed", STEP: "300"}, start_after=i * 0.25)
        for i in range(12)
    ]
    expected = {n.key: "SUCCEEDED" for n in nodes}
    emulator = Emulator([a.address, b.address], resync=RESYNC, max_attempts=3)
    emulator.start(nodes)
    time.sleep(7)  # every create happens while writes take 4 s
    if slow:
        cluster.api.faults(clear=True)
    emulator.wait(timeout=60)
    probe.join(20)
    sampler.stop()

    creates = [c for c in emulator.calls if c.rpc == "CreateTask"]
    slowest = max((c.seconds for c in creates), default=0)
    checks(
        slow and measured.get("seconds", 0) >= 3.5,
        "writes to the sandbox really were slow",
        f"a direct write took {measured.get('seconds', 0):.2f}s",
    )
    late = [(c.node, c.code, round(c.seconds, 2)) for c in creates if c.code != "OK" or c.seconds >= emulator.deadline]
    checks(
        not late,
        f"every CreateTask answered OK within the {emulator.deadline:.0f}s deadline (slowest {slowest:.2f}s)",
        late[:10],
    )
    check_no_attempt_lost(checks, emulator, expected, "write latency")
    check_outcomes(checks, emulator, expected)
    check_one_live(checks, sampler)
    check_objects_seen(checks, sampler, emulator)
    get_errors = [len(a.get_errors) for r in emulator.records.values() for a in r.attempts]
    summary(
        "slow writes",
        emulator,
        cluster.api,
        f", slowest CreateTask {slowest:.2f}s, GetTask errors {sum(get_errors)} (at most {max(get_errors)} in one "
        f"attempt; {emulator.max_system_failures} system-fail it)",
    )
    checks.done()


# ---------------------------------------------------------------------------
# 3. A ResourceQuota: tasks wait for a slot


def test_quota_makes_tasks_wait_for_resources(cluster, template):
    checks = Checks("quota")
    limit = 2
    quota = checks.attempt(
        lambda: cluster.api.create_quota(NAMESPACE, {"count/sparkapplications.sparkoperator.k8s.io": str(limit)}),
        f"the sandbox takes a ResourceQuota of {limit} SparkApplications",
    )
    # A finished object still counts against the quota until the janitor
    # deletes it, so retention is short here.
    a = cluster.serve(retention_seconds=2, janitor_interval_seconds=1, launch_deadline_seconds=120)
    sampler = LiveObjectSampler(cluster.api, namespace=NAMESPACE).start()
    nodes = [NodeSpec("quota", f"n{i}", template, {OUTCOME: "succeed", STEP: "500"}) for i in range(5)]
    expected = {n.key: "SUCCEEDED" for n in nodes}
    emulator = Emulator([a.address], resync=0.3, max_attempts=3)
    emulator.run(nodes, timeout=45)
    sampler.stop()

    waited = [r.key for r in emulator.records.values() if "WAITING_FOR_RESOURCES" in r.phases]
    checks(
        len(waited) >= len(nodes) - limit,
        f"the nodes beyond the quota report WAITING_FOR_RESOURCES ({len(waited)} did)",
        [r.describe() for r in emulator.records.values()],
    )
    check_outcomes(checks, emulator, expected)
    check_no_attempt_lost(checks, emulator, expected, "the quota")
    most = sampler.max_count.get(("SparkApplication", NAMESPACE), 0)
    checks(quota and most <= limit, f"at most {limit} SparkApplications existed at once ({most})")
    check_one_live(checks, sampler)
    summary("quota", emulator, extra=f", {len(waited)} waited for resources, at most {most} objects at once")
    checks.done()


# ---------------------------------------------------------------------------
# 4. API server 5xx and dropped watches


def test_api_errors_and_dropped_watches_lose_no_attempt(cluster, template):
    checks = Checks("5xx + watch drops")
    a, b = cluster.serve(), cluster.serve()
    sampler = LiveObjectSampler(cluster.api, namespace=NAMESPACE).start()
    errors = [{"verb": verb, "code": 503, "times": 3} for verb in ("get", "create", "patch")]
    injected = checks.attempt(lambda: cluster.api.faults(failNext=errors), "the sandbox takes failNext")
    nodes, expected = [], {}
    for i in range(20):
        fail = i % 5 == 4
        spec = NodeSpec(
            f"flaky-{i // 10}",
            f"n{i % 10}",
            template,
            {OUTCOME: "fail" if fail else "succeed", STEP: "300" if fail else "400"},
            start_after=i * 0.1,
        )
        expected[spec.key] = "FAILED" if fail else "SUCCEEDED"
        nodes.append(spec)
    emulator = Emulator([a.address, b.address], resync=RESYNC, max_attempts=2)
    emulator.start(nodes)
    for pause, settings in [
        # A burst longer than one create's client retries (9 tries): the
        # launch's own back-off carries it through.
        (0.5, {"dropWatches": True, "failNext": errors + [{"verb": "create", "code": 503, "times": 12}]}),
        (1.5, {"dropWatches": True}),
        (1.5, {"dropWatches": True, "failNext": [{"verb": "get", "code": 500, "times": 5}]}),
    ]:
        time.sleep(pause)
        if injected:
            cluster.api.faults(**settings)
    emulator.wait(timeout=60)
    sampler.stop()

    state = cluster.api.fault_state() if injected else {}
    served = faults_served(state) if injected else None
    checks(served, f"the sandbox served injected errors ({served})")
    creates = state.get("errorsServed", {}).get("create 503", 0)
    checks(creates >= 15, f"a create burst outlasted the client's retries ({creates} create 503s served)")
    check_outcomes(checks, emulator, expected)
    check_no_attempt_lost(checks, emulator, expected, "5xx or dropped watches")
    check_one_live(checks, sampler)
    check_objects_seen(checks, sampler, emulator)
    summary("5xx + watch drops", emulator, cluster.api if injected else None)
    checks.done()


def test_lost_answers_lose_no_task(cluster, template):
    """Answers the replicas gave that never reached propeller: a lost
    CreateTask answer starts the next attempt (whose launch aborts the
    first's object), a lost terminal GetTask answer is asked again and
    answered the same."""
    checks = Checks("lost answers")
    a, b = cluster.serve(), cluster.serve()
    sampler = LiveObjectSampler(cluster.api, namespace=NAMESPACE).start()
    lost = []

    def lose(rpc, record, attempt, response):
        node = int(record.spec.node_id[1:])
        if rpc == "CreateTask" and attempt.retry_attempt == 0 and node % 3 == 0:
            lost.append((record.key, rpc, attempt.retry_attempt))
            return True
        phase = PHASE.Name(response.resource.phase) if rpc == "GetTask" else ""
        first_end = phase in TERMINAL and not any(k == record.key and r == "GetTask" for k, r, _ in lost)
        if first_end:
            lost.append((record.key, rpc, attempt.retry_attempt))
        return first_end

    nodes, expected = [], {}
    for i in range(12):
        fail = i % 4 == 3
        spec = NodeSpec("lossy", f"n{i}", template, {OUTCOME: "fail" if fail else "succeed", STEP: "300"}, start_after=i * 0.1)
        expected[spec.key] = "FAILED" if fail else "SUCCEEDED"
        nodes.append(spec)
    emulator = Emulator([a.address, b.address], resync=RESYNC, max_attempts=3, lose=lose)
    emulator.run(nodes, timeout=90)
    sampler.stop()

    lost_creates = {k for k, rpc, _ in lost if rpc == "CreateTask"}
    lost_ends = {k for k, rpc, _ in lost if rpc == "GetTask"}
    checks(len(lost_creates) == 4 and len(lost_ends) >= 8, f"answers were lost ({len(lost_creates)} CreateTask, {len(lost_ends)} terminal GetTask)")
    check_outcomes(checks, emulator, expected)
    # After a lost terminal answer the next GetTask gave the same end.
    differed = [emulator.records[k].describe() for k in lost_ends if emulator.records[k].outcome != expected[k]]
    checks(not differed, "every end asked again after its answer was lost is the same", differed)
    # Each lost create cost one attempt, nothing else did.
    bad = []
    for key, record in emulator.records.items():
        ends = [a.end for a in record.attempts]
        first = ["CREATE_ERROR"] if key in lost_creates else []
        if expected[key] == "SUCCEEDED" and ends != first + ["SUCCEEDED"]:
            bad.append(record.describe())
    checks(not bad, "a succeeding node took one attempt more per lost CreateTask answer, no other", bad)
    check_one_live(checks, sampler)
    # The first attempt of a node whose CreateTask answer was lost did run:
    # the next attempt's launch stopped it (nothing of it is left live).
    left = [
        obj["metadata"]["name"]
        for key in lost_creates
        for obj in objects_of(cluster.api, key)
        if obj["metadata"]["labels"].get(ATTEMPT_LABEL) == "0" and live(obj)
    ]
    ran = {
        (labels.get("execution-id"), labels.get("node-id"))
        for labels in sampler.labels.values()
        if labels.get(ATTEMPT_LABEL) == "0"
    }
    checks(lost_creates <= ran, "the first attempts whose answers were lost were created", sorted(lost_creates - ran))
    checks(not left, "no first attempt whose answer was lost is still running", left)
    summary("lost answers", emulator, cluster.api)
    checks.done()


# ---------------------------------------------------------------------------
# 5. Retention: the janitor deletes finished objects, not before their time


def test_the_janitor_deletes_finished_objects_after_retention(cluster, template):
    checks = Checks("retention")
    retention = 3
    a = cluster.serve(retention_seconds=retention, janitor_interval_seconds=1)
    b = cluster.serve(retention_seconds=retention, janitor_interval_seconds=1)
    answers = []  # (node, seconds after the end, [answer per replica])

    def look_again(record, after):
        answers.append((record.key, after, [emulator.get_task_on(r.address, record, timeout=5) for r in (a, b)]))

    def on_finish(record):
        # Within retention, every replica still gives the terminal answer:
        # at once, and again retention/2 later.
        look_again(record, 0.0)
        timer = threading.Timer(retention / 2, look_again, (record, retention / 2))
        timer.start()
        timers.append(timer)

    timers = []
    sampler = LiveObjectSampler(cluster.api, namespace=NAMESPACE, kinds=("sparkapplications",)).start()
    nodes = [
        NodeSpec("keep", f"n{i}", template, {OUTCOME: "fail" if i >= 4 else "succeed", STEP: "300"}) for i in range(6)
    ]
    expected = {n.key: "FAILED" if int(n.node_id[1:]) >= 4 else "SUCCEEDED" for n in nodes}
    emulator = Emulator([a.address, b.address], resync=0.3, max_attempts=1, on_finish=on_finish)
    emulator.run(nodes, timeout=45)
    for timer in timers:
        timer.join()
    right_after = len(cluster.api.list("sparkapplications", NAMESPACE, f"{MANAGED_BY}=flytewasm"))

    check_outcomes(checks, emulator, expected)
    wrong = [
        (key, after, got)
        for key, after, got in answers
        if len(set(got)) != 1 or got[0][0] != emulator.records[key].final[0] or got[0][0] not in TERMINAL
    ]
    checks(
        answers and not wrong,
        f"within retention GetTask gives the terminal answer on every replica ({len(answers)} looks)",
        wrong[:8],
    )
    checks(right_after > 0, f"finished objects stay until retention ({right_after} labelled {MANAGED_BY} right after)")

    remaining = {}

    def none_left():
        remaining.clear()
        for plural in ("sparkapplications", "jobs", "pods"):
            names = [o["metadata"]["name"] for o in cluster.api.list(plural, NAMESPACE, f"{MANAGED_BY}=flytewasm")]
            ours = [o["metadata"]["name"] for o in cluster.api.list(plural, NAMESPACE, "execution-id=keep")]
            if names or ours:
                remaining[plural] = sorted(set(names + ours))
        return not remaining

    ended = max(r.finished_monotonic for r in emulator.records.values())
    gone = wait_until(none_left, retention + 1 + 10)
    took = time.monotonic() - ended
    sampler.stop()
    checks(
        gone, f"no {MANAGED_BY}=flytewasm object remains after retention (checked {took:.1f}s after the last end)", remaining
    )
    # Not before their time: each object was still there at least
    # retention - 1 s after its task ended here (the host saw the end up to
    # a resync earlier; samples are ~0.1-0.3 s apart).
    early = []
    for ident, last in sampler.last_seen.items():
        labels = sampler.labels[ident]
        record = emulator.records.get((labels.get("execution-id"), labels.get("node-id")))
        if record is not None and last - record.finished_monotonic < retention - 1.0:
            early.append(f"{ident[2]}: gone {last - record.finished_monotonic:.1f}s after its task ended")
    checks(sampler.last_seen and not early, f"no finished object was deleted before retention ({retention}s)", early)
    summary("retention", emulator, extra=f", objects gone {took:.1f}s after the last task ended")
    checks.done()


# ---------------------------------------------------------------------------
# 6. Aborting a batch_job removes the Job and its pods


@pytest.mark.parametrize("protocol", ["agent", "connector"])
def test_aborting_a_batch_job_removes_the_job_and_its_pods(cluster, batch_template, protocol):
    """Through Flyte 1's agent protocol, and Flyte 2's connector protocol."""
    checks = Checks(f"batch_job abort ({protocol})")
    a = cluster.serve()
    spec = NodeSpec(f"batch-abort-{protocol}", "n0", batch_template, {OUTCOME: "run-forever", STEP: "300"})
    emulator = Emulator([a.address], resync=RESYNC, max_attempts=1, protocol=protocol)
    emulator.start([spec])

    jobs, pods = [], []
    checks(
        wait_until(lambda: jobs.extend(objects_of(cluster.api, spec.key, ("jobs",))) or jobs, 20),
        "the task's Job appears (found by execution-id/node-id)",
    )
    job = jobs[0]["metadata"]["name"] if jobs else None
    selector = f"job-name={job}"
    checks(
        job and wait_until(lambda: pods.extend(cluster.api.list("pods", NAMESPACE, selector)) or pods, 15),
        f"the Job's pods run ({selector})",
    )
    emulator.abort(spec.key)
    emulator.wait(timeout=30)
    record = emulator.records[spec.key]
    checks(record.outcome == "ABORTED" and record.deleted is not None, "DeleteTask answered OK", record.describe())

    left = {}

    def all_gone():
        left["jobs"] = [o["metadata"]["name"] for o in objects_of(cluster.api, spec.key, ("jobs",))]
        left["pods"] = [o["metadata"]["name"] for o in cluster.api.list("pods", NAMESPACE, selector)] if job else []
        return not left["jobs"] and not left["pods"]

    gone = wait_until(all_gone, 20)
    checks(not left.get("jobs"), "the Job is gone", left)
    checks(gone and pods, f"no pod with {selector} remains ({len(pods)} were running)", left)
    summary(f"batch_job abort ({protocol})", emulator, extra=f", job {job}, {len(pods)} pods")
    checks.done()


# ---------------------------------------------------------------------------
# 7. Everything at once: a kill, slow writes, a quota, 5xx, dropped watches
#    and lost answers, on Spark and batch_job tasks, then retention


def test_everything_at_once(cluster, template, batch_template):
    """The faults of the scenarios above together, as a bad day brings
    them: every node still ends as its fate says, one object per node lives
    at a time, aborted Jobs take their pods, and after retention nothing of
    ours is left in the cluster."""
    checks = Checks("everything at once")
    retention = 3
    # A node aborted after its first CreateTask answer was lost gets no
    # DeleteTask: the janitor aborts the object nobody asks about.
    settings = dict(retention_seconds=retention, janitor_interval_seconds=1, unconfirmed_abort_seconds=12)
    quota = checks.attempt(
        lambda: cluster.api.create_quota(NAMESPACE, {"count/sparkapplications.sparkoperator.k8s.io": "6"}),
        "the sandbox takes a ResourceQuota of 6 SparkApplications",
    )
    slow = checks.attempt(lambda: cluster.api.faults(writeLatencyMs=4000), "the sandbox takes writeLatencyMs=4000")
    a, b = cluster.serve(**settings), cluster.serve(**settings)
    sampler = LiveObjectSampler(cluster.api, namespace=NAMESPACE).start()
    pod_sampler = LiveObjectSampler(cluster.api, interval=0.3, kinds=("pods",), namespace=NAMESPACE).start()

    lost = []

    def lose(rpc, record, attempt, response):
        node = int(record.spec.node_id[1:])
        first = not any(k == record.key and r == rpc for k, r in lost)
        if rpc == "CreateTask":
            gone = attempt.retry_attempt == 0 and node % 4 == 1
        elif rpc == "GetTask":
            gone = first and PHASE.Name(response.resource.phase) in TERMINAL and node % 2 == 0
        else:  # DeleteTask: the abort was done, propeller did not hear it
            gone = first
        if gone:
            lost.append((record.key, rpc))
        return gone

    nodes, expected, batch_nodes = [], {}, []
    for i in range(20):
        fate = i % 10
        spec = NodeSpec(f"mix-{i // 10}", f"n{fate}", template, start_after=i * 0.15)
        if fate <= 4:
            spec.annotations = {OUTCOME: "succeed", STEP: "500"}
            expected[spec.key] = "SUCCEEDED"
        elif fate <= 6:
            spec.annotations = {OUTCOME: "fail", STEP: "300"}
            expected[spec.key] = "FAILED"
        elif fate == 7:
            spec.annotations = {OUTCOME: "run-forever", STEP: "300"}
            spec.abort_after = 9.0
            expected[spec.key] = "ABORTED"
        else:
            spec.template = batch_template
            spec.annotations = {OUTCOME: "succeed" if fate == 8 else "run-forever", STEP: "300"}
            if fate == 9:
                spec.abort_after = 9.0
            expected[spec.key] = "SUCCEEDED" if fate == 8 else "ABORTED"
            batch_nodes.append(spec.key)
        nodes.append(spec)

    emulator = Emulator([a.address, b.address], resync=RESYNC, max_attempts=4, lose=lose)
    emulator.start(nodes)
    time.sleep(4)  # the first creates meet 4 s writes
    bursts = [{"verb": verb, "code": 503, "times": 4} for verb in ("get", "create", "patch", "delete")]
    if slow:
        cluster.api.faults(writeLatencyMs=0, dropWatches=True, failNext=bursts)
    time.sleep(1)
    b.kill()
    time.sleep(0.6)
    emulator.set_replicas([a.address])
    replacement = cluster.serve(**settings)
    emulator.set_replicas([a.address, replacement.address])
    time.sleep(2)
    if slow:
        cluster.api.faults(dropWatches=True, failNext=[{"verb": "get", "code": 500, "times": 5}])
    emulator.wait(timeout=120)
    sampler.stop()
    pod_sampler.stop()

    state = cluster.api.fault_state() if slow else {}
    lost_kinds = {rpc: sum(1 for _, r in lost if r == rpc) for rpc in ("CreateTask", "GetTask", "DeleteTask")}
    checks(slow and faults_served(state), f"the sandbox served injected errors ({faults_served(state)})")
    checks(
        all(lost_kinds.values()),
        f"answers of every call were lost ({lost_kinds})",
    )
    waited = [r.key for r in emulator.records.values() if "WAITING_FOR_RESOURCES" in r.phases]
    checks(quota, f"the quota was in force ({len(waited)} nodes waited for resources)")
    check_outcomes(checks, emulator, expected)
    check_one_live(checks, sampler)
    # (An aborted node may never have had one: its abort came before a
    # slow launch landed, and the launch stood down.)
    check_objects_seen(checks, sampler, emulator, [k for k, fate in expected.items() if fate != "ABORTED"])
    check_labels(checks, sampler, emulator)
    check_no_delete_after_success(checks, emulator)
    check_aborted_gone(checks, emulator, cluster.api, expected, timeout=30)
    killed_calls = sum(1 for c in emulator.calls if c.replica == b.address and c.code != "OK")
    checks(killed_calls > 0, f"the kill was felt: {killed_calls} calls to the killed replica failed")
    checks(not emulator.callback_errors, "the emulator ran cleanly", emulator.callback_errors)

    # Every Job of an aborted node, of every attempt, as the sampler saw them.
    aborted = {key for key in batch_nodes if expected[key] == "ABORTED"}
    aborted_jobs = sorted(
        name
        for (kind, _, name), labels in sampler.labels.items()
        if kind == "Job" and (labels.get("execution-id"), labels.get("node-id")) in aborted
    )
    pods_ran = [name for (_, _, name), labels in pod_sampler.labels.items() if labels.get("job-name") in aborted_jobs]
    checks(pods_ran, f"the aborted Jobs had pods running ({len(pods_ran)})")
    orphans = {}

    def no_orphans():
        orphans.clear()
        for name in aborted_jobs:
            pods = [o["metadata"]["name"] for o in cluster.api.list("pods", NAMESPACE, f"job-name={name}")]
            if pods:
                orphans[name] = pods
        return not orphans

    checks(
        aborted_jobs and wait_until(no_orphans, 30),
        f"no pod of the {len(aborted_jobs)} aborted Jobs is left",
        orphans,
    )
    remaining = {}

    def none_left():
        remaining.clear()
        for plural in ("sparkapplications", "jobs", "pods"):
            left = [o for o in cluster.api.list(plural, NAMESPACE) if node_of_mix(o)]
            if left:
                remaining[plural] = sorted(describe_left(o) for o in left)
        return not remaining

    clean = wait_until(none_left, retention + 20)
    left_names = [entry.split(" ")[0] for entries in remaining.values() for entry in entries]
    said = [
        re.sub(r"\x1b\[[0-9;]*m", "", line)[:400]
        for replica in cluster.replicas
        for line in replica.process.output().splitlines()
        if any(name in line for name in left_names) and ("WARN" in line or "ERROR" in line)
    ]
    checks(clean, f"nothing of ours is left after retention ({retention}s)", f"{remaining}; the replicas said: {said[-12:]}")
    summary("everything at once", emulator, cluster.api if slow else None, extra=f", lost {lost_kinds}")
    checks.done()


def describe_left(obj):
    """An object left behind, with what says why: finished, being deleted."""
    meta = obj["metadata"]
    labels, annotations = meta.get("labels") or {}, meta.get("annotations") or {}
    return (
        f"{meta['name']} (finished={labels.get('flytewasm.io/finished')}, "
        f"at={annotations.get('flytewasm.io/finished-at')}, deleting={bool(meta.get('deletionTimestamp'))}, "
        f"finalizers={meta.get('finalizers')}, operator finished={finished(obj)})"
    )


def node_of_mix(obj):
    """Objects of `test_everything_at_once`'s nodes (pods by their labels)."""
    labels = obj["metadata"].get("labels") or {}
    return labels.get("execution-id", "").startswith("mix-")


# ---------------------------------------------------------------------------
# 8. Memory stays bounded amid many foreign objects

FOREIGN = int(os.environ.get("FLYTEWASM_PROPELLER_FOREIGN", "10000"))
FOREIGN_NAMESPACES = 1_000


def foreign_app(i, namespace):
    """A SparkApplication someone else made: no managed-by label, bulky
    metadata (last-applied configuration, managedFields)."""
    fields = {f"f:spark.conf.key{k:03d}": {} for k in range(40)}
    return {
        "apiVersion": "sparkoperator.k8s.io/v1beta2",
        "kind": "SparkApplication",
        "metadata": {
            "name": f"foreign-{i:05d}",
            "namespace": namespace,
            "labels": {"team": f"t{i % 37}", "app": "someone-elses"},
            "annotations": {
                "kubectl.kubernetes.io/last-applied-configuration": json.dumps(
                    {"spec": {"sparkConf": {f"spark.conf.key{k:03d}": "x" * 24 for k in range(40)}}}
                ),
                # The simulator leaves most of them alone; some run and finish.
                **({} if i % 10 == 0 else {"sandbox.flytewasm.io/statuses": "[]"}),
            },
            "managedFields": [
                {
                    "manager": "kubectl-client-side-apply",
                    "operation": "Update",
                    "apiVersion": "sparkoperator.k8s.io/v1beta2",
                    "fieldsType": "FieldsV1",
                    "fieldsV1": {"f:spec": {"f:sparkConf": fields}},
                },
                {
                    "manager": "spark-operator",
                    "operation": "Update",
                    "apiVersion": "sparkoperator.k8s.io/v1beta2",
                    "fieldsType": "FieldsV1",
                    "subresource": "status",
                    "fieldsV1": {"f:status": {f"f:field{k:03d}": {} for k in range(30)}},
                },
            ],
        },
        "spec": {
            "type": "Python",
            "mode": "cluster",
            "image": "ghcr.io/example/spark:3.5",
            "mainApplicationFile": "local:///opt/app/main.py",
            "sparkVersion": "3.5.0",
            "sparkConf": {f"spark.conf.key{k:03d}": "x" * 24 for k in range(40)},
            "driver": {"cores": 1, "memory": "1g", "serviceAccount": "spark"},
            "executor": {"cores": 1, "instances": 2, "memory": "1g"},
        },
    }


def post_foreign_apps(url, count, namespaces, workers=16):
    """POST `count` foreign SparkApplications straight to the sandbox,
    spread over `namespaces` namespaces; returns the HTTP codes seen."""
    parsed = urllib.parse.urlparse(url)
    codes = {}
    lock = threading.Lock()

    def post(indices):
        connection = http.client.HTTPConnection(parsed.hostname, parsed.port, timeout=60)
        seen = {}
        for i in indices:
            namespace = f"tenant{i % namespaces:04d}-development"
            body = json.dumps(foreign_app(i, namespace))
            connection.request(
                "POST",
                f"/apis/sparkoperator.k8s.io/v1beta2/namespaces/{namespace}/sparkapplications",
                body=body,
                headers={"Content-Type": "application/json"},
            )
            response = connection.getresponse()
            response.read()
            seen[response.status] = seen.get(response.status, 0) + 1
        connection.close()
        with lock:
            for code, n in seen.items():
                codes[code] = codes.get(code, 0) + n

    with ThreadPoolExecutor(workers) as pool:
        list(pool.map(post, [range(w, count, workers) for w in range(workers)]))
    return codes


def test_memory_stays_bounded_amid_foreign_objects(cluster_without_gc, template):
    """One replica runs while 10,000 SparkApplications it did not create
    appear across 1,000 namespaces, then runs tasks in 20 of them: its
    memory follows our tasks, not the cluster."""
    cluster = cluster_without_gc
    checks = Checks("bounded memory")
    mib = 1024 * 1024
    bound, growth_bound = 300 * mib, 100 * mib
    # The janitor lists (cluster-wide, by label) every 2 s meanwhile.
    replica = cluster.serve(janitor_interval_seconds=2)
    baseline = replica.rss_bytes() or 0
    peak = {"rss": baseline, "cached": None}
    stop = threading.Event()

    def watch_process():
        while not stop.is_set():
            rss = replica.rss_bytes()
            if rss:
                peak["rss"] = max(peak["rss"], rss)
            try:
                cached = replica.metric("flytewasm_watch_cached_objects")
                if cached is not None:
                    peak["cached"] = max(peak["cached"] or 0, cached)
            except Exception:
                pass
            stop.wait(0.2)

    watcher = threading.Thread(target=watch_process, daemon=True)
    watcher.start()
    started = time.monotonic()
    codes = post_foreign_apps(cluster.api.url, FOREIGN, FOREIGN_NAMESPACES)
    loaded = time.monotonic() - started
    checks(codes == {201: FOREIGN}, f"{FOREIGN} foreign SparkApplications in {FOREIGN_NAMESPACES} namespaces", codes)
    after_load = replica.rss_bytes() or 0

    nodes = []
    for k in range(20):
        project = f"tenant{k * 50:04d}"
        for n in range(2):
            nodes.append(
                NodeSpec(
                    f"mem-{k:02d}",
                    f"n{n}",
                    template,
                    {OUTCOME: "succeed", STEP: "300"},
                    start_after=k * 0.1,
                    namespace=f"{project}-development",
                    project=project,
                )
            )
    expected = {n.key: "SUCCEEDED" for n in nodes}
    emulator = Emulator([replica.address], resync=RESYNC, max_attempts=2)
    emulator.run(nodes, timeout=60)
    time.sleep(1)  # the last looks at the cache after the tasks end
    stop.set()
    watcher.join(5)
    final_cached = None
    try:
        final_cached = replica.metric("flytewasm_watch_cached_objects")
    except Exception as err:
        final_cached = repr(err)

    ours = sum(1 for r in emulator.records.values() for a in r.attempts if a.create and a.create.code == "OK")
    # Compiling the plugins (when the shared compile cache was sealed with
    # another key, e.g. by a concurrent run) costs memory of its own.
    recompiled = "recompiling" in replica.process.output()
    print(
        f"\npropeller: serve RSS {baseline / mib:.0f} MiB after start, {after_load / mib:.0f} MiB after "
        f"{FOREIGN} foreign objects (loaded in {loaded:.0f}s), peak {peak['rss'] / mib:.0f} MiB "
        f"(bounds: {bound / mib:.0f} MiB, growth {growth_bound / mib:.0f} MiB)"
        + ("; serve compiled its plugins at start" if recompiled else "")
    )
    check_outcomes(checks, emulator, expected)
    checks(
        peak["rss"] < bound,
        f"serve's peak RSS {peak['rss'] / mib:.0f} MiB < {bound / mib:.0f} MiB",
        "serve compiled its plugins at start (the shared compile cache was sealed with another key): "
        f"{baseline / mib:.0f} MiB before any object" if recompiled else "",
    )
    checks(
        peak["rss"] - baseline < growth_bound,
        f"serve's RSS grew by {(peak['rss'] - baseline) / mib:.0f} MiB < {growth_bound / mib:.0f} MiB "
        "amid the foreign objects and our tasks",
    )
    cached = peak["cached"]
    checks(
        cached is not None and isinstance(final_cached, float),
        "serve's /metrics has flytewasm_watch_cached_objects",
        f"peak {cached}, at the end {final_cached}",
    )
    checks(
        cached is not None and cached <= ours,
        f"the watch caches at most our {ours} objects (peak {cached}, at the end {final_cached})",
    )
    summary(
        "bounded memory",
        emulator,
        extra=f", {FOREIGN} foreign objects, peak RSS {peak['rss'] / mib:.0f} MiB, cached objects {cached}",
    )
    checks.done()
