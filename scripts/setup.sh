#!/usr/bin/env bash
# Install what the project needs and is missing: the wasm32-wasip2 target,
# the Python venv (pinned in sdk-python/requirements.txt), and the flyteidl
# descriptor set extracted from the pinned flyteidl wheel. Idempotent: each
# step is skipped when its inputs have not changed.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! rustup target list --installed | grep -qx wasm32-wasip2; then
    echo "setup: adding the wasm32-wasip2 Rust target"
    rustup target add wasm32-wasip2
fi

stamp() { sha256sum "$@" | sha256sum | cut -c1-16; }

want=$(stamp sdk-python/requirements.txt sdk-python/requirements-nodeps.txt)
if [[ ! -x .venv/bin/python || "$(cat .venv/.flytewasm-stamp 2>/dev/null)" != "$want" ]]; then
    echo "setup: installing the Python environment in .venv"
    python3 -m venv .venv
    .venv/bin/pip install --quiet --upgrade pip
    .venv/bin/pip install --quiet -r sdk-python/requirements.txt
    .venv/bin/pip install --quiet --no-deps -r sdk-python/requirements-nodeps.txt
    echo "$want" > .venv/.flytewasm-stamp
fi

want=$(stamp sdk-python/pyproject.toml sdk-python/setup.py proto/flytewasm/*/*/*.proto $(find sdk-python/src -name '*.py'))
if [[ "$(cat .venv/.sdk-stamp 2>/dev/null)" != "$want" ]]; then
    echo "setup: installing the flytekit SDK (sdk-python) into .venv"
    .venv/bin/pip install --quiet ./sdk-python
    echo "$want" > .venv/.sdk-stamp
fi

want=$(stamp sdk-python/requirements.txt scripts/flyteidl_descriptors.py)
if [[ ! -s .flyteidl/flyteidl.fds.bin || "$(cat .flyteidl/stamp 2>/dev/null)" != "$want" ]]; then
    echo "setup: extracting the flyteidl and flyteidl2 definitions from their pinned wheels"
    mkdir -p .flyteidl
    .venv/bin/python scripts/flyteidl_descriptors.py .flyteidl/flyteidl.fds.bin
    echo "$want" > .flyteidl/stamp
fi
