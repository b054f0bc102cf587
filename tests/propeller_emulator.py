"""A FlytePropeller emulator for the agent protocol (or, with
`protocol="connector"`, Flyte 2's executor on the connector protocol), and a
watcher of the cluster it runs against.

`Emulator` drives node executions against `flytewasm serve` replicas the way
FlytePropeller's webapi agent plugin (`agent-service`) does, with the
official flyteidl stubs. What it mirrors, part by part:

- **Attempts** (`Emulator._drive`). A node execution runs as attempts
  `retry_attempt` 0, 1, ... up to `max_attempts`. Each attempt calls
  CreateTask once. ANY CreateTask error, deadline included, fails that
  attempt (propeller's launcher turns a Create error into a retryable
  failure); the next attempt has retry_attempt+1, so the host generates a
  new object name for it. A RETRYABLE_FAILED phase also ends the attempt and
  starts the next one; when no attempt is left the node FAILED. A FAILED
  phase fails the node at once; SUCCEEDED ends it.
- **Monitoring** (`Emulator._monitor`). Propeller's auto-refresh cache calls
  GetTask once per resync interval (`resync`, 30 s in production, a fraction
  of a second in tests). A GetTask error (deadline, UNAVAILABLE, anything)
  increments the attempt's sync-failure counter, which is never reset; at
  `max_system_failures` (5) errors the attempt is a system failure, which
  propeller retries as a new attempt like any retryable failure.
- **Deadlines** (`Emulator._call`). Every call carries a per-call deadline
  (`deadline`, propeller's default 3 s).
- **Lost responses** (`Emulator(lose=...)`). `lose(rpc, record, attempt,
  response)` says which answers are lost on their way back: the server did
  the work, propeller sees the call fail (code `LOST`), as on a deadline.
- **Abort** (`Emulator._abort`). Only an aborted node gets DeleteTask, with
  the current attempt's resource_meta, repeated on every error until it
  answers OK. Nothing calls DeleteTask after a task ends; an attempt that
  has no resource_meta (its create failed) has nothing to delete.
- **The protocol** (`Emulator(protocol=...)`). `agent` (Flyte 1, the
  default) calls `flyteidl.service.AsyncAgentService`; `connector` calls
  Flyte 2's `flyteidl2.connector.AsyncConnectorService` with flyteidl2's
  messages (each request is the agent request's bytes read as flyteidl2's
  message: the two share their field numbers).
- **The Service** (`Endpoints`). Calls go round robin over the replicas
  behind the Service, one pick per call. A replica that is down answers
  UNAVAILABLE (connection refused), which counts as that call failing,
  exactly as for propeller. `set_replicas` changes the endpoints, as a
  Service does when a pod is replaced.
- **Task execution metadata** (`create_request`): ids, namespace, the labels
  propeller puts on a task's objects (`execution-id`, `node-id`, `project`,
  `domain`, `task-name`, `workflow-name`), the task execution's annotations
  (on the sandbox `sandbox.flytewasm.io/outcome` and `.../step-ms` choose
  the object's fate) and the service account.

Each node is a thread (hundreds run concurrently). Everything is recorded:
`Emulator.calls` logs every RPC (replica, node, attempt, time, duration,
status code); each `NodeRecord` keeps its attempts, every phase seen and
the final outcome.

The second half of this file is not propeller: `SandboxApi` speaks to the
`flytewasm sandbox` test double over HTTP (lists, faults, quotas), and
`LiveObjectSampler` watches what the cluster holds, finding objects by the
labels the host puts on them (never by decoding resource_meta).
"""

import itertools
import json
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections import Counter, defaultdict
from dataclasses import dataclass, field

import grpc
from flyteidl.admin import agent_pb2
from flyteidl.core import execution_pb2, identifier_pb2
from flyteidl.service.agent_pb2_grpc import AsyncAgentServiceStub
from flyteidl2.connector import connector_pb2
from flyteidl2.connector.service_pb2_grpc import AsyncConnectorServiceStub

