#!/usr/bin/env bash
# Tear down a node made by node-up.sh: remove its pods, stop the containerd it started (by
# the PID it recorded) and that containerd's shims, unmount everything under NODE_DIR and
# delete NODE_DIR.
#
# usage: node-down.sh NODE_DIR [--keep]   (--keep leaves the directory, e.g. for its logs)
set -uo pipefail

node=${1:?usage: node-down.sh NODE_DIR [--keep]}
keep=${2:-}
[[ -d $node ]] || exit 0
node=$(readlink -f "$node")
sock=$node/containerd.sock
pidfile=$node/containerd.pid

# A node of a Debian-tree stack (node-up.sh --stack trixie|sid) runs containerd in a mount
# namespace of its own: its ctr runs there too. Its mounts (rootfs, shm, netns) die with that
# namespace; only kubelet-sim's binds are in the host's.
stack=$(cat "$node/stack" 2>/dev/null || echo bookworm)
node_ctr() {
	local pid
	if [[ $stack != bookworm ]]; then
		pid=$(cat "$pidfile" 2>/dev/null) && kill -0 "$pid" 2>/dev/null || return 1
		nsenter -t "$pid" -m -r -w ctr --address "$sock" "$@"
	else
		ctr --address "$sock" "$@"
	fi
}

# A CRI-O node (crio-up.sh): its containers are runc's, in CRI-O's mount namespace. Kill and
# delete them there, then their conmon monitors, then CRI-O.
if [[ $stack == crio ]]; then
	pidfile=$node/crio.pid
	if pid=$(cat "$pidfile" 2>/dev/null) && kill -0 "$pid" 2>/dev/null; then
		in_node() { nsenter -t "$pid" -m -w "$@"; }
		for c in $(in_node runc --root /run/runc list -q 2>/dev/null); do
			in_node runc --root /run/runc kill "$c" KILL >/dev/null 2>&1
			in_node runc --root /run/runc delete --force "$c" >/dev/null 2>&1
		done
	fi
	for proc in /proc/[0-9]*; do
		cmdline=$(tr '\0' ' ' 2>/dev/null <"$proc/cmdline") || continue
		if [[ $cmdline == *conmon* && $cmdline == *"$node/"* ]]; then
			kill -KILL "${proc#/proc/}" 2>/dev/null
		fi
	done
	sock=/nonexistent
fi

# Tasks first, while containerd still answers: a task killed through its shim also ends
# the shim, and no container keeps a mount under the node dir busy.
if [[ -S $sock ]]; then
	for task in $(node_ctr -n k8s.io tasks ls -q 2>/dev/null); do
		node_ctr -n k8s.io tasks kill -s SIGKILL "$task" >/dev/null 2>&1
	done
	for task in $(node_ctr -n k8s.io tasks ls -q 2>/dev/null); do
		for _ in $(seq 1 50); do
			node_ctr -n k8s.io tasks delete "$task" >/dev/null 2>&1 && break
			sleep 0.1
		done
	done
fi

if [[ -f $pidfile ]]; then
	pid=$(cat "$pidfile")
	if kill -0 "$pid" 2>/dev/null; then
		kill -TERM "$pid"
		for _ in $(seq 1 100); do
			kill -0 "$pid" 2>/dev/null || break
			sleep 0.1
		done
		kill -0 "$pid" 2>/dev/null && kill -KILL "$pid"
	fi
	rm -f "$pidfile"
fi

# Shims outlive containerd by design. Ours are the ones whose command line names our socket.
for proc in /proc/[0-9]*; do
	cmdline=$(tr '\0' ' ' 2>/dev/null <"$proc/cmdline") || continue
	if [[ $cmdline == *containerd-shim* && $cmdline == *"$sock"* ]]; then
		kill -KILL "${proc#/proc/}" 2>/dev/null
	fi
done

# Unmount deepest first: rootfs mounts, shm, netns bind mounts, kubelet-sim's subPath binds.
mapfile -t mounts < <(awk -v n="$node" '$5 == n || index($5, n "/") == 1 { print $5 }' /proc/self/mountinfo | sort -r)
for m in "${mounts[@]}"; do
	umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null || echo "node-down: could not unmount $m" >&2
done

if [[ $keep != --keep ]]; then
	rm -rf "$node" || echo "node-down: could not remove $node" >&2
fi
exit 0
