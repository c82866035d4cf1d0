#!/usr/bin/env bash
# The migration on a local cluster: a real kube-apiserver with the legacy Connectivity Proxy
# 2.9.3 installed and the module's CRD and default CR, then status, a dry run, the run, status;
# then the way back as the runbook has it: rollback --prepare, the module disabled as its
# operator's cleanup does, rollback, status.
set -euo pipefail
cd "$(dirname "$0")/.."
dir="${DEMO_DIR:-$PWD/.demo}"
tool=target/release/cp-mod-migrator
cargo build --release --quiet
testenv/cluster stop "$dir" 2>/dev/null || true
testenv/cluster start "$dir"
kubectl() { testenv/cluster kubectl --kubeconfig "$dir/kubeconfig" "$@"; }
apply_dir() {
  for f in "$1"/*.yaml; do
    kubectl apply --server-side --field-manager=demo -f "$f" >/dev/null
    if grep -q '^kind: CustomResourceDefinition' "$f"; then
      kubectl wait --for condition=established crd --all --timeout=60s >/dev/null
    fi
  done
}
echo "== installing the legacy Connectivity Proxy 2.9.3 and the module's CRD and default CR"
apply_dir fixtures/legacy-2.9.3
apply_dir fixtures/module
export KUBECONFIG="$dir/kubeconfig"
echo; echo "== status before"
"$tool" status
echo; echo "== dry run (nothing is written)"
"$tool" --log-format text run --dry-run
echo; echo "== run"
"$tool" --log-format text run
echo; echo "== status after"
"$tool" status
echo; echo "== spec.config of the CR"
kubectl get connectivityproxies.connectivityproxy.sap.com connectivity-proxy -n kyma-system -o jsonpath='{.spec.config}'; echo
echo; echo "== Events on the CR"
kubectl get events -n kyma-system
echo; echo "== the way back, as the runbook has it: rollback --prepare, the module disabled, rollback"
"$tool" --log-format text rollback --prepare
# Disabling the module as its operator's cleanup does (no operator runs here): what it adopted
# goes, the ServiceMapping CRD that clean adopted and with it every ServiceMapping; then the CR
# and its CRD.
kubectl delete crd servicemappings.connectivityproxy.sap.com
kubectl delete connectivityproxies.connectivityproxy.sap.com connectivity-proxy -n kyma-system
kubectl delete crd connectivityproxies.connectivityproxy.sap.com
echo "ServiceMappings left: $(kubectl get servicemappings.connectivityproxy.sap.com -A --no-headers 2>/dev/null | wc -l)"
"$tool" --log-format text rollback
echo "ServiceMappings back: $(kubectl get servicemappings.connectivityproxy.sap.com -A --no-headers | wc -l)"
echo; echo "== status after the rollback"
"$tool" status
echo
echo "The cluster is still running. Point kubectl at it with:"
echo "  export KUBECONFIG=$dir/kubeconfig"
echo "Stop it with: make demo-stop"
