#!/usr/bin/env bash
# Local infrastructure for development and tests: Kafka, PostgreSQL, Redis.
#
#   bash scripts/infra.sh up      # start (or reuse) everything, idempotent
#   bash scripts/infra.sh stores  # PostgreSQL and Redis only (make test-fast: no Kafka)
#   bash scripts/infra.sh down    # stop only what this script started
#   bash scripts/infra.sh status  # one line per service
#
# Honours DATABASE_URL, REDIS_URL and KAFKA_BOOTSTRAP_SERVERS: a server that
# already answers there is used as is. Everything this script downloads or runs
# lives under <repo>/.cache/ (git-ignored), so a second `up` is fast.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CACHE="$ROOT/.cache"
RUN_DIR="$CACHE/run"
LOG_DIR="$CACHE/logs"

DEFAULT_DATABASE_URL="postgres://todo:todo@127.0.0.1:5432/todo"
DEFAULT_REDIS_URL="redis://127.0.0.1:6379/0"
LOCAL_KAFKA="127.0.0.1:9092"

KAFKA_POM="$ROOT/infra/kafka/pom.xml"
KAFKA_TEMPLATE="$ROOT/infra/kafka/server.properties.template"
KAFKA_LOG4J="$ROOT/infra/kafka/log4j2.yaml"
KAFKA_HOME="$CACHE/kafka"
KAFKA_LIBS="$KAFKA_HOME/libs"
KAFKA_DATA="$KAFKA_HOME/data"
KAFKA_PROPS="$KAFKA_HOME/server.properties"
KAFKA_PID="$RUN_DIR/kafka.pid"

REDIS_DIR="$CACHE/redis"
REDIS_PID="$RUN_DIR/redis.pid"

WAIT_SECONDS=60
APT_UPDATED=0

say() { printf '==> %s\n' "$*"; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }
is_root() { [[ $(id -u) -eq 0 ]]; }
is_local_host() { [[ $1 == 127.0.0.1 || $1 == localhost || $1 == ::1 ]]; }

# Prints the last lines of a log so a failed start explains itself.
show_tail() {
  local file=$1
  [[ -f $file ]] || return 0
  printf -- '--- last lines of %s ---\n' "$file" >&2
  tail -n 25 "$file" >&2 || true
}

# True when the pid file names a live process whose command line matches the
# pattern (guards against a stale pid file whose pid was reused).
pid_alive() {
  local pidfile=$1 pattern=$2 pid
  [[ -f $pidfile ]] || return 1
  pid=$(<"$pidfile")
  [[ $pid =~ ^[0-9]+$ ]] || return 1
  kill -0 "$pid" 2>/dev/null || return 1
  tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q -- "$pattern"
}

# SIGTERM, wait for a clean shutdown, SIGKILL only past the deadline.
stop_pid() {
  local pidfile=$1 pattern=$2 name=$3 pid deadline
  if ! pid_alive "$pidfile" "$pattern"; then
    rm -f "$pidfile"
    return 0
  fi
  pid=$(<"$pidfile")
  say "$name: stopping (pid $pid)"
  kill -TERM "$pid" 2>/dev/null || true
  deadline=$((SECONDS + 30))
  while kill -0 "$pid" 2>/dev/null && ((SECONDS < deadline)); do
    sleep 0.3
  done
  if kill -0 "$pid" 2>/dev/null; then
    say "$name: did not stop within 30 s, killing"
    kill -KILL "$pid" 2>/dev/null || true
  fi
  rm -f "$pidfile"
}

# apt-get update only when something actually has to be installed, and once.
apt_install() {
  is_root || die "installing $* needs root (apt-get install $*)"
  # A temporary policy-rc.d stops the packages' postinst from starting their
  # own system services (Debian's postgresql would grab 5432 with a cluster
  # we don't control); we start our own instances below instead.
  local policy=/usr/sbin/policy-rc.d own_policy=0
  if [[ ! -e $policy ]]; then
    printf '#!/bin/sh\nexit 101\n' >"$policy"
    chmod 755 "$policy"
    own_policy=1
  fi
  local rc=0 log="$LOG_DIR/apt.log"
  {
    if ((APT_UPDATED == 0)); then
      say "apt: apt-get update"
      DEBIAN_FRONTEND=noninteractive apt-get update -q >>"$log" 2>&1
      APT_UPDATED=1
    fi
    say "apt: apt-get install $*"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "$@" >>"$log" 2>&1
  } || rc=$?
  if ((own_policy)); then rm -f "$policy"; fi
  if ((rc != 0)); then
    show_tail "$log"
    die "apt-get install $* failed (exit $rc, full log: $log)"
  fi
}