NAMESPACE = "flytesnacks-development"
PHASE = execution_pb2.TaskExecution.Phase

# How an attempt ends (besides the task phases SUCCEEDED, FAILED,
# RETRYABLE_FAILED and ABORTED it can end on).
CREATE_ERROR = "CREATE_ERROR"  # CreateTask failed or hit its deadline
SYSTEM_FAILURE = "SYSTEM_FAILURE"  # max_system_failures GetTask errors
TIMEOUT = "TIMEOUT"  # the emulator was stopped first
ABORT_FAILED = "ABORT_FAILED"  # DeleteTask never answered OK in time


# ---------------------------------------------------------------------------
# What a node execution is, and what happened to it


@dataclass
class NodeSpec:
    """One node execution to run: (execution, node_id) names it."""

    execution: str
    node_id: str
    template: object  # flyteidl.core.TaskTemplate
    annotations: dict = field(default_factory=dict)
    start_after: float = 0.0  # seconds after Emulator.start
    abort_after: float | None = None  # seconds after the node started
    namespace: str = NAMESPACE
    project: str = "flytesnacks"
    domain: str = "development"
    service_account: str = "default"
    labels: dict = field(default_factory=dict)  # extra task execution labels

    @property
    def key(self):
        return (self.execution, self.node_id)


@dataclass
class Call:
    """One RPC as propeller made it."""

    rpc: str
    node: tuple
    attempt: int
    replica: str
    at: float  # seconds since the emulator started
    seconds: float
    code: str  # "OK" or the gRPC status code's name
    detail: str = ""
    phase: str = ""  # GetTask: the phase answered


@dataclass
class Attempt:
    retry_attempt: int
    started: float
    create: Call | None = None
    resource_meta: bytes | None = None
    phases: list = field(default_factory=list)  # each phase change, in order
    get_errors: list = field(default_factory=list)  # status codes
    end: str | None = None
    message: str = ""
    ended: float | None = None

    def see(self, phase):
        if not self.phases or self.phases[-1] != phase:
            self.phases.append(phase)


@dataclass
class NodeRecord:
    spec: NodeSpec
    attempts: list = field(default_factory=list)
    outcome: str | None = None  # SUCCEEDED, FAILED, ABORTED, TIMEOUT, ABORT_FAILED
    started: float | None = None
    finished: float | None = None  # emulator time of the outcome
    finished_monotonic: float | None = None
    abort_at: float | None = None  # monotonic
    abort_requested: float | None = None  # emulator time
    deleted: float | None = None  # emulator time DeleteTask answered OK
    final: tuple | None = None  # (phase, message) of the last GetTask answer

    @property
    def key(self):
        return self.spec.key

    @property
    def phases(self):
        """Every phase seen, across attempts (consecutive repeats folded)."""
        seen = []
        for attempt in self.attempts:
            for phase in attempt.phases:
                if not seen or seen[-1] != phase:
                    seen.append(phase)
        return seen

    @property
    def resource_meta(self):
        """The current (last created) attempt's resource_meta."""
        for attempt in reversed(self.attempts):
            if attempt.resource_meta is not None:
                return attempt.resource_meta
        return None

    def describe(self):
        parts = [
            f"#{a.retry_attempt}:{a.create.code if a.create else '-'}>{'/'.join(a.phases) or '-'}>{a.end}"
            for a in self.attempts
        ]
        return f"{self.key[0]}/{self.key[1]} {self.outcome}: " + " ".join(parts)


# ---------------------------------------------------------------------------
# The Service in front of the replicas


# Per protocol: the stub, and each RPC's request message.
PROTOCOLS = {
    "agent": (AsyncAgentServiceStub, None),
    "connector": (
        AsyncConnectorServiceStub,
        {
            "CreateTask": connector_pb2.CreateTaskRequest,
            "GetTask": connector_pb2.GetTaskRequest,
            "DeleteTask": connector_pb2.DeleteTaskRequest,
        },
    ),
}


