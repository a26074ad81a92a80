#!/usr/bin/env bash
# containerd + runc from Debian, configured the way kubeadm expects (systemd cgroups).
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive

apt-get update -qq
apt-get install -y -qq containerd runc containernetworking-plugins curl gpg apt-transport-https

cat >/etc/modules-load.d/k8s.conf <<'MODS'
overlay
br_netfilter
MODS
modprobe overlay
modprobe br_netfilter
cat >/etc/sysctl.d/90-k8s.conf <<'SYSCTL'
net.bridge.bridge-nf-call-iptables = 1
net.bridge.bridge-nf-call-ip6tables = 1
net.ipv4.ip_forward = 1
SYSCTL
sysctl --system >/dev/null
swapoff -a
sed -i '/\sswap\s/d' /etc/fstab

# A full version 2 config, so pss-guard install finds the runc handler and its options.
mkdir -p /etc/containerd
containerd config default >/etc/containerd/config.toml
sed -i 's/SystemdCgroup = false/SystemdCgroup = true/' /etc/containerd/config.toml
sed -i 's|bin_dir = "/opt/cni/bin"|bin_dir = "/usr/lib/cni"|' /etc/containerd/config.toml
systemctl restart containerd
systemctl enable containerd
