#!/usr/bin/env bash
# The main job end to end, on a fresh Debian 12 machine, as root:
#   sudo scripts/demo.sh [--stack bookworm|trixie|sid|crio]
# Starts a throw-away containerd node (its own root, state and socket under /tmp) whose runc
# handler runs pss-guard as a createRuntime hook, drives it through the CRI API the way kubelet
# does, and shows: a privileged pod refused with the reason kubelet would show, a compliant pod
# running, and the node's decision log. Tears everything down at the end.
# --stack picks the runtimes (tests/containerd/stack.sh): bookworm = the host's containerd 1.6 +
# runc 1.1 (default), trixie = containerd 1.7 + runc 1.1, sid = containerd 2.x + runc 1.3
# (config version 3, what EKS AL2023 and Bottlerocket run); trixie and sid come from a Debian
# tree built on first use (about a minute) and cached under /var/cache/pss-guard/stacks.
# crio = CRI-O v1.36 (built from its release source on first use, about 10 minutes; the source
# tarball from PSS_GUARD_CRIO_SRC, by default ../shared/cri-o/) + runc 1.3, pss-guard wired
# through the shipped hooks.d file instead of a base spec (docs/crio.md).
set -euo pipefail
cd "$(dirname "$0")/.."

stack=bookworm
while [ $# -gt 0 ]; do
  case $1 in
    --stack) stack=${2:?--stack needs bookworm, trixie, sid or crio}; shift 2 ;;
    --stack=*) stack=${1#--stack=}; shift ;;
    *) echo "usage: $0 [--stack bookworm|trixie|sid|crio]" >&2; exit 2 ;;
  esac
done

[ "$(id -u)" = 0 ] || { echo "needs root (it starts containerd): sudo $0" >&2; exit 1; }
scripts/install-deps.sh --demo

echo "== building pss-guard (release) and the kubelet stand-in"
cargo build --quiet --release -p pss-guard
cargo build --quiet -p kubelet-sim
export PSS_GUARD_BIN="$PWD/target/release/pss-guard"
sim="$PWD/target/debug/kubelet-sim"

if [ "$stack" = crio ]; then
  export PSS_GUARD_CRIO_SRC="${PSS_GUARD_CRIO_SRC:-$PWD/../shared/cri-o/cri-o-v1.36.3-src.tar.gz}"
fi
node=$(bash tests/containerd/node-up.sh --stack "$stack" | tail -1)
trap 'bash tests/containerd/node-down.sh "$node" >/dev/null 2>&1 || true' EXIT
# shellcheck disable=SC1091
. "$node/env"
socket=${CRI_SOCKET:-${CONTAINERD_SOCKET:-}}
run_pod() {
  "$sim" run-pod --socket "$socket" --kubelet-root "$KUBELET_ROOT" "$1"
}

echo
if [ "$stack" = crio ]; then
  echo "stack crio: CRI-O $CRIO_VERSION (storage driver $CRIO_DRIVER), runc $RUNC_VERSION;"
  echo "pss-guard is the hooks.d hook CRI-O gives runc for every container, policy baseline:latest"
  verb=CreateContainer
else
  echo "stack $stack: containerd $CONTAINERD_VERSION, runc $RUNC_VERSION;"
  echo "pss-guard is the createRuntime hook of the runc handler (base_runtime_spec), policy baseline:latest"
  verb=StartContainer
fi
echo
echo "== 1. examples/privileged-pod.yaml (securityContext.privileged: true), no admission policy"
# kubelet-sim exits non-zero when a container fails to start, as this one must.
out=$(run_pod examples/privileged-pod.yaml) || true
started=$(jq -r '.containers[0].started' <<<"$out")
# CRI-O runs the hook in CreateContainer, containerd in StartContainer.
echo "$verb succeeded: $started"
echo "$verb's error, which kubelet puts in the pod's Failed event (kubectl describe pod: \"Error: ...\"):"
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
