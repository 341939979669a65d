#!/usr/bin/env bash
# Builds the command-line tools the tests need into .cache/bin, once: helm, from the Go module
# proxy (no prebuilt binary downloads). Re-running is quiet when the pinned version is there.
set -euo pipefail
cd "$(dirname "$0")/.."

HELM_VERSION="${HELM_VERSION:-v3.22.0}"
BIN="$PWD/.cache/bin"
HELM="$BIN/helm"
# helm's own Makefile stamps the Kubernetes version of its client-go (v0.37 = 1.37) into the binary;
# without it `helm template` pretends to talk to Kubernetes 1.20.
KUBE_MINOR="${KUBE_MINOR:-37}"
STAMP="$BIN/.helm-build"
BUILD_ID="$HELM_VERSION k8s-1.$KUBE_MINOR"

if [[ -x "$HELM" && "$(cat "$STAMP" 2>/dev/null)" == "$BUILD_ID" ]]; then
    exit 0
fi

GO="$(command -v go || true)"
[[ -z "$GO" && -x /usr/local/go/bin/go ]] && GO=/usr/local/go/bin/go
if [[ -z "$GO" ]]; then
    echo "error: Go 1.24+ is needed to build helm (apt-get install golang-go, or put go on PATH)" >&2
    exit 1
fi

echo "==> helm: building $HELM_VERSION with go install into .cache/bin (first run only, a few minutes)…"
mkdir -p "$BIN"
# GOPATH and the build cache live in .cache so that a second build (another version) reuses them.
export GOPATH="$PWD/.cache/go" GOCACHE="$PWD/.cache/go-build" GOBIN="$BIN" GOFLAGS=-mod=mod CGO_ENABLED=0
LDFLAGS="-s -w -X helm.sh/helm/v3/internal/version.version=$HELM_VERSION"
for pkg in pkg/lint/rules pkg/chartutil; do
    LDFLAGS+=" -X helm.sh/helm/v3/$pkg.k8sVersionMajor=1 -X helm.sh/helm/v3/$pkg.k8sVersionMinor=$KUBE_MINOR"
done
LOG="$PWD/.cache/logs/helm-build.log"
mkdir -p "$(dirname "$LOG")"
if ! "$GO" install -trimpath -ldflags "$LDFLAGS" "helm.sh/helm/v3/cmd/helm@$HELM_VERSION" >"$LOG" 2>&1; then
    tail -n 20 "$LOG" >&2
    echo "error: building helm failed (full log: $LOG)" >&2
    exit 1
fi
echo "$BUILD_ID" > "$STAMP"
"$HELM" version --short
