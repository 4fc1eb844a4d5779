#!/usr/bin/env bash
# Issue 15: cofferdam against the floor, a bare hyper server doing the least the same two
# requests need (bench/floor/main.rs: the prebuilt page from memory; a form post decoded, one
# field checked, a JSON line group-committed with fdatasync before the 303).
#
# Both serve the same example site's landing page (its .br twin) and take the same order post
# (bench/post-order.lua, a valid order with a unique name each, so cofferdam stores every one
# with full validation, its signed receipt cookie and its metrics). Each server is pinned to
# core 0, wrk to core 1; posts at 64 and 1,024 connections, GETs at 64, ROUNDS rounds each,
# the two servers taking turns round by round.
# Prints requests/s, p50, p99 and the ratios cofferdam/floor (best round of each), and where
# core 0 went a request (user, kernel, softirq, idle incl. waiting for the disk, in µs), which
# tells a server that ran out of CPU from one that waited.
# A second floor (`answer`) sends cofferdam's own answers: the headers of its 303 (cookies,
# security headers) and of its page, taken from the server in this run. The ratio to it is
# what cofferdam does beyond the bytes it answers with; the targets are against the bare floor.
# Targets: posts >= 0.85 of the floor with p99 < 20 ms at 64 and 1,024 connections; static
# GET >= 0.95 of the floor.
#
# BIN=path/to/cofferdam measures that binary and skips its build (the floor is still built,
# beside the default target's binary, unless FLOOR=path/to/floor names one).
#
# Usage: bench/floor.sh   (DURATION=10s ROUNDS=2 BIN= FLOOR= override)
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=bench/lib.sh
source bench/lib.sh

DURATION=${DURATION:-10s}
ROUNDS=${ROUNDS:-2}
ulimit -n "$(ulimit -Hn)"

need wrk curl python3 util-linux
cofferdam_and_floor

SCRATCH=$(mktemp -d "${TMPDIR:-/tmp}/cofferdam-floor.XXXXXX")
trap 'cleanup; rm -rf "$SCRATCH"' EXIT
# The example site without stock caps (as bench/collect.sh), so every post is a record.
SITE="$SCRATCH/site"
mkdir -p "$SITE"
cp -r cofferdam.toml content templates "$SITE/"
sed -i '/^stock = [0-9]*$/d' "$SITE/cofferdam.toml"
"$BIN" build --site "$SITE" >/dev/null

wrk() { taskset -c 1 "$(type -P wrk)" "$@"; }

RESULTS="$OUT/floor-results.txt"
: >"$RESULTS"
# Runs round ROUND of the three loads against the server at URL.
load() {
  local name=$1 url=$2 round=$3 conns
  for conns in 64 1024; do
    timed_wrk "floor-$name-post-c$conns-$round" -t1 -c"$conns" -d"$DURATION" --latency \
      -s bench/post-order.lua "$url"
    report "$name" "post-c$conns" "$round"
  done
  timed_wrk "floor-$name-get-$round" -t1 -c64 -d"$DURATION" --latency -H 'Accept-Encoding: br, gzip' "$url/"
  report "$name" get-c64 "$round"
}
# Core 0's ticks (1/100 s) so far: user, kernel, softirq, idle (with I/O wait).
core0_ticks() { awk '$1 == "cpu0" {print $2 + $3, $4 + $7, $8, $5 + $6; exit}' /proc/stat; }
# run_wrk, and where core 0 (the server's) went: CORE="user kernel softirq idle", µs a request.
timed_wrk() {
  local before after
  before=$(core0_ticks)
  run_wrk "$@"
  after=$(core0_ticks)
  local requests
  requests=$(awk '/requests in/ {print $1; exit}' "$OUT/wrk-$1.txt")
  CORE=$(awk -v b="$before" -v a="$after" -v n="${requests:-0}" 'BEGIN {
    split(b, x); split(a, y)
    if (n == 0) n = 1
    printf "%.1f %.1f %.1f %.1f", (y[1] - x[1]) * 1e4 / n, (y[2] - x[2]) * 1e4 / n, (y[3] - x[3]) * 1e4 / n, (y[4] - x[4]) * 1e4 / n
  }')
}
report() {
  printf '%-10s %-10s round %s: %8s req/s  p50 %7s ms  p99 %7s ms  errors/non-2xx-3xx %s  core 0 µs/req user %s kernel %s softirq %s idle %s\n' \
    "$1" "$2" "$3" "$RPS" "$P50" "$P99" "$BAD" $CORE
  echo "$1 $2 $3 $RPS $P50 $P99 $BAD $CORE" >>"$RESULTS"
}

