#!/usr/bin/env bash
# Bring up a throw-away CRI-O "node" (issue 22): the real CRI-O built by the crio stack
# (tests/containerd/stack.sh), with Debian unstable's conmon and runc, driven through its CRI
# socket like the containerd node of node-up.sh.
#
# usage: PSS_GUARD_BIN=/path/to/pss-guard crio-up.sh [--driver overlay|vfs] [--no-hook] [NODE_DIR]
#        (node-up.sh --stack crio calls it; node-down.sh tears it down)
#
# CRI-O runs in a mount namespace of its own, pivoted into the crio tree, that sees NODE_DIR at
# the same path. Its configuration is a real one at the paths CRI-O reads by default: NODE_DIR/etc
# /crio and NODE_DIR/etc/containers are bind-mounted onto /etc/crio and /etc/containers there, so
# `pss-guard install --root NODE_DIR` and `health --root NODE_DIR` read what CRI-O reads. The hook
# binary is NODE_DIR/opt/pss-guard/pss-guard, also seen at /opt/pss-guard/pss-guard inside.
#   --driver   the containers-storage driver (overlay by default; vfs needs no kernel support)
#   --no-hook  no hooks.d file: the node is left for `pss-guard install` to wire
# (or PSS_GUARD_CRIO_DRIVER=vfs, PSS_GUARD_CRIO_HOOK=no in the environment)
# Storage (root and run root) lies under NODE_DIR, on the host's disk: containers-storage's
# overlay driver refuses an overlayfs below it. Everything is removed by node-down.sh.
# On success it prints NODE_DIR and writes NODE_DIR/env (shell `KEY=value` lines).
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

die() {
	echo "crio-up: $*" >&2
	exit 1
}

driver=${PSS_GUARD_CRIO_DRIVER:-overlay}
hook=${PSS_GUARD_CRIO_HOOK:-yes}
node_config=${PSS_GUARD_NODE_CONFIG:-default}
while [[ ${1:-} == --* ]]; do
	case $1 in
	--driver)
		driver=${2:?crio-up: --driver needs overlay or vfs}
		shift 2
		;;
	--no-hook)
		hook=no
		shift
		;;
	--config)
		node_config=${2:?crio-up: --config needs default or seccomp-default}
		shift 2
		;;
	*) die "unknown option $1" ;;
	esac
done
case $driver in
overlay | vfs) ;;
*) die "unknown storage driver $driver (overlay | vfs; btrfs and zfs need their filesystems)" ;;
esac
# The node configurations of node-up.sh: with seccomp-default (kubelet's seccompDefault: true)
# the policy reads an absent linux.seccomp as Unconfined. CRI-O's default capabilities lack
# NET_RAW in both.
case $node_config in
default) seccomp_absent="unset" ;;
seccomp-default) seccomp_absent="unconfined" ;;
*) die "unknown node configuration $node_config (default | seccomp-default)" ;;
esac
[[ $(id -u) -eq 0 ]] || die "must run as root"
for tool in python3 unshare nsenter; do
	command -v "$tool" >/dev/null || die "missing required tool: $tool"
done
tree=$(bash "$here/stack.sh" tree crio) || die "cannot build the crio tree"
for tool in crio pinns conmon runc skopeo iptables busybox python3; do
	[[ -x $tree/usr/local/bin/$tool || -x $tree/usr/bin/$tool || -x $tree/usr/sbin/$tool ]] ||
		die "missing $tool in the crio tree $tree"
done

: "${PSS_GUARD_BIN:?crio-up: set PSS_GUARD_BIN to the pss-guard binary}"
[[ -x $PSS_GUARD_BIN ]] || die "PSS_GUARD_BIN=$PSS_GUARD_BIN is not an executable file"

node=${1:-$(mktemp -d /tmp/pss-guard-node.XXXXXX)}
mkdir -p "$node"
node=$(readlink -f "$node")
[[ -e $node/crio.pid ]] && die "$node already has a running node (crio.pid exists)"
echo crio >"$node/stack"

sock=$node/crio.sock
kubelet=$node/kubelet
logdir=$node/log
images=$node/images
storage=$node/storage
runroot=$node/runroot
etc=$node/etc
hooks_dir=/etc/containers/oci/hooks.d
bin_dir=/opt/pss-guard
mkdir -p "$kubelet/pods" "$logdir" "$images" "$storage" "$runroot" "$node/cni" "$node/crio" \
	"$node/pod-logs" "$node/captures" "$etc/crio/crio.conf.d" "$etc/containers/oci/hooks.d" "$etc/pss-guard" \
	"$node$bin_dir"
