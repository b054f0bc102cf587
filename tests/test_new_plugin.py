"""`just new-plugin demo` in a temporary copy of the repository, then the
author's path of docs/writing-a-plugin.md: the formatter check, the build,
the plugin's tests in the wasm runtime, the Python SDK's tests, a task
written with the new SDK module run on the sandbox, and the plugin dropped
into a running `serve`. All of it must work before the author has written
a line."""

import json
import os
import pathlib
import shutil
import subprocess
import sys
import time

import grpc
import pytest
from agent_support import GRPC, Phase, channel, create_request, get_until_done, serve
from flyteidl.core import tasks_pb2
from flyteidl.service import agent_pb2_grpc

ROOT = pathlib.Path(__file__).resolve().parent.parent
# Build products are shared with this checkout, so only the new crates compile.
CARGO_TARGET = pathlib.Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target"))
NOT_COPIED = shutil.ignore_patterns("target", ".venv", ".git", ".flyteidl", "__pycache__", ".pytest_cache")


def run(cmd, cwd, ok=True, **env):
    """Run `cmd` in `cwd` sharing this checkout's build products; it must succeed unless `ok=False`."""
    result = subprocess.run(
        cmd,
        cwd=cwd,
        capture_output=True,
        text=True,
        env={
            **os.environ,
            "CARGO_TARGET_DIR": str(CARGO_TARGET),
            "FLYTEIDL_DESCRIPTORS": str(ROOT / ".flyteidl/flyteidl.fds.bin"),
            **env,
        },
    )
    if ok:
        assert result.returncode == 0, f"{' '.join(map(str, cmd))} failed:\n{result.stdout}\n{result.stderr}"
    return result


@pytest.fixture(scope="module")
def repo(tmp_path_factory):
    """A copy of the repository with the already-built plugins, as a developer has it."""
    if shutil.which("just") is None:
        pytest.fail("`just` is not on PATH: run the tests with `just test`")
    copy = tmp_path_factory.mktemp("new-plugin") / "repo"
    shutil.copytree(ROOT, copy, ignore=NOT_COPIED)
    shutil.copytree(ROOT / "target/plugins", copy / "target/plugins")
    return copy


@pytest.fixture(scope="module")
def created(repo):
    return run(["just", "new-plugin", "demo"], repo).stdout


@pytest.fixture(scope="module")
def built(repo, created):
    """The new plugin's component, built the way `just build-plugins` does."""
    run([sys.executable, "scripts/build_plugins.py", "flytewasm-demo"], repo)
    return repo / "target/plugins/demo.wasm"


@pytest.fixture(scope="module")
def site(repo, created, tmp_path_factory):
    """The SDK with the new module (its schema classes generated from the new proto)."""
    site = tmp_path_factory.mktemp("site")
    run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--target", site, "./sdk-python"], repo)
    return site


USER_TASKS = """
from flytekit import task
from flytekitplugins.flytewasm.demo import Demo


@task(task_config=Demo(replicas=2))
def work(n: int) -> int:
    return n
"""

# What the operator would write, in turn: the sandbox applies these statuses.
STATUSES = "sandbox.flytewasm.io/statuses"
SUCCEEDS = json.dumps([{"phase": "Running"}, {"phase": "Succeeded"}])


@pytest.fixture(scope="module")
def task_pb(repo, site, tmp_path_factory):
    """A user's task with the new config, serialized by flytekit."""
    out = tmp_path_factory.mktemp("tasks")
    (out / "user_tasks.py").write_text(USER_TASKS)
    run([sys.executable, "scripts/serialize_tasks.py", out / "user_tasks.py", out], repo, PYTHONPATH=str(site))
    return out / "work.pb"


def test_creates_the_schema_plugin_and_sdk_module(repo, created):
    for path in [
        "proto/flytewasm/demo/v1/demo.proto",
        "plugin/demo/Cargo.toml",
        "plugin/demo/src/lib.rs",
        "plugin/demo/tests/plugin.rs",
        "sdk-python/src/flytekitplugins/flytewasm/demo.py",
        "sdk-python/tests/test_demo.py",
    ]:
        assert f"created {path}" in created
        assert "{{" not in (repo / path).read_text(), f"{path} has an unfilled placeholder"
    assert "package flytewasm.demo.v1;" in (repo / "proto/flytewasm/demo/v1/demo.proto").read_text()
    # The author is told which functions to fill.
    lib = (repo / "plugin/demo/src/lib.rs").read_text()
    assert "fn build_resource" in lib and "fn get_task_phase" in lib and "TODO" in lib


