#!/usr/bin/env bash
# Issue 6: static serving throughput and latency, cofferdam against nginx and Caddy on the same
# dist/ (the example site), and cofferdam's memory with 10,000 idle keep-alive connections.
#
# Each server runs pinned to core 0 (nginx: one worker), wrk runs pinned to core 1:
#   taskset -c 1 wrk -t1 -c128 -d10s --latency -H 'Accept-Encoding: br, gzip' URL
# on the landing page `/` and on a fingerprinted asset. Every server sends the precompressed
# .br twin from dist/ (checked before loading), and nginx/Caddy are given the same
# Cache-Control and security headers cofferdam sends, so the bytes on the wire are alike.
# Targets: cofferdam/nginx >= 1.3 on both paths, p99 no worse than nginx's;
# RSS < 100 MiB beyond the site's size with 10,000 idle connections.
#
# Usage: bench/static.sh   (DURATION=10s CONNS=128 ROUNDS=2 IDLE=10000 override; ONLY=idle runs
# only the idle-connection RSS part; BIN=path/to/cofferdam skips the release build)
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=bench/lib.sh
source bench/lib.sh
trap cleanup EXIT

DURATION=${DURATION:-10s}
CONNS=${CONNS:-128}
ROUNDS=${ROUNDS:-2}
IDLE=${IDLE:-10000}
ONLY=${ONLY:-}
case $ONLY in
  "" | idle) ;;
  *) echo "bench: ONLY=$ONLY: only ONLY=idle is known" >&2; exit 2 ;;
esac
# 10,000 sockets on each side (client and server are separate processes), plus files: raise
# the soft limit to the hard one (20,000 here; root may not go past it in this sandbox).
ulimit -n "$(ulimit -Hn)"

if [[ $ONLY == idle ]]; then
  need wrk curl python3 util-linux
else
  need wrk nginx caddy libnginx-mod-http-brotli-static curl python3 util-linux
fi
if [[ -z ${BIN:-} ]]; then build_release; fi
BIN=$(realpath "$BIN")

# A private copy of the example site, built once: all three servers read this dist/.
SITE=$(realpath -m "$OUT/static-site")
rm -rf "$SITE"
mkdir -p "$SITE/collected"
cp -r cofferdam.toml content templates "$SITE/"
"$BIN" build --site "$SITE" >/dev/null
DIST="$SITE/dist"
# A fingerprinted asset with a .br twin (the stylesheet, when there is one).
ASSET=$(python3 - "$DIST/_cofferdam/manifest.json" <<'PY'
import json, sys
files = json.load(open(sys.argv[1]))["files"]
fp = [f for f in files if f["fingerprinted"] and f.get("br_size")]
fp.sort(key=lambda f: (not f["path"].endswith(".css"), f["path"]))
print("/" + fp[0]["path"])
PY
)
echo "bench: landing page / and asset $ASSET from $DIST"

CSP="default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; form-action 'self'; frame-ancestors 'none'; base-uri 'self'; object-src 'none'"

# --- nginx -------------------------------------------------------------------------------
NGINX_PORT=$(free_port)
BROTLI_MOD=/usr/lib/nginx/modules/ngx_http_brotli_static_module.so
if [[ -f $BROTLI_MOD ]]; then
  LOAD_BROTLI="load_module $BROTLI_MOD;"
  BROTLI_ON="brotli_static on;"
  NGINX_NOTE="gzip_static + brotli_static (libnginx-mod-http-brotli-static)"
else
  LOAD_BROTLI=""
  BROTLI_ON=""
  NGINX_NOTE="gzip_static only (no brotli_static module in Debian here)"
fi
mkdir -p "$OUT/nginx"
SEC_HEADERS="add_header Content-Security-Policy \"$CSP\" always; add_header X-Content-Type-Options nosniff always; add_header X-Frame-Options DENY always; add_header Referrer-Policy strict-origin-when-cross-origin always;"
cat >"$OUT/nginx/nginx.conf" <<CONF
$LOAD_BROTLI
user root;
worker_processes 1;
daemon off;
pid $(realpath "$OUT")/nginx/nginx.pid;
error_log $(realpath "$OUT")/nginx/error.log warn;
events { worker_connections 16384; }
http {
  include /etc/nginx/mime.types;
  access_log off;
  sendfile on;
  tcp_nopush on;
  tcp_nodelay on;
  open_file_cache max=1000 inactive=60s;
  # Keep wrk's connections open for the whole run, as cofferdam does.
  keepalive_requests 1000000;
  keepalive_timeout 75s;
  server_tokens off;
  client_body_temp_path $(realpath "$OUT")/nginx/body;
  proxy_temp_path $(realpath "$OUT")/nginx/proxy;
  fastcgi_temp_path $(realpath "$OUT")/nginx/fastcgi;
  uwsgi_temp_path $(realpath "$OUT")/nginx/uwsgi;
  scgi_temp_path $(realpath "$OUT")/nginx/scgi;
  server {
    listen 127.0.0.1:$NGINX_PORT;
    root $DIST;
    gzip_static on;
    $BROTLI_ON
    # Like cofferdam: a year for fingerprinted names, a minute for the rest. The security
    # headers are repeated per location since nginx drops inherited add_header lines there.
    location ~ "\\.[0-9a-f]{8}\\.[A-Za-z0-9]+\$" {
      $SEC_HEADERS
      add_header Cache-Control "public, max-age=31536000, immutable";
    }
    location / {
      $SEC_HEADERS
      add_header Cache-Control "public, max-age=60";
    }
  }
}
CONF

