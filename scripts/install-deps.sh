#!/usr/bin/env bash
# Installs what pss-guard's tests need on a fresh Debian 12 machine (run as root), or with
# --demo only what scripts/demo.sh uses (a containerd node, runc, the kubelet stand-in's build).
# Idempotent: packages already present are left alone. Extra Debian package names given as
# arguments are installed too (scripts/bench.sh passes its profilers).
#
# usage: scripts/install-deps.sh [--demo] [PACKAGE...]
set -euo pipefail

demo=false
if [ "${1:-}" = --demo ]; then
  demo=true
  shift
fi

# The demo: containerd + runc + CNI plugins, the busybox image, protoc for kubelet-sim's CRI
# client, jq for its output, debootstrap for --stack trixie|sid.
packages=(
  runc containerd containernetworking-plugins busybox-static util-linux iproute2
  protobuf-compiler python3 jq debootstrap
)
if ! $demo; then
  packages+=(crun podman shellcheck buildah python3-pip)
fi
packages+=("$@")

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "installing: ${missing[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

if ! command -v cargo >/dev/null 2>&1; then
  echo "cargo is required (rustup's stable toolchain)" >&2
  exit 1
fi
if $demo; then
  exit 0
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

