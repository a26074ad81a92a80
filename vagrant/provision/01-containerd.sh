#!/usr/bin/env bash
# containerd + runc from Debian, configured the way kubeadm expects (systemd cgroups).
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive

# PROVISION_CONFIG_ONLY=1 PROVISION_ROOT=DIR writes only the containerd config, below DIR: how
# CI runs this step without a VM (tests/install_vagrant.rs).
root=${PROVISION_ROOT:-}
config_only=${PROVISION_CONFIG_ONLY:-0}

if [ "$config_only" != 1 ]; then
	apt-get update -qq
	apt-get install -y -qq containerd runc containernetworking-plugins curl gpg apt-transport-https

	printf '%s\n' overlay br_netfilter >/etc/modules-load.d/k8s.conf
	modprobe overlay
	modprobe br_netfilter
	printf '%s\n' 'net.bridge.bridge-nf-call-iptables = 1' 'net.bridge.bridge-nf-call-ip6tables = 1' \
		'net.ipv4.ip_forward = 1' >/etc/sysctl.d/90-k8s.conf
	sysctl --system >/dev/null
	swapoff -a
	sed -i '/\sswap\s/d' /etc/fstab
fi

# A full version 2 config, so pss-guard install finds the runc handler and its options.
config=$root/etc/containerd/config.toml
mkdir -p "$(dirname "$config")"
containerd config default >"$config"
sed -i 's/SystemdCgroup = false/SystemdCgroup = true/' "$config"
sed -i 's|bin_dir = "/opt/cni/bin"|bin_dir = "/usr/lib/cni"|' "$config"
if [ "$config_only" != 1 ]; then
	systemctl restart containerd
	systemctl enable containerd
fi
