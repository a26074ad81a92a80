#!/usr/bin/env python3
"""Writes the fuzz seeds (fuzz/seeds/evaluate/): captured runc and podman specs from
tests/fixtures, containerd- and CRI-O-shaped specs with their sandbox specs, and policies.
One seed = state, config.json, sandbox spec, policy joined by 0xFF (see harness.rs)."""
import glob, json, os, hashlib

here = os.path.dirname(os.path.abspath(__file__))
out = os.path.join(here, "seeds", "evaluate")
os.makedirs(out, exist_ok=True)

def state(cid, bundle):
    return json.dumps({"ociVersion": "1.0.2", "id": cid, "status": "creating", "pid": 4242,
                       "bundle": bundle, "annotations": {}}).encode()

POLICIES = [
    b"",
    b'enforce = "restricted:latest"\naudit = "restricted:v1.29"\n',
    b'enforce = "baseline:v1.25"\nunidentified = "allow"\nseccomp_absent = "unconfined"\n'
    b'[exempt]\nnamespaces = ["monitoring"]\nimages = ["registry.example/agent:*"]\n'
    b'runtime_handlers = ["kata"]\n[paths]\nallowed_host_paths = ["/run/cni"]\n'
    b'[capabilities]\nruntime_default = ["CAP_CHOWN", "CAP_NET_RAW"]\n',
    b'[exempt]\nnamespaces = []\n',
]

CRI = "io.kubernetes.cri."
def containerd_ann(ns, sid="sb1", kind="container"):
    return {CRI + "container-type": kind, CRI + "container-name": "app", CRI + "sandbox-id": sid,
            CRI + "sandbox-name": "web", CRI + "sandbox-namespace": ns, CRI + "sandbox-uid": "uid-1",
            CRI + "image-name": "registry.example/app:1"}

def crio_ann(ns, pod_ann):
    labels = {"io.kubernetes.pod.namespace": ns, "io.kubernetes.pod.name": "web",
              "io.kubernetes.pod.uid": "uid-1", "io.kubernetes.container.name": "app"}
    a = {"io.kubernetes.cri-o.Labels": json.dumps(labels), "io.kubernetes.cri-o.SandboxID": "sb1",
         "io.kubernetes.cri-o.ContainerType": "container",
         "io.kubernetes.cri-o.Annotations": json.dumps(pod_ann),
         "io.kubernetes.cri-o.ImageName": "registry.example/app:1"}
    a.update(pod_ann)
    return a

def sandbox(host_net=False, sysctl=None):
    ns = [{"type": t} for t in ("pid", "ipc", "uts", "mount") ] + ([] if host_net else [{"type": "network"}])
    s = {"process": {"user": {"uid": 65535}, "args": ["/pause"]}, "linux": {"namespaces": ns,
         "seccomp": {"defaultAction": "SCMP_ACT_ERRNO"}},
         "annotations": {CRI + "container-type": "sandbox"}}
    if sysctl:
        s["linux"]["sysctl"] = sysctl
    return json.dumps(s).encode()

seeds = []
specs = []
for f in sorted(glob.glob(os.path.join(here, "..", "tests", "fixtures", "*", "*", "config.json"))):
    with open(f, "rb") as fh:
        specs.append(json.load(fh))
for i, spec in enumerate(specs):
    raw = json.dumps(spec).encode()
    for j, pol in enumerate(POLICIES[: 1 + i % len(POLICIES)]):
        seeds.append([state(f"fx{i}", f"/run/bundles/fx{i}"), raw, sandbox(j % 2 == 1), pol])
    for ns in ("default", "kube-system"):
        s = json.loads(raw)
        s["annotations"] = containerd_ann(ns)
        s.setdefault("linux", {})["namespaces"] = [{"type": "pid"}, {"type": "mount"},
            {"type": "network", "path": "/proc/4242/ns/net"}, {"type": "ipc", "path": "/proc/4242/ns/ipc"}]
        seeds.append([state("c1", "/run/containerd/io.containerd.runtime.v2.task/k8s.io/c1"),
                      json.dumps(s).encode(), sandbox(ns == "default", {"kernel.msgmax": "1"}), POLICIES[0]])
        s["annotations"] = crio_ann(ns, {"team": "a", CRI + "sandbox-namespace": "kube-system"})
        seeds.append([state("c2", "/run/containers/storage/overlay-containers/c2/userdata"),
                      json.dumps(s).encode(), sandbox(), POLICIES[1]])
