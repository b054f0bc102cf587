#!/usr/bin/env bash
# Run a command with KUBECONFIG pointing at `flytewasm sandbox` started as a
# separate process (the embedded test-double cluster), then stop it.
# Usage: scripts/with-sandbox.sh COMMAND [ARGS...]
set -euo pipefail
cd "$(dirname "$0")/.."

kubeconfig="target/sandbox.kubeconfig"
rm -f "$kubeconfig"
target/debug/flytewasm sandbox --port 0 --kubeconfig "$kubeconfig" > target/sandbox.log 2>&1 &
sandbox=$!
trap 'kill $sandbox 2>/dev/null || true' EXIT
for _ in $(seq 100); do
    [[ -s "$kubeconfig" ]] && break
    sleep 0.1
done
[[ -s "$kubeconfig" ]] || { echo "the sandbox did not start:"; cat target/sandbox.log; exit 1; }
KUBECONFIG="$PWD/$kubeconfig" "$@"