def as_protocol(protocol, rpc, request):
    """`request` (an agent-protocol message) in `protocol`'s message type."""
    messages = PROTOCOLS[protocol][1]
    return request if messages is None else messages[rpc].FromString(request.SerializeToString())


class Endpoints:
    """The replicas behind the Service, picked round robin per call."""

    def __init__(self, addresses, protocol="agent"):
        self._stub = PROTOCOLS[protocol][0]
        self._lock = threading.Lock()
        self._channels = {}
        self._addresses = []
        self._counter = itertools.count()
        self.set(addresses)

    def set(self, addresses):
        with self._lock:
            for address in addresses:
                if address not in self._channels:
                    channel = grpc.insecure_channel(address)
                    self._channels[address] = (channel, self._stub(channel))
            self._addresses = list(addresses)

    @property
    def addresses(self):
        with self._lock:
            return list(self._addresses)

    def pick(self):
        with self._lock:
            address = self._addresses[next(self._counter) % len(self._addresses)]
            return address, self._channels[address][1]

    def stub(self, address):
        """A stub for one replica (not a round-robin pick)."""
        with self._lock:
            if address not in self._channels:
                channel = grpc.insecure_channel(address)
                self._channels[address] = (channel, self._stub(channel))
            return self._channels[address][1]

    def close(self):
        with self._lock:
            for channel, _ in self._channels.values():
                channel.close()
            self._channels.clear()


def create_request(spec, retry_attempt):
    """The CreateTaskRequest propeller sends for one attempt of a node."""
    template = spec.template
    labels = {
        "execution-id": spec.execution,
        "node-id": spec.node_id,
        "project": spec.project,
        "domain": spec.domain,
        "task-name": _label_value(template.id.name),
        "workflow-name": "propeller-emulator-wf",
        **spec.labels,
    }
    return agent_pb2.CreateTaskRequest(
        template=template,
        output_prefix=f"s3://flyte-data/metadata/{spec.execution}/{spec.node_id}/data/{retry_attempt}",
        task_execution_metadata=agent_pb2.TaskExecutionMetadata(
            task_execution_id=identifier_pb2.TaskExecutionIdentifier(
                task_id=template.id,
                node_execution_id=identifier_pb2.NodeExecutionIdentifier(
                    node_id=spec.node_id,
                    execution_id=identifier_pb2.WorkflowExecutionIdentifier(
                        project=spec.project, domain=spec.domain, name=spec.execution
                    ),
                ),
                retry_attempt=retry_attempt,
            ),
            namespace=spec.namespace,
            labels={k: v for k, v in labels.items() if v},
            annotations=dict(spec.annotations),
            k8s_service_account=spec.service_account,
            environment_variables={"FLYTE_INTERNAL_EXECUTION_ID": spec.execution},
        ),
    )


def _label_value(text):
    cleaned = "".join(c if c.isalnum() or c in "-_." else "-" for c in text.lower())[:63]
    return cleaned.strip("-_.")


def category(template):
    return agent_pb2.TaskCategory(name=template.type, version=template.task_type_version)


# ---------------------------------------------------------------------------
# The emulator


