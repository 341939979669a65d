#!/usr/bin/env bash
# The jars of the Kafka Connect worker that publishes the outbox when OUTBOX_PUBLISHER=debezium:
#
#   bash scripts/connect.sh jars    # download (Maven Central) and build once, then reuse
#
# infra/connect/pom.xml names them: Apache Kafka's Connect runtime, Debezium's PostgreSQL
# connector and its outbox event router, and our FNV-1a partitioner (built from
# infra/connect/src). They land in .cache/connect/libs, the worker's classpath; Maven's own
# cache (~/.m2) stays outside the clone. `python manage.py run_connect` starts the worker.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CONNECT_DIR="$ROOT/infra/connect"
CACHE="$ROOT/.cache/connect"
LIBS="$CACHE/libs"
BUILD="$CACHE/build"
LOG="$ROOT/.cache/logs/connect-mvn.log"
PARTITIONER_JAR=todo-connect-partitioner.jar

say() { printf '==> %s\n' "$*"; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

# The stamp holds a checksum of the pom and our sources: editing either rebuilds from scratch
# instead of mixing jars of two versions.
wanted_stamp() {
  (cd "$CONNECT_DIR" && find pom.xml src -type f -print0 | sort -z | xargs -0 sha256sum) | sha256sum | cut -d' ' -f1
}

jars() {
  local stamp="$LIBS/.complete" want start=$SECONDS
  want=$(wanted_stamp)
  if [[ -f $stamp && $(<"$stamp") == "$want" && -f $LIBS/$PARTITIONER_JAR ]]; then
    return 0
  fi
  command -v java >/dev/null && command -v javac >/dev/null ||
    die "Java 17+ with its compiler is needed for Kafka Connect: apt-get install openjdk-17-jdk-headless"
  command -v mvn >/dev/null || die "Maven is needed to fetch Kafka Connect and Debezium: apt-get install maven"
  say "connect: downloading Kafka Connect and Debezium from Maven Central, building the partitioner (first run only)…"
  mkdir -p "$(dirname "$LOG")"
  rm -rf "$LIBS" "$BUILD"
  mkdir -p "$LIBS"
  if ! mvn -q -B -f "$CONNECT_DIR/pom.xml" package dependency:copy-dependencies \
    -Dconnect.build.directory="$BUILD" -DoutputDirectory="$LIBS" >"$LOG" 2>&1; then
    tail -n 25 "$LOG" >&2
    die "connect: mvn failed (full log: $LOG)"
  fi
  cp "$BUILD/$PARTITIONER_JAR" "$LIBS/"
  printf '%s\n' "$want" >"$stamp"
  say "connect: jars ready in $LIBS ($((SECONDS - start)) s)"
}

case ${1:-} in
  jars) jars ;;
  *) echo "usage: $0 jars" >&2; exit 2 ;;
esac
