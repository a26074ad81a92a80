#!/usr/bin/env bash
# The main job end to end, on a fresh Debian 12 machine, as root:
#   sudo scripts/demo.sh [--stack bookworm|trixie|sid]
# Starts a throw-away containerd node (its own root, state and socket under /tmp) whose runc
# handler runs pss-guard as a createRuntime hook, drives it through the CRI API the way kubelet
# does, and shows: a privileged pod refused with the reason kubelet would show, a compliant pod
# running, and the node's decision log. Tears everything down at the end.
# --stack picks the runtimes (tests/containerd/stack.sh): bookworm = the host's containerd 1.6 +
# runc 1.1 (default), trixie = containerd 1.7 + runc 1.1, sid = containerd 2.x + runc 1.3
# (config version 3, what EKS AL2023 and Bottlerocket run); trixie and sid come from a Debian
# tree built on first use (about a minute) and cached under /var/cache/pss-guard/stacks.
set -euo pipefail
cd "$(dirname "$0")/.."

stack=bookworm
while [ $# -gt 0 ]; do
  case $1 in
    --stack) stack=${2:?--stack needs bookworm, trixie or sid}; shift 2 ;;
    --stack=*) stack=${1#--stack=}; shift ;;
    *) echo "usage: $0 [--stack bookworm|trixie|sid]" >&2; exit 2 ;;
  esac
done

[ "$(id -u)" = 0 ] || { echo "needs root (it starts containerd): sudo $0" >&2; exit 1; }
scripts/install-deps.sh --demo

echo "== building pss-guard (release) and the kubelet stand-in"
cargo build --quiet --release -p pss-guard
cargo build --quiet -p kubelet-sim
export PSS_GUARD_BIN="$PWD/target/release/pss-guard"
sim="$PWD/target/debug/kubelet-sim"

node=$(bash tests/containerd/node-up.sh --stack "$stack" | tail -1)
trap 'bash tests/containerd/node-down.sh "$node" >/dev/null 2>&1 || true' EXIT
# shellcheck disable=SC1091
. "$node/env"
run_pod() {
  "$sim" run-pod --socket "$CONTAINERD_SOCKET" --kubelet-root "$KUBELET_ROOT" "$1"
}

echo
echo "stack $stack: containerd $CONTAINERD_VERSION, runc $RUNC_VERSION;"
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
