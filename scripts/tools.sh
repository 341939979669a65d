#!/usr/bin/env bash
# Builds the command-line tools the tests need: helm, from the Go module proxy (no prebuilt binary
# downloads), once per version into the build cache outside the clone (scripts/build_cache.sh), and links it
# as .cache/bin/helm. Re-running is quiet when the pinned version is there.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/build_cache.sh

HELM_VERSION="${HELM_VERSION:-v3.22.0}"
# helm's own Makefile stamps the Kubernetes version of its client-go (v0.37 = 1.37) into the binary;
# without it `helm template` pretends to talk to Kubernetes 1.20.
KUBE_MINOR="${KUBE_MINOR:-37}"
LINK="$PWD/.cache/bin/helm"

build_helm() {
    local gobin
    gobin="$(mktemp -d)"
    local ldflags="-s -w -X helm.sh/helm/v3/internal/version.version=$HELM_VERSION"
    for pkg in pkg/lint/rules pkg/chartutil; do
        ldflags+=" -X helm.sh/helm/v3/$pkg.k8sVersionMajor=1 -X helm.sh/helm/v3/$pkg.k8sVersionMinor=$KUBE_MINOR"
    done
    GOBIN="$gobin" GOFLAGS=-mod=mod CGO_ENABLED=0 nice -n 19 "$GO" install -trimpath -ldflags "$ldflags" \
        "helm.sh/helm/v3/cmd/helm@$HELM_VERSION"
    mv "$gobin/helm" "$1" && rmdir "$gobin"
}

GO="$(go_command helm)"
HELM="$(cached_build helm "$HELM_VERSION-k8s1.$KUBE_MINOR" build_helm)"
if [[ "$(readlink "$LINK" 2>/dev/null)" != "$HELM" ]]; then
    # Replaced by rename: a test running helm meanwhile sees the old binary or the new one, never none.
    mkdir -p "$(dirname "$LINK")"
    ln -sfn "$HELM" "$LINK.new" && mv -Tf "$LINK.new" "$LINK"
    "$LINK" version --short
fi
