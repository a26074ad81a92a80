#!/usr/bin/env bash
# The whole test suite, from a fresh clone on a fresh Debian 12 machine, as root:
#   sudo scripts/test.sh
# Installs the runtimes the end-to-end tests drive (runc, containerd, podman), checks format
# and lints, then runs every test of the workspace on the host's runtimes (stack bookworm:
# containerd 1.6 + runc 1.1), and the containerd tests and the conformance run again on each
# Debian-tree stack (trixie: containerd 1.7 + runc 1.1; sid: containerd 2.x + runc 1.3, what
# EKS runs). CRI-O (stack crio: v1.36 built from its release source, whose tarball
# PSS_GUARD_CRIO_SRC names, by default ../shared/cri-o/) runs its own e2e tests
# (tests/kubelet-sim/tests/crio.rs, in the workspace run) and the shared ones listed below.
# Nothing is skipped: a missing runtime fails.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "$(id -u)" != 0 ]; then
  echo "the end-to-end tests drive real runtimes and need root: sudo $0" >&2
  exit 1
fi

scripts/install-deps.sh

echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy"
cargo clippy --workspace --all-targets -- -D warnings
echo "== shellcheck"
mapfile -t shells < <(git ls-files '*.sh' 'vagrant/*' '.ci/run' | while read -r f; do
  [ -f "$f" ] && head -1 "$f" | grep -q 'bash' && echo "$f"; done)
shellcheck "${shells[@]}"
echo "== build"
cargo build --workspace --all-targets
export PSS_GUARD_BIN="$PWD/target/debug/pss-guard"
export PSA_FIXTURES="${PSA_FIXTURES:-$PWD/../shared/psa-fixtures}"
export PSS_GUARD_CRIO_SRC="${PSS_GUARD_CRIO_SRC:-$PWD/../shared/cri-o/cri-o-v1.36.3-src.tar.gz}"
echo "== runtime stacks (built on first use, cached in /var/cache/pss-guard/stacks)"
for stack in trixie sid crio; do
  start=$SECONDS
  bash tests/containerd/stack.sh tree "$stack" >/dev/null
  echo "$stack tree ready in $((SECONDS - start)) s"
done
echo "== tests"
log=$(mktemp)
trap 'rm -f "$log"' EXIT
# Two tests at a time keep the runtime tests from starving each other on 2 cores.
# Every stack runs even when an earlier one failed; the script fails at the end.
status=0
cargo test --workspace --no-fail-fast -- --test-threads=2 2>&1 | tee "$log" || status=1
for stack in trixie sid; do
  echo "== containerd tests and conformance on stack $stack"
  start=$SECONDS
  # The add-on suite (issue 17) runs on bookworm above and on sid, the containerd 2.x EKS runs.
  extra=()
  [ "$stack" = sid ] && extra=(--test addons)
  PSS_GUARD_STACK=$stack cargo test --no-fail-fast -p kubelet-sim --test containerd \
    --test concurrency --test cri_view --test conformance "${extra[@]}" -- --test-threads=2 2>&1 |
    tee -a "$log" || status=1
  echo "stack $stack: $((SECONDS - start)) s"
done
# CRI-O: the namespace-label and concurrency tests as on containerd (CRI-O's own e2e tests,
# crio.rs, already ran in the workspace run).
echo "== shared tests on stack crio"
start=$SECONDS
PSS_GUARD_STACK=crio cargo test --no-fail-fast -p kubelet-sim --test namespaces \
  --test concurrency -- --test-threads=2 2>&1 | tee -a "$log" || status=1
echo "stack crio: $((SECONDS - start)) s"
# One closing line for the whole workspace (cargo prints one per test binary).
awk '/^test result:/ { p += $4; f += $6 } END { printf "%d passed, %d failed\n", p, f }' "$log"
# Graviton: the static aarch64 build (Debian sid's rustc and arm64 standard library in a
# debootstrap'd tree) runs the hook contract and fixture tests under qemu-user.
echo "== aarch64 (qemu-user)"
scripts/cross-aarch64.sh test
exit "$status"
