#!/usr/bin/env bash
# A real Kubernetes API server for the chart (make kube, make kube-tools, tests/helm/test_kube.py).
#   build    builds kine (an etcd API over SQLite) and kube-apiserver into the build cache, once per
#            version (scripts/build_cache.sh), and prints their paths (KINE=… and KUBE_APISERVER=… lines).
#   up DIR   starts kine (SQLite in DIR) and kube-apiserver on loopback ports, with a bearer token of group
#            system:masters, RBAC and service-account keys made with openssl; writes DIR/kubeconfig and
#            returns once the server is ready. No controller, scheduler or kubelet runs: objects are
#            validated and stored, nothing else happens to them.
#   down DIR stops what `up DIR` started (DIR keeps the logs).
#   run      starts a server in a fresh temporary folder, installs, upgrades, rolls back and uninstalls every
#            values profile of the chart on it (infra/kube/lifecycle.py), prints the transcript and stops
#            the server.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/build_cache.sh

KINE_VERSION=v0.17.5
APISERVER_MODULE=infra/kube/apiserver
# The Kubernetes release is the one the wrapper module requires: go.mod is the one place to change it.
KUBE_VERSION="$(awk '{for (i = 1; i < NF; i++) if ($i == "k8s.io/kubernetes" && $(i + 1) ~ /^v[0-9]/) {print $(i + 1); exit}}' \
    "$APISERVER_MODULE/go.mod")"
[[ -n "$KUBE_VERSION" ]] || { echo "error: no k8s.io/kubernetes requirement in $APISERVER_MODULE/go.mod" >&2; exit 1; }

build_kine() {
    local gobin
    gobin="$(mktemp -d)"
    # cgo: kine's SQLite driver is the C library.
    GOBIN="$gobin" CGO_ENABLED=1 nice -n 19 "$GO" install -trimpath -ldflags "-s -w" \
        "github.com/k3s-io/kine@$KINE_VERSION"
    mv "$gobin/kine" "$1" && rmdir "$gobin"
}

# The version stamps of upstream's release build (hack/lib/version.sh): without them the server says
# v0.0.0 and a chart with a kubeVersion constraint (ours: >=1.29.0-0) refuses to install.
apiserver_ldflags() {
    local minor="${KUBE_VERSION#v1.}"
    minor="${minor%%.*}"
    local flags="-s -w"
    for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
        flags+=" -X $pkg.gitVersion=$KUBE_VERSION -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor"
        flags+=" -X $pkg.gitTreeState=clean"
    done
    echo "$flags"
}

build_apiserver() {
    local output
    output="$(realpath "$1")"
    (cd "$APISERVER_MODULE" && CGO_ENABLED=0 nice -n 19 "$GO" build -trimpath -ldflags "$(apiserver_ldflags)" \
        -o "$output" .)
}

build() {
    GO="$(go_command kube-apiserver)"
    KINE="$(cached_build kine "$KINE_VERSION" build_kine)"
    # A change of the wrapper module (a new release, a new pin) or of the version stamps is a new binary.
    local recipe
    recipe="$(cat "$APISERVER_MODULE"/go.mod "$APISERVER_MODULE"/go.sum "$APISERVER_MODULE"/main.go \
        <(apiserver_ldflags) | sha256sum | cut -c1-12)"
    KUBE_APISERVER="$(cached_build kube-apiserver "$KUBE_VERSION-$recipe" build_apiserver)"
}