# Splits a URL into shell variables <prefix>_HOST, _PORT, _USER, _PASSWORD,
# _PATH (percent-decoded); python3 is always there and gets quoting right.
parse_url() {
  local prefix=$1 url=$2 default_port=$3
  eval "$(python3 - "$prefix" "$url" "$default_port" <<'PY'
import shlex, sys
from urllib.parse import urlsplit, unquote
prefix, url, default_port = sys.argv[1], sys.argv[2], sys.argv[3]
u = urlsplit(url)
values = {
    "HOST": u.hostname or "127.0.0.1",
    "PORT": str(u.port or default_port),
    "USER": unquote(u.username or ""),
    "PASSWORD": unquote(u.password or ""),
    "PATH": unquote(u.path.lstrip("/")),
}
for key, value in values.items():
    print(f"{prefix}_{key}={shlex.quote(value)}")
PY
)"
}

# ---------------------------------------------------------------- Kafka ----

# Succeeds when some server in the comma-separated list answers a Kafka
# ApiVersions request: a bare TCP connect would also accept a half-started
# JVM or an unrelated program on the port.
kafka_answers() {
  python3 - "$1" <<'PY'
import socket, struct, sys
client_id = b"infra.sh"
request = struct.pack(">hhih", 18, 0, 7, len(client_id)) + client_id  # ApiVersions v0
for server in sys.argv[1].split(","):
    host, _, port = server.strip().rpartition(":")
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=2) as s:
            s.settimeout(2)
            s.sendall(struct.pack(">i", len(request)) + request)
            header = b""
            while len(header) < 8:
                chunk = s.recv(8 - len(header))
                if not chunk:
                    break
                header += chunk
            if len(header) == 8 and struct.unpack(">ii", header)[1] == 7:
                sys.exit(0)
    except (OSError, ValueError):
        pass
sys.exit(1)
PY
}

kafka_version() {
  sed -n 's:.*<kafka.version>\(.*\)</kafka.version>.*:\1:p' "$KAFKA_POM"
}

need_java() {
  command -v java >/dev/null ||
    die "Java 17+ is needed to run Kafka: apt-get install openjdk-17-jre-headless"
  local major
  major=$(java -version 2>&1 | sed -n 's/.*version "\([0-9]*\).*/\1/p' | head -n 1)
  [[ -n $major && $major -ge 17 ]] ||
    die "Java 17+ is needed to run Kafka (found ${major:-unknown}): apt-get install openjdk-17-jre-headless"
}

# The stamp holds the pom's checksum, so editing a version in the pom (or an
# interrupted copy) triggers a clean re-download instead of mixing jars.
kafka_fetch_jars() {
  local version stamp want
  version=$(kafka_version)
  stamp="$KAFKA_LIBS/.complete"
  want=$(sha256sum "$KAFKA_POM" | cut -d' ' -f1)
  if [[ -f $stamp && $(<"$stamp") == "$want" && -f $KAFKA_LIBS/kafka_2.13-$version.jar ]]; then
    return 0
  fi
  # Maven is only needed for this one-time download, not to run the broker.
  command -v mvn >/dev/null ||
    die "Maven is needed to download Kafka: apt-get install maven"
  say "kafka: downloading Kafka $version jars from Maven Central (first run only)…"
  rm -rf "$KAFKA_LIBS"
  mkdir -p "$KAFKA_LIBS"
  if ! mvn -q -B -f "$KAFKA_POM" dependency:copy-dependencies \
    -DoutputDirectory="$KAFKA_LIBS" >"$LOG_DIR/kafka-mvn.log" 2>&1; then
    show_tail "$LOG_DIR/kafka-mvn.log"
    die "kafka: mvn dependency:copy-dependencies failed (full log: $LOG_DIR/kafka-mvn.log)"
  fi
  [[ -f $KAFKA_LIBS/kafka_2.13-$version.jar ]] || die "kafka: kafka_2.13-$version.jar missing after download"
  printf '%s\n' "$want" >"$stamp"
}