def test_refuses_to_overwrite_or_a_bad_name(repo, created):
    again = run(["just", "new-plugin", "demo"], repo, ok=False)
    assert again.returncode != 0
    assert "plugin/demo/Cargo.toml" in again.stderr and "already exist" in again.stderr
    bad = run(["just", "new-plugin", "Demo Job"], repo, ok=False)
    assert bad.returncode != 0 and "not a plugin name" in bad.stderr


def test_the_new_plugin_builds_and_its_tests_pass(repo, built, site, flytewasm_bin):
    run(["cargo", "fmt", "--all", "--check"], repo)
    assert built.exists()

    # The host accepts it: contract, identity, task type.
    validate = run([flytewasm_bin, "plugin", "validate", built], repo)
    assert "demo" in validate.stdout

    # Its tests in the wasm runtime (the template's build and phase tables).
    tests = run(["cargo", "test", "-p", "flytewasm-demo"], repo)
    assert "3 passed" in tests.stdout

    # The SDK's tests: Python → TaskTemplate → render.
    pytest_run = run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "sdk-python/tests/test_demo.py"],
        repo,
        PYTHONPATH=str(site),
        FLYTEWASM_BIN=str(flytewasm_bin),
    )
    assert "1 passed" in pytest_run.stdout


def test_a_task_with_the_new_config_runs_on_the_sandbox(repo, built, task_pb, flytewasm_bin):
    template = tasks_pb2.TaskTemplate.FromString(task_pb.read_bytes())
    assert template.type == "demo" and dict(template.custom) == {"replicas": 2}
    result = run(
        [flytewasm_bin, "run", "--sandbox", "--plugins", repo / "target/plugins", "--sandbox-step-ms", "100",
         "--output", "json", "--annotation", f"{STATUSES}={SUCCEEDS}", task_pb],
        repo,
        FLYTEWASM_CACHE_DIR=str(ROOT / "target/flytewasm-cache"),
    )
    phases = [json.loads(line)["phase"] for line in result.stdout.splitlines() if line.startswith("{")]
    assert phases == ["QUEUED", "RUNNING", "SUCCEEDED"], result.stdout

    # The failure branch of the template's phase mapping, the same way.
    fails = json.dumps([{"phase": "Running"}, {"phase": "Failed", "message": "out of cheese"}])
    failed = run(
        [flytewasm_bin, "run", "--sandbox", "--plugins", repo / "target/plugins", "--sandbox-step-ms", "100",
         "--annotation", f"{STATUSES}={fails}", task_pb],
        repo,
        ok=False,
        FLYTEWASM_CACHE_DIR=str(ROOT / "target/flytewasm-cache"),
    )
    assert failed.returncode != 0
    assert "DemoFailed" in failed.stdout + failed.stderr and "out of cheese" in failed.stdout + failed.stderr


def test_the_new_plugin_drops_into_a_running_serve(repo, built, task_pb, flytewasm_bin, tmp_path):
    plugins = tmp_path / "plugins"
    plugins.mkdir()
    server = serve(flytewasm_bin, plugins, "--sandbox", "--sandbox-step-ms", "100")
    try:
        # Published the safe way: written beside, renamed into place.
        shutil.copyfile(built, plugins / ".demo.wasm.part")
        os.rename(plugins / ".demo.wasm.part", plugins / "demo.wasm")
        agent = agent_pb2_grpc.AsyncAgentServiceStub(channel(server.found[GRPC]))
        template = tasks_pb2.TaskTemplate.FromString(task_pb.read_bytes())
        deadline = time.monotonic() + 30
        while True:
            try:
                meta = agent.CreateTask(create_request(template, "e-demo", {STATUSES: SUCCEEDS}), timeout=10)
                break
            except grpc.RpcError as err:  # NOT_FOUND until the plugin is loaded
                assert err.code() == grpc.StatusCode.NOT_FOUND and time.monotonic() < deadline, err
                time.sleep(0.1)
        resource, _ = get_until_done(agent, template, meta.resource_meta)
        assert resource.phase == Phase.SUCCEEDED
    finally:
        server.stop()