# --- Caddy -------------------------------------------------------------------------------
CADDY_PORT=$(free_port)
mkdir -p "$OUT/caddy"
cat >"$OUT/caddy/Caddyfile" <<CONF
{
  admin off
  auto_https off
}
http://127.0.0.1:$CADDY_PORT {
  root * $DIST
  header {
    Content-Security-Policy "$CSP"
    X-Content-Type-Options nosniff
    X-Frame-Options DENY
    Referrer-Policy strict-origin-when-cross-origin
    -Server
  }
  @fp path_regexp \.[0-9a-f]{8}\.[A-Za-z0-9]+$
  @page not path_regexp \.[0-9a-f]{8}\.[A-Za-z0-9]+$
  header @fp Cache-Control "public, max-age=31536000, immutable"
  header @page Cache-Control "public, max-age=60"
  file_server {
    precompressed br gzip
  }
}
CONF

# --- cofferdam ---------------------------------------------------------------------------
CD_PORT=$(free_port)
CD_ADMIN=$(free_port)

# Starts one server on core 0, waits for it, checks it sends the br twin; sets SERVER_PID.
start() {
  local name=$1 url=$2
  shift 2
  taskset -c 0 "$@" >"$OUT/$name.log" 2>&1 &
  SERVER_PID=$!
  PIDS+=("$SERVER_PID")
  wait_http "$url/"
  local enc
  for path in / "$ASSET"; do
    enc=$(curl -s -o /dev/null -D - -H 'Accept-Encoding: br, gzip' "$url$path" | tr -d '\r' |
      awk -F': ' 'tolower($1) == "content-encoding" {e = $2} tolower($1) == "content-length" {l = $2} END {print e "/" l " bytes"}')
    echo "bench: $name $path -> $enc"
  done
}

stop() {
  kill -TERM "$1" 2>/dev/null || true
  for _ in $(seq 1 100); do kill -0 "$1" 2>/dev/null || return 0; sleep 0.1; done
  kill -KILL "$1" 2>/dev/null || true
}

