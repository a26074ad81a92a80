#!/usr/bin/env python3
"""Adds pss-guard's parts to a launch template's existing user data, keeping every part it has.

usage: add-to-user-data.py EXISTING PARTS > NEW
  EXISTING  the current user data, decoded (empty file for none)
  PARTS     node-config/eks-al2023-user-data.mime (its NodeConfig and script parts)

Existing MIME multi-part user data keeps its parts, in order, with pss-guard's appended; other
user data (a shell script, a cloud-config) becomes the first part of a new multi-part document.
Run it again on its own output and nothing changes: parts already carrying pss-guard's marker
are replaced, not added twice. nodeadm merges every NodeConfig part, in order, so the hook's
NodeConfig composes with the cluster's.

  aws ec2 describe-launch-template-versions --launch-template-id lt-0123 --versions '$Latest' \\
    --query 'LaunchTemplateVersions[0].LaunchTemplateData.UserData' --output text |
    base64 -d > current.txt
  node-config/add-to-user-data.py current.txt node-config/eks-al2023-user-data.mime > new.mime
"""
import email
import email.policy
import sys
from email.mime.multipart import MIMEMultipart
from email.mime.text import MIMEText

MARKER = "X-Pss-Guard"


def leaves(msg):
    return [p for p in msg.walk() if not p.is_multipart()]


def as_part(text):
    """A non-MIME user data as the part cloud-init would have read it as."""
    if text.startswith("#cloud-config"):
        subtype = "cloud-config"
    elif text.startswith("#!"):
        subtype = "x-shellscript"
    else:
        raise SystemExit("existing user data is neither MIME, a script nor cloud-config; merge by hand")
    return MIMEText(text, subtype, "us-ascii")


def main():
    if len(sys.argv) != 3:
        raise SystemExit(__doc__)
    existing = open(sys.argv[1], encoding="utf-8").read()
    ours = email.message_from_string(open(sys.argv[2], encoding="utf-8").read())
    out = MIMEMultipart(boundary="==PSSGUARD-MERGED==")
    if existing.strip():
        msg = email.message_from_string(existing)
        parts = leaves(msg) if msg.is_multipart() else [as_part(existing)]
        for p in parts:
            if p.get(MARKER) is None:
                out.attach(p)
    for p in leaves(ours):
        del p[MARKER]
        p[MARKER] = "1"
        out.attach(p)
    sys.stdout.write(out.as_string(policy=email.policy.compat32.clone(linesep="\n")))


if __name__ == "__main__":
    main()
