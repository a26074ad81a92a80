#!/usr/bin/env bash
# kubeadm, kubelet and kubectl from the Kubernetes package repository; a single-node cluster
# with a bridge CNI (no add-on to download) and the control-plane taint removed.
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive
minor=${K8S_MINOR:-1.33}

install -d -m 0755 /etc/apt/keyrings
curl -fsSL "https://pkgs.k8s.io/core:/stable:/v${minor}/deb/Release.key" |
	gpg --dearmor --yes -o /etc/apt/keyrings/kubernetes.gpg
echo "deb [signed-by=/etc/apt/keyrings/kubernetes.gpg] https://pkgs.k8s.io/core:/stable:/v${minor}/deb/ /" \
	>/etc/apt/sources.list.d/kubernetes.list
apt-get update -qq
apt-get install -y -qq kubelet kubeadm kubectl
apt-mark hold kubelet kubeadm kubectl

if [ ! -f /etc/kubernetes/admin.conf ]; then
	kubeadm init --pod-network-cidr=10.244.0.0/16 --cri-socket unix:///run/containerd/containerd.sock
fi
mkdir -p /root/.kube
cp /etc/kubernetes/admin.conf /root/.kube/config
if [ -d /home/vagrant ]; then
	mkdir -p /home/vagrant/.kube
	cp /etc/kubernetes/admin.conf /home/vagrant/.kube/config
	chown -R vagrant: /home/vagrant/.kube
fi
export KUBECONFIG=/etc/kubernetes/admin.conf

# One node: a bridge with host-local addresses is all the pod network needs.
mkdir -p /etc/cni/net.d
cat >/etc/cni/net.d/10-bridge.conflist <<'CNI'
{
  "cniVersion": "1.0.0",
  "name": "pods",
  "plugins": [
    {"type": "bridge", "bridge": "cni0", "isGateway": true, "ipMasq": true,
     "ipam": {"type": "host-local", "ranges": [[{"subnet": "10.244.0.0/24"}]],
              "routes": [{"dst": "0.0.0.0/0"}]}},
    {"type": "portmap", "capabilities": {"portMappings": true}}
  ]
}
CNI
kubectl taint nodes --all node-role.kubernetes.io/control-plane- 2>/dev/null || true
kubectl wait --for=condition=Ready node --all --timeout=180s
