#!/usr/bin/env bash
# Bring up a throw-away containerd "node" for the CRI tests (issue 3).
#
# usage: PSS_GUARD_BIN=/path/to/pss-guard node-up.sh [--stack STACK] [NODE_DIR]
#
# STACK (default: $PSS_GUARD_STACK, else bookworm) picks the runtimes (tests/containerd/stack.sh;
# crio starts CRI-O instead of containerd, through crio-up.sh):
# bookworm is the host's containerd 1.6 + runc 1.1; trixie (containerd 1.7 + runc 1.1, config
# version 2) and sid (containerd 2.x + runc 1.3, config version 3) run from a cached Debian tree,
# containerd in a mount namespace of its own (pivot_root into the tree) that sees NODE_DIR at
# the same path, so the hook binary is copied into NODE_DIR/bin. Nothing of the tree is mounted
# in the host's mount namespace.
#
# --config NAME (default: $PSS_GUARD_NODE_CONFIG, else default) picks the node configuration:
#   default          containerd's default capability set (with NET_RAW) in the base spec, a
#                    kubelet without seccompDefault: the policy reads no seccomp as "unset"
#   seccomp-default  a kubelet with seccompDefault: true (kubelet-sim's seccomp_default) and
#                    a base spec without NET_RAW: the policy reads no seccomp as "unconfined"
#                    and the runtime default capabilities lack NET_RAW
# Everything lives under NODE_DIR (default: a new `mktemp -d`): containerd's config, root,
# state and socket, the CNI config, the kubelet root the tests use, the pss-guard policy and
# its decision log. Nothing is written to /etc, /var/lib/containerd or /var/lib/kubelet.
# On success it prints NODE_DIR and writes NODE_DIR/env (shell `KEY=value` lines).
# Tear down with node-down.sh NODE_DIR.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

die() {
	echo "node-up: $*" >&2
	exit 1
}

stack=${PSS_GUARD_STACK:-bookworm}
node_config=${PSS_GUARD_NODE_CONFIG:-default}
while [[ ${1:-} == --* ]]; do
	case $1 in
	--stack) stack=${2:?node-up: --stack needs bookworm, trixie, sid or crio} ;;
	--config) node_config=${2:?node-up: --config needs default or seccomp-default} ;;
	*) die "unknown option $1" ;;
	esac
	shift 2
done
# CRI-O instead of containerd: its own script, the same node directory contract.
if [[ $stack == crio ]]; then
	exec bash "$here/crio-up.sh" --config "$node_config" "$@"
fi
case $node_config in
default)
	seccomp_absent="unset"
	drop_caps='[]'
	;;
seccomp-default)
	seccomp_absent="unconfined"
	drop_caps='["CAP_NET_RAW"]'
	;;
*) die "unknown node configuration $node_config (default | seccomp-default)" ;;
esac
[[ $(id -u) -eq 0 ]] || die "must run as root"
case $stack in
bookworm) tree= ;;
trixie | sid) tree=$(bash "$here/stack.sh" tree "$stack") || die "cannot build the $stack tree" ;;
*) die "unknown stack $stack (bookworm | trixie | sid)" ;;
esac

# Commands of the stack's own runtimes: the host's, or the tree's in a one-shot namespace.
in_stack() {
	if [[ -n $tree ]]; then
		bash "$here/stack.sh" run "$stack" "$@"
	else
		"$@"
	fi
}

for tool in python3 unshare nsenter; do
	command -v "$tool" >/dev/null || die "missing required tool: $tool"
done
for tool in containerd ctr runc busybox python3; do
	in_stack sh -c "command -v $tool" >/dev/null ||
		die "missing required tool: $tool in the $stack stack (apt-get install containerd runc busybox-static python3)"
done
[[ -x $tree/usr/lib/cni/loopback && -x $tree/usr/lib/cni/static ]] ||
	die "missing CNI plugins in $tree/usr/lib/cni (apt-get install containernetworking-plugins)"
runc_bin=$(in_stack sh -c 'command -v runc')

: "${PSS_GUARD_BIN:?node-up: set PSS_GUARD_BIN to the pss-guard binary}"
[[ -x $PSS_GUARD_BIN ]] || die "PSS_GUARD_BIN=$PSS_GUARD_BIN is not an executable file"
PSS_GUARD_BIN=$(readlink -f "$PSS_GUARD_BIN")

