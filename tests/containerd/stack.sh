#!/usr/bin/env bash
# Runtime stacks for the test node (issue 11): which containerd + runc a node runs.
#
#   bookworm  the host's own containerd 1.6 + runc 1.1 (Debian 12 packages)
#   trixie    containerd 1.7 + runc 1.1 from Debian 13, in a debootstrap'd tree
#   sid       containerd 2.x + runc 1.3 (+ podman 5.x) from Debian unstable, in a tree
#   crio      CRI-O (built from its release source, see below) + conmon, runc 1.3 and podman
#             from Debian unstable, in a tree of its own (tests/containerd/crio-up.sh runs it)
#
# usage: stack.sh tree STACK        build the tree if it is not cached; print its path
#        stack.sh run STACK CMD...  run CMD inside a new private mount namespace of the tree
#                                   (one-shot commands, and the node's containerd)
#
# Trees live in ${PSS_GUARD_STACK_CACHE:-/var/cache/pss-guard/stacks}/<stack>/root and are
# built on first use (debootstrap --variant=minbase, then apt-get inside the tree); a
# complete tree has a `.complete` stamp naming the packages it holds, so an interrupted build
# is redone, not reused. Building never mounts anything in the host's mount namespace: apt
# runs inside `unshare -m` with the tree's own /proc, /dev and /sys.
#
# CRI-O has no Debian package: the crio tree builds it with the tree's own Go from CRI-O's
# release source (its tag's tree with the committed vendor/ directory), a tarball named by
# PSS_GUARD_CRIO_SRC (scripts/test.sh and scripts/demo.sh give it a default). The binaries
# land in the tree's /usr/local/bin (crio, pinns); the tarball's sha256 is part of the stamp, so
# another source rebuilds them. Nothing of CRI-O is kept outside the cache.
set -euo pipefail

die() {
	echo "stack: $*" >&2
	exit 1
}

cache=${PSS_GUARD_STACK_CACHE:-/var/cache/pss-guard/stacks}
mirror=${PSS_GUARD_DEBIAN_MIRROR:-http://deb.debian.org/debian}
# What a node needs inside the tree: the runtimes, CNI plugins, a static shell for the test
# images (busybox), the capture hook (python3), and podman on sid (tests/podman_e2e.rs).
base_packages=(containerd runc containernetworking-plugins busybox-static python3)

packages_for() {
	case $1 in
	trixie) echo "${base_packages[*]}" ;;
	sid) echo "${base_packages[*]} podman conmon" ;;
	# CRI-O's runtime dependencies (iptables: crio will not start without its HostPortManager),
	# skopeo to fill containers-storage from an image archive, podman for the shared-storage
	# tests, and what the build needs (Go, cgo with libseccomp, gpgme and SQLite).
	crio) echo "runc conmon containernetworking-plugins iptables skopeo podman busybox-static python3" \
		"golang-1.26-go gcc libc6-dev pkg-config libseccomp-dev libgpgme-dev libsqlite3-dev" ;;
	*) die "unknown stack $1 (bookworm | trixie | sid | crio)" ;;
	esac
}

# The Debian suite a stack's tree comes from.
suite_for() {
	case $1 in
	crio) echo sid ;;
	*) echo "$1" ;;
	esac
}

# What the stamp of a stack holds beyond its packages: the CRI-O source it was built from.
# Without PSS_GUARD_CRIO_SRC (or naming no file) a tree already built is used as it is.
extra_stamp() {
	[[ $1 == crio ]] || return 0
	local src=${PSS_GUARD_CRIO_SRC:-} stamp=$cache/$1/.complete
	if [[ -n $src && -f $src ]]; then
		echo " crio-src=$(sha256sum "$src" | cut -d' ' -f1)"
	elif [[ -f $stamp ]] && grep -q ' crio-src=' "$stamp"; then
		[[ -z $src ]] || echo "stack: $src is not a file; using the CRI-O already built in the crio tree" >&2
		echo " $(sed 's/.* crio-src=/crio-src=/' "$stamp")"
	else
		die "the crio stack builds CRI-O from its release source: set PSS_GUARD_CRIO_SRC to the cri-o vX.Y.Z source tarball (with vendor/)"
	fi
}