free_port() {
    .venv/bin/python -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# Polls the server's /readyz (every post-start hook done: RBAC bootstrap roles, system namespaces) with a
# deadline; stops at once if a process died.
wait_ready() {
    local dir="$1" url="$2" deadline=$((SECONDS + 120))
    until curl -sf --cacert "$dir/server.crt" -H "Authorization: Bearer $(cat "$dir/token")" "$url/readyz" >/dev/null; do
        for process in kine kube-apiserver; do
            if ! kill -0 "$(cat "$dir/$process.pid")" 2>/dev/null; then
                tail -n 20 "$dir/$process.log" >&2
                echo "error: $process exited (log: $dir/$process.log)" >&2
                return 1
            fi
        done
        if ((SECONDS > deadline)); then
            tail -n 20 "$dir/kube-apiserver.log" >&2
            echo "error: kube-apiserver not ready after 120 s (log: $dir/kube-apiserver.log)" >&2
            return 1
        fi
        sleep 0.2
    done
}

write_kubeconfig() {
    local dir="$1" url="$2"
    cat > "$dir/kubeconfig" <<KUBECONFIG
apiVersion: v1
kind: Config
clusters: [{name: kube, cluster: {server: "$url", certificate-authority: "$dir/server.crt"}}]
users: [{name: admin, user: {token: "$(cat "$dir/token")"}}]
contexts: [{name: kube, context: {cluster: kube, user: admin}}]
current-context: kube
KUBECONFIG
    chmod 600 "$dir/kubeconfig"
}

up() {
    local dir
    mkdir -p "$1" && dir="$(realpath "$1")"
    build
    local kine_port apiserver_port
    kine_port="$(free_port)"
    apiserver_port="$(free_port)"
    # The serving certificate (its own CA, for 127.0.0.1), the service-account signing key pair, the token.
    openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=kube-apiserver \
        -addext subjectAltName=IP:127.0.0.1,DNS:localhost -keyout "$dir/server.key" -out "$dir/server.crt" 2>/dev/null
    openssl genrsa -out "$dir/service-account.key" 2048 2>/dev/null
    openssl rsa -in "$dir/service-account.key" -pubout -out "$dir/service-account.pub" 2>/dev/null
    openssl rand -hex 32 > "$dir/token"
    echo "$(cat "$dir/token"),admin,admin,system:masters" > "$dir/tokens.csv"
    chmod 600 "$dir"/*.key "$dir/token" "$dir/tokens.csv"

    "$KINE" --endpoint "sqlite://$dir/kine.db?_journal=WAL&cache=shared&_busy_timeout=30000" \
        --listen-address "127.0.0.1:$kine_port" --metrics-bind-address 127.0.0.1:0 \
        >"$dir/kine.log" 2>&1 &
    echo $! > "$dir/kine.pid"
    # --endpoint-reconciler-type=none: no Endpoints for the kubernetes Service (nothing reads them here);
    # priority and fairness off: its configuration controller is not worth a start on two cores.
    "$KUBE_APISERVER" --etcd-servers "http://127.0.0.1:$kine_port" \
        --bind-address 127.0.0.1 --advertise-address 127.0.0.1 --secure-port "$apiserver_port" \
        --tls-cert-file "$dir/server.crt" --tls-private-key-file "$dir/server.key" --cert-dir "$dir/certs" \
        --token-auth-file "$dir/tokens.csv" --anonymous-auth=false --authorization-mode RBAC \
        --service-account-issuer https://kubernetes.default.svc.cluster.local \
        --service-account-key-file "$dir/service-account.pub" \
        --service-account-signing-key-file "$dir/service-account.key" \
        --service-cluster-ip-range 10.96.0.0/16 \
        --endpoint-reconciler-type none --enable-priority-and-fairness=false --profiling=false \
        >"$dir/kube-apiserver.log" 2>&1 &
    echo $! > "$dir/kube-apiserver.pid"

    local url="https://127.0.0.1:$apiserver_port" started=$SECONDS
    write_kubeconfig "$dir" "$url"
    wait_ready "$dir" "$url"
    echo "==> kube-apiserver $KUBE_VERSION on kine $KINE_VERSION: ready at $url in $((SECONDS - started)) s" \
        "(kubeconfig: $dir/kubeconfig)" >&2
}

down() {
    local dir="$1" pid
    for process in kube-apiserver kine; do
        pid="$(cat "$dir/$process.pid" 2>/dev/null)" || continue
        kill "$pid" 2>/dev/null || true
        # Each exits within seconds of SIGTERM: wait for it (with a deadline), so that its port is free.
        for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        kill -9 "$pid" 2>/dev/null || true
        rm -f "$dir/$process.pid"
    done
}

case "${1:-}" in
    build)
        build
        echo "KINE=$KINE"
        echo "KUBE_APISERVER=$KUBE_APISERVER"
        ;;
    up)
        up "${2:?usage: $0 up DIR}"
        ;;
    down)
        down "${2:?usage: $0 down DIR}"
        ;;
    run)
        bash scripts/tools.sh
        dir="$(mktemp -d -t todo-kube.XXXXXX)"
        # The server's folder (its logs) stays only when something failed.
        trap 'status=$?; down "$dir"; if ((status == 0)); then rm -rf "$dir"; else echo "logs: $dir" >&2; fi' EXIT
        up "$dir"
        .venv/bin/python -u infra/kube/lifecycle.py --kubeconfig "$dir/kubeconfig" "${@:2}"
        ;;
    *)
        echo "usage: $0 build | up DIR | down DIR | run [--profile NAME]..." >&2
        exit 2
        ;;
esac