class Emulator:
    """Runs node executions against `replica_addresses` as propeller would.

    `start(nodes)` starts them (a thread each), `wait(timeout)` waits for
    their outcomes, `run` does both. `set_replicas` replaces the endpoints,
    `abort(key)` aborts a node now (as a user aborting its workflow).
    `on_finish(record)` is called in the node's thread as it ends."""

    def __init__(
        self,
        replica_addresses,
        resync=30.0,
        deadline=3.0,
        max_attempts=3,
        max_system_failures=5,
        abort_give_up=60.0,
        on_finish=None,
        protocol="agent",
        lose=None,
    ):
        self.protocol = protocol
        self.lose = lose
        self.endpoints = Endpoints(replica_addresses, protocol)
        self.resync = resync
        self.deadline = deadline
        self.max_attempts = max_attempts
        self.max_system_failures = max_system_failures
        self.abort_give_up = abort_give_up
        self.on_finish = on_finish
        self.t0 = time.monotonic()
        self.calls = []
        self.records = {}
        self.callback_errors = []
        self._lock = threading.Lock()
        self._threads = []
        self._stop = threading.Event()
        self._wake = {}

    # -- running ------------------------------------------------------------

    def start(self, nodes):
        for spec in nodes:
            assert spec.key not in self.records, f"node {spec.key} given twice"
            record = NodeRecord(spec)
            self.records[spec.key] = record
            self._wake[spec.key] = threading.Event()
            thread = threading.Thread(target=self._drive, args=(record,), daemon=True, name=f"node-{spec.key}")
            self._threads.append(thread)
            thread.start()
        return self

    def wait(self, timeout):
        """Wait for every node's outcome; nodes still running after
        `timeout` seconds are stopped with outcome TIMEOUT."""
        deadline = time.monotonic() + timeout
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        if any(t.is_alive() for t in self._threads):
            self._stop.set()
            for event in self._wake.values():
                event.set()
            for thread in self._threads:
                thread.join(self.deadline + 5)
        return self.records

    def run(self, nodes, timeout):
        return self.start(nodes).wait(timeout)

    def set_replicas(self, addresses):
        """The Service's endpoints changed (a pod replaced, scaled...)."""
        self.endpoints.set(addresses)

    def abort(self, key):
        record = self.records[key]
        record.abort_at = time.monotonic()
        self._wake[key].set()

    def close(self):
        self._stop.set()
        for event in self._wake.values():
            event.set()
        self.endpoints.close()

    def now(self):
        return time.monotonic() - self.t0

    # -- one node -----------------------------------------------------------

    def _drive(self, record):
        spec = record.spec
        try:
            if not self._sleep(record, spec.start_after, before_start=True):
                return self._end(record, TIMEOUT if self._stop.is_set() else "ABORTED")
            record.started = self.now()
            if spec.abort_after is not None:
                record.abort_at = time.monotonic() + spec.abort_after
            for retry_attempt in range(self.max_attempts):
                attempt = Attempt(retry_attempt, started=self.now())
                record.attempts.append(attempt)
                if self._abort_due(record):
                    return self._end(record, self._abort(record, attempt))
                response, call = self._call("CreateTask", record, attempt, create_request(spec, retry_attempt))
                attempt.create = call
                if response is None:
                    # Propeller: a Create error is a retryable failure of
                    # this attempt; the next round starts the next attempt.
                    self._end_attempt(attempt, CREATE_ERROR, f"{call.code}: {call.detail}")
                    if not self._sleep(record, self.resync):
                        return self._end(record, self._interrupted(record, attempt))
                    continue
                attempt.resource_meta = response.resource_meta
                end = self._monitor(record, attempt)
                if end in ("SUCCEEDED", "FAILED", "ABORTED", TIMEOUT, ABORT_FAILED):
                    return self._end(record, end)
                # RETRYABLE_FAILED or SYSTEM_FAILURE: on to the next attempt.
            self._end(record, "FAILED")  # no attempt left
        except Exception as err:  # a bug in the emulator or the test: record it, do not hang
            self.callback_errors.append(f"{spec.key}: {err!r}")
            self._end(record, f"EMULATOR_ERROR: {err!r}")

    def _monitor(self, record, attempt):
        """GetTask every resync until the attempt ends (or the node is aborted)."""
        while True:
            if not self._sleep(record, self.resync):
                return self._interrupted(record, attempt)
            request = agent_pb2.GetTaskRequest(
                resource_meta=attempt.resource_meta, task_category=category(record.spec.template)
            )
            response, call = self._call("GetTask", record, attempt, request)
            if response is None:
                attempt.get_errors.append(call.code)
                if len(attempt.get_errors) >= self.max_system_failures:
                    self._end_attempt(attempt, SYSTEM_FAILURE, f"{len(attempt.get_errors)} GetTask errors")
                    return SYSTEM_FAILURE
                continue
            resource = response.resource
            phase = PHASE.Name(resource.phase)
            call.phase = phase
            attempt.see(phase)
            record.final = (phase, resource.message)
            if phase == "SUCCEEDED":
                self._end_attempt(attempt, phase, resource.message)
                return "SUCCEEDED"
            if phase in ("FAILED", "ABORTED"):
                # A permanent failure: the node fails without another attempt.
                self._end_attempt(attempt, phase, resource.message)
                return "FAILED"
            if phase == "RETRYABLE_FAILED":
                self._end_attempt(attempt, phase, resource.message)
                return "RETRYABLE_FAILED"
            # QUEUED, WAITING_FOR_RESOURCES, INITIALIZING, RUNNING, UNDEFINED: keep looking.

    def _interrupted(self, record, attempt):
        if self._stop.is_set():
            self._end_attempt(attempt, TIMEOUT, "the emulator was stopped")
            return TIMEOUT
        return self._abort(record, attempt)

    def _abort(self, record, attempt):
        """Propeller's Abort: DeleteTask with the current attempt's
        resource_meta, repeated until it answers OK."""
        record.abort_requested = self.now()
        if attempt.resource_meta is None:
            self._end_attempt(attempt, attempt.end or "ABORTED", attempt.message or "aborted before it was created")
            return "ABORTED"
        give_up = time.monotonic() + self.abort_give_up
        request = agent_pb2.DeleteTaskRequest(
            resource_meta=attempt.resource_meta, task_category=category(record.spec.template)
        )
        while not self._stop.is_set():
            response, _ = self._call("DeleteTask", record, attempt, request)
            if response is not None:
                record.deleted = self.now()
                self._end_attempt(attempt, "ABORTED", "aborted")
                return "ABORTED"
            if time.monotonic() > give_up:
                break
            self._stop.wait(self.resync)
        self._end_attempt(attempt, ABORT_FAILED, "DeleteTask never answered OK")
        return ABORT_FAILED

    def _end_attempt(self, attempt, end, message=""):
        attempt.end, attempt.message, attempt.ended = end, message, self.now()

    def _end(self, record, outcome):
        record.outcome = outcome
        record.finished = self.now()
        record.finished_monotonic = time.monotonic()
        if self.on_finish is not None:
            try:
                self.on_finish(record)
            except Exception as err:
                self.callback_errors.append(f"on_finish {record.key}: {err!r}")

    def _abort_due(self, record):
        return record.abort_at is not None and time.monotonic() >= record.abort_at

    def _sleep(self, record, seconds, before_start=False):
        """Sleep `seconds`; False when the node is aborted or the emulator
        stopped meanwhile (an abort due now also returns False)."""
        until = time.monotonic() + seconds
        wake = self._wake[record.key]
        while True:
            if self._stop.is_set():
                return False
            if self._abort_due(record) and not before_start:
                return False
            if before_start and record.abort_at is not None:
                return False  # aborted before it started
            now = time.monotonic()
            if now >= until:
                return True
            limit = until - now
            if record.abort_at is not None:
                limit = max(0.0, min(limit, record.abort_at - now))
            wake.wait(limit)
            wake.clear()

    def _call(self, rpc, record, attempt, request):
        """One RPC to the next replica, under the per-call deadline."""
        address, stub = self.endpoints.pick()
        started = time.monotonic()
        response, code, detail = None, "OK", ""
        try:
            response = getattr(stub, rpc)(as_protocol(self.protocol, rpc, request), timeout=self.deadline)
        except grpc.RpcError as err:
            code, detail = err.code().name, err.details() or ""
        except Exception as err:  # a closed channel and the like: still a failed call
            code, detail = "CLIENT_ERROR", repr(err)
        if response is not None and self.lose is not None and self.lose(rpc, record, attempt, response):
            response, code, detail = None, "LOST", "the answer was lost on its way back"
        call = Call(
            rpc, record.key, attempt.retry_attempt, address, started - self.t0, time.monotonic() - started, code, detail
        )
        with self._lock:
            self.calls.append(call)
        return response, call

    # -- looking at the results ---------------------------------------------

    def get_task_on(self, address, record, timeout=None):
        """GetTask for a node's current attempt on one replica, directly.
        Returns (phase name, message) or (None, status code)."""
        request = agent_pb2.GetTaskRequest(
            resource_meta=record.resource_meta, task_category=category(record.spec.template)
        )
        try:
            request = as_protocol(self.protocol, "GetTask", request)
            resource = self.endpoints.stub(address).GetTask(request, timeout=timeout or self.deadline).resource
            return PHASE.Name(resource.phase), resource.message
        except grpc.RpcError as err:
            return None, err.code().name

    def calls_of(self, key, rpc=None):
        return [c for c in self.calls if c.node == key and (rpc is None or c.rpc == rpc)]

    def summary(self):
        outcomes = Counter(r.outcome for r in self.records.values())
        calls = Counter(c.rpc for c in self.calls)
        errors = Counter(f"{c.rpc} {c.code}" for c in self.calls if c.code != "OK")
        attempts = sum(len(r.attempts) for r in self.records.values())
        ends = Counter(a.end for r in self.records.values() for a in r.attempts)
        return {
            "nodes": len(self.records),
            "attempts": attempts,
            "outcomes": dict(outcomes),
            "attempt_ends": dict(ends),
            "calls": dict(calls),
            "errors": dict(errors),
        }