# Rendered every time so template edits apply on the next start.
kafka_render_config() {
  sed "s|@DATA_DIR@|$KAFKA_DATA|g" "$KAFKA_TEMPLATE" >"$KAFKA_PROPS"
}

kafka_format_storage() {
  [[ -f $KAFKA_DATA/meta.properties ]] && return 0
  local cluster_id_file="$KAFKA_HOME/cluster.id"
  if [[ ! -s $cluster_id_file ]]; then
    java -cp "$KAFKA_LIBS/*" kafka.tools.StorageTool random-uuid >"$cluster_id_file"
  fi
  say "kafka: formatting KRaft storage (first run only)…"
  if ! java -cp "$KAFKA_LIBS/*" -Dlog4j2.configurationFile="$KAFKA_LOG4J" -Dkafka.logs.dir="$LOG_DIR" \
    kafka.tools.StorageTool format --standalone -t "$(<"$cluster_id_file")" -c "$KAFKA_PROPS" \
    >"$LOG_DIR/kafka-format.log" 2>&1; then
    show_tail "$LOG_DIR/kafka-format.log"
    die "kafka: storage format failed"
  fi
}

kafka_start() {
  local pid deadline
  # setsid: the broker must outlive this shell and not get its Ctrl-C.
  setsid nohup java -Xms512m -Xmx512m -XX:+UseG1GC -XX:MaxGCPauseMillis=20 \
    -Djava.awt.headless=true \
    -Dlog4j2.configurationFile="$KAFKA_LOG4J" -Dkafka.logs.dir="$LOG_DIR" \
    -cp "$KAFKA_LIBS/*" kafka.Kafka "$KAFKA_PROPS" \
    >"$LOG_DIR/kafka.out" 2>&1 </dev/null &
  pid=$!
  printf '%s\n' "$pid" >"$KAFKA_PID"
  say "kafka: starting broker (pid $pid), waiting up to ${WAIT_SECONDS}s…"
  deadline=$((SECONDS + WAIT_SECONDS))
  until kafka_answers "$LOCAL_KAFKA"; do
    if ! kill -0 "$pid" 2>/dev/null; then
      rm -f "$KAFKA_PID"
      show_tail "$LOG_DIR/kafka.out"
      show_tail "$LOG_DIR/kafka.log"
      die "kafka: broker exited during startup"
    fi
    if ((SECONDS >= deadline)); then
      show_tail "$LOG_DIR/kafka.log"
      die "kafka: broker did not answer on $LOCAL_KAFKA within ${WAIT_SECONDS}s (pid $pid still running; see $LOG_DIR/kafka.log)"
    fi
    sleep 0.3
  done
  say "kafka: ready on $LOCAL_KAFKA (started, pid $pid)"
}

kafka_up() {
  local servers=${KAFKA_BOOTSTRAP_SERVERS:-$LOCAL_KAFKA}
  if [[ $servers != "$LOCAL_KAFKA" && $servers != localhost:9092 ]]; then
    # Someone pointed us elsewhere: never start a local broker the app won't use.
    kafka_answers "$servers" ||
      die "kafka: nothing answers at KAFKA_BOOTSTRAP_SERVERS=$servers (unset it to run a local broker on $LOCAL_KAFKA)"
    say "kafka: ready on $servers (external, from KAFKA_BOOTSTRAP_SERVERS)"
    return 0
  fi
  if kafka_answers "$LOCAL_KAFKA"; then
    if pid_alive "$KAFKA_PID" kafka.Kafka; then
      say "kafka: ready on $LOCAL_KAFKA (already running, pid $(<"$KAFKA_PID"))"
    else
      say "kafka: ready on $LOCAL_KAFKA (already running, not started by this script)"
    fi
    return 0
  fi
  # A live pid that doesn't answer is a broker still starting up or wedged:
  # replace it rather than fight over the ports.
  stop_pid "$KAFKA_PID" kafka.Kafka kafka
  need_java
  mkdir -p "$KAFKA_HOME" "$KAFKA_DATA"
  kafka_fetch_jars
  kafka_render_config
  kafka_format_storage
  kafka_start
}

