"""Shared fixtures for the cross-component tests: the flytewasm binary, the
built plugins, and offline serialization of Python tasks with flytekit."""

import os
import pathlib
import subprocess
import sys

import pytest
import yaml

ROOT = pathlib.Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def flytewasm_bin():
    path = pathlib.Path(os.environ.get("FLYTEWASM_BIN", ROOT / "target/debug/flytewasm")).resolve()
    if not path.exists():
        pytest.fail(f"{path} does not exist: run `just build`")
    return path


@pytest.fixture(scope="session")
def plugins_dir():
    path = ROOT / "target/plugins"
    if not (path / "spark.wasm").exists():
        pytest.fail("target/plugins/spark.wasm does not exist: run `just build-plugins`")
    return path


sys.path.insert(0, str(ROOT / "scripts"))
from serialize_tasks import load_module  # noqa: E402  (the project's own serializer)
from serialize_tasks import serialize as _serialize  # noqa: E402

TEST_IMAGE = "ghcr.io/example/spark:3.5"


def serialize(task, out_dir, name):
    """Serialize a flytekit task offline; returns (TaskTemplate .pb, TaskSpec .pb, template proto)."""
    return _serialize(task, out_dir, name, TEST_IMAGE)


@pytest.fixture
def render(flytewasm_bin, plugins_dir, tmp_path):
    """Run `flytewasm render` on a task file; returns the object as a dict."""

    def run(task_path, *args, config=None, plugins=None):
        cmd = [str(flytewasm_bin), "render", "--plugins", str(plugins or plugins_dir), "--execution", "exec1", *args]
        if config is not None:
            config_path = tmp_path / "config.yaml"
            config_path.write_text(yaml.safe_dump(config))
            cmd += ["--config", str(config_path)]
        cmd.append(str(task_path))
        result = subprocess.run(
            cmd,
            capture_output=True,
            text=True,
            # The same cache and key as the other suites: a second key would
            # make each recompile what the other cached.
            env={
                **os.environ,
                "FLYTEWASM_CACHE_DIR": str(ROOT / "target/flytewasm-cache"),
                "FLYTEWASM_PRECOMPILE_KEY": str(ROOT / "target/flytewasm-test-keys/precompile.key"),
            },
        )
        assert result.returncode == 0, result.stderr
        return yaml.safe_load(result.stdout)

    return run


@pytest.fixture(scope="session")
def template(tmp_path_factory):
    """`spark_user_tasks.minimal`, serialized by flytekit: a TaskTemplate proto."""
    tasks = load_module(ROOT / "tests/spark_user_tasks.py")
    _, _, template = serialize(tasks.minimal, tmp_path_factory.mktemp("tasks"), "minimal")
    return template


@pytest.fixture
def standalone_sandbox(flytewasm_bin, plugins_dir, tmp_path):
    """`flytewasm sandbox` as its own process, so a `run` against it can be
    watched from outside (the embedded sandbox of `run --sandbox` goes away
    with the run): (its API, its kubeconfig)."""
    import agent_support  # it imports this module
    from propeller_emulator import SandboxApi

    kubeconfig = tmp_path / "sandbox.kubeconfig"
    process = agent_support.Process(
        [flytewasm_bin, "sandbox", "--port", "0", "--plugins", plugins_dir,
         "--kubeconfig", kubeconfig, "--step-ms", "100"],
        wait_for=[agent_support.SANDBOX],
    )
    yield SandboxApi(process.found[agent_support.SANDBOX]), kubeconfig
    process.stop()

