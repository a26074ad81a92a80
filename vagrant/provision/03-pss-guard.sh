#!/usr/bin/env bash
# pss-guard through its DaemonSet: import the image built on the host (no registry), apply the
# manifests, wait until the init container has installed the hook on the node.
set -euo pipefail
export KUBECONFIG=/etc/kubernetes/admin.conf
src=/pss-guard

image_tar=$src/vagrant/pss-guard-image.tar
if [ ! -f "$image_tar" ]; then
	echo "missing $image_tar: build and export the image on the host first (see vagrant/Vagrantfile)" >&2
	exit 1
fi
ctr -n k8s.io images import --base-name localhost/pss-guard "$image_tar"
ctr -n k8s.io images ls -q | grep -q '^localhost/pss-guard:0.1.0$' ||
	ctr -n k8s.io images tag "$(ctr -n k8s.io images ls -q | grep '^localhost/pss-guard' | head -1)" localhost/pss-guard:0.1.0

kubectl apply -f "$src/deploy/kubernetes/pss-guard.yaml"
kubectl -n pss-guard rollout status daemonset/pss-guard --timeout=300s

# The init container restarted containerd with the hook in its base spec.
grep -q pss-guard /etc/containerd/config.toml
test -x /usr/local/bin/pss-guard
/usr/local/bin/pss-guard version
