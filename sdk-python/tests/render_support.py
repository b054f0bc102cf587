"""The SDK's tests: tasks serialized by real flytekit, then handed to the
flytewasm host (`flytewasm render`) so Python and Rust agree on every field."""

import os
import pathlib
import subprocess
import sys

import pytest
import yaml

ROOT = pathlib.Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "scripts"))
from serialize_tasks import serialize  # noqa: E402,F401  (the project's serializer)

BINARY = pathlib.Path(os.environ.get("FLYTEWASM_BIN", ROOT / "target/debug/flytewasm"))
PLUGINS = ROOT / "target/plugins"


def run_render(template_path):
    """`flytewasm render` of a TaskTemplate file with the built plugins."""
    if not BINARY.exists() or not (PLUGINS / "batch-job.wasm").exists():
        pytest.fail("run `just build` first: the host and the batch-job plugin are needed")
    return subprocess.run(
        [str(BINARY), "render", "--plugins", str(PLUGINS), "--execution", "e1", str(template_path)],
        capture_output=True,
        text=True,
        env={**os.environ, "FLYTEWASM_CACHE_DIR": str(ROOT / "target/flytewasm-cache")},
    )


def render_job(template_path):
    """The object `flytewasm render` prints, as a dict."""
    result = run_render(template_path)
    assert result.returncode == 0, result.stderr
    return yaml.safe_load(result.stdout)