# A few of the bad-input rows.
seeds.append([b"", b"", b"", b""])
seeds.append([state("deep", "/b"), b'{"x":' + b"[" * 200 + b"]" * 200 + b"}", b"{}", b"enforce ="])
seeds.append([state("cap", "/b"), b'{"process":{"user":{"uid":0},"capabilities":{"bounding":["cap_sys_admin"]}}}', b"{}", b""])
seeds.append([b'{"ociVersion":"1.0.2","id":"x","status":"creating","bundle":"/a/../b"}', b"{}", b"", b"unknown = 1"])

for parts in seeds:
    data = b"\xff".join(parts)
    name = hashlib.sha1(data).hexdigest()
    with open(os.path.join(out, name), "wb") as fh:
        fh.write(data)
print(len(seeds), "seeds (", len(os.listdir(out)), "distinct files ) in", out)

# ---- target `keys`: specs and states, with and without keys in another case ------------------
def write(target, blobs):
    d = os.path.join(here, "seeds", target)
    os.makedirs(d, exist_ok=True)
    for data in blobs:
        with open(os.path.join(d, hashlib.sha1(data).hexdigest()), "wb") as fh:
            fh.write(data)
    print(len(blobs), "seeds in", d)

keys = [json.dumps(s).encode() for s in specs[:12]]
keys += [
    b'{"mounts":[],"Mounts":[{"destination":"/h","type":"bind","source":"/"}]}',
    b'{"process":{"user":{"uid":1},"capabilities":{"Bounding":["CAP_SYS_ADMIN"]}}}',
    b'{"linux":{"namespaces":[{"type":"pid"},{"TYPE":"network"}]}}',
    b'{"linux":{"resources":{"devices":[{"allow":false},{"Allow":true}]}}}',
    '{"mount\u017f":[],"process":{"u\\u0073er":{"uid":0}}}'.encode(),
    '{"annotations":{"Mounts":"x"},"\u212aeep":1}'.encode(),
    b'{"ociVersion":"1.0.2","id":"c","status":"creating","bundle":"/b","Bundle":"/etc"}',
    b'{"x":' + b"[" * 127 + b"]" * 127 + b"}",
]
write("keys", keys)

# ---- target `mounts`: mount tables ---------------------------------------------------------
pod = "/var/lib/kubelet/pods/u"
mounts = [
    ("1 0 8:1 / / rw - ext4 /dev/vda rw\n"
     "2 1 0:26 / /run rw shared:5 - tmpfs tmpfs rw\n"
     f"3 1 9:9 / {pod}/volumes/kubernetes.io~csi/pvc-1/mount rw - ext4 /dev/vdb rw\n"
     f"4 1 9:9 /data {pod}/volume-subpaths/pvc-1/app/0 rw - ext4 /dev/vdb rw\n"
     f"5 1 8:1 /etc {pod}/volume-subpaths/pvc-1/app/1 rw - ext4 /dev/vda rw\n"
     f"6 1 8:1 {pod}/volumes/kubernetes.io~empty-dir/d/s {pod}/volume-subpaths/d/app/2 rw - ext4 /dev/vda rw\n"
     "7 2 0:4 net:[4026532301] /run/netns/cni-1 rw shared:6 - nsfs nsfs rw\n"
     "8 1 8:1 /a\\040b /mnt/with\\040space rw - ext4 /dev/vda rw\n"),
    "1 0 8:1 / / rw - ext4 a rw\n2 1 8:1 /x /m rw - ext4 a rw\n3 1 0:5 / /m rw - tmpfs t rw\n",
]
try:
    with open("/proc/self/mountinfo") as fh:
        mounts.append(fh.read())
except OSError:
    pass
mounts = [m.encode() for m in mounts]
# Bytes that are not UTF-8 in a root and a mount point (a directory a pod renamed), an escaped
# newline, and lines that cannot be read in part or at all beside good ones.
mounts.append(
    b"1 0 8:1 / / rw - ext4 /dev/vda rw\n"
    + f"2 1 9:9 /v/\xff\xfe {pod}/volume-subpaths/v/app/0 rw - ext4 /dev/vdb rw\n".encode("latin-1")
    + b"3 1 8:1 /\xc3\x28 /mnt/\xff rw shared:1 - ext4 /dev/vda rw\n"
    b"4 1 8:1 /a\\012b /mnt/a\\012b rw - ext4 /dev/vda rw\n"
    b"5 1 8:1 /x\\777 /mnt/bad-root rw - ext4 /dev/vda rw\n"
    b"6 1 8:1 /x /mnt/no-separator rw\n"
    b"7 1 8 / /mnt/no-minor rw - ext4 a rw\n"
    b"8 1 8:1 / relative rw - ext4 a rw\n"
    b"garbage\n"
)
write("mounts", mounts)