# Builds crio and pinns inside the tree (CRI-O's own Makefile would also run its code
# generators; the release tree has their output committed). btrfs is left out (the tree has no
# btrfs headers); the other storage drivers (overlay, vfs, zfs) are in.
build_crio() {
	local tree=$1 dir=$2 src=$PSS_GUARD_CRIO_SRC
	echo "stack: building CRI-O from $src in the crio tree" >&2
	rm -rf "$tree/usr/src/cri-o"
	mkdir -p "$tree/usr/src/cri-o"
	tar -xzf "$src" -C "$tree/usr/src/cri-o" --strip-components=1
	# shellcheck disable=SC2016 # expanded by the tree's shell
	enter "$tree" env HOME=/root GOFLAGS=-mod=vendor GOTOOLCHAIN=local CGO_ENABLED=1 \
		GOCACHE=/usr/src/go-cache PATH=/usr/lib/go-1.26/bin:/usr/sbin:/usr/bin:/sbin:/bin sh -c '
		set -e
		cd /usr/src/cri-o
		nice go build -trimpath -tags "containers_image_openpgp libsqlite3 seccomp containers_image_ostree_stub exclude_graphdriver_btrfs" \
			-o /usr/local/bin/crio ./cmd/crio
		nice gcc -O2 -o /usr/local/bin/pinns pinns/src/*.c
		/usr/local/bin/crio --version' >"$dir/crio-build.log" 2>&1 ||
		die "building CRI-O failed (log: $dir/crio-build.log)"
	rm -rf "$tree/usr/src/cri-o" "$tree/usr/src/go-cache"
}

# Run "$@" inside TREE with a private mount namespace: the tree bind-mounted onto itself,
# its own proc and a fresh /run, the host's /dev and /sys, then pivot_root. A plain chroot
# breaks user namespaces ("fork/exec /proc/self/exe: operation not permitted": the kernel
# refuses CLONE_NEWUSER to a chrooted process) and runc's rootfs set-up (the root must be a
# mount point). Mounts made there stay there: the namespace dies with its last process.
#   EXTRA_BINDS="dir ..."   bind each host dir at the same path inside the tree
#   ENTER_PROPAGATION=slave let host mounts under those dirs propagate in (kubelet-sim's
#                           subPath binds); the default is private
# shellcheck disable=SC2016 # expanded by the inner bash
enter_script='
set -euo pipefail
tree=$1
shift
mount --bind "$tree" "$tree"
mount -t proc proc "$tree/proc"
mount -t tmpfs -o mode=0755 tmpfs "$tree/run"
mount --rbind /dev "$tree/dev"
mount --rbind /sys "$tree/sys"
for b in ${EXTRA_BINDS:-}; do
	mkdir -p "$tree$b"
	mount --rbind "$b" "$tree$b"
done
mkdir -p "$tree/.oldroot"
cd "$tree"
pivot_root . .oldroot
umount -l /.oldroot
cd /
exec "$@"
'

enter() {
	local tree=$1
	shift
	unshare -m --propagation "${ENTER_PROPAGATION:-private}" -- bash -c "$enter_script" enter "$tree" "$@"
}

build() {
	local stack=$1 dir=$cache/$1 tree=$cache/$1/root
	local want
	want="$(packages_for "$stack")$(extra_stamp "$stack")"
	if [[ -f $dir/.complete && $(cat "$dir/.complete") == "$want" ]]; then
		echo "$tree"
		return
	fi
	command -v debootstrap >/dev/null || die "debootstrap is missing (scripts/install-deps.sh installs it)"
	mkdir -p "$dir"
	# One builder at a time per stack (parallel test binaries may ask together).
	exec 9>"$dir/.lock"
	flock 9
	if [[ -f $dir/.complete && $(cat "$dir/.complete") == "$want" ]]; then
		echo "$tree"
		return
	fi
	rm -f "$dir/.complete"
	if [[ ! -f $dir/.debootstrapped ]]; then
		rm -rf "$tree"
		echo "stack: building the $stack tree in $tree (debootstrap from $mirror)" >&2
		debootstrap --variant=minbase "$(suite_for "$stack")" "$tree" "$mirror" >"$dir/debootstrap.log" 2>&1 ||
			die "debootstrap $stack failed (log: $dir/debootstrap.log)"
		# No service may start inside the tree while packages install.
		printf '#!/bin/sh\nexit 101\n' >"$tree/usr/sbin/policy-rc.d"
		chmod +x "$tree/usr/sbin/policy-rc.d"
		printf '127.0.0.1 localhost\n::1 localhost\n' >"$tree/etc/hosts"
		touch "$dir/.debootstrapped"
	fi
	cp /etc/resolv.conf "$tree/etc/resolv.conf"
	# The archive's Release files can be older than their Valid-Until on a machine whose clock
	# runs ahead of the mirror it is given; the tree is test scaffolding, signatures still count.
	echo 'Acquire::Check-Valid-Until "false";' >"$tree/etc/apt/apt.conf.d/99pss-guard-test"
	local pkgs
	pkgs=$(packages_for "$stack")
	echo "stack: installing $pkgs in the $stack tree" >&2
	# shellcheck disable=SC2086 # the package list is a word list
	enter "$tree" env DEBIAN_FRONTEND=noninteractive sh -c "apt-get update -qq && apt-get install -y -qq --no-install-recommends $pkgs" \
		>"$dir/apt.log" 2>&1 || die "apt-get install in the $stack tree failed (log: $dir/apt.log)"
	apt_clean "$tree"
	if [[ $stack == crio ]]; then
		build_crio "$tree" "$dir"
	fi
	echo "$want" >"$dir/.complete"
	echo "$tree"
}

apt_clean() {
	rm -rf "$1/var/cache/apt/archives/"*.deb "$1/var/lib/apt/lists/"*_Packages
}

case ${1:-} in
tree)
	stack=${2:?usage: stack.sh tree STACK}
	[[ $(id -u) -eq 0 ]] || die "must run as root"
	build "$stack"
	;;
run)
	stack=${2:?usage: stack.sh run STACK CMD...}
	shift 2
	tree=$(build "$stack")
	# exec all the way down: the caller's $! is the command's own pid (node-up records
	# containerd's pid this way).
	exec unshare -m --propagation "${ENTER_PROPAGATION:-private}" -- bash -c "$enter_script" enter "$tree" "$@"
	;;
*)
	die "usage: stack.sh tree STACK | stack.sh run STACK CMD..."
	;;
esac
