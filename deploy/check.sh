#!/usr/bin/env bash
# Validate the deploy artefacts without a container engine:
#   1. helm (pinned, built from Go modules once into .cache/bin) lints the chart with default and prod values;
#   2. helm renders the chart (default, prod) into .cache/deploy/, validated against the Kubernetes schemas;
#   3. compose.yaml is validated against the Compose Specification schema;
#   4. pytest tests/deploy: the env contract (every SCRM_* set is read by the service's Settings), the same schema
#      checks on more value sets, and the wiring of services, probes, hooks and monitoring.
# Usage: deploy/check.sh            (from anywhere; needs the workspace venv: uv sync)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
PYTHON="${PYTHON:-$ROOT/.venv/bin/python}"
if [[ ! -x "$PYTHON" ]]; then
  echo "deploy/check.sh: $PYTHON not found; run 'uv sync' in $ROOT first (or set PYTHON)" >&2
  exit 1
fi
CHART="$ROOT/deploy/helm/scrm"
OUT="$ROOT/.cache/deploy"
mkdir -p "$OUT"

step() { printf '\n==> %s\n' "$*"; }

step "helm (pinned; built from Go modules on first run)"
HELM="$(bash "$ROOT/deploy/ensure-helm.sh")"
export HELM
"$HELM" version --short

for values in default prod; do
  args=()
  [[ "$values" == prod ]] && args=(-f "$CHART/values-prod.yaml")
  step "helm lint --strict ($values values)"
  timeout 120 "$HELM" lint --strict "$CHART" "${args[@]}"
  step "helm template ($values values) -> .cache/deploy/scrm-$values.yaml, validated against Kubernetes 1.37 (strict)"
  timeout 120 "$HELM" template scrm "$CHART" --namespace scrm "${args[@]}" > "$OUT/scrm-$values.yaml"
  timeout 300 "$PYTHON" - "$OUT/scrm-$values.yaml" <<'PY'
import sys

import kubernetes_validate
import yaml

CUSTOM = {("monitoring.coreos.com/v1", "ServiceMonitor")}  # CRDs: no schema shipped; checked in tests/deploy
failed = checked = 0
for doc in yaml.safe_load_all(open(sys.argv[1])):
    if not doc:
        continue
    name = f"{doc['kind']} {doc['metadata']['name']}"
    if (doc["apiVersion"], doc["kind"]) in CUSTOM:
        print(f"  skipped (custom resource): {name}")
        continue
    try:
        kubernetes_validate.validate(doc, "1.37.0", strict=True)
        checked += 1
    except Exception as exc:  # report every failure, then fail
        failed += 1
        print(f"  INVALID {name}: {exc}")
print(f"  {checked} resources valid, {failed} invalid")
sys.exit(1 if failed else 0)
PY
done

step "compose.yaml against the Compose Specification schema (vendored in check-jsonschema)"
timeout 120 "$ROOT/.venv/bin/check-jsonschema" --builtin-schema vendor.compose-spec "$ROOT/deploy/compose/compose.yaml"

step "pytest tests/deploy (env contract, schemas on more value sets, wiring)"
timeout 1800 "$PYTHON" -m pytest "$ROOT/tests/deploy" -q -p no:cacheprovider

step "deploy check passed"
