# flytewasm developer commands. `just` lists them.

set shell := ["bash", "-euo", "pipefail", "-c"]

plugins := "target/plugins"
test_plugins := "target/test-plugins"
python := ".venv/bin/python"

# List the recipes
default:
    @just --list

# Install what is missing: wasm target, Python venv, flyteidl definitions
setup:
    scripts/setup.sh

# Build the host binary and every plugin component
build: setup build-plugins
    cargo build -p flytewasm
    @echo "host: target/debug/flytewasm   plugins: {{plugins}}/"

# Compile the plugins to wasm32-wasip2 components in target/plugins (test plugins in target/test-plugins)
build-plugins: setup
    {{python}} scripts/build_plugins.py

# A new operator plugin from plugin/template: schema, Rust plugin with tests, Python SDK module with a test
new-plugin NAME:
    python3 scripts/new_plugin.py "{{NAME}}"

# Serialize the example Python tasks to TaskTemplates (examples/<task>.pb, .json, .taskspec.pb; Flyte 2's in examples/flyte2/)
examples: setup
    {{python}} scripts/serialize_tasks.py examples/spark_tasks.py examples
    {{python}} scripts/serialize_tasks.py examples/flyte2_spark_tasks.py examples/flyte2

# Run every test: Rust (host, SDK, plugins in the wasm runtime), the cluster suite on a sandbox process, and Python
test: build examples
    cargo fmt --all --check
    cargo test --workspace --exclude flytewasm-testing-plugin --exclude flytewasm-testing-wit-next
    scripts/with-sandbox.sh just test-cluster
    FLYTEWASM_BIN=target/debug/flytewasm {{python}} -m pytest tests sdk-python/tests -q

# The lifecycle suite against the cluster in KUBECONFIG (skipped when none is configured)
test-cluster: build-plugins
    #!/usr/bin/env bash
    set -euo pipefail
    if [[ -z "${KUBECONFIG:-}" && ! -f "$HOME/.kube/config" ]]; then
        echo "test-cluster: skipped: no cluster configured (set KUBECONFIG or create ~/.kube/config)"
        exit 0
    fi
    echo "test-cluster: against $(kubectl config view --minify -o jsonpath='{.clusters[0].cluster.server}' 2>/dev/null || echo "${KUBECONFIG:-~/.kube/config}")"
    FLYTEWASM_TEST_CLUSTER=1 cargo test -p flytewasm --test cluster

# The main job: a Spark task written with flytekit runs to SUCCEEDED on the embedded sandbox (builds only what it runs: the host and the Spark plugin)
demo: examples
    cargo build -p flytewasm
    {{python}} scripts/build_plugins.py flytewasm-spark
    @echo "== the SparkApplication the Spark plugin builds for examples/spark_tasks.py:spark_pi"
    target/debug/flytewasm render --plugins {{plugins}} examples/spark_pi.pb | head -40
    @echo "== running it on the embedded sandbox cluster (a test double)"
    target/debug/flytewasm run --sandbox --plugins {{plugins}} examples/spark_pi.pb
    @echo "== the same task the way Flyte's propeller sends it (the agent protocol), and as Flyte 2's SDK writes it the way Flyte 2's executor sends it (the connector protocol): flytewasm serve"
    {{python}} scripts/agent_demo.py target/debug/flytewasm {{plugins}} examples/spark_pi.pb --flyte2 examples/flyte2/spark_pi.pb

# The reliability suites at scale: TASKS lifecycles under injected cluster faults, and ROUNDS SIGKILLs of serve per phase
chaos TASKS="1000" ROUNDS="10": build
    FLYTEWASM_CHAOS_TASKS={{TASKS}} cargo test -p flytewasm --test chaos -- --nocapture
    FLYTEWASM_RESTART_ROUNDS={{ROUNDS}} FLYTEWASM_BIN=target/debug/flytewasm {{python}} -m pytest tests/test_restarts.py -q -s

# Benchmarks: plugin calls in wasm vs native, and 1,000 concurrent tasks on the sandbox
bench: build-plugins
    cargo bench -p flytewasm-plugin-bench --bench calls
    cargo bench -p flytewasm --bench lifecycle
    cargo bench -p flytewasm --bench agent
    cargo bench -p flytewasm --bench swap
    cargo bench -p flytewasm --bench resource_meta
    cargo bench -p flytewasm --bench agent_path
