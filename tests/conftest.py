"""Shared fixtures for the cross-component tests: the flytewasm binary, the
built plugins, and offline serialization of Python tasks with flytekit."""

import importlib.util
import os
import pathlib
import subprocess
import sys
from collections import OrderedDict

import pytest
import yaml

ROOT = pathlib.Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def flytewasm_bin():
    path = pathlib.Path(os.environ.get("FLYTEWASM_BIN", ROOT / "target/debug/flytewasm"))
    if not path.exists():
        pytest.fail(f"{path} does not exist: run `just build`")
    return path


@pytest.fixture(scope="session")
def plugins_dir():
    path = ROOT / "target/plugins"
    if not (path / "spark.wasm").exists():
        pytest.fail("target/plugins/spark.wasm does not exist: run `just build-plugins`")
    return path


def load_module(path):
    """Import a Python file of tasks as a module named after the file."""
    path = pathlib.Path(path)
    sys.path.insert(0, str(path.parent))
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[path.stem] = module
    spec.loader.exec_module(module)
    return module


def serialize(task, out_dir, name):
    """Serialize a flytekit task offline; returns (TaskTemplate .pb path, TaskSpec .pb path, template proto)."""
    from flytekit.configuration import ImageConfig, SerializationSettings
    from flytekit.tools.translator import get_serializable

    settings = SerializationSettings(
        project="flytesnacks",
        domain="development",
        version="v1",
        image_config=ImageConfig.from_images("ghcr.io/example/spark:3.5"),
    )
    spec = get_serializable(OrderedDict(), settings, task)
    template = spec.template.to_flyte_idl()
    template_path = pathlib.Path(out_dir) / f"{name}.pb"
    template_path.write_bytes(template.SerializeToString())
    spec_path = pathlib.Path(out_dir) / f"{name}_1.pb"
    spec_path.write_bytes(spec.to_flyte_idl().SerializeToString())
    return template_path, spec_path, template


@pytest.fixture
def render(flytewasm_bin, plugins_dir, tmp_path):
    """Run `flytewasm render` on a task file; returns the object as a dict."""

    def run(task_path, *args, config=None):
        cmd = [str(flytewasm_bin), "render", "--plugins", str(plugins_dir), "--execution", "exec1", *args]
        if config is not None:
            config_path = tmp_path / "config.yaml"
            config_path.write_text(yaml.safe_dump(config))
            cmd += ["--config", str(config_path)]
        cmd.append(str(task_path))
        result = subprocess.run(
            cmd,
            capture_output=True,
            text=True,
            env={**os.environ, "FLYTEWASM_CACHE_DIR": str(ROOT / "target/flytewasm-cache")},
        )
        assert result.returncode == 0, result.stderr
        return yaml.safe_load(result.stdout)

    return run