# ---------------------------------------------------------------------------
# The cluster (not propeller): the sandbox's HTTP API and a sampler of it

SPARK = "apis/sparkoperator.k8s.io/v1beta2"
JOBS = "apis/batch/v1"
CORE = "api/v1"
KINDS = {"sparkapplications": SPARK, "jobs": JOBS, "pods": CORE}
MANAGED_BY = "app.kubernetes.io/managed-by"
ATTEMPT_LABEL = "flytewasm.io/attempt"


class SandboxApi:
    """The `flytewasm sandbox` API server, over plain HTTP."""

    def __init__(self, url):
        self.url = url.rstrip("/")

    def request(self, method, path, body=None, timeout=10):
        """(HTTP status, decoded JSON body or None)."""
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(f"{self.url}/{path.lstrip('/')}", data=data, method=method)
        if data is not None:
            request.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                raw = response.read()
                return response.status, (json.loads(raw) if raw else None)
        except urllib.error.HTTPError as err:
            raw = err.read()
            try:
                return err.code, json.loads(raw)
            except ValueError:
                return err.code, raw.decode(errors="replace")

    def list(self, plural, namespace=None, selector=None, timeout=10):
        where = f"namespaces/{namespace}/{plural}" if namespace else plural
        query = f"?labelSelector={urllib.parse.quote(selector)}" if selector else ""
        code, body = self.request("GET", f"{KINDS[plural]}/{where}{query}", timeout=timeout)
        if code != 200:
            raise RuntimeError(f"list {plural}: HTTP {code}: {body}")
        return body["items"]

    # Fault injection (`/sandbox.flytewasm.io/v1/faults`).
    FAULTS = "sandbox.flytewasm.io/v1/faults"

    def faults(self, **settings):
        """POST fault settings (failNext, latencyMs, writeLatencyMs,
        dropWatches, clear); raises when the sandbox does not take them."""
        code, body = self.request("POST", self.FAULTS, settings)
        if code not in (200, 201, 204):
            raise AssertionError(f"the sandbox refused faults {settings}: HTTP {code}: {body}")
        return body

    def fault_state(self):
        code, body = self.request("GET", self.FAULTS)
        if code != 200:
            raise AssertionError(f"GET {self.FAULTS}: HTTP {code}: {body}")
        return body

    def create_quota(self, namespace, hard, name="propeller-quota"):
        body = {"apiVersion": "v1", "kind": "ResourceQuota", "metadata": {"name": name}, "spec": {"hard": hard}}
        code, answer = self.request("POST", f"{CORE}/namespaces/{namespace}/resourcequotas", body)
        if code not in (200, 201):
            raise AssertionError(f"creating a ResourceQuota: HTTP {code}: {answer}")
        return answer


