"""`just new-plugin demo` in a temporary copy of the repository, then what an
author runs next: the formatter check, the build, the plugin's tests in the
wasm runtime, and the Python SDK's tests. All must pass before the author
has written a line, and the new plugin must load in the host."""

import os
import pathlib
import shutil
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
# Build products are shared with this checkout, so only the new crates compile.
CARGO_TARGET = pathlib.Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target"))
NOT_COPIED = shutil.ignore_patterns("target", ".venv", ".git", ".flyteidl", "__pycache__", ".pytest_cache")


def run(cmd, cwd, **env):
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
    again = subprocess.run(["just", "new-plugin", "demo"], cwd=repo, capture_output=True, text=True)
    assert again.returncode != 0
    assert "plugin/demo/Cargo.toml" in again.stderr and "already exist" in again.stderr
    bad = subprocess.run(["just", "new-plugin", "Demo Job"], cwd=repo, capture_output=True, text=True)
    assert bad.returncode != 0 and "not a plugin name" in bad.stderr


def test_the_new_plugin_builds_and_its_tests_pass(repo, created, flytewasm_bin, tmp_path):
    run(["cargo", "fmt", "--all", "--check"], repo)
    run([sys.executable, "scripts/build_plugins.py", "flytewasm-demo"], repo)
    component = repo / "target/plugins/demo.wasm"
    assert component.exists()

    # The host accepts it: contract, identity, task type.
    validate = run([flytewasm_bin, "plugin", "validate", component], repo)
    assert "demo" in validate.stdout

    # Its tests in the wasm runtime (the template's build and phase tables).
    tests = run(["cargo", "test", "-p", "flytewasm-demo"], repo)
    assert "3 passed" in tests.stdout

    # The SDK with the new module (its schema classes generated from the
    # new proto), and the SDK's tests: Python → TaskTemplate → render.
    site = tmp_path / "site"
    run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--target", site, "./sdk-python"], repo)
    pytest_run = run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "sdk-python/tests/test_demo.py"],
        repo,
        PYTHONPATH=str(site),
        FLYTEWASM_BIN=str(flytewasm_bin),
    )
    assert "1 passed" in pytest_run.stdout
