#!/usr/bin/env bash
# Issue 15: CPU instructions per order post, cofferdam against the floor (bench/floor/), counted
# by valgrind's callgrind, so the figure holds on a machine that others are loading (wall-clock
# rates do not). Each server runs under callgrind on core 0; bench/floor/posts.py sends WARM
# posts, the counters are zeroed, it sends N more over C keep-alive connections, and the
# counters are dumped: instructions (user space, every thread of the server) / N.
# Kernel time (TCP, fdatasync) is not counted; it is the same for both servers.
#
# Usage: bench/instructions.sh   (N=2000 C=16 WARM=300 override; KEEP=1 keeps the callgrind
# files in bench/out/ for callgrind_annotate; WHAT=get counts a static `GET /` instead;
# BIN=path/to/cofferdam counts that binary without building it, FLOOR=path/to/floor that floor)
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=bench/lib.sh
source bench/lib.sh
trap cleanup EXIT

N=${N:-2000}
C=${C:-16}
WARM=${WARM:-300}
WHAT=${WHAT:-post}

need valgrind curl python3 util-linux
cofferdam_and_floor

SCRATCH=$(mktemp -d "${TMPDIR:-/tmp}/cofferdam-instr.XXXXXX")
trap 'cleanup; rm -rf "$SCRATCH"' EXIT
# The example site without stock caps (as bench/collect.sh), so every post is a record.
SITE="$SCRATCH/site"
mkdir -p "$SITE"
cp -r cofferdam.toml content templates "$SITE/"
sed -i '/^stock = [0-9]*$/d' "$SITE/cofferdam.toml"
"$BIN" build --site "$SITE" >/dev/null

# Starts "$@" under callgrind on core 0, waits for URL; sets SERVER_PID (valgrind's own PID).
start() {
  local name=$1 url=$2
  shift 2
  taskset -c 0 valgrind --tool=callgrind --callgrind-out-file="$OUT/callgrind-$name.%p" \
    "$@" >"$OUT/instr-$name.log" 2>&1 &
  SERVER_PID=$!
  PIDS+=("$SERVER_PID")
  for _ in $(seq 1 600); do
    curl -fsS -o /dev/null "$url" 2>/dev/null && return 0
    sleep 0.1
  done
  echo "bench: $name never came up (see $OUT/instr-$name.log)" >&2
  return 1
}

# Instructions of N posts to PORT, after WARM unmeasured ones.
count() {
  local name=$1 port=$2
  rm -f "$OUT/callgrind-$name".*
  python3 bench/floor/posts.py "$port" "$WARM" "$C" "$WHAT" >/dev/null
  callgrind_control -z "$SERVER_PID" >/dev/null
  python3 bench/floor/posts.py "$port" "$N" "$C" "$WHAT" >&2
  callgrind_control -d "$SERVER_PID" >/dev/null
  kill -TERM "$SERVER_PID"
  wait "$SERVER_PID" 2>/dev/null || true
  # The dump taken with -d is the one with a part number (…​.PID.1); its totals line counts Ir.
  local dump
  dump=$(ls "$OUT/callgrind-$name".*.1 2>/dev/null | head -1)
  awk '/^(totals|summary):/ {print $2; exit}' "$dump"
  [[ -n ${KEEP:-} ]] || rm -f "$OUT/callgrind-$name".*
}

PORT=$(free_port)
start floor "http://127.0.0.1:$PORT/" "$FLOOR" --listen "127.0.0.1:$PORT" \
  --page "$SITE/dist/index.html.br" --encoding br --log "$SCRATCH/floor.jsonl"
FLOOR_IR=$(count floor "$PORT")

PORT=$(free_port)
ADMIN=$(free_port)
start cofferdam "http://127.0.0.1:$PORT/" "$BIN" serve --site "$SITE" --no-build \
  --listen "127.0.0.1:$PORT" --admin "127.0.0.1:$ADMIN"
CD_IR=$(count cofferdam "$PORT")

echo
echo "== instructions per $WHAT (callgrind, $N requests over $C connections after $WARM)"
awk -v f="$FLOOR_IR" -v c="$CD_IR" -v n="$N" -v w="$WHAT" 'BEGIN {
  printf "floor      %9.0f instructions/%s\n", f / n, w
  printf "cofferdam  %9.0f instructions/%s\n", c / n, w
  printf "ratio floor/cofferdam %.2f (what cofferdam would reach of the floor if CPU in user space were all)\n", f / c
}'