node=${1:-$(mktemp -d /tmp/pss-guard-node.XXXXXX)}
mkdir -p "$node"
node=$(readlink -f "$node")
[[ -e $node/containerd.pid ]] && die "$node already has a running node (containerd.pid exists)"
echo "$stack" >"$node/stack"
if [[ -n $tree ]]; then
	# Hooks run in containerd's mount namespace: the binary must be inside what it sees.
	mkdir -p "$node/bin"
	cp "$PSS_GUARD_BIN" "$node/bin/pss-guard"
	cp "$here/capture-hook.py" "$node/bin/capture-hook.py"
	PSS_GUARD_BIN=$node/bin/pss-guard
	capture_hook=$node/bin/capture-hook.py
else
	capture_hook=$here/capture-hook.py
fi

root=$node/root
state=$node/state
sock=$node/containerd.sock
cni_conf=$node/cni
kubelet=$node/kubelet
logdir=$node/log
images=$node/images
mkdir -p "$node/captures" "$root" "$state" "$cni_conf" "$kubelet/pods" "$logdir" "$images" "$node/opt"

pause_ref=localhost/pss-guard/pause:latest
app_ref=localhost/pss-guard/app:latest
app_nonroot_ref=localhost/pss-guard/app-nonroot:latest
# PSA fixtures name registry.k8s.io/pause; the non-root app image answers to that name, so
# the image-name annotation is the one the fixture asked for and, like the real pause image
# (USER 65535), it satisfies kubelet's runAsNonRoot verification.
app_alias=registry.k8s.io/pause:latest

# --- pss-guard policy: baseline:latest, the node's own paths ----------------------------------
# containerd_socket: the hook reads the container's CRI config back from this node's containerd
# (issue 13). The path is the same inside a stack's mount namespace (NODE_DIR is bound there).
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
containerd_root = "$root"
containerd_state = "$state"
containerd_socket = "$sock"
allowed_host_paths = []

[log]
path = "$logdir/decisions.log"
EOF

# --- base runtime spec: ctr's default spec minus what a base spec must not carry ---------------
# containerd's CRI skips WithoutDefaultSecuritySettings for a handler with a base spec, so rlimits, seccomp and
# AppArmor would survive into every container. noNewPrivileges is dropped too: containerd only
# ever sets it to true (for allowPrivilegeEscalation=false), so a true in the base would hide
# the restricted check's signal.
in_stack ctr oci spec >"$node/ctr-default-spec.json"
python3 - "$node/ctr-default-spec.json" "$node/base-spec.json" "$PSS_GUARD_BIN" "$node/policy.toml" "$capture_hook" "$node/captures" "$drop_caps" <<'EOF'
import json, sys
src, dst, hook_bin, policy, capture_hook, capture_dir, drop_caps = sys.argv[1:]
spec = json.load(open(src))
proc = spec.setdefault("process", {})
drop = set(json.loads(drop_caps))
for key, caps in proc.get("capabilities", {}).items():
    proc["capabilities"][key] = [c for c in caps if c not in drop]
if drop:
    # The hook's idea of the runtime's default set follows the base spec's.
    bounding = proc.get("capabilities", {}).get("bounding", [])
    with open(policy, "a") as f:
        f.write("\n[capabilities]\nruntime_default = %s\n" % json.dumps(bounding))
for key in ("rlimits", "apparmorProfile", "noNewPrivileges"):
    proc.pop(key, None)
spec.get("linux", {}).pop("seccomp", None)
spec["hooks"] = {
    "createRuntime": [
        {"path": hook_bin, "args": ["pss-guard", "hook", "--policy", policy], "timeout": 10}
    ],
    # Test-only: copies config.json and the sandbox spec before pss-guard runs (prestart
    # precedes createRuntime), so the unit-test fixtures come from real containerd specs.
    "prestart": [
        {"path": capture_hook, "args": ["capture-hook", capture_dir], "timeout": 10}
    ],
}
with open(dst, "w") as f:
    json.dump(spec, f, indent=2, sort_keys=True)
    f.write("\n")
