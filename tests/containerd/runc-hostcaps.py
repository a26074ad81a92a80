#!/usr/bin/python3
"""runc for the CRI-O test node (crio-up.sh): runc itself, after trimming a container's
capability sets to what this host can grant.

CRI-O gives a privileged container every capability it knows (`capabilities.add: [ALL]`
semantics), while containerd gives it the runtime's current bounding set. On a host whose
bounding set lacks one of them (a sandboxed CI machine: CAP_SYS_RESOURCE), runc then fails with
"unable to apply caps: operation not permitted", so no privileged container can run there under
CRI-O, exempt or not. This wrapper drops from config.json, before `runc create`, exactly the
capabilities outside the bounding set it inherits (the host's), and nothing else; the spec the
hook reads is then the one a privileged container has on a host that can grant them all, minus
capabilities no container on this host could hold anyway. pss-guard judges a privileged
container against that same bounding set, so its verdicts do not change (tests/kubelet-sim/
tests/crio.rs runs the seed through plain runc too). Test scaffolding only: never on a real node.
"""
import json
import os
import sys

RUNC = "/usr/bin/runc"


def bounding_set():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("CapBnd:"):
                return int(line.split()[1], 16)
    return None


# Capability numbers by name (linux/capability.h), as runc spells them.
NAMES = [
    "CHOWN", "DAC_OVERRIDE", "DAC_READ_SEARCH", "FOWNER", "FSETID", "KILL", "SETGID", "SETUID",
    "SETPCAP", "LINUX_IMMUTABLE", "NET_BIND_SERVICE", "NET_BROADCAST", "NET_ADMIN", "NET_RAW",
    "IPC_LOCK", "IPC_OWNER", "SYS_MODULE", "SYS_RAWIO", "SYS_CHROOT", "SYS_PTRACE", "SYS_PACCT",
    "SYS_ADMIN", "SYS_BOOT", "SYS_NICE", "SYS_RESOURCE", "SYS_TIME", "SYS_TTY_CONFIG", "MKNOD",
    "LEASE", "AUDIT_WRITE", "AUDIT_CONTROL", "SETFCAP", "MAC_OVERRIDE", "MAC_ADMIN", "SYSLOG",
    "WAKE_ALARM", "BLOCK_SUSPEND", "AUDIT_READ", "PERFMON", "BPF", "CHECKPOINT_RESTORE",
]


def trim(bundle):
    bnd = bounding_set()
    if bnd is None:
        return
    path = os.path.join(bundle, "config.json")
    with open(path) as f:
        spec = json.load(f)
    caps = spec.get("process", {}).get("capabilities")
    if not caps:
        return
    missing = {"CAP_" + n for i, n in enumerate(NAMES) if not bnd >> i & 1}
    changed = False
    for key, names in caps.items():
        if isinstance(names, list) and any(n in missing for n in names):
            caps[key] = [n for n in names if n not in missing]
            changed = True
    if changed:
        tmp = path + ".hostcaps"
        with open(tmp, "w") as f:
            json.dump(spec, f)
        os.rename(tmp, path)


def main():
    args = sys.argv[1:]
    if "create" in args or "run" in args:
        bundle = "."
        for i, a in enumerate(args):
            if a in ("--bundle", "-b") and i + 1 < len(args):
                bundle = args[i + 1]
            elif a.startswith("--bundle="):
                bundle = a.split("=", 1)[1]
        try:
            trim(bundle)
        except (OSError, ValueError) as e:
            sys.stderr.write("runc-hostcaps: %s\n" % e)
    os.execv(RUNC, [RUNC] + args)


main()
