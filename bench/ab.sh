#!/usr/bin/env bash
# Issue 15: two cofferdam binaries against each other on the order post, in alternated rounds.
# On a machine whose speed drifts between runs (a shared VM), two runs minutes apart differ by
# more than most changes move a rate; two servers running side by side, loaded in turn, drift
# alike. Both serve the example site without stock caps from their own copy, pinned to core 0;
# `wrk -t1` on core 1 sends bench/post-order.lua for DURATION, A then B, ROUNDS times.
#
# WHAT=get loads the landing page instead (`GET /` asking for brotli, as bench/floor.sh does).
#
# Usage: bench/ab.sh OLD_BINARY NEW_BINARY   (CONNS=1024 ROUNDS=4 DURATION=5s WHAT=post override)
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=bench/lib.sh
source bench/lib.sh

if (($# != 2)); then
  echo "usage: bench/ab.sh OLD_BINARY NEW_BINARY" >&2
  exit 2
fi
A=$(realpath "$1")
B=$(realpath "$2")
CONNS=${CONNS:-1024}
ROUNDS=${ROUNDS:-4}
DURATION=${DURATION:-5s}
WHAT=${WHAT:-post}
case $WHAT in
  post) LOAD=(-s bench/post-order.lua) UNIT=posts ;;
  get) LOAD=(-H 'Accept-Encoding: br, gzip') UNIT=GETs ;;
  *) echo "bench/ab.sh: WHAT is post or get, not $WHAT" >&2; exit 2 ;;
esac
ulimit -n "$(ulimit -Hn)"

need wrk curl python3 util-linux

SCRATCH=$(mktemp -d "${TMPDIR:-/tmp}/cofferdam-ab.XXXXXX")
trap 'cleanup; rm -rf "$SCRATCH"' EXIT

# Starts binary $2 as server $1 on its own copy of the site; sets URL.
serve() {
  local name=$1 bin=$2 site="$SCRATCH/$1"
  mkdir -p "$site"
  cp -r cofferdam.toml content templates "$site/"
  sed -i '/^stock = [0-9]*$/d' "$site/cofferdam.toml"
  "$bin" build --site "$site" >/dev/null
  URL="http://127.0.0.1:$(free_port)"
  taskset -c 0 "$bin" serve --site "$site" --no-build --listen "${URL#http://}" \
    --admin "127.0.0.1:$(free_port)" >"$OUT/ab-$name.log" 2>&1 &
  PIDS+=("$!")
  wait_http "$URL/"
}
serve a "$A"
URL_A=$URL
serve b "$B"
URL_B=$URL

wrk() { taskset -c 1 "$(type -P wrk)" "$@"; }

declare -A SUM=([a]=0 [b]=0)
WINS=0
echo "== A $A"
echo "== B $B"
echo "== $CONNS connections, $DURATION a round, rounds alternating A, B"
for round in $(seq 1 "$ROUNDS"); do
  for side in a b; do
    url=$URL_A
    [[ $side == b ]] && url=$URL_B
    run_wrk "ab-$side-$round" -t1 -c"$CONNS" -d"$DURATION" --latency "${LOAD[@]}" "$url/"
    printf 'round %s %s: %8s %s/s  p99 %7s ms  non-2xx/3xx + socket errors %s\n' "$round" "${side^^}" "$RPS" "$UNIT" "$P99" "$BAD"
    SUM[$side]=$((SUM[$side] + RPS))
    [[ $side == a ]] && last_a=$RPS
  done
  ((RPS > last_a)) && WINS=$((WINS + 1))
done
mean_a=$((SUM[a] / ROUNDS))
mean_b=$((SUM[b] / ROUNDS))
echo "== mean A $mean_a, B $mean_b $UNIT/s: B/A $(ratio "$mean_b" "$mean_a"); B faster in $WINS of $ROUNDS rounds"
