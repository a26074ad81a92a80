#!/usr/bin/env python3
"""Build a one-layer OCI image archive from Debian's busybox-static, no registry needed.

usage: build-image.py OUT.tar REF[,REF...] ENTRYPOINT_JSON [USER]

The archive follows the OCI image layout (oci-layout, index.json, blobs/sha256/*) that
`ctr images import` reads; each REF becomes an `org.opencontainers.image.ref.name`
annotation on the manifest descriptor (ctr imports it under that name).
"""

import gzip
import hashlib
import io
import json
import os
import sys
import tarfile

BUSYBOX = "/bin/busybox"
# Applets the test pods use; every one is a symlink to /bin/busybox.
APPLETS = ["sh", "sleep", "cat", "ls", "id", "true", "false", "echo", "mount", "ps"]
# Fixed mtime so that the same inputs give byte-identical blobs (reproducible digests).
MTIME = 1700000000


def add_dir(tar, name, mode=0o755):
    info = tarfile.TarInfo(name)
    info.type = tarfile.DIRTYPE
    info.mode = mode
    info.mtime = MTIME
    tar.addfile(info)


def layer_bytes():
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for d in ["bin", "etc", "tmp", "proc", "sys", "dev", "var", "var/run", "root"]:
            add_dir(tar, d, 0o1777 if d == "tmp" else 0o755)
        with open(BUSYBOX, "rb") as f:
            data = f.read()
        info = tarfile.TarInfo("bin/busybox")
        info.size = len(data)
        info.mode = 0o755
        info.mtime = MTIME
        tar.addfile(info, io.BytesIO(data))
        for applet in APPLETS:
            link = tarfile.TarInfo("bin/" + applet)
            link.type = tarfile.SYMTYPE
            link.linkname = "busybox"
            link.mtime = MTIME
            tar.addfile(link)
        for name, text in [
            ("etc/passwd", "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n"),
            ("etc/group", "root:x:0:\nnogroup:x:65534:\n"),
        ]:
            body = text.encode()
            info = tarfile.TarInfo(name)
            info.size = len(body)
            info.mode = 0o644
            info.mtime = MTIME
            tar.addfile(info, io.BytesIO(body))
    uncompressed = raw.getvalue()
    compressed = gzip.compress(uncompressed, mtime=0)
    return uncompressed, compressed


def sha256(data):
    return "sha256:" + hashlib.sha256(data).hexdigest()


def main():
    if len(sys.argv) not in (4, 5):
        sys.stderr.write(__doc__)
        return 2
    out, refs, entrypoint = sys.argv[1], sys.argv[2].split(","), json.loads(sys.argv[3])
    user = sys.argv[4] if len(sys.argv) == 5 else ""
    uncompressed, compressed = layer_bytes()
    config = {
        "architecture": "amd64",
        "os": "linux",
        "config": {
            "Env": ["PATH=/bin"],
            "Entrypoint": entrypoint,
            "WorkingDir": "/",
        },
        "rootfs": {"type": "layers", "diff_ids": [sha256(uncompressed)]},
        "history": [{"created_by": "pss-guard tests/containerd/build-image.py"}],
    }
    if user:
        config["config"]["User"] = user
    config_bytes = json.dumps(config, sort_keys=True).encode()
    manifest = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {
            "mediaType": "application/vnd.oci.image.config.v1+json",
            "digest": sha256(config_bytes),
            "size": len(config_bytes),
        },
        "layers": [
            {
                "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                "digest": sha256(compressed),
                "size": len(compressed),
            }
        ],
    }
    manifest_bytes = json.dumps(manifest, sort_keys=True).encode()
    index = {
        "schemaVersion": 2,
        "manifests": [
            {
                "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "digest": sha256(manifest_bytes),
                "size": len(manifest_bytes),
                "annotations": {"org.opencontainers.image.ref.name": ref},
                "platform": {"architecture": "amd64", "os": "linux"},
            }
            for ref in refs
        ],
    }
    files = [
        ("oci-layout", json.dumps({"imageLayoutVersion": "1.0.0"}).encode()),
        ("index.json", json.dumps(index, sort_keys=True).encode()),
    ]
    for blob in (compressed, config_bytes, manifest_bytes):
        files.append(("blobs/sha256/" + sha256(blob).split(":", 1)[1], blob))
    tmp = out + ".tmp"
    with tarfile.open(tmp, mode="w") as tar:
        for d in ["blobs", "blobs/sha256"]:
            add_dir(tar, d)
        for name, body in files:
            info = tarfile.TarInfo(name)
            info.size = len(body)
            info.mode = 0o644
            info.mtime = MTIME
            tar.addfile(info, io.BytesIO(body))
    os.replace(tmp, out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