# CPU time (clock ticks) of a server: the process and its children (nginx's worker). The
# share of core 0 it used during a run tells whether the server or wrk was the limit.
cpu_ticks() {
  local pid t=0 f
  for pid in "$1" $(pgrep -P "$1" || true); do
    f=$(cut -d' ' -f14,15 "/proc/$pid/stat" 2>/dev/null) || continue
    t=$((t + ${f% *} + ${f#* }))
  done
  echo "$t"
}
HZ=$(getconf CLK_TCK)

RESULTS="$OUT/static-results.txt"
: >"$RESULTS"
load() {
  local name=$1 url=$2 path label
  for path in / "$ASSET"; do
    label=$([[ $path == / ]] && echo landing || echo asset)
    for round in $(seq 1 "$ROUNDS"); do
      local c0 c1 t0 t1
      c0=$(cpu_ticks "$SERVER_PID")
      t0=$(date +%s.%N)
      run_wrk "static-$name-$label-$round" -t1 -c"$CONNS" -d"$DURATION" --latency \
        -H 'Accept-Encoding: br, gzip' "$url$path"
      t1=$(date +%s.%N)
      c1=$(cpu_ticks "$SERVER_PID")
      printf '%-10s %-8s round %s: %8s req/s  p50 %6s ms  p99 %6s ms  errors %s  server CPU %s%% of core 0\n' \
        "$name" "$label" "$round" "$RPS" "$P50" "$P99" "$BAD" \
        "$(awk -v c=$((c1 - c0)) -v hz="$HZ" -v a="$t0" -v b="$t1" 'BEGIN {printf "%.0f", 100 * c / hz / (b - a)}')"
      echo "$name $label $round $RPS $P50 $P99 $BAD" >>"$RESULTS"
    done
  done
}

# `taskset -c 1` for the load generator: wrk never competes with the server for its core.
wrk() { taskset -c 1 "$(type -P wrk)" "$@"; }

# The throughput runs; ONLY=idle skips them.
if [[ $ONLY != idle ]]; then
  echo "== nginx ($NGINX_NOTE), worker_processes 1"
  start nginx "http://127.0.0.1:$NGINX_PORT" nginx -e "$(realpath "$OUT")/nginx/error.log" -c "$(realpath "$OUT")/nginx/nginx.conf"
  load nginx "http://127.0.0.1:$NGINX_PORT"
  stop "$SERVER_PID"

  echo "== caddy $(caddy version 2>/dev/null | cut -d' ' -f1)"
  # Caddy's Go runtime sizes GOMAXPROCS from the affinity mask: 1 here.
  start caddy "http://127.0.0.1:$CADDY_PORT" env HOME="$(realpath "$OUT")/caddy" XDG_DATA_HOME="$(realpath "$OUT")/caddy" caddy run --adapter caddyfile --config "$OUT/caddy/Caddyfile"
  load caddy "http://127.0.0.1:$CADDY_PORT"
  stop "$SERVER_PID"

  echo "== cofferdam"
  start cofferdam "http://127.0.0.1:$CD_PORT" "$BIN" serve --site "$SITE" --no-build \
    --listen "127.0.0.1:$CD_PORT" --admin "127.0.0.1:$CD_ADMIN"
  load cofferdam "http://127.0.0.1:$CD_PORT"
  stop "$SERVER_PID"

  # --- summary: best round of each (the rounds are there to show noise) ----------------------
  echo
  echo "== static serving, $(nproc) cores, server on core 0, wrk -t1 -c$CONNS -d$DURATION on core 1 (best of $ROUNDS)"
  best() { awk -v n="$1" -v l="$2" -v f="$3" '$1 == n && $2 == l && $4 > r {r = $4; p50 = $5; p99 = $6} END {print (f == "rps" ? r : (f == "p50" ? p50 : p99))}' "$RESULTS"; }
  for label in landing asset; do
    for name in nginx caddy cofferdam; do
      printf '%-8s %-10s %8s req/s  p50 %6s ms  p99 %6s ms\n' "$label" "$name" \
        "$(best $name $label rps)" "$(best $name $label p50)" "$(best $name $label p99)"
    done
    echo "$label: ratio cofferdam/nginx $(ratio "$(best cofferdam $label rps)" "$(best nginx $label rps)")" \
      " cofferdam/caddy $(ratio "$(best cofferdam $label rps)" "$(best caddy $label rps)")" \
      " p99 cofferdam/nginx $(ratio "$(best cofferdam $label p99)" "$(best nginx $label p99)")"
  done
fi

# --- cofferdam's memory with IDLE idle keep-alive connections ------------------------------
# hyper closes a keep-alive connection that sends no request head within header_timeout_ms
# (slowloris guard, 5 s in the example config), so for this measurement the copy's timeout is
# raised to 120 s: the point is what 10,000 open connections cost, not how fast they are shed.
sed -i 's/^header_timeout_ms = .*/header_timeout_ms = 120000/' "$SITE/cofferdam.toml"
echo
echo "== cofferdam RSS with $IDLE idle keep-alive connections"
start cofferdam-idle "http://127.0.0.1:$CD_PORT" "$BIN" serve --site "$SITE" --no-build \
  --listen "127.0.0.1:$CD_PORT" --admin "127.0.0.1:$CD_ADMIN"
CD_PID=$SERVER_PID
SITE_BYTES=$(sed -n 's/.* files, \([0-9]*\) bytes in memory.*/\1/p' "$OUT/cofferdam-idle.log")
rss_kib() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status"; }
# A few thousand requests first, so the "before" figure includes warmed-up runtime buffers.
run_wrk idle-warm -t1 -c64 -d2s "http://127.0.0.1:$CD_PORT/" >/dev/null
BEFORE=$(rss_kib "$CD_PID")
FIFO="$OUT/idle.fifo"
rm -f "$FIFO"
mkfifo "$FIFO"
# The client opens IDLE sockets, sends one GET on each, reads the answer, prints "ready" and
# holds them open until it reads a line on stdin (or 120 s pass).
taskset -c 1 python3 bench/idle-conns.py "$CD_PORT" "$IDLE" <"$FIFO" >"$OUT/idle.out" 2>&1 &
IDLE_PID=$!
PIDS+=("$IDLE_PID")
exec 3>"$FIFO"
for _ in $(seq 1 900); do grep -q '^ready' "$OUT/idle.out" && break; kill -0 "$IDLE_PID" || break; sleep 0.1; done
sleep 2
OPEN=$(curl -s "http://127.0.0.1:$CD_ADMIN/metrics" | awk '$1 == "cofferdam_connections_open" {print $2}')
AFTER=$(rss_kib "$CD_PID")
echo >&3
exec 3>&-
wait "$IDLE_PID" || true
cat "$OUT/idle.out"
stop "$CD_PID"
awk -v b="$BEFORE" -v a="$AFTER" -v s="$SITE_BYTES" -v n="$IDLE" -v o="$OPEN" 'BEGIN {
  printf "site in memory %.2f MiB; RSS before %.1f MiB, with %s connections open (server says %s) %.1f MiB\n", s/1048576, b/1024, n, o, a/1024
  printf "RSS growth %.1f MiB = %.1f KiB per connection (target < 100 MiB beyond the site: %s)\n", (a-b)/1024, (a-b)/n, ((a-b)/1024 < 100 ? "meets" : "MISSES")
}'
