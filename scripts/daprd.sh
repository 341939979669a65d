#!/usr/bin/env bash
# Builds a real Dapr sidecar (daprd) for the end-to-end tests of EVENT_TRANSPORT=dapr, once per
# version, from the Go module proxy through the wrapper module infra/daprd (no prebuilt downloads).
#
# Only the Kafka pub/sub component is compiled in. Upstream registers each component in a file of
# its own in cmd/daprd/components, all under the build tag `stablecomponents` (or `allcomponents`),
# and cmd/daprd/app imports that package whole; no tag selects one component. So the build uses a
# pruned copy of the module, made in the build cache (never in this repository) from the module
# zip the Go toolchain downloaded and verified against infra/daprd/go.sum: the same files, minus
# every components/*.go but pubsub_kafka.go; a copy of infra/daprd/go.mod names it with a
# `replace`. Nothing upstream is changed or kept in the project, and the build needs a fraction of
# the modules, memory and time of the stablecomponents binary (which compiles every cloud SDK).
#
# Caches and the binary live outside the clone, shared with the other Go builds of the project and
# kept between CI runs: ${TODO_BUILD_CACHE:-/var/cache/todo-platform}/{go/mod,go/build,bin}.
# .cache/bin/daprd links to the binary. Re-running is quiet when this version is built.
set -euo pipefail
cd "$(dirname "$0")/.."

DAPR_VERSION=1.18.2  # the version infra/daprd/go.mod requires
KEPT_COMPONENTS=(pubsub_kafka.go)
CACHE="${TODO_BUILD_CACHE:-/var/cache/todo-platform}"
BINARY="$CACHE/bin/daprd-$DAPR_VERSION"
STAMP="$BINARY.build"
# The version in `daprd --version` and in every log line (upstream's Makefile sets both).
LDFLAGS="-s -w -X github.com/dapr/dapr/pkg/buildinfo.version=$DAPR_VERSION -X github.com/dapr/kit/logger.DaprVersion=$DAPR_VERSION"
BUILD_ID="dapr $DAPR_VERSION tags=stablecomponents components=${KEPT_COMPONENTS[*]} ldflags=$LDFLAGS $(cat infra/daprd/go.mod infra/daprd/go.sum infra/daprd/main.go | sha256sum | cut -c1-16)"
LINK="$PWD/.cache/bin/daprd"

link() {
    mkdir -p "$(dirname "$LINK")"
    ln -sfn "$BINARY" "$LINK"
}

if [[ -x "$BINARY" && "$(cat "$STAMP" 2>/dev/null)" == "$BUILD_ID" ]]; then
    link
    exit 0
fi

GO="$(command -v go || true)"
[[ -z "$GO" && -x /usr/local/go/bin/go ]] && GO=/usr/local/go/bin/go
if [[ -z "$GO" ]]; then
    echo "error: Go 1.26.5+ is needed to build daprd (put go on PATH)" >&2
    exit 1
fi

echo "==> daprd: building Dapr $DAPR_VERSION (Kafka pub/sub only) into $CACHE/bin (first run only, about 10 minutes)…"
mkdir -p "$CACHE/go/mod" "$CACHE/go/build" "$CACHE/bin" "$PWD/.cache/logs"
# -modcacherw: a module cache that `rm -rf` can delete. GOTOOLCHAIN=local: never fetch another Go.
export GOMODCACHE="$CACHE/go/mod" GOCACHE="$CACHE/go/build" GOFLAGS="-modcacherw -mod=readonly" \
    GOTOOLCHAIN=local CGO_ENABLED=0
LOG="$PWD/.cache/logs/daprd-build.log"
cd infra/daprd

"$GO" mod download github.com/dapr/dapr
pruned="$CACHE/src/dapr-$DAPR_VERSION-pruned"
if [[ "$(cat "$pruned/.pruned" 2>/dev/null)" != "$BUILD_ID" ]]; then
    rm -rf "$pruned"
    mkdir -p "$(dirname "$pruned")"
    cp -r "$("$GO" list -m -f '{{.Dir}}' github.com/dapr/dapr)" "$pruned"
    chmod -R u+w "$pruned"
    for file in "$pruned"/cmd/daprd/components/*.go; do
        [[ " ${KEPT_COMPONENTS[*]} " == *" $(basename "$file") "* ]] || rm "$file"
    done
    echo "$BUILD_ID" > "$pruned/.pruned"
fi
modfile="$CACHE/src/daprd-$DAPR_VERSION.mod"
{ cat go.mod; echo "replace github.com/dapr/dapr => $pruned"; } > "$modfile"
cp go.sum "${modfile%.mod}.sum"

if ! "$GO" build -modfile "$modfile" -trimpath -tags stablecomponents -ldflags "$LDFLAGS" \
        -o "$BINARY.partial" . >"$LOG" 2>&1; then
    tail -n 20 "$LOG" >&2
    echo "error: building daprd failed (full log: $LOG)" >&2
    exit 1
fi
mv "$BINARY.partial" "$BINARY"
echo "$BUILD_ID" > "$STAMP"
cd ../..
link
echo "==> daprd: $("$BINARY" --version) at $BINARY ($(du -m "$BINARY" | cut -f1) MB)"
