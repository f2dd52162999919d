#!/usr/bin/env bash
# Production shape on one machine, from real components, all on 127.0.0.1:
#   postgres  a private PostgreSQL server: the Hive metastore's database (and the serving tables)
#   cluster   a Spark standalone master and two one-core workers, from the jars pip's pyspark ships
#   thrift    the Spark Thrift Server over the same metastore: the SQL endpoint analysts query (beeline)
#
#   deploy/services.sh start [postgres|cluster|thrift ...]   (none named: all three, in that order)
#   deploy/services.sh stop  [...]                           (none named: all, in reverse order)
#   deploy/services.sh status
#   deploy/services.sh env                                   (the settings a client needs, as export lines)
#
# State (data, logs, pids, the generated password, the executors' Python) lives in $RECJOB_SERVICES_DIR
# (default .services/ beside this folder). The metastore password is RECJOB_METASTORE_PASSWORD when set, else
# generated once into $RECJOB_SERVICES_DIR/env (mode 600); it is never printed. `source <(deploy/services.sh env)`
# gives a shell what the pipeline needs: RECJOB_METASTORE_URL/USER/PASSWORD, the master URL, the SQL endpoint.
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
DIR="${RECJOB_SERVICES_DIR:-$ROOT/.services}"
PG_PORT="${RECJOB_PG_PORT:-55432}"
MASTER_PORT="${RECJOB_SPARK_MASTER_PORT:-7077}"
MASTER_UI_PORT="${RECJOB_SPARK_MASTER_UI_PORT:-18080}"
THRIFT_PORT="${RECJOB_THRIFT_PORT:-10001}"
WORKERS="${RECJOB_SPARK_WORKERS:-2}"
WORKER_MEMORY="${RECJOB_SPARK_WORKER_MEMORY:-3g}"
PYTHON="${RECJOB_PYTHON:-$ROOT/.venv/bin/python}"
JDBC_JAR="${RECJOB_JDBC_JAR:-/usr/share/java/postgresql.jar}"
DATA_DIR="${RECJOB_DATA_DIR:-$ROOT/recjob-data}"
PG_BIN="$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)"
SPARK_HOME="$("$PYTHON" -c 'import os, pyspark; print(os.path.dirname(pyspark.__file__))')"
export SPARK_HOME

mkdir -p "$DIR/logs" "$DIR/run"
say() { echo "services: $*"; }
die() { echo "services: $*" >&2; exit 1; }

# --- credentials (never printed) ---------------------------------------------------------------------------
load_env() {
  if [ -z "${RECJOB_METASTORE_PASSWORD:-}" ]; then
    if [ ! -f "$DIR/env" ]; then
      umask 077
      printf 'RECJOB_METASTORE_PASSWORD=%s\n' "$(head -c 18 /dev/urandom | base64 | tr -d '/+=')" > "$DIR/env"
    fi
    RECJOB_METASTORE_PASSWORD="$(sed -n 's/^RECJOB_METASTORE_PASSWORD=//p' "$DIR/env")"
  fi
  RECJOB_METASTORE_USER="${RECJOB_METASTORE_USER:-recjob}"
  RECJOB_METASTORE_URL="${RECJOB_METASTORE_URL:-jdbc:postgresql://127.0.0.1:$PG_PORT/metastore}"
}

