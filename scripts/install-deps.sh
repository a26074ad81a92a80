#!/usr/bin/env bash
# Installs what pss-guard's tests and demo need on a fresh Debian 12 machine (run as root).
# Idempotent: packages already present are left alone. Extra Debian package names given as
# arguments are installed too (scripts/bench.sh passes its profilers).
set -euo pipefail

packages=(
  runc crun containerd podman containernetworking-plugins busybox-static
  util-linux iproute2 shellcheck protobuf-compiler python3 jq
  buildah python3-pip debootstrap
  "$@"
)

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "installing: ${missing[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# Kubernetes schemas for the offline manifest validation (tests/install_manifests.rs).
if ! python3 -c 'import kubernetes_validate' 2>/dev/null; then
  python3 -m pip install --quiet kubernetes-validate 2>/dev/null ||
    python3 -m pip install --quiet --break-system-packages kubernetes-validate
fi

# Debian sid in a debootstrap'd tree: kustomize for the manifest tests (bookworm has no
# kustomize package; sid's is a Go binary that runs on bookworm's glibc), and the aarch64 cross
# toolchain scripts/cross-aarch64.sh uses.
"$(dirname "$0")/cross-aarch64.sh" prepare
tree=${PSS_GUARD_CROSS_TREE:-/var/cache/pss-guard/cross-sid}
if ! command -v kustomize >/dev/null 2>&1; then
  install -m 0755 "$tree/usr/bin/kustomize" /usr/local/bin/kustomize
fi

if ! command -v cargo >/dev/null 2>&1; then
  echo "cargo is required (rustup's stable toolchain)" >&2
  exit 1
fi
