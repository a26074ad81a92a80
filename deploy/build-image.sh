#!/usr/bin/env bash
# Builds the pss-guard node image from this checkout with buildah (or podman), no registry.
#
# usage: deploy/build-image.sh [--target TRIPLE] [TAG]
#   TRIPLE: x86_64-unknown-linux-gnu (default) or aarch64-unknown-linux-gnu (Graviton; built in
#           a Debian sid tree by scripts/cross-aarch64.sh, needs root)
#   TAG:    default localhost/pss-guard:<crate version>[-arm64]
# The image holds the static `pss-guard` (hook, installer, health) and, when the workspace has
# the agent crate, the static `pss-guard-agent`. Push it with
# `buildah push TAG docker://REGISTRY/pss-guard:VERSION` and pin it by digest in your overlay.
set -euo pipefail
cd "$(dirname "$0")/.."

target=x86_64-unknown-linux-gnu
if [[ ${1:-} == --target ]]; then
	target=${2:?--target needs a triple}
	shift 2
fi
version=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -1)
case $target in
x86_64-unknown-linux-gnu) arch=amd64 suffix= ;;
aarch64-unknown-linux-gnu) arch=arm64 suffix=-arm64 ;;
*)
	echo "unsupported target $target (x86_64-unknown-linux-gnu or aarch64-unknown-linux-gnu)" >&2
	exit 2
	;;
esac
tag=${1:-localhost/pss-guard:$version$suffix}

packages=(pss-guard)
[[ -f agent/Cargo.toml ]] && packages+=(pss-guard-agent)
ctx=$(mktemp -d)
trap 'rm -rf "$ctx"' EXIT
if [[ $target == x86_64-unknown-linux-gnu ]]; then
	pkg_args=()
	for p in "${packages[@]}"; do pkg_args+=(-p "$p"); done
	RUSTFLAGS="-C target-feature=+crt-static" cargo build --release --locked --target "$target" "${pkg_args[@]}" --bins
	dir=${CARGO_TARGET_DIR:-target}/$target/release
else
	bin=$(scripts/cross-aarch64.sh build release "${packages[@]}")
	dir=$(dirname "$bin")
fi
for p in "${packages[@]}"; do
	cp "$dir/$p" "$ctx/$p"
done
if [[ ${#packages[@]} == 1 ]]; then
	echo "note: no agent/ crate in this checkout: the image holds /pss-guard only" >&2
fi

if command -v buildah >/dev/null; then
	buildah bud --layers=false --arch "$arch" -f deploy/Containerfile -t "$tag" "$ctx"
else
	podman build --arch "$arch" -f deploy/Containerfile -t "$tag" "$ctx"
fi
echo "built $tag ($target)"
