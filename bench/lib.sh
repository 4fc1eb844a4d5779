# shellcheck shell=bash
# shellcheck disable=SC2317  # cleanup() runs from the caller's trap.
# Shared helpers for the bench scripts; sourced, never run. The caller has already done
# `cd "$(dirname "$0")/.."`, so every path here is relative to the repository root.

OUT=bench/out
mkdir -p "$OUT"

# Installs Debian packages that are missing. `apt-get update` runs at most once per script.
# Services are not started by the install (containers ship a policy-rc.d that forbids it,
# and we never want a system nginx/caddy on port 80 anyway).
need() {
  local missing=()
  local pkg
  for pkg in "$@"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed' || missing+=("$pkg")
  done
  if ((${#missing[@]})); then
    echo "bench: installing ${missing[*]}" >&2
    if [[ -z ${BENCH_APT_UPDATED:-} ]]; then
      apt-get update -qq
      BENCH_APT_UPDATED=1
    fi
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
  fi
}

# Builds the release binary; honours CARGO_TARGET_DIR so a developer can keep their own.
build_release() {
  cargo build --release --quiet
  BIN="${CARGO_TARGET_DIR:-target}/release/cofferdam"
  BIN=$(realpath "$BIN")
  export BIN
}

# Sets BIN (cofferdam) and FLOOR (bench/floor) to absolute paths: the ones given, or built here.
cofferdam_and_floor() {
  if [[ -z ${BIN:-} ]]; then build_release; fi
  BIN=$(realpath "$BIN")
  if [[ -z ${FLOOR:-} ]]; then
    cargo build --release --quiet --example floor
    FLOOR="${CARGO_TARGET_DIR:-target}/release/examples/floor"
  fi
  FLOOR=$(realpath "$FLOOR")
  export BIN FLOOR
}

# Waits until URL answers 2xx, at most ~10 s.
wait_http() {
  local url=$1
  for _ in $(seq 1 100); do
    if curl -fsS -o /dev/null "$url" 2>/dev/null; then return 0; fi
    sleep 0.1
  done
  echo "bench: $url never came up" >&2
  return 1
}

# Picks a free TCP port on 127.0.0.1.
free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

# Every background process we start is recorded here and ended (by PID) on exit.
PIDS=()
# A PID is signalled only while it is still our own child, so a number the system has handed
# to someone else's process since ours ended is never touched.
ours() { [[ -n $1 && $(ps -o ppid= -p "$1" 2>/dev/null | tr -d ' ') == "$$" ]]; }
cleanup() {
  local pid
  for pid in "${PIDS[@]:-}"; do
    ours "$pid" || continue
    kill -TERM "$pid" 2>/dev/null || true
  done
  for pid in "${PIDS[@]:-}"; do
    ours "$pid" || continue
    # Give each a few seconds to flush (cofferdam seals its segments on SIGTERM).
    for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
  done
}

# Ratio a/b to two decimals (awk, since bash has no floats).
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b == 0) print "n/a"; else printf "%.2f", a / b }'; }

# shellcheck disable=SC2034  # RPS, P50, P99, BAD are read by the calling script.
# Runs wrk (arguments passed through), keeps its output in $OUT/wrk-LABEL.txt and sets
# RPS, P50, P99 (milliseconds) and BAD (non-2xx/3xx plus socket errors) from it.
run_wrk() {
  local label=$1
  shift
  local file="$OUT/wrk-$label.txt"
  wrk "$@" >"$file" 2>&1
  RPS=$(awk '/^Requests\/sec:/ {printf "%.0f", $2}' "$file")
  P50=$(wrk_pct 50 "$file")
  P99=$(wrk_pct 99 "$file")
  BAD=$(awk '/Non-2xx or 3xx responses:/ {n += $NF} /Socket errors:/ {gsub(",", ""); n += $4 + $6 + $8 + $10} END {print n + 0}' "$file")
}

# One percentile line of wrk --latency, converted to milliseconds.
wrk_pct() {
  awk -v p="$1%" '$1 == p {
    v = $2
    if (v ~ /us$/) { sub("us", "", v); v /= 1000 }
    else if (v ~ /ms$/) { sub("ms", "", v) }
    else if (v ~ /m$/) { sub("m", "", v); v *= 60000 }
    else if (v ~ /s$/) { sub("s", "", v); v *= 1000 }
    printf "%.2f", v
  }' "$2"
}
