#!/usr/bin/env bash
# The container image without a Docker engine: buildah builds the Dockerfile, podman runs it.
#
#   bash scripts/image.sh build            # the tools (once, as root), the base image, then the image
#   bash scripts/image.sh run NAME ENVFILE COMMAND...
#                                          # one process from the image (detached, host network)
#   bash scripts/image.sh job NAME ENVFILE COMMAND...
#                                          # the same in the foreground; its exit code is the command's
#   bash scripts/image.sh logs NAME        # its output
#   bash scripts/image.sh exec NAME COMMAND...  # a command inside a running container
#   bash scripts/image.sh running PREFIX   # the names of the running containers named PREFIX…
#   bash scripts/image.sh remove NAME...   # stop and remove containers (absent ones are fine)
#   bash scripts/image.sh facts            # the image's size and installed package count
#
# The base is the Dockerfile's PYTHON_IMAGE. It is pulled from its registry when that works; where no
# registry serves it (this lab), a stand-in of the same name is made from Debian packages with
# mmdebstrap, once, and kept in $IMAGE_CACHE_DIR. Container storage stays in podman's default
# (/var/lib/containers), outside the clone, so that a second build reuses every cached layer.
set -euo pipefail
shopt -s inherit_errexit  # a failing step inside $(…) stops the script too
cd "$(dirname "$0")/.."

IMAGE=${IMAGE:-localhost/todo-platform:dev}
IMAGE_CACHE_DIR=${IMAGE_CACHE_DIR:-/var/cache/todo-platform}
PULL_TIMEOUT=${PULL_TIMEOUT:-30}
# runc and the ulimits a container may have here (see the file's comments).
export CONTAINERS_CONF=$PWD/infra/image/containers.conf

say() { echo "==> image: $*"; }
fail() { echo "error: $*" >&2; exit 1; }

# The base image's name has one source: the Dockerfile's ARG default.
python_image() {
    sed -n 's/^ARG PYTHON_IMAGE=//p' Dockerfile
}

tools() {
    local missing=()
    command -v buildah >/dev/null || missing+=(buildah)
    command -v podman >/dev/null || missing+=(podman)
    command -v mmdebstrap >/dev/null || missing+=(mmdebstrap)
    command -v runc >/dev/null || missing+=(runc)
    command -v fuse-overlayfs >/dev/null || missing+=(fuse-overlayfs)
    command -v newuidmap >/dev/null || missing+=(uidmap)
    [ -d /usr/lib/cni ] || missing+=(containernetworking-plugins)
    [ ${#missing[@]} -eq 0 ] && return
    [ "$(id -u)" = 0 ] || fail "missing ${missing[*]}; run as root or: sudo apt-get install ${missing[*]}"
    say "installing ${missing[*]} (Debian packages)…"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
        buildah podman mmdebstrap runc fuse-overlayfs uidmap containernetworking-plugins >/dev/null
}

# A stand-in for python:3.11-slim: Debian's own Python 3.11 on a minimal bookworm. Its Python lives
# in /usr/bin instead of /usr/local/bin; the Dockerfile only needs `python` and `python -m venv`.
standin_base() {
    local name=$1 tarball=$IMAGE_CACHE_DIR/python-3.11-slim-bookworm.tar
    if [ ! -s "$tarball" ]; then
        say "making the stand-in base from Debian packages with mmdebstrap (once, ~2 min)…"
        mkdir -p "$IMAGE_CACHE_DIR"
        local sources=http://deb.debian.org/debian
        [ -f /etc/apt/sources.list.d/debian.sources ] && sources=/etc/apt/sources.list.d/debian.sources
        mmdebstrap --quiet --variant=minbase --format=tar \
            --include=python3.11,python3-venv,python-is-python3,ca-certificates,passwd,netbase,tzdata \
            bookworm "$tarball.partial" "$sources"
        mv "$tarball.partial" "$tarball"
    fi
    podman import --quiet "$tarball" "$name" >/dev/null
}

# Prints the local name of the base image to build on.
base() {
    local name pulled standin
    name=$(python_image)
    case $name in
        */*) pulled=$name ;;
        *) pulled="docker.io/library/$name" ;;
    esac
    standin="localhost/${name##*/}"
    if podman image exists "$pulled"; then
        echo "$pulled"
        return
    fi
    say "pulling $name (at most ${PULL_TIMEOUT} s)…" >&2
    if timeout "$PULL_TIMEOUT" podman pull --quiet "$pulled" >/dev/null 2>&1; then
        echo "$pulled"
        return
    fi
    # Debian bookworm's Python is 3.11: it can stand in for that base only.
    [ "${name##*/}" = python:3.11-slim ] || fail "could not pull $name, and only python:3.11-slim has a stand-in"
    say "no registry serves $name here: building on a stand-in of it made from Debian packages" >&2
    if ! podman image exists "$standin"; then
        standin_base "$standin" >&2
    fi
    echo "$standin"
}

build() {
    tools
    local base_image mounts=()
    base_image=$(base)
    # pip inside the build reaches PyPI through the same TLS proxy as the host: the host's CA bundle
    # and pip configuration, read-only, for the RUN steps only (they are not in the image).
    [ -f /etc/ssl/certs/ca-certificates.crt ] && mounts+=(-v /etc/ssl/certs/ca-certificates.crt:/etc/ssl/certs/ca-certificates.crt:ro)
    [ -f /etc/pip.conf ] && mounts+=(-v /etc/pip.conf:/etc/pip.conf:ro)
    say "building $IMAGE on $base_image…"
    # --isolation chroot: RUN steps in an OCI runtime fail here (crun: "cgroups in hybrid mode not
    # supported"); --layers: reuse each step's cached layer while its inputs are unchanged (the
    # dependencies when only the code changed).
    buildah bud --quiet --layers --isolation chroot --pull-never --network host "${mounts[@]}" \
        --build-arg "PYTHON_IMAGE=$base_image" --tag "$IMAGE" . >/dev/null
    facts
}

facts() {
    local bytes packages
    bytes=$(podman image inspect --format '{{.Size}}' "$IMAGE")
    packages=$(podman run --rm --network none "$IMAGE" pip list --format freeze 2>/dev/null | wc -l)
    say "$IMAGE: $((bytes / 1000000)) MB, $packages Python packages installed"
}

# As the Procfile's commands run under `make run`: through /bin/sh, so that ${VAR:-default} and
# VAR=value prefixes work, and exec'd, so that the container's main process is the program itself.
container() {
    local mode=$1 name=$2 env_file=$3
    shift 3
    podman image exists "$IMAGE" || fail "no image $IMAGE: build it with make image"
    podman run $mode --name "$name" --network host --env-file "$env_file" "$IMAGE" /bin/sh -c "exec env $*"
}

case "${1:-}" in
    build) build ;;
    facts) facts ;;
    run) shift; container --detach "$@" >/dev/null ;;
    job) shift; container --rm "$@" ;;
    logs) podman logs "$2" 2>&1 ;;
    exec) shift; podman exec "$@" ;;
    running) podman ps --filter "name=^$2" --format '{{.Names}}' ;;
    remove) shift; [ $# -eq 0 ] || podman rm --force --ignore --time 10 "$@" >/dev/null ;;
    *) fail "usage: $0 build | facts | run|job NAME ENVFILE COMMAND... | logs NAME | exec NAME COMMAND... | running PREFIX | remove NAME..." ;;
esac
