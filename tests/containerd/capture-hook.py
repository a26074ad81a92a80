#!/usr/bin/python3
"""prestart hook for the test node: keep a copy of each container's spec and its sandbox's.

Runs before pss-guard (prestart hooks precede createRuntime hooks in runc), with the OCI
state on stdin and an empty environment, so the capture dir comes from argv[1]. Writes
<dir>/<container id>/{config.json,sandbox.json,state.json} and always exits 0: it must
never be the reason a container is refused.
"""
import json
import os
import shutil
import sys

SANDBOX_ID = "io.kubernetes.cri.sandbox-id"
CRIO_SANDBOX_ID = "io.kubernetes.cri-o.SandboxID"


def main():
    out_root = sys.argv[1]
    state = json.load(sys.stdin)
    bundle = state["bundle"]
    out = os.path.join(out_root, state["id"])
    os.makedirs(out, exist_ok=True)
    shutil.copyfile(os.path.join(bundle, "config.json"), os.path.join(out, "config.json"))
    annotations = state.get("annotations", {})
    sandbox = annotations.get(SANDBOX_ID)
    spec = None
    if sandbox:
        spec = os.path.join(os.path.dirname(bundle), sandbox, "config.json")
    elif annotations.get(CRIO_SANDBOX_ID):
        # CRI-O: <run root>/<driver>-containers/<id>/userdata, the sandbox's beside it.
        sandbox = annotations[CRIO_SANDBOX_ID]
        spec = os.path.join(os.path.dirname(os.path.dirname(bundle)), sandbox, "userdata", "config.json")
    if spec:
        if os.path.exists(spec):
            shutil.copyfile(spec, os.path.join(out, "sandbox.json"))
    with open(os.path.join(out, "state.json"), "w") as f:
        json.dump(state, f, indent=2, sort_keys=True)


try:
    main()
except Exception as e:  # noqa: BLE001 - a capture failure must not refuse the container
    sys.stderr.write("capture-hook: %s\n" % e)
sys.exit(0)