# PostgreSQL refuses to run as root: as root, run it as the `postgres` user (Debian's package makes it).
as_pg() {
  if [ "$(id -u)" -eq 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

alive() { [ -f "$DIR/run/$1.pid" ] && kill -0 "$(cat "$DIR/run/$1.pid")" 2>/dev/null; }

wait_for() {  # wait_for SECONDS DESCRIPTION COMMAND...
  local limit=$1 what=$2; shift 2
  for _ in $(seq "$limit"); do "$@" >/dev/null 2>&1 && return 0; sleep 1; done
  die "$what did not come up in ${limit}s (logs: $DIR/logs)"
}

# --- PostgreSQL --------------------------------------------------------------------------------------------
start_postgres() {
  [ -n "$PG_BIN" ] || die "no PostgreSQL server (Debian: apt-get install postgresql)"
  load_env
  local data="$DIR/postgres"
  if [ "$(id -u)" -eq 0 ]; then chown postgres "$DIR" "$DIR/logs"; fi  # the server writes its log there
  if [ ! -f "$data/PG_VERSION" ]; then
    mkdir -p "$data"; [ "$(id -u)" -eq 0 ] && chown postgres "$data"
    local pwfile; pwfile="$(mktemp)"; printf '%s\n' "$RECJOB_METASTORE_PASSWORD" > "$pwfile"
    [ "$(id -u)" -eq 0 ] && chown postgres "$pwfile"
    as_pg "$PG_BIN/initdb" -D "$data" -U "$RECJOB_METASTORE_USER" --pwfile="$pwfile" --auth=scram-sha-256 \
      -E UTF8 --locale=C >"$DIR/logs/initdb.log"
    rm -f "$pwfile"
  fi
  if as_pg "$PG_BIN/pg_ctl" -D "$data" status >/dev/null 2>&1; then say "postgres already running on $PG_PORT"; return; fi
  as_pg "$PG_BIN/pg_ctl" -D "$data" -w -t 60 -l "$DIR/logs/postgres.log" \
    -o "-p $PG_PORT -c listen_addresses=127.0.0.1 -k $data" start >/dev/null
  for db in metastore serving; do
    PGPASSWORD="$RECJOB_METASTORE_PASSWORD" psql -h 127.0.0.1 -p "$PG_PORT" -U "$RECJOB_METASTORE_USER" -d postgres \
      -tAc "SELECT 1 FROM pg_database WHERE datname='$db'" | grep -q 1 ||
      PGPASSWORD="$RECJOB_METASTORE_PASSWORD" psql -h 127.0.0.1 -p "$PG_PORT" -U "$RECJOB_METASTORE_USER" \
        -d postgres -qc "CREATE DATABASE $db" >/dev/null
  done
  say "postgres on 127.0.0.1:$PG_PORT (databases metastore, serving; user $RECJOB_METASTORE_USER)"
}

stop_postgres() {
  [ -f "$DIR/postgres/PG_VERSION" ] || return 0
  as_pg "$PG_BIN/pg_ctl" -D "$DIR/postgres" -m fast -w stop >/dev/null 2>&1 && say "postgres stopped" || true
}

# --- Spark standalone --------------------------------------------------------------------------------------
# The executors' Python: numpy, pandas, pyarrow (the versions the driver uses) and nothing of recjob, which
# reaches them only through --py-files. Anything that works only because the driver's environment is shared
# fails on this cluster.
executor_python() {
  local venv="$DIR/executor-venv"
  if [ ! -x "$venv/bin/python" ] || [ ! -f "$venv/.installed" ]; then
    say "building the executors' Python in $venv (numpy, pandas, pyarrow; no recjob)" >&2
    "$(command -v python3)" -m venv "$venv" >&2
    "$venv/bin/pip" install --quiet -c "$ROOT/requirements/constraints.txt" numpy pandas pyarrow >&2
    touch "$venv/.installed"
  fi
  echo "$venv/bin/python"
}

daemon() {  # daemon NAME COMMAND...: run in the background, pid in run/NAME.pid, output in logs/NAME.log
  local name=$1; shift
  if alive "$name"; then say "$name already running"; return; fi
  nohup "$@" >"$DIR/logs/$name.log" 2>&1 &
  echo $! > "$DIR/run/$name.pid"
}

master_up() { "$PYTHON" - "$MASTER_UI_PORT" "$1" <<'EOF'
import json, sys, urllib.request
state = json.load(urllib.request.urlopen(f"http://127.0.0.1:{sys.argv[1]}/json/", timeout=2))
sys.exit(0 if sum(w["state"] == "ALIVE" for w in state["workers"]) >= int(sys.argv[2]) else 1)
EOF
}

start_cluster() {
  local exec_python; exec_python="$(executor_python)"
  export SPARK_LOG_DIR="$DIR/logs" SPARK_NO_DAEMONIZE=1 PYSPARK_PYTHON="$exec_python"
  daemon master "$SPARK_HOME/bin/spark-class" org.apache.spark.deploy.master.Master \
    --host 127.0.0.1 --port "$MASTER_PORT" --webui-port "$MASTER_UI_PORT"
  wait_for 60 "the Spark master" master_up 0
  for i in $(seq "$WORKERS"); do
    mkdir -p "$DIR/work-$i"
    daemon "worker-$i" "$SPARK_HOME/bin/spark-class" org.apache.spark.deploy.worker.Worker \
      --host 127.0.0.1 --cores 1 --memory "$WORKER_MEMORY" --webui-port 0 --work-dir "$DIR/work-$i" \
      "spark://127.0.0.1:$MASTER_PORT"
  done
  wait_for 60 "$WORKERS Spark workers" master_up "$WORKERS"
  say "spark master spark://127.0.0.1:$MASTER_PORT (UI http://127.0.0.1:$MASTER_UI_PORT), $WORKERS workers x 1 core;" \
      "executors' Python $exec_python"
}

stop_daemon() {
  local name=$1
  if alive "$name"; then
    local pid; pid="$(cat "$DIR/run/$name.pid")"
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 30); do kill -0 "$pid" 2>/dev/null || break; sleep 1; done
    kill -9 "$pid" 2>/dev/null || true
    say "$name stopped"
  fi
  rm -f "$DIR/run/$name.pid"
}

stop_cluster() {
  for i in $(seq "$WORKERS"); do stop_daemon "worker-$i"; done
  stop_daemon master
}

# --- Spark Thrift Server -----------------------------------------------------------------------------------
start_thrift() {
  load_env
  # The metastore settings (password included) go in a properties file only this user can read, not on the
  # command line where `ps` would show them.
  umask 077
  RECJOB_METASTORE_URL="$RECJOB_METASTORE_URL" RECJOB_METASTORE_USER="$RECJOB_METASTORE_USER" \
    RECJOB_METASTORE_PASSWORD="$RECJOB_METASTORE_PASSWORD" \
    "$PYTHON" -m recjob spark-conf --conf "${RECJOB_CONF:-$ROOT/conf/cluster-local.yaml}" \
      --set "data_dir=$DATA_DIR" --set "publish.jdbc_url=" > "$DIR/run/thrift.properties"  # SQL only
  umask 022
  daemon thrift "$SPARK_HOME/bin/spark-submit" --master "local[1]" --driver-memory 1g \
    --properties-file "$DIR/run/thrift.properties" --driver-class-path "$JDBC_JAR" \
    --conf "spark.hadoop.hive.server2.thrift.port=$THRIFT_PORT" \
    --conf "spark.hadoop.hive.server2.thrift.bind.host=127.0.0.1" \
    --class org.apache.spark.sql.hive.thriftserver.HiveThriftServer2 --name recjob-sql spark-internal
  wait_for 180 "the Spark Thrift Server" bash -c "echo > /dev/tcp/127.0.0.1/$THRIFT_PORT"
  say "SQL endpoint: $SPARK_HOME/bin/beeline -u jdbc:hive2://127.0.0.1:$THRIFT_PORT"
}

stop_thrift() { stop_daemon thrift; }

status() {
  [ -f "$DIR/postgres/PG_VERSION" ] && as_pg "$PG_BIN/pg_ctl" -D "$DIR/postgres" status >/dev/null 2>&1 &&
    say "postgres running on $PG_PORT" || say "postgres stopped"
  for name in master $(for i in $(seq "$WORKERS"); do echo "worker-$i"; done) thrift; do
    alive "$name" && say "$name running (pid $(cat "$DIR/run/$name.pid"))" || say "$name stopped"
  done
}

print_env() {
  load_env
  echo "export RECJOB_METASTORE_URL='$RECJOB_METASTORE_URL'"
  echo "export RECJOB_METASTORE_USER='$RECJOB_METASTORE_USER'"
  if [ -f "$DIR/env" ]; then  # a command that reads it, not the password itself
    echo "export RECJOB_METASTORE_PASSWORD=\"\$(sed -n 's/^RECJOB_METASTORE_PASSWORD=//p' '$DIR/env')\""
  fi
  echo "export RECJOB_SPARK_MASTER='spark://127.0.0.1:$MASTER_PORT'"
  echo "export RECJOB_EXECUTOR_PYTHON='$DIR/executor-venv/bin/python'"
  echo "export RECJOB_JDBC_JAR='$JDBC_JAR'"
  echo "export RECJOB_SQL_URL='jdbc:hive2://127.0.0.1:$THRIFT_PORT'"
}

action="${1:-}"; shift || true
names=("$@")
case "$action" in
  start) [ ${#names[@]} -eq 0 ] && names=(postgres cluster thrift)
         for n in "${names[@]}"; do "start_$n"; done ;;
  stop)  [ ${#names[@]} -eq 0 ] && names=(thrift cluster postgres)
         for n in "${names[@]}"; do "stop_$n"; done ;;
  status) status ;;
  env) print_env ;;
  *) die "usage: $0 start|stop [postgres|cluster|thrift ...] | status | env" ;;
esac