cp "$PSS_GUARD_BIN" "$node$bin_dir/pss-guard"
cp "$here/capture-hook.py" "$node$bin_dir/capture-hook.py"
# The node's runc: runc behind a capability trim this host needs (runc-hostcaps.py).
mkdir -p "$node/bin"
install -m 0755 "$here/runc-hostcaps.py" "$node/bin/runc-hostcaps"

pause_ref=localhost/pss-guard/pause:latest
app_ref=localhost/pss-guard/app:latest
app_nonroot_ref=localhost/pss-guard/app-nonroot:latest
app_alias=registry.k8s.io/pause:latest

# --- pss-guard policy: baseline:latest, CRI-O's paths on this node -------------------------------
cat >"$node/policy.toml" <<EOF
enforce = "baseline:latest"
unidentified = "enforce"
seccomp_absent = "$seccomp_absent"

[exempt]
namespaces = ["kube-system", "pss-guard"]
images = []
runtime_handlers = []

[paths]
kubelet_root = "$kubelet"
crio_root = "$storage"
crio_runroot = "$runroot"
allowed_host_paths = []

[log]
path = "$logdir/decisions.log"

# CRI-O's default_capabilities (its internal/config/capabilities), which the drop-in below
# leaves as they are: what every container gets without an add (containerd's set is larger).
[capabilities]
runtime_default = ["CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FSETID", "CAP_FOWNER", "CAP_SETGID", "CAP_SETUID", "CAP_SETPCAP", "CAP_NET_BIND_SERVICE", "CAP_KILL"]
EOF

# --- CRI-O's configuration: one drop-in, everything else CRI-O's defaults ------------------------
# cgroupfs (no systemd in the tree); conmon in the pod's cgroup; the pause image only for pods
# that need an infra container (drop_infra_ctr is on by default); signatures not checked for
# the local test images (policy.json below).
cat >"$etc/crio/crio.conf.d/10-pss-guard-test.conf" <<EOF
[crio]
root = "$storage"
runroot = "$runroot"
storage_driver = "$driver"
log_dir = "$node/pod-logs"
version_file = "$node/crio/version"
version_file_persist = "$node/crio/version-persist"
clean_shutdown_file = "$node/crio/clean.shutdown"

[crio.api]
listen = "$sock"

[crio.runtime]
default_runtime = "runc"
cgroup_manager = "cgroupfs"
conmon_cgroup = "pod"
pinns_path = "/usr/local/bin/pinns"
hooks_dir = ["$hooks_dir"]
container_exits_dir = "$node/crio/exits"
container_attach_socket_dir = "$node/crio"
irqbalance_config_file = ""

[crio.runtime.runtimes.runc]
runtime_path = "$node/bin/runc-hostcaps"
runtime_root = "/run/runc"
monitor_path = "/usr/bin/conmon"

# CRI-O copies every pod annotation into the spec on every handler; this name lets the tests
# that ask containerd for its passthrough handler ask CRI-O the same.
[crio.runtime.runtimes.runc-passthrough]
runtime_path = "$node/bin/runc-hostcaps"
runtime_root = "/run/runc"
monitor_path = "/usr/bin/conmon"

# runc itself, without the capability trim (runc-hostcaps.py): a privileged container cannot
# run through it on a host whose bounding set lacks a capability.
[crio.runtime.runtimes.runc-plain]
runtime_path = "/usr/bin/runc"
runtime_root = "/run/runc"
monitor_path = "/usr/bin/conmon"

[crio.image]
pause_image = "$pause_ref"
pause_command = ""

[crio.network]
network_dir = "$node/cni"
plugin_dirs = ["/usr/lib/cni"]
EOF
cat >"$etc/containers/policy.json" <<'EOF'
{"default": [{"type": "insecureAcceptAnything"}]}
EOF
cat >"$node/cni/10-pss-guard-test.conflist" <<'EOF'
{
  "cniVersion": "0.4.0",
  "name": "pss-guard-test",
  "plugins": [
    {"type": "loopback"},
    {"type": "static", "ipam": {"type": "static", "addresses": [{"address": "192.0.2.2/24"}]}}
  ]
}
EOF

# --- hooks.d: the shipped definition, pointed at this node's binary and policy -------------------
# A second, test-only hook (tests/containerd/capture-hook.py) copies config.json and the
# sandbox's spec; CRI-O runs hooks.d hooks in file-name order, so it runs first.
if [[ $hook == yes ]]; then
	python3 - "$here/../../hooks/pss-guard.json" "$etc/containers/oci/hooks.d" "$bin_dir" "$node" <<'EOF'
