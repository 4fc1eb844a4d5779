#!/usr/bin/env bash
# Issue 16: what the live admin page costs the order path. One server, one run: POST
# /submit/order with wrk while nobody looks at the admin page ("quiet") and while a browser-like
# poller fetches it every second ("polled"), alternating rounds so drift in the machine's load
# hits both alike. Prints posts/s of each, the ratio polled/quiet and the load average.
# Goal: polled >= 0.98 of quiet. The server is pinned to core 0; wrk and the poller to core 1.
#
# Usage: bench/admin.sh   (DURATION=10s CONNS=64 ROUNDS=3 override; BIN=path/to/cofferdam
# skips the release build, e.g. for a smoke run of the script with a debug binary)
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=bench/lib.sh
source bench/lib.sh

DURATION=${DURATION:-10s}
CONNS=${CONNS:-64}
ROUNDS=${ROUNDS:-3}
ulimit -n "$(ulimit -Hn)"

need wrk curl python3 util-linux
if [[ -z ${BIN:-} ]]; then build_release; fi
BIN=$(realpath "$BIN")

SCRATCH=$(mktemp -d "${TMPDIR:-/tmp}/cofferdam-admin.XXXXXX")
# shellcheck disable=SC2317  # run from the trap
on_exit() {
  cleanup
  rm -rf "$SCRATCH"
}
trap on_exit EXIT

# The example site without stock caps, so every post is a record (none "sold out").
SITE="$SCRATCH/site"
mkdir -p "$SITE"
cp -r cofferdam.toml content templates "$SITE/"
sed -i '/^stock = [0-9]*$/d' "$SITE/cofferdam.toml"
"$BIN" build --site "$SITE" >/dev/null

CD_PORT=$(free_port)
CD_ADMIN=$(free_port)
taskset -c 0 "$BIN" serve --site "$SITE" --no-build --listen "127.0.0.1:$CD_PORT" \
  --admin "127.0.0.1:$CD_ADMIN" >"$OUT/admin-cofferdam.log" 2>&1 &
PIDS+=("$!")
wait_http "http://127.0.0.1:$CD_ADMIN/healthz"
PAGE="http://127.0.0.1:$CD_ADMIN/"
curl -fsS -o /dev/null "$PAGE"

wrk() { taskset -c 1 "$(type -P wrk)" "$@"; }
records() { curl -s "http://127.0.0.1:$CD_ADMIN/metrics" | awk '$1 == "cofferdam_collect_records_total" {print $2}'; }

# Fetches the admin page once a second until killed, logging each fetch's time and size.
poll() {
  while true; do
    taskset -c 1 curl -s -o /dev/null -w '%{time_total} %{size_download}\n' "$PAGE" >>"$OUT/admin-polls.txt"
    sleep 1
  done
}

RESULTS="$OUT/admin-results.txt"
: >"$RESULTS"
: >"$OUT/admin-polls.txt"
echo "bench: load before: $(cut -d' ' -f1-3 /proc/loadavg) on $(nproc) cores"
# One unmeasured run: the first segment, the page cache, the CPU's clocks.
run_wrk admin-warm -t1 -c"$CONNS" -d3s -s bench/post-order.lua "http://127.0.0.1:$CD_PORT"
for round in $(seq 1 "$ROUNDS"); do
  for mode in quiet polled; do
    POLLER=""
    if [[ $mode == polled ]]; then
      poll &
      POLLER=$!
      PIDS+=("$POLLER")
    fi
    r0=$(records)
    run_wrk "admin-$mode-$round" -t1 -c"$CONNS" -d"$DURATION" --latency -s bench/post-order.lua \
      "http://127.0.0.1:$CD_PORT"
    r1=$(records)
    if [[ -n $POLLER ]]; then kill "$POLLER"; wait "$POLLER" 2>/dev/null || true; fi
    printf 'round %d %-6s %7s posts/s  p50 %6s ms  p99 %6s ms  non-2xx/3xx+errors %s  records %d\n' \
      "$round" "$mode" "$RPS" "$P50" "$P99" "$BAD" "$((r1 - r0))"
    echo "$mode $RPS $P99" >>"$RESULTS"
  done
done
echo "bench: load after: $(cut -d' ' -f1-3 /proc/loadavg)"

QUIET=$(awk '$1 == "quiet" {s += $2; n++} END {printf "%.0f", s / n}' "$RESULTS")
POLLED=$(awk '$1 == "polled" {s += $2; n++} END {printf "%.0f", s / n}' "$RESULTS")
read -r FETCHES PAGE_MS PAGE_KB < <(awk '{t += $1; b += $2; n++} END {printf "%d %.1f %.0f\n", n, t / n * 1000, b / n / 1024}' "$OUT/admin-polls.txt")
echo
echo "== admin page polled every second vs not, $CONNS connections, $ROUNDS rounds of $DURATION each (mean)"
echo "quiet   $QUIET posts/s"
echo "polled  $POLLED posts/s   ($FETCHES page fetches under load: ${PAGE_MS} ms and ${PAGE_KB} KiB each)"
echo "ratio polled/quiet: $(awk -v a="$POLLED" -v b="$QUIET" 'BEGIN {printf "%.3f", a / b}')  (goal >= 0.98)"
