#!/usr/bin/env bash
# A static aarch64 (Graviton) pss-guard, built and tested on an x86_64 Debian 12 host.
#
# rustup cannot fetch another target's standard library here, but Debian's archive has rustc
# with its standard library per architecture: a debootstrap'd sid tree gets rustc, cargo,
# libstd-rust-dev:arm64, gcc-aarch64-linux-gnu and libc6-dev:arm64 (multiarch), and builds
# `--target aarch64-unknown-linux-gnu` with `+crt-static`. qemu-user from the same tree is a
# static-pie x86_64 binary, so it runs the aarch64 pss-guard on the host without binfmt_misc
# (nothing system-wide is registered).
#
# usage: scripts/cross-aarch64.sh prepare                  the tree and its packages only
#        scripts/cross-aarch64.sh build [debug|release] [PACKAGE...]
#                   the packages' binaries (default: pss-guard), pss-guard's path printed last
#        scripts/cross-aarch64.sh test                    build (debug), then run the hook
#                   contract tests (tests/cli.rs) and the fixture test (tests/fixtures.rs)
#                   with every pss-guard they start being the aarch64 one under qemu-aarch64
# Needs root (debootstrap, chroot). The tree is kept in $PSS_GUARD_CROSS_TREE
# (default /var/cache/pss-guard/cross-sid) and reused.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD
tree=${PSS_GUARD_CROSS_TREE:-/var/cache/pss-guard/cross-sid}
mirror=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
target=aarch64-unknown-linux-gnu
# kustomize (5.8 in sid; bookworm has none) renders the manifests in the test suite.
packages=(rustc cargo libstd-rust-dev:arm64 gcc-aarch64-linux-gnu libc6-dev:arm64 qemu-user kustomize ca-certificates)
# sid's Release files are short-lived; a mirror snapshot may be past Valid-Until.
registry=${CARGO_HOME:-$HOME/.cargo}/registry
apt_opts=(-o Acquire::Check-Valid-Until=false -o APT::Get::Assume-Yes=true)

in_tree() {
	# A private mount namespace: /proc and the checkout are mounted for this command only.
	# shellcheck disable=SC2016 # expanded by the inner bash
	unshare -m --propagation private bash -c '
		set -e
		tree=$1; repo=$2; registry=$3; shift 3
		mount -t proc proc "$tree/proc"
		mkdir -p "$tree/src" "$tree/root/.cargo/registry" "$registry"
		mount --bind "$repo" "$tree/src"
		mount --bind "$registry" "$tree/root/.cargo/registry"
		exec chroot "$tree" env -i PATH=/usr/bin:/bin HOME=/root "$@"
	' _ "$tree" "$repo" "$registry" "$@"
}

prepare() {
	if [[ ! -x $tree/usr/bin/apt-get ]]; then
		command -v debootstrap >/dev/null || {
			apt-get update -qq
			DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends debootstrap >/dev/null
		}
		mkdir -p "$(dirname "$tree")"
		debootstrap --variant=minbase sid "$tree" "$mirror" >/dev/null
		printf '#!/bin/sh\nexit 101\n' >"$tree/usr/sbin/policy-rc.d"
		chmod +x "$tree/usr/sbin/policy-rc.d"
		echo "127.0.0.1 localhost" >"$tree/etc/hosts"
	fi
	cp /etc/resolv.conf "$tree/etc/resolv.conf"
	local missing=()
	for p in "${packages[@]}"; do
		# shellcheck disable=SC2016 # a dpkg-query format, not a shell expansion
		in_tree dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
	done
	if ((${#missing[@]})); then
		in_tree dpkg --add-architecture arm64
		in_tree apt-get "${apt_opts[@]}" update -qq
		in_tree env DEBIAN_FRONTEND=noninteractive apt-get "${apt_opts[@]}" install -qq \
			--no-install-recommends "${missing[@]}" >/dev/null
	fi
}

build() {
	local profile=${1:-debug} flag=() pkgs=()
	shift || true
	[[ $profile == release ]] && flag=(--release)
	for p in "${@:-pss-guard}"; do pkgs+=(-p "$p"); done
	prepare
	# The crates come from the host's cargo (its network set-up: proxies, CA bundles), and
	# the tree's cargo builds offline from the same registry.
	cargo fetch --locked --target "$target" >&2
	# Its own target dir: sid's rustc must not share artefacts with the host toolchain's.
	in_tree env CARGO_HOME=/root/.cargo CARGO_TARGET_DIR=/src/target/cross \
		CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER=aarch64-linux-gnu-gcc \
		RUSTFLAGS="-C target-feature=+crt-static" \
		bash -c "cd /src && cargo build --offline --locked --target $target ${flag[*]} ${pkgs[*]} --bins" >&2
	local bin=$repo/target/cross/$target/$profile/pss-guard
	local machine
	machine=$(od -An -tu2 -j18 -N2 "$bin" | tr -d ' ')
	[[ $machine == 183 ]] || { echo "$bin: e_machine $machine, not aarch64 (183)" >&2; exit 1; }
	echo "$bin"
}

run_tests() {
	local bin qemu wrapper_dir
	bin=$(build debug)
	qemu=$tree/usr/bin/qemu-aarch64
	# The host's test binaries, built in their own target dir whose pss-guard (the path
	# compiled into them) is replaced by a wrapper running the aarch64 binary under qemu.
	export CARGO_TARGET_DIR=$repo/target/qemu-host
	mapfile -t tests < <(cargo test --locked --no-run --test cli --test fixtures \
		--message-format=json 2>/dev/null |
		python3 -c 'import json,sys
for l in sys.stdin:
    m = json.loads(l)
    if m.get("reason") == "compiler-artifact" and m["target"]["kind"] == ["test"] and m.get("executable"):
        print(m["executable"])')
	((${#tests[@]} == 2)) || { echo "expected the cli and fixtures test binaries, got: ${tests[*]}" >&2; exit 1; }
	wrapper_dir=$CARGO_TARGET_DIR/debug
	rm -f "$wrapper_dir/pss-guard"
	printf '#!/bin/sh\nexec %s %s "$@"\n' "$qemu" "$bin" >"$wrapper_dir/pss-guard"
	chmod 755 "$wrapper_dir/pss-guard"
	# Proof the wrapper runs the aarch64 build, not a host one.
	"$qemu" "$bin" version
	"$wrapper_dir/pss-guard" version
	local failed=0
	for t in "${tests[@]}"; do
		echo "== aarch64 under qemu: $(basename "$t")"
		"$t" --test-threads=2 || failed=1
	done
	return $failed
}

case ${1:-} in
prepare) prepare ;;
build)
	shift
	build "$@"
	;;
test) run_tests ;;
*)
	echo "usage: $0 prepare | build [debug|release] | test" >&2
	exit 2
	;;
esac
