"""For the agent-protocol tests: `flytewasm serve` and `flytewasm sandbox`
started as processes (with the addresses they print), and the requests
propeller would make, built with the official flyteidl stubs."""

import base64
import json
import os
import re
import signal
import subprocess
import tempfile
import time
import urllib.error
import urllib.request

import grpc
import yaml
from flyteidl.admin import agent_pb2
from flyteidl.core import execution_pb2, identifier_pb2

from conftest import ROOT

# How the tests run flytewasm: the same compiled-plugin cache and the same
# precompile key everywhere (artifacts sealed with another key are refused
# and compiled again, which takes longer than the tests wait).
ENV = {
    **os.environ,
    "FLYTEWASM_CACHE_DIR": str(ROOT / "target/flytewasm-cache"),
    "FLYTEWASM_PRECOMPILE_KEY": str(ROOT / "target/flytewasm-test-keys/precompile.key"),
}


class Process:
    """A flytewasm process whose output goes to a file (a pipe nobody reads
    would fill up and stall it); `found` holds what `wait_for` matched."""

    def __init__(self, args, env=None, wait_for=()):
        self.log = tempfile.NamedTemporaryFile("w+", prefix="flytewasm-", suffix=".log")
        self.proc = subprocess.Popen(
            [str(a) for a in args],
            stdout=self.log,
            stderr=subprocess.STDOUT,
            text=True,
            env={**ENV, **(env or {})},
        )
        self.found = {}
        deadline = time.monotonic() + 120
        while len(self.found) < len(wait_for):
            output = self.output()
            for pattern in wait_for:
                match = re.search(pattern, output)
                if match:
                    self.found[pattern] = match.group(1)
            if self.proc.poll() is not None:
                raise RuntimeError(f"{args[1]} exited early:\n{output}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"{args[1]} did not print {wait_for!r}:\n{output}")
            time.sleep(0.05)

    def output(self):
        with open(self.log.name) as f:
            return f.read()

    def stop(self, sig=signal.SIGTERM, timeout=30):
        """Send `sig`; returns the exit code and the whole output."""
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        self.proc.wait(timeout=timeout)
        return self.proc.returncode, self.output()


GRPC = r"agent and connector gRPC on (\S+?)[;\s]"
HTTP = r"metrics on (http://\S+)"
SANDBOX = r"sandbox cluster \(a test double\) (?:at|serving at) (http://\S+)"


def run_task(flytewasm_bin, plugins, task_pb, execution, *args, config=None, tmp_path=None, timeout=120):
    """`flytewasm run --sandbox --output json`: (exit code, events, stderr)."""
    cmd = [
        str(flytewasm_bin), "run", "--sandbox", "--plugins", str(plugins), "--sandbox-step-ms", "100",
        "--output", "json", "--timeout", str(timeout), "--execution", execution, *args,
    ]
    if config is not None:
        path = tmp_path / f"config-{execution}.yaml"
        path.write_text(yaml.safe_dump(config))
        cmd += ["--config", str(path)]
    cmd.append(str(task_pb))
    result = subprocess.run(cmd, capture_output=True, text=True, env=ENV, timeout=timeout + 60)
    events = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    return result.returncode, events, result.stderr


def run_then_abort(flytewasm_bin, plugins, task_pb, execution, kubeconfig, running, gone):
    """`flytewasm run` against the sandbox in `kubeconfig`, left running
    (outcome run-forever) until `running()` holds, then Ctrl-C: `run` aborts
    the task and exits 130, and `gone()` holds soon after. `running` and
    `gone` return (done, what to show if it never is)."""
    run = subprocess.Popen(
        [str(flytewasm_bin), "run", "--plugins", str(plugins), "--output", "json", "--timeout", "90",
         "--execution", execution, "--annotation", "sandbox.flytewasm.io/outcome=run-forever", str(task_pb)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env={**ENV, "KUBECONFIG": str(kubeconfig)},
    )
    try:
        deadline = time.monotonic() + 120
        while not (seen := running())[0]:
            assert run.poll() is None, run.communicate()
            assert time.monotonic() < deadline, seen[1]
            time.sleep(0.1)
        run.send_signal(signal.SIGINT)
        stdout, stderr = run.communicate(timeout=60)
    finally:
        if run.poll() is None:
            run.kill()
            run.communicate()
    assert run.returncode == 130, (stdout, stderr)
    assert "task aborted; its object is gone" in stderr
    deadline = time.monotonic() + 30
    while not (seen := gone())[0]:
        assert time.monotonic() < deadline, ("still there", seen[1])
        time.sleep(0.1)


def serve(flytewasm_bin, plugins_dir, *args, env=None):
    """`flytewasm serve` on free loopback ports; found[GRPC], found[HTTP]."""
    cmd = [flytewasm_bin, "serve", "--plugins", plugins_dir, "--grpc", "127.0.0.1:0", "--http", "127.0.0.1:0", *args]
    wait_for = ([SANDBOX] if "--sandbox" in args else []) + [GRPC, HTTP]
    return Process(cmd, env=env, wait_for=wait_for)


def sandbox(flytewasm_bin, plugins_dir, kubeconfig):
    """`flytewasm sandbox` alone, serving the plugins' kinds."""
    cmd = [flytewasm_bin, "sandbox", "--port", "0", "--plugins", plugins_dir, "--kubeconfig", kubeconfig, "--step-ms", "100"]
    return Process(cmd, wait_for=[SANDBOX])


Phase = execution_pb2.TaskExecution


def write_meta_keys(directory, signing="k1", keys=None):
    """A resource_meta keys file (`security.resource-meta-keys`): key id →
    random bytes, base64. Replicas that share it answer each other's tasks."""
    keys = keys or {signing: os.urandom(32)}
    path = directory / f"meta-keys-{signing}.yaml"
    lines = [f"signing-key: {signing}", "keys:"]
    lines += [f"  {kid}: {base64.b64encode(material).decode()}" for kid, material in keys.items()]
    path.write_text("\n".join(lines) + "\n")
    return path


def host_config(directory, keys, extra=""):
    """A host config file signing resource_meta with `keys`, plus `extra` YAML."""
    path = directory / f"host-{keys.stem}.yaml"
    path.write_text(f"security:\n  resource-meta-keys: {keys}\n{extra}")
    return path


def meta_json(meta):
    """The JSON inside a signed resource_meta (after the key id, before the MAC)."""
    start = meta.index(b"{")
    return json.loads(meta[start:-32])


def channel(address):
    ch = grpc.insecure_channel(address)
    grpc.channel_ready_future(ch).result(timeout=10)
    return ch


def create_request(template, execution, annotations=None):
    return agent_pb2.CreateTaskRequest(
        template=template,
        output_prefix=f"s3://flyte-data/metadata/{execution}/n0/data/0",
        task_execution_metadata=agent_pb2.TaskExecutionMetadata(
            task_execution_id=identifier_pb2.TaskExecutionIdentifier(
                task_id=template.id,
                node_execution_id=identifier_pb2.NodeExecutionIdentifier(
                    node_id="n0",
                    execution_id=identifier_pb2.WorkflowExecutionIdentifier(
                        project="flytesnacks", domain="development", name=execution
                    ),
                ),
                retry_attempt=0,
            ),
            namespace="flytesnacks-development",
            labels={"execution-id": execution, "node-id": "n0", "project": "flytesnacks"},
            annotations=annotations or {},
            k8s_service_account="spark",
            environment_variables={"FLYTE_TEST": "1"},
        ),
    )


def category(template, messages=agent_pb2):
    return messages.TaskCategory(name=template.type, version=template.task_type_version)


def get_until_done(agent, template, meta, timeout=30, messages=agent_pb2):
    """GetTask until a terminal phase: (resource, phases seen). `messages`:
    the protocol's module (agent_pb2, or flyteidl2's connector_pb2, whose
    GetTaskRequest and TaskCategory have the same names and phases)."""
    deadline = time.monotonic() + timeout
    seen = []
    while time.monotonic() < deadline:
        request = messages.GetTaskRequest(resource_meta=meta, task_category=category(template, messages))
        resource = agent.GetTask(request, timeout=10).resource
        if not seen or seen[-1] != resource.phase:
            seen.append(resource.phase)
        if resource.phase in (Phase.SUCCEEDED, Phase.FAILED, Phase.RETRYABLE_FAILED, Phase.ABORTED):
            return resource, seen
        time.sleep(0.05)
    raise AssertionError(f"no terminal phase within {timeout}s; saw {seen}")


def sandbox_object(server, meta):
    """The SparkApplication as the sandbox's API serves it, or None."""
    state = meta_json(meta)
    url = (
        f"{server.found[SANDBOX]}/apis/sparkoperator.k8s.io/v1beta2/namespaces/"
        f"{state['namespace']}/sparkapplications/{state['name']}"
    )
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return json.load(response)
    except urllib.error.HTTPError as err:
        if err.code == 404:
            return None
        raise


def publish(directory, name, data):
    """Write beside, then rename into place (how plugins should be shipped)."""
    tmp = directory / f".{name}.partial"
    tmp.write_bytes(data)
    os.replace(tmp, directory / name)


def plugins_listing(server):
    with urllib.request.urlopen(f"{server.found[HTTP]}/plugins", timeout=5) as response:
        return json.load(response)


def wait_for(what, condition, timeout=30):
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"{what}: never happened"
        time.sleep(0.02)
