#!/usr/bin/env bash
# Builds the pss-guard node image from this checkout with buildah (or podman), no registry.
#
# usage: deploy/build-image.sh [TAG]     (default TAG: localhost/pss-guard:<crate version>)
# Push it with `buildah push TAG docker://REGISTRY/pss-guard:VERSION` and set that image in
# deploy/kubernetes/pss-guard.yaml.
set -euo pipefail
cd "$(dirname "$0")/.."

version=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -1)
tag=${1:-localhost/pss-guard:$version}
target=x86_64-unknown-linux-gnu

RUSTFLAGS="-C target-feature=+crt-static" cargo build --release --locked --target "$target" --bin pss-guard
ctx=$(mktemp -d)
trap 'rm -rf "$ctx"' EXIT
cp "${CARGO_TARGET_DIR:-target}/$target/release/pss-guard" "$ctx/pss-guard"

if command -v buildah >/dev/null; then
	buildah bud --layers=false -f deploy/Containerfile -t "$tag" "$ctx"
else
	podman build -f deploy/Containerfile -t "$tag" "$ctx"
fi
echo "built $tag"