EOF

# --- CNI: loopback + static IPAM with a documentation-range address (RFC 5737) ----------------
# No interface is created; the static plugin only reports the address, which is all
# containerd needs to consider the sandbox networked (with a loopback plugin alone, RunPodSandbox fails: "failed to find network info").
cat >"$cni_conf/10-pss-guard-test.conflist" <<'EOF'
{
  "cniVersion": "0.4.0",
  "name": "pss-guard-test",
  "plugins": [
    {"type": "loopback"},
    {"type": "static", "ipam": {"type": "static", "addresses": [{"address": "192.0.2.2/24"}]}}
  ]
}
EOF

# --- containerd config (version 3 = containerd 2.x) ---------------------------------------------
# The same node in 2.x's layout: the CRI plugin split into cri.v1.images (snapshotter, the
# pinned sandbox image) and cri.v1.runtime (runtimes, CNI, the node-wide switches).
v3_config() {
	local rt="plugins.'io.containerd.cri.v1.runtime'"
	cat <<EOF
version = 3
root = "$root"
state = "$state"
disabled_plugins = ["io.containerd.internal.v1.tracing", "io.containerd.tracing.processor.v1.otlp"]

[grpc]
  address = "$sock"

[ttrpc]
  address = "$sock.ttrpc"

[debug]
  level = "info"

[plugins.'io.containerd.internal.v1.opt']
  path = "$node/opt"

[plugins.'io.containerd.cri.v1.images']
  snapshotter = "native"

[plugins.'io.containerd.cri.v1.images'.pinned_images]
  sandbox = "$pause_ref"

[$rt]
  restrict_oom_score_adj = true
  enable_selinux = false
  netns_mounts_under_state_dir = true
  max_container_log_line_size = 16384

[$rt.containerd]
  default_runtime_name = "runc"

[$rt.containerd.runtimes.runc]
  runtime_type = "io.containerd.runc.v2"
  base_runtime_spec = "$node/base-spec.json"

[$rt.containerd.runtimes.runc.options]
  BinaryName = "$runc_bin"
  SystemdCgroup = false

[$rt.containerd.runtimes.runc-passthrough]
  runtime_type = "io.containerd.runc.v2"
  base_runtime_spec = "$node/base-spec.json"
  pod_annotations = ["*"]
  container_annotations = ["*"]

[$rt.containerd.runtimes.runc-passthrough.options]
  BinaryName = "$runc_bin"
  SystemdCgroup = false

[$rt.containerd.runtimes.runc-nohook]
  runtime_type = "io.containerd.runc.v2"

[$rt.containerd.runtimes.runc-nohook.options]
  BinaryName = "$runc_bin"
  SystemdCgroup = false

[$rt.cni]
  bin_dirs = ["/usr/lib/cni"]
  conf_dir = "$cni_conf"
  max_conf_num = 1
EOF
}
if [[ $stack == sid ]]; then
	v3_config >"$node/config.toml"
else
# --- containerd config (version 2 = containerd 1.6/1.7) ----------------------------------------
cri='plugins."io.containerd.grpc.v1.cri"'
cat >"$node/config.toml" <<EOF
version = 2
root = "$root"
state = "$state"
disabled_plugins = ["io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper", "io.containerd.internal.v1.tracing", "io.containerd.tracing.processor.v1.otlp"]

[grpc]
  address = "$sock"

[ttrpc]
  address = "$sock.ttrpc"

[debug]
  level = "info"

[plugins."io.containerd.internal.v1.opt"]
  path = "$node/opt"

[$cri]
  sandbox_image = "$pause_ref"
  restrict_oom_score_adj = true
  enable_selinux = false
  netns_mounts_under_state_dir = true
  max_container_log_line_size = 16384

[$cri.containerd]
  snapshotter = "native"
  default_runtime_name = "runc"

[$cri.containerd.runtimes.runc]
  runtime_type = "io.containerd.runc.v2"
  base_runtime_spec = "$node/base-spec.json"

[$cri.containerd.runtimes.runc.options]
  BinaryName = "$runc_bin"
  SystemdCgroup = false

