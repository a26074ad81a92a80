#!/usr/bin/env bash
# End to end on the Vagrant node (run as root inside the VM after `vagrant up`):
#   1. the seed privileged pod, admitted (no PSA labels), is refused on the node: the refusal
#      shows in `kubectl describe pod` and in the DaemonSet's logs;
#   2. a static pod mounting a host path (baseline violation, never seen by admission) is refused;
#   3. a compliant pod runs.
set -euo pipefail
export KUBECONFIG=${KUBECONFIG:-/etc/kubernetes/admin.conf}
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
node=$(hostname)
failed=0

pass() { echo "PASS: $*"; }
fail() {
	echo "FAIL: $*" >&2
	failed=1
}

# Waits until the pod's container reports a waiting or terminated reason (or it runs).
wait_for_start_result() {
	local pod=$1 state
	for _ in $(seq 1 60); do
		state=$(kubectl get pod "$pod" -o jsonpath='{.status.containerStatuses[0].state}' 2>/dev/null || true)
		case $state in
		*running* | *RunContainerError* | *CrashLoopBackOff* | *StartError* | *CreateContainerError*) return 0 ;;
		esac
		sleep 2
	done
	return 1
}

cleanup() {
	kubectl delete pod privileged-pod compliant-pod --ignore-not-found --wait=false >/dev/null
	rm -f /etc/kubernetes/manifests/pss-guard-e2e-static.yaml
}
trap cleanup EXIT

echo "== 1. privileged pod (admitted, no PSA labels)"
kubectl apply -f "$here/manifests/privileged-pod.yaml"
wait_for_start_result privileged-pod || fail "privileged-pod: no start result"
describe=$(kubectl describe pod privileged-pod)
if grep -q 'pss-guard: container "app" in pod default/privileged-pod violates PodSecurity "baseline:latest": privileged' <<<"$describe"; then
	pass "kubectl describe shows the refusal"
else
	fail "kubectl describe pod privileged-pod lacks the pss-guard refusal"
	echo "$describe" >&2
fi
if kubectl get pod privileged-pod -o jsonpath='{.status.containerStatuses[0].state.running}' | grep -q .; then
	fail "privileged-pod is running"
fi
sleep 3
logs=$(kubectl -n pss-guard logs daemonset/pss-guard -c agent --tail=200)
if grep '"pod":"privileged-pod"' <<<"$logs" | grep -q '"decision":"refused"'; then
	pass "DaemonSet logs carry the refused record"
else
	fail "no refused record for privileged-pod in kubectl logs of the DaemonSet"
fi

echo "== 2. static pod mounting /etc"
cp "$here/manifests/static-pod-hostpath.yaml" /etc/kubernetes/manifests/pss-guard-e2e-static.yaml
mirror=pss-guard-e2e-static-$node
for _ in $(seq 1 60); do
	kubectl get pod "$mirror" >/dev/null 2>&1 && break
	sleep 2
done
wait_for_start_result "$mirror" || fail "$mirror: no start result"
if kubectl describe pod "$mirror" | grep -q 'pss-guard: .*hostPath volumes'; then
	pass "static pod refused (hostPath volumes)"
else
	fail "static pod $mirror not refused by pss-guard"
fi

echo "== 3. compliant pod"
kubectl apply -f "$here/manifests/compliant-pod.yaml"
if kubectl wait --for=condition=Ready pod/compliant-pod --timeout=120s >/dev/null; then
	pass "compliant pod runs"
else
	fail "compliant pod did not become Ready"
fi

echo "== pss-guard pods"
kubectl -n pss-guard get pods -o wide
if [ "$failed" -ne 0 ]; then
	echo "e2e: FAILED" >&2
	exit 1
fi
echo "e2e: all passed"