start() {
  local name=$1 url=$2
  shift 2
  taskset -c 0 "$@" >"$OUT/floor-$name.log" 2>&1 &
  SERVER_PID=$!
  PIDS+=("$SERVER_PID")
  wait_http "$url/"
  local got
  got=$(curl -s -o /dev/null -w '%{http_code} %{redirect_url}' -X POST -H "Origin: $url" \
    -H 'Content-Type: application/x-www-form-urlencoded' \
    --data 'name=Smoke+Test&email=buyer%40example.org&street=Hauptstr.+1&postcode=10115&city=Berlin&country=DE&sku=AURORA-EB&quantity=1' \
    "$url/submit/order")
  echo "bench: $name: one post -> $got; GET / -> $(curl -s -o /dev/null -w '%{size_download} bytes' -H 'Accept-Encoding: br, gzip' "$url/")"
  [[ $got == 303* ]]
}
stop() {
  kill -TERM "$1" 2>/dev/null || true
  for _ in $(seq 1 100); do kill -0 "$1" 2>/dev/null || return 0; sleep 0.1; done
  kill -KILL "$1" 2>/dev/null || true
}

# Both servers run throughout (the one not under load sleeps in epoll) and the rounds alternate,
# so a machine that gets slower or faster during the run moves both alike.
FLOOR_URL="http://127.0.0.1:$(free_port)"
start floor "$FLOOR_URL" "$FLOOR" --listen "${FLOOR_URL#http://}" \
  --page "$SITE/dist/index.html.br" --encoding br --log "$SCRATCH/floor.jsonl"
FLOOR_PID=$SERVER_PID
COFFERDAM_URL="http://127.0.0.1:$(free_port)"
start cofferdam "$COFFERDAM_URL" "$BIN" serve --site "$SITE" --no-build \
  --listen "${COFFERDAM_URL#http://}" --admin "127.0.0.1:$(free_port)"
COFFERDAM_PID=$SERVER_PID
# cofferdam's answers to the two requests, as the second floor is to send them.
curl -s -o /dev/null -D "$SCRATCH/post-headers" -X POST -H "Origin: $COFFERDAM_URL" \
  -H 'Content-Type: application/x-www-form-urlencoded' \
  --data 'name=Header+Copy&email=buyer%40example.org&street=Hauptstr.+1&postcode=10115&city=Berlin&country=DE&sku=AURORA-EB&quantity=1' \
  "$COFFERDAM_URL/submit/order"
curl -s -o /dev/null -D "$SCRATCH/get-headers" -H 'Accept-Encoding: br, gzip' "$COFFERDAM_URL/"
ANSWER_URL="http://127.0.0.1:$(free_port)"
start answer "$ANSWER_URL" "$FLOOR" --listen "${ANSWER_URL#http://}" \
  --page "$SITE/dist/index.html.br" --log "$SCRATCH/answer.jsonl" \
  --post-headers "$SCRATCH/post-headers" --get-headers "$SCRATCH/get-headers"
ANSWER_PID=$SERVER_PID
for round in $(seq 1 "$ROUNDS"); do
  echo "== round $round"
  load floor "$FLOOR_URL" "$round"
  load answer "$ANSWER_URL" "$round"
  load cofferdam "$COFFERDAM_URL" "$round"
done
stop "$FLOOR_PID"
stop "$ANSWER_PID"
stop "$COFFERDAM_PID"
echo "bench: lines on disk: floor $(wc -l <"$SCRATCH/floor.jsonl"), answer $(wc -l <"$SCRATCH/answer.jsonl"), cofferdam $(cat "$SITE"/collected/order/*.jsonl* | wc -l)"

echo
echo "== cofferdam/floor, $(nproc) cores, server on core 0, wrk -t1 on core 1, $DURATION (best of $ROUNDS); load $(cut -d' ' -f1-3 /proc/loadavg)"
best() {
  awk -v n="$1" -v l="$2" '$1 == n && $2 == l && $4 > r {r = $4; p99 = $6; core = $8 "/" $9 "/" $10 "/" $11}
    END {print r, p99, core}' "$RESULTS"
}
for load in post-c64 post-c1024 get-c64; do
  read -r frps fp99 fcore <<<"$(best floor "$load")"
  read -r crps cp99 ccore <<<"$(best cofferdam "$load")"
  read -r arps ap99 acore <<<"$(best answer "$load")"
  target=$([[ $load == get* ]] && echo 0.95 || echo 0.85)
  printf '%-11s floor %8s req/s p99 %7s ms | cofferdam %8s req/s p99 %7s ms | ratio %s (target >= %s)\n' \
    "$load" "$frps" "$fp99" "$crps" "$cp99" "$(ratio "$crps" "$frps")" "$target"
  printf '%-11s floor with cofferdam'"'"'s answer %8s req/s p99 %7s ms: %s of the floor; cofferdam %s of it\n' \
    "" "$arps" "$ap99" "$(ratio "$arps" "$frps")" "$(ratio "$crps" "$arps")"
  printf '%-11s core 0 µs a request, user/kernel/softirq/idle: floor %s, with the answer %s, cofferdam %s\n' "" "$fcore" "$acore" "$ccore"
done