def faults_served(state):
    """Injected errors the sandbox says it answered, summed (None if its
    fault state has no such count)."""
    if not isinstance(state, dict):
        return None
    for key in ("errorsServed", "served", "errors", "injected"):
        value = state.get(key)
        if isinstance(value, dict):
            return sum(v for v in value.values() if isinstance(v, (int, float)))
        if isinstance(value, (int, float)):
            return value
    return None


def finished(obj):
    """Whether the operator has finished with the object (its task ended)."""
    status = obj.get("status") or {}
    if obj.get("kind") == "SparkApplication":
        state = (status.get("applicationState") or {}).get("state", "")
        return state in ("COMPLETED", "FAILED", "SUBMISSION_FAILED")
    if obj.get("kind") == "Job":
        conditions = status.get("conditions") or []
        return any(c.get("type") in ("Complete", "Failed") and c.get("status") == "True" for c in conditions)
    if obj.get("kind") == "Pod":
        return status.get("phase") in ("Succeeded", "Failed")
    return False


def live(obj):
    """Running or about to: not being deleted and not finished."""
    return not obj["metadata"].get("deletionTimestamp") and not finished(obj)


def node_of(obj):
    """(execution-id, node-id) from the object's labels, or None."""
    labels = obj["metadata"].get("labels") or {}
    if "execution-id" in labels and "node-id" in labels:
        return (labels["execution-id"], labels["node-id"])
    return None