kafka_down() {
  stop_pid "$KAFKA_PID" kafka.Kafka kafka
}

kafka_status() {
  local servers=${KAFKA_BOOTSTRAP_SERVERS:-$LOCAL_KAFKA} owner=""
  pid_alive "$KAFKA_PID" kafka.Kafka && owner=", ours, pid $(<"$KAFKA_PID")"
  if kafka_answers "$servers"; then
    echo "kafka:    up on $servers${owner}"
  elif [[ -n $owner ]]; then
    echo "kafka:    starting or unresponsive on $servers${owner}"
  else
    echo "kafka:    down ($servers)"
  fi
}

# ----------------------------------------------------------- PostgreSQL ----

PG_BIN=""
PG_BASE=""

pg_find_bin() {
  local dir
  # Newest major version first (sort -V handles 9.6 < 15 < 17).
  while IFS= read -r dir; do
    if [[ -x $dir/pg_ctl && -x $dir/initdb && -x $dir/psql ]]; then
      PG_BIN=$dir
      return 0
    fi
  done < <(printf '%s\n' /usr/lib/postgresql/*/bin | sort -rV)
  return 1
}

# postgres refuses to run as root, so when we are root the cluster belongs to
# the `postgres` OS user (created by the Debian package).
pg_owner_run() {
  if is_root; then
    (cd / && runuser -u postgres -- "$@")
  else
    "$@"
  fi
}

# The cluster lives in .cache/postgres unless the postgres OS user cannot
# reach it (e.g. the repo sits under /root, mode 700): then it moves to
# /var/lib/postgresql/dev-clusters/<repo-hash>, which that user owns.
pg_choose_base() {
  PG_BASE="$CACHE/postgres"
  # Before the package is installed there is no postgres user and no cluster.
  is_root && id postgres >/dev/null 2>&1 || return 0
  mkdir -p "$PG_BASE"
  chown postgres: "$PG_BASE"
  if ! runuser -u postgres -- test -w "$PG_BASE" 2>/dev/null; then
    local hash
    hash=$(printf '%s' "$ROOT" | cksum | cut -d' ' -f1)
    PG_BASE="/var/lib/postgresql/dev-clusters/$hash"
    say "postgres: the postgres OS user cannot reach $CACHE, using $PG_BASE for the cluster"
    mkdir -p "$PG_BASE"
    chown postgres: "$(dirname "$PG_BASE")" "$PG_BASE"
  fi
}

pg_data() { echo "$PG_BASE/data"; }
pg_sock() { echo "$PG_BASE/run"; }

pg_ours_running() {
  [[ -n $PG_BIN && -f $(pg_data)/PG_VERSION ]] || return 1
  pg_owner_run "$PG_BIN/pg_ctl" status -D "$(pg_data)" >/dev/null 2>&1
}

pg_credentials_work() {
  PGPASSWORD=$DB_PASSWORD PGCONNECT_TIMEOUT=3 "${PG_BIN:+$PG_BIN/}psql" -X -q -w -h "$DB_HOST" -p "$DB_PORT" \
    -U "$DB_USER" -d "$DB_PATH" -tAc 'select 1' >/dev/null 2>&1
}

# Creates/updates the app role and database through an admin connection given
# as psql arguments. CREATEDB: Django's test runner creates test_<name>.
# REPLICATION: with OUTBOX_PUBLISHER=debezium the connector streams as this role.
# The password is (re)set every time so the role always matches DATABASE_URL.
pg_provision() {
  "$@" -X -q -v ON_ERROR_STOP=1 -d postgres -v user="$DB_USER" -v pw="$DB_PASSWORD" \
    -v db="$DB_PATH" >/dev/null <<'SQL'
SELECT format('CREATE ROLE %I LOGIN CREATEDB', :'user')
  WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = :'user') \gexec
SELECT format('ALTER ROLE %I LOGIN CREATEDB REPLICATION PASSWORD %L', :'user', :'pw') \gexec
SELECT format('CREATE DATABASE %I OWNER %I', :'db', :'user')
  WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = :'db') \gexec
SQL
}

pg_install_if_missing() {
  pg_find_bin && return 0
  if ! is_root; then
    die "postgres: no PostgreSQL server binaries in /usr/lib/postgresql/*/bin and nothing answers at $DB_HOST:$DB_PORT.
  Fix one of: sudo apt-get install postgresql
              export DATABASE_URL=postgres://user:pass@host:port/db   (a running server)"
  fi
  say "postgres: installing PostgreSQL with apt (first run only)…"
  apt_install postgresql
  pg_find_bin || die "postgres: installed, but no binaries found in /usr/lib/postgresql/*/bin"
}

pg_init_cluster() {
  local data sock
  data=$(pg_data)
  sock=$(pg_sock)
  mkdir -p "$PG_BASE" "$sock"
  is_root && chown postgres: "$PG_BASE" "$sock"
  # Only the owner may use the socket: it is trust-authenticated as superuser.
  chmod 700 "$sock"
  [[ -f $data/PG_VERSION ]] && return 0
  say "postgres: creating cluster in $data (first run only)…"
  pg_owner_run "$PG_BIN/initdb" -D "$data" -U postgres -E UTF8 --no-locale \
    --auth-local=trust --auth-host=scram-sha-256 >"$LOG_DIR/postgres-initdb.log" 2>&1 || {
    show_tail "$LOG_DIR/postgres-initdb.log"
    die "postgres: initdb failed"
  }
  # Throwaway dev/test data: durability settings off make migrations and the
  # test database setup several times faster.
  cat >>"$data/postgresql.conf" <<EOF

# --- added by scripts/infra.sh ---
listen_addresses = '127.0.0.1'
unix_socket_directories = '$sock'
fsync = off
synchronous_commit = off
full_page_writes = off
max_connections = 200
# Logical decoding, for OUTBOX_PUBLISHER=debezium (Debezium reads the outbox through a replication slot).
wal_level = logical
max_replication_slots = 10
max_wal_senders = 10
EOF
}

# OUTBOX_PUBLISHER=debezium needs logical decoding; a cluster made before this script set it
# (or someone else's server) is left alone: it says what to do instead.
pg_check_logical() {
  [[ ${OUTBOX_PUBLISHER:-relay} == debezium ]] || return 0
  local level
  level=$(PGPASSWORD=$DB_PASSWORD "${PG_BIN:+$PG_BIN/}psql" -X -q -w -h "$DB_HOST" -p "$DB_PORT" -U "$DB_USER" \
    -d "$DB_PATH" -tAc 'show wal_level' 2>/dev/null || true)
  [[ $level == logical ]] && return 0
  say "postgres: OUTBOX_PUBLISHER=debezium needs wal_level=logical, and this server has wal_level=${level:-unknown}."
  say "  As a superuser: ALTER SYSTEM SET wal_level = logical; then restart the server"
  say "  (this script's own cluster: make stop && make infra). The connector fails until then."
}

pg_start() {
  local log="$LOG_DIR/postgres.log"
  touch "$log"
  is_root && chown postgres: "$log"
  say "postgres: starting on 127.0.0.1:$DB_PORT…"
  # The port comes from DATABASE_URL at each start, so changing it just works.
  if ! pg_owner_run "$PG_BIN/pg_ctl" start -D "$(pg_data)" -l "$log" -w -t "$WAIT_SECONDS" \
    -o "-p $DB_PORT" >/dev/null; then
    show_tail "$log"
    die "postgres: pg_ctl start failed (is another server using port $DB_PORT?)"
  fi
  "$PG_BIN/pg_isready" -q -h 127.0.0.1 -p "$DB_PORT" -t 10 || die "postgres: started but pg_isready fails"
}

pg_up() {
  parse_url DB "${DATABASE_URL:-$DEFAULT_DATABASE_URL}" 5432
  pg_find_bin || true
  pg_choose_base

  if is_local_host "$DB_HOST" && pg_ours_running; then
    pg_provision "$PG_BIN/psql" -h "$(pg_sock)" -p "$DB_PORT" -U postgres ||
      die "postgres: creating role/database failed"
    say "postgres: ready on $DB_HOST:$DB_PORT/$DB_PATH (already running, ours)"
    pg_check_logical
    return 0
  fi

  if command -v "${PG_BIN:+$PG_BIN/}pg_isready" >/dev/null &&
    "${PG_BIN:+$PG_BIN/}pg_isready" -q -h "$DB_HOST" -p "$DB_PORT" -t 3; then
    if pg_credentials_work; then
      say "postgres: ready on $DB_HOST:$DB_PORT/$DB_PATH (already running, not started by this script)"
      pg_check_logical
      return 0
    fi
    # Foreign local server (e.g. Debian's own cluster): as root we can still
    # add our role through its socket with peer auth as the postgres user.
    if is_root && is_local_host "$DB_HOST" &&
      pg_provision pg_owner_run "${PG_BIN:+$PG_BIN/}psql" -p "$DB_PORT" 2>/dev/null && pg_credentials_work; then
      say "postgres: ready on $DB_HOST:$DB_PORT/$DB_PATH (existing server, created role/database $DB_USER/$DB_PATH)"
      pg_check_logical
      return 0
    fi
    die "postgres: a server answers at $DB_HOST:$DB_PORT but login as '$DB_USER' to '$DB_PATH' fails; fix DATABASE_URL or stop that server"
  fi

  is_local_host "$DB_HOST" ||
    die "postgres: nothing answers at $DB_HOST:$DB_PORT (DATABASE_URL points to a remote host, so nothing is started locally)"

  pg_install_if_missing
  pg_choose_base # again: the package may just have created the postgres user
  pg_init_cluster
  pg_start
  pg_provision "$PG_BIN/psql" -h "$(pg_sock)" -p "$DB_PORT" -U postgres || die "postgres: creating role/database failed"
  pg_credentials_work || die "postgres: started, but login as '$DB_USER' fails"
  local pid
  pid=$(head -n 1 "$(pg_data)/postmaster.pid")
  say "postgres: ready on $DB_HOST:$DB_PORT/$DB_PATH (started, pid $pid)"
}

pg_down() {
  pg_find_bin || return 0
  pg_choose_base
  pg_ours_running || return 0
  say "postgres: stopping"
  pg_owner_run "$PG_BIN/pg_ctl" stop -D "$(pg_data)" -m fast -w -t 30 >/dev/null
}

pg_status() {
  parse_url DB "${DATABASE_URL:-$DEFAULT_DATABASE_URL}" 5432
  local where="$DB_HOST:$DB_PORT/$DB_PATH" owner=""
  if pg_find_bin; then
    pg_choose_base
    pg_ours_running && owner=", ours, pid $(head -n 1 "$(pg_data)/postmaster.pid")"
  fi
  if command -v "${PG_BIN:+$PG_BIN/}pg_isready" >/dev/null &&
    "${PG_BIN:+$PG_BIN/}pg_isready" -q -h "$DB_HOST" -p "$DB_PORT" -t 2; then
    if pg_credentials_work; then
      echo "postgres: up on $where${owner}"
    else
      echo "postgres: up on $DB_HOST:$DB_PORT${owner}, but login as '$DB_USER' fails"
    fi
  else
    echo "postgres: down ($where)"
  fi
}

# ---------------------------------------------------------------- Redis ----

redis_answers() {
  local host=$1 port=$2 password=$3
  if command -v redis-cli >/dev/null; then
    local auth=()
    [[ -n $password ]] && auth=(--no-auth-warning -a "$password")
    [[ $(timeout 3 redis-cli -h "$host" -p "$port" "${auth[@]}" ping 2>/dev/null) == PONG ]]
    return
  fi
  # No redis-cli (yet): speak RESP by hand over bash's /dev/tcp.
  # shellcheck disable=SC2016  # $1..$3 are expanded by the inner bash
  timeout 3 bash -c '
    exec 3<>"/dev/tcp/$1/$2" || exit 1
    [[ -n $3 ]] && printf "AUTH %s\r\n" "$3" >&3 && read -r _ <&3
    printf "PING\r\n" >&3
    read -r reply <&3
    [[ $reply == +PONG* ]]' _ "$host" "$port" "$password" 2>/dev/null
}

redis_up() {
  parse_url REDIS "${REDIS_URL:-$DEFAULT_REDIS_URL}" 6379
  local where="$REDIS_HOST:$REDIS_PORT"
  if redis_answers "$REDIS_HOST" "$REDIS_PORT" "$REDIS_PASSWORD"; then
    if pid_alive "$REDIS_PID" redis-server; then
      say "redis: ready on $where (already running, pid $(<"$REDIS_PID"))"
    else
      say "redis: ready on $where (already running, not started by this script)"
    fi
    return 0
  fi
  is_local_host "$REDIS_HOST" ||
    die "redis: nothing answers PING at $where (REDIS_URL points to a remote host, so nothing is started locally)"

  if ! command -v redis-server >/dev/null; then
    is_root || die "redis: redis-server is not installed and nothing answers at $where.
  Fix one of: sudo apt-get install redis-server
              export REDIS_URL=redis://host:port/0   (a running server)"
    say "redis: installing redis-server with apt (first run only)…"
    apt_install redis-server
    # Where the package's service does start (systemd hosts), just use it.
    if redis_answers "$REDIS_HOST" "$REDIS_PORT" "$REDIS_PASSWORD"; then
      say "redis: ready on $where (system service started by the package)"
      return 0
    fi
  fi

  mkdir -p "$REDIS_DIR"
  local args=(--port "$REDIS_PORT" --bind 127.0.0.1 --dir "$REDIS_DIR"
    --daemonize yes --pidfile "$REDIS_PID" --logfile "$LOG_DIR/redis.log"
    --save "" --appendonly no)
  [[ -n $REDIS_PASSWORD ]] && args+=(--requirepass "$REDIS_PASSWORD")
  say "redis: starting on $where…"
  rm -f "$REDIS_PID"
  redis-server "${args[@]}" || die "redis: redis-server failed to start (see $LOG_DIR/redis.log)"
  local deadline=$((SECONDS + WAIT_SECONDS))
  until redis_answers "$REDIS_HOST" "$REDIS_PORT" "$REDIS_PASSWORD"; do
    if ((SECONDS >= deadline)); then
      show_tail "$LOG_DIR/redis.log"
      die "redis: no PONG from $where within ${WAIT_SECONDS}s"
    fi
    sleep 0.2
  done
  say "redis: ready on $where (started, pid $(cat "$REDIS_PID" 2>/dev/null || echo '?'))"
}

redis_down() {
  stop_pid "$REDIS_PID" redis-server redis
}

redis_status() {
  parse_url REDIS "${REDIS_URL:-$DEFAULT_REDIS_URL}" 6379
  local where="$REDIS_HOST:$REDIS_PORT" owner=""
  pid_alive "$REDIS_PID" redis-server && owner=", ours, pid $(<"$REDIS_PID")"
  if redis_answers "$REDIS_HOST" "$REDIS_PORT" "$REDIS_PASSWORD"; then
    echo "redis:    up on $where${owner}"
  else
    echo "redis:    down ($where)"
  fi
}

# ----------------------------------------------------------------- main ----

usage() {
  echo "usage: $0 up|stores|down|status|kafka-jars" >&2
  exit 2
}

main() {
  [[ $# -eq 1 ]] || usage
  mkdir -p "$RUN_DIR" "$LOG_DIR"
  case $1 in
    up)
      local start=$SECONDS
      kafka_up
      pg_up
      redis_up
      say "all services up in $((SECONDS - start))s"
      ;;
    stores)
      local start=$SECONDS
      pg_up
      redis_up
      say "PostgreSQL and Redis up in $((SECONDS - start))s"
      ;;
    down)
      kafka_down
      pg_down
      redis_down
      ;;
    status)
      kafka_status
      pg_status
      redis_status
      ;;
    kafka-jars)
      # The broker jars alone: tests start private brokers from them even when a running
      # broker was reused by `up`.
      need_java
      kafka_fetch_jars
      ;;
    *) usage ;;
  esac
}

main "$@"