# Same hook, but containerd copies every pod and container annotation into the spec: the
# set-up under which a pod could forge io.kubernetes.cri.* look-alikes (containerd's pod_annotations passthrough; THREAT-MODEL.md).
[$cri.containerd.runtimes.runc-passthrough]
  runtime_type = "io.containerd.runc.v2"
  base_runtime_spec = "$node/base-spec.json"
  pod_annotations = ["*"]
  container_annotations = ["*"]

[$cri.containerd.runtimes.runc-passthrough.options]
  BinaryName = "$runc_bin"
  SystemdCgroup = false

# No base spec: the hook is not installed (baselines, and the bypass a handler without
# base_runtime_spec opens).
[$cri.containerd.runtimes.runc-nohook]
  runtime_type = "io.containerd.runc.v2"

[$cri.containerd.runtimes.runc-nohook.options]
  BinaryName = "$runc_bin"
  SystemdCgroup = false

[$cri.cni]
  bin_dir = "/usr/lib/cni"
  conf_dir = "$cni_conf"
  max_conf_num = 1
EOF
fi

# --- images -----------------------------------------------------------------------------------
sleeper='["/bin/sh", "-c", "trap \"exit 0\" TERM INT; while :; do sleep 3600 & wait $!; done"]'
python3 "$here/build-image.py" "$images/pause.tar" "$pause_ref" "$sleeper"
python3 "$here/build-image.py" "$images/app.tar" "$app_ref" "$sleeper"
python3 "$here/build-image.py" "$images/app-nonroot.tar" "$app_nonroot_ref,$app_alias" "$sleeper" 65535

# --- start containerd -------------------------------------------------------------------------
if [[ -n $tree ]]; then
	# stack.sh execs down to containerd: $! is containerd's pid. NODE_DIR is seen at its own
	# path inside, and kubelet-sim's subPath binds under it propagate in (slave).
	EXTRA_BINDS=$node ENTER_PROPAGATION=slave bash "$here/stack.sh" run "$stack" \
		containerd --config "$node/config.toml" >"$logdir/containerd.log" 2>&1 &
else
	containerd --config "$node/config.toml" >"$logdir/containerd.log" 2>&1 &
fi
echo $! >"$node/containerd.pid"
# ctr as a client of this containerd, in its mount namespace (ctr keeps fifos under /run).
node_ctr() {
	if [[ -n $tree ]]; then
		nsenter -t "$(cat "$node/containerd.pid")" -m -r -w ctr --address "$sock" "$@"
	else
		ctr --address "$sock" "$@"
	fi
}
for _ in $(seq 1 100); do
	[[ -S $sock ]] && node_ctr version >/dev/null 2>&1 && break
	kill -0 "$(cat "$node/containerd.pid")" 2>/dev/null || {
		tail -20 "$logdir/containerd.log" >&2
		die "containerd exited during start-up (log: $logdir/containerd.log)"
	}
	sleep 0.1
done
[[ -S $sock ]] || die "containerd socket $sock did not appear within 10s"

for tarball in pause app app-nonroot; do
	node_ctr -n k8s.io images import --all-platforms "$images/$tarball.tar" >/dev/null ||
		die "ctr images import $tarball.tar failed"
done

cat >"$node/env" <<EOF
NODE_DIR=$node
STACK=$stack
NODE_CONFIG=$node_config
CONTAINERD_VERSION=$(in_stack containerd --version | awk '{print $3}')
RUNC_VERSION=$(in_stack runc --version | awk 'NR == 1 {print $3}')
CONTAINERD_SOCKET=$sock
CONTAINERD_PID=$(cat "$node/containerd.pid")
CONTAINERD_ROOT=$root
CONTAINERD_STATE=$state
CONTAINERD_LOG=$logdir/containerd.log
KUBELET_ROOT=$kubelet
PSS_GUARD_BIN=$PSS_GUARD_BIN
PSS_GUARD_POLICY=$node/policy.toml
PSS_GUARD_DECISION_LOG=$logdir/decisions.log
BASE_RUNTIME_SPEC=$node/base-spec.json
CAPTURE_DIR=$node/captures
PAUSE_IMAGE=$pause_ref
APP_IMAGE=$app_ref
APP_NONROOT_IMAGE=$app_nonroot_ref
EOF
echo "$node"
