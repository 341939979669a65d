# Sourced by the scripts that build the project's Go tools (scripts/tools.sh: helm; scripts/kube.sh: kine,
# kube-apiserver). The Go module and build caches and the built binaries live OUTSIDE the clone, so that a
# fresh clone on the same machine (a second CI run) reuses them: one build per tool version, not per clone.
# TODO_BUILD_CACHE moves the whole cache (default /var/cache/todo-platform; for a non-root user whose
# /var/cache is not writable, ~/.cache/todo-platform).
if [[ -z "${TODO_BUILD_CACHE:-}" ]]; then
    TODO_BUILD_CACHE=/var/cache/todo-platform
    mkdir -p "$TODO_BUILD_CACHE" 2>/dev/null && [[ -w "$TODO_BUILD_CACHE" ]] \
        || TODO_BUILD_CACHE="${XDG_CACHE_HOME:-$HOME/.cache}/todo-platform"
fi
export TODO_BUILD_CACHE
# Modules and compiled packages are shared by every tool (Go locks both caches itself); binaries are named
# <tool>-<build id>, so a changed version or build recipe is a new file and never a stale one.
export GOMODCACHE="$TODO_BUILD_CACHE/go/mod" GOCACHE="$TODO_BUILD_CACHE/go/build" GOTOOLCHAIN=local
BUILD_CACHE_BIN="$TODO_BUILD_CACHE/bin"

# The go command: on PATH, or where the official tarball installs it.
go_command() {
    local go
    go="$(command -v go || true)"
    [[ -z "$go" && -x /usr/local/go/bin/go ]] && go=/usr/local/go/bin/go
    if [[ -z "$go" ]]; then
        echo "error: Go 1.26+ is needed to build $1 (apt-get install golang-go, or put go on PATH)" >&2
        return 1
    fi
    echo "$go"
}

# cached_build TOOL BUILD_ID BUILDER: prints the path of $BUILD_CACHE_BIN/TOOL-BUILD_ID, first building it
# with `BUILDER <output file>` (at lowest CPU priority: the machine is shared) unless it is there. A lock
# per tool makes a concurrent run wait for the build instead of repeating it; the binary appears by rename,
# whole or not at all. Progress goes to stderr, the build's output to .cache/logs/TOOL-build.log.
cached_build() {
    local tool="$1" build_id="$2" builder="$3"
    local binary="$BUILD_CACHE_BIN/$tool-$build_id"
    mkdir -p "$BUILD_CACHE_BIN" "$TODO_BUILD_CACHE/locks"
    exec {lock_fd}>"$TODO_BUILD_CACHE/locks/$tool.lock"
    flock "$lock_fd"
    if [[ ! -x "$binary" ]]; then
        local log="$PWD/.cache/logs/$tool-build.log" started=$SECONDS
        mkdir -p "$(dirname "$log")"
        echo "==> $tool: building $build_id into $BUILD_CACHE_BIN (once per version; minutes on a cold cache)…" >&2
        if ! "$builder" "$binary.partial" >"$log" 2>&1; then
            exec {lock_fd}>&-
            tail -n 20 "$log" >&2
            echo "error: building $tool failed (full log: $log)" >&2
            return 1
        fi
        mv "$binary.partial" "$binary"
        echo "==> $tool: built in $((SECONDS - started)) s, $(du -m "$binary" | cut -f1) MB" >&2
    fi
    exec {lock_fd}>&-
    echo "$binary"
}