import json, sys
shipped, out, bin_dir, node = sys.argv[1:]
d = json.load(open(shipped))
d["hook"]["path"] = bin_dir + "/pss-guard"
d["hook"]["args"] = d["hook"]["args"] + ["--policy", node + "/policy.toml"]
json.dump(d, open(out + "/pss-guard.json", "w"), indent=2)
cap = {"version": "1.0.0",
       "hook": {"path": bin_dir + "/capture-hook.py",
                "args": ["capture-hook", node + "/captures"], "timeout": 10},
       "when": {"always": True}, "stages": ["prestart"]}
json.dump(cap, open(out + "/10-capture.json", "w"), indent=2)
EOF
fi

# --- images: the same OCI archives as the containerd node, copied into containers-storage ---------
sleeper='["/bin/sh", "-c", "trap \"exit 0\" TERM INT; while :; do sleep 3600 & wait $!; done"]'
python3 "$here/build-image.py" "$images/pause.tar" "$pause_ref" "$sleeper"
python3 "$here/build-image.py" "$images/app.tar" "$app_ref" "$sleeper"
python3 "$here/build-image.py" "$images/app-nonroot.tar" "$app_nonroot_ref,$app_alias" "$sleeper" 65535

# --- start CRI-O --------------------------------------------------------------------------------
# The tree is entered the way the containerd stacks are (stack.sh run); the node's etc dirs
# then cover the tree's, and the hook binary's directory appears at /opt/pss-guard.
# shellcheck disable=SC2016 # expanded by the inner shell
start='set -e
mkdir -p /etc/crio /etc/containers /etc/pss-guard /opt/pss-guard
mount --bind "$1/etc/crio" /etc/crio
mount --bind "$1/etc/containers" /etc/containers
mount --bind "$1/etc/pss-guard" /etc/pss-guard
mount --bind "$1/opt/pss-guard" /opt/pss-guard
shift
exec "$@"'
EXTRA_BINDS=$node ENTER_PROPAGATION=slave bash "$here/stack.sh" run crio \
	sh -c "$start" start "$node" crio --log-level info >"$logdir/crio.log" 2>&1 &
echo $! >"$node/crio.pid"
in_node() {
	nsenter -t "$(cat "$node/crio.pid")" -m -w "$@"
}
# The socket appears before CRI-O serves on it: wait for its "serving" line too.
for _ in $(seq 1 300); do
	[[ -S $sock ]] && grep -q "Starting seccomp notifier watcher\|Serving metrics\|Started crio" "$logdir/crio.log" && break
	kill -0 "$(cat "$node/crio.pid")" 2>/dev/null || {
		tail -20 "$logdir/crio.log" >&2
		die "crio exited during start-up (log: $logdir/crio.log)"
	}
	sleep 0.1
done
[[ -S $sock ]] || die "CRI-O socket $sock did not appear within 30s (log: $logdir/crio.log)"

for img in "pause:$pause_ref" "app:$app_ref" "app-nonroot:$app_nonroot_ref" "app-nonroot:$app_alias"; do
	tarball=${img%%:*} ref=${img#*:}
	in_node skopeo copy --quiet "oci-archive:$images/$tarball.tar:$ref" \
		"containers-storage:[$driver@$storage+$runroot]$ref" >>"$logdir/skopeo.log" 2>&1 ||
		die "skopeo copy $tarball.tar ($ref) into containers-storage failed (log: $logdir/skopeo.log)"
done

cat >"$node/env" <<EOF
NODE_DIR=$node
STACK=crio
NODE_CONFIG=$node_config
RUNTIME=cri-o
CRIO_VERSION=$(in_node crio --version 2>/dev/null | awk 'NR == 1 {print $3}')
CRIO_DRIVER=$driver
RUNC_VERSION=$(in_node runc --version | awk 'NR == 1 {print $3}')
CRI_SOCKET=$sock
RUNTIME_PID=$(cat "$node/crio.pid")
CRIO_ROOT=$storage
CRIO_RUNROOT=$runroot
CRIO_LOG=$logdir/crio.log
HOOKS_DIR=$etc/containers/oci/hooks.d
KUBELET_ROOT=$kubelet
PSS_GUARD_BIN=$node$bin_dir/pss-guard
PSS_GUARD_POLICY=$node/policy.toml
PSS_GUARD_DECISION_LOG=$logdir/decisions.log
CAPTURE_DIR=$node/captures
PAUSE_IMAGE=$pause_ref
APP_IMAGE=$app_ref
APP_NONROOT_IMAGE=$app_nonroot_ref
EOF
echo "$node"