class LiveObjectSampler:
    """Samples the cluster every `interval` seconds in a thread: per node
    execution (found by its `execution-id`/`node-id` labels), the objects
    and how many are live. `violations` lists every sample where a node had
    more than one live object."""

    def __init__(self, api, interval=0.1, kinds=("sparkapplications", "jobs"), namespace=None, selector=None):
        self.api = api
        self.interval = interval
        self.kinds = kinds
        self.namespace = namespace
        self.selector = selector
        self.samples = 0
        self.errors = Counter()
        self.violations = []  # (time, node, [names])
        self.max_live = defaultdict(int)  # node -> most live objects seen at once
        self.seen = defaultdict(set)  # node -> object names
        self.labels = {}  # (kind, namespace, name) -> labels when first seen
        self.unattributed = set()  # objects without execution-id/node-id labels
        self.max_count = Counter()  # (kind, namespace) -> most objects at once
        self.last_seen = {}  # (kind, namespace, name) -> time.monotonic() of the last sample holding it
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True, name="sampler")
        self.t0 = time.monotonic()

    def start(self):
        self._thread.start()
        return self

    def stop(self):
        self._stop.set()
        self._thread.join(10)
        return self

    def _loop(self):
        while not self._stop.is_set():
            try:
                self.sample()
            except Exception as err:
                self.errors[type(err).__name__] += 1
            self._stop.wait(self.interval)

    def sample(self):
        objects = []
        for plural in self.kinds:
            objects += self.api.list(plural, self.namespace, self.selector, timeout=5)
        self.samples += 1
        taken = time.monotonic()
        now = taken - self.t0
        live_by_node = defaultdict(list)
        counts = Counter()
        for obj in objects:
            meta = obj["metadata"]
            ident = (obj.get("kind"), meta.get("namespace"), meta["name"])
            counts[(obj.get("kind"), meta.get("namespace"))] += 1
            self.labels.setdefault(ident, dict(meta.get("labels") or {}))
            self.last_seen[ident] = taken
            node = node_of(obj)
            if node is None:
                self.unattributed.add(ident)
                continue
            self.seen[node].add(meta["name"])
            if live(obj):
                live_by_node[node].append(meta["name"])
        for where, count in counts.items():
            self.max_count[where] = max(self.max_count[where], count)
        for node, names in live_by_node.items():
            self.max_live[node] = max(self.max_live[node], len(names))
            if len(names) > 1:
                self.violations.append((round(now, 2), node, sorted(names)))
