#!/usr/bin/env bash
# The main job end to end, on a fresh Debian 12 machine, as root:
#   sudo scripts/demo.sh
# Starts a throw-away containerd node (its own root, state and socket under /tmp) whose runc
# handler runs pss-guard as a createRuntime hook, drives it through the CRI API the way kubelet
# does, and shows: a privileged pod refused with the reason kubelet would show, a compliant pod
# running, and the node's decision log. Tears everything down at the end.
set -euo pipefail
cd "$(dirname "$0")/.."

[ "$(id -u)" = 0 ] || { echo "needs root (it starts containerd): sudo $0" >&2; exit 1; }
scripts/install-deps.sh

echo "== building pss-guard (release) and the kubelet stand-in"
cargo build --quiet --release -p pss-guard
cargo build --quiet -p kubelet-sim
export PSS_GUARD_BIN="$PWD/target/release/pss-guard"
sim="$PWD/target/debug/kubelet-sim"

node=$(bash tests/containerd/node-up.sh | tail -1)
trap 'bash tests/containerd/node-down.sh "$node" >/dev/null 2>&1 || true' EXIT
# shellcheck disable=SC1091
. "$node/env"
run_pod() {
  "$sim" run-pod --socket "$CONTAINERD_SOCKET" --kubelet-root "$KUBELET_ROOT" "$1"
}

echo
echo "containerd $(containerd --version | awk '{print $3}'), runc $(runc --version | awk 'NR==1{print $3}');"
echo "pss-guard is the createRuntime hook of the runc handler (base_runtime_spec), policy baseline:latest"
echo
echo "== 1. examples/privileged-pod.yaml (securityContext.privileged: true), no admission policy"
# kubelet-sim exits non-zero when a container fails to start, as this one must.
out=$(run_pod examples/privileged-pod.yaml) || true
started=$(jq -r '.containers[0].started' <<<"$out")
echo "StartContainer succeeded: $started"
echo "StartContainer's error, which kubelet puts in the pod's Failed event (kubectl describe pod: \"Error: ...\"):"
jq -r '.containers[0].error' <<<"$out" | sed 's/^/    /'
[ "$started" = false ] || { echo "FAILED: the privileged container started" >&2; exit 1; }

echo
echo "== 2. examples/compliant-pod.yaml"
out=$(run_pod examples/compliant-pod.yaml)
echo "container app: started=$(jq -r '.containers[0].started' <<<"$out") state=$(jq -r '.containers[0].state' <<<"$out")"
[ "$(jq -r '.containers[0].started' <<<"$out")" = true ] || { echo "FAILED: the compliant pod did not start" >&2; exit 1; }

echo
echo "== 3. the node's decision log ($PSS_GUARD_DECISION_LOG)"
cat "$PSS_GUARD_DECISION_LOG"
