#!/usr/bin/env bash
# Print the path of a pinned helm binary, building it from Go modules on first use.
# The binary is cached in <repo>/.cache/bin (git-ignored), so later runs are instant.
# Needs: the go command and the Go module proxy. Override the pin with HELM_VERSION.
set -euo pipefail

HELM_VERSION="${HELM_VERSION:-v3.22.0}"
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BIN_DIR="$ROOT/.cache/bin"
TARGET="$BIN_DIR/helm-$HELM_VERSION"

if [[ -x "$TARGET" ]]; then
  echo "$TARGET"
  exit 0
fi

if ! command -v go >/dev/null 2>&1; then
  echo "ensure-helm: the go command is needed to build helm $HELM_VERSION" >&2
  exit 1
fi

mkdir -p "$BIN_DIR"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
echo "ensure-helm: building helm $HELM_VERSION from Go modules (first run only, a few minutes)" >&2
# Stamp the binary the way helm's own Makefile does: its version, and the Kubernetes version of the k8s.io modules
# it was built with (else `helm template` and `helm lint` assume Kubernetes 1.20).
gomod="$(timeout 600 go mod download -json "helm.sh/helm/v3@$HELM_VERSION" | sed -n 's/^[[:space:]]*"GoMod": "\(.*\)",$/\1/p')"
k8s_minor="$(sed -n 's/^[[:space:]]*k8s.io\/client-go v0\.\([0-9]*\)\..*/\1/p' "$gomod" | head -n1)"
if [[ -z "$k8s_minor" ]]; then
  echo "ensure-helm: cannot read the k8s.io/client-go version from $gomod" >&2
  exit 1
fi
ldflags="-s -w -X helm.sh/helm/v3/internal/version.version=$HELM_VERSION"
for pkg in helm.sh/helm/v3/pkg/lint/rules helm.sh/helm/v3/pkg/chartutil; do
  ldflags="$ldflags -X $pkg.k8sVersionMajor=1 -X $pkg.k8sVersionMinor=$k8s_minor"
done
timeout 1200 env GOBIN="$work" CGO_ENABLED=0 GOFLAGS=-mod=mod \
  go install -ldflags "$ldflags" "helm.sh/helm/v3/cmd/helm@$HELM_VERSION" >&2
mv "$work/helm" "$TARGET"
echo "$TARGET"
