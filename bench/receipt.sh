#!/usr/bin/env bash
# Issue 14: what the receipt costs. The thank-you page is the only page the server fills per
# request (from the buyer's signed cookie); every other page stays prebuilt. This measures, in
# the same run on the same server:
#   plain    GET /thanks/ without a cookie: the prebuilt page (.br twin, the fast path)
#   receipt  GET /thanks/ with a receipt cookie: HMAC check, JSON decode, the page filled
#            (identity bytes: a filled page is never compressed)
#   landing  GET / with the same cookie: stays prebuilt (the cookie must not slow it)
# Server pinned to core 0, wrk to core 1:
#   taskset -c 1 wrk -t1 -c64 -d10s --latency -H 'Accept-Encoding: br, gzip' [-H 'Cookie: …'] URL
# and prints receipt/plain.
#
# Usage: bench/receipt.sh   (DURATION=10s CONNS=64 ROUNDS=2 override)
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=bench/lib.sh
source bench/lib.sh
trap cleanup EXIT

DURATION=${DURATION:-10s}
CONNS=${CONNS:-64}
ROUNDS=${ROUNDS:-2}

need wrk curl python3 util-linux
build_release

SITE=$(realpath -m "$OUT/receipt-site")
rm -rf "$SITE"
mkdir -p "$SITE"
cp -r cofferdam.toml content templates "$SITE/"
"$BIN" build --site "$SITE" >/dev/null

PORT=$(free_port)
ADMIN=$(free_port)
URL="http://127.0.0.1:$PORT"
COFFERDAM_LOG=warn taskset -c 0 "$BIN" serve --site "$SITE" --no-build --listen "127.0.0.1:$PORT" \
  --admin "127.0.0.1:$ADMIN" >"$OUT/receipt-server.log" 2>&1 &
PIDS+=("$!")
wait_http "$URL/"

# One order, as a browser sends it: the 303 sets the receipt cookie.
COOKIE=$(curl -s -o /dev/null -D - -H "Origin: $URL" -H 'Content-Type: application/x-www-form-urlencoded' \
  --data 'name=Bench+Buyer&email=bench%40example.org&country=DE&street=Hauptstr.+1&postcode=10115&city=Berlin&sku=AURORA-EB&quantity=2' \
  "$URL/submit/order" | tr -d '\r' | awk -F': ' 'tolower($1) == "set-cookie" && $2 ~ /^cofferdam_receipt=/ {split($2, c, ";"); print c[1]}')
[[ -n $COOKIE ]] || { echo "bench: the order's 303 set no receipt cookie" >&2; exit 1; }
curl -s -H "Cookie: $COOKIE" "$URL/thanks/" | grep -q 'class="cd-receipt"' ||
  { echo "bench: /thanks/ with the cookie shows no receipt" >&2; exit 1; }
echo "bench: receipt cookie is ${#COOKIE} bytes; /thanks/ plain $(curl -s -H 'Accept-Encoding: br, gzip' -o /dev/null -w '%{size_download}' "$URL/thanks/") bytes (br), with receipt $(curl -s -H "Cookie: $COOKIE" -H 'Accept-Encoding: br, gzip' -o /dev/null -w '%{size_download}' "$URL/thanks/") bytes (identity)"

wrk() { taskset -c 1 "$(type -P wrk)" "$@"; }
declare -A BEST_RPS BEST_P99
for round in $(seq 1 "$ROUNDS"); do
  for label in plain receipt landing; do
    case $label in
      plain) args=("$URL/thanks/") ;;
      receipt) args=(-H "Cookie: $COOKIE" "$URL/thanks/") ;;
      landing) args=(-H "Cookie: $COOKIE" "$URL/") ;;
    esac
    run_wrk "receipt-$label-$round" -t1 -c"$CONNS" -d"$DURATION" --latency -H 'Accept-Encoding: br, gzip' "${args[@]}"
    echo "round $round $label: $RPS req/s, p50 $P50 ms, p99 $P99 ms, bad $BAD"
    if [[ $BAD != 0 ]]; then
      echo "bench: $BAD failed requests in $label" >&2
      exit 1
    fi
    if (( RPS > ${BEST_RPS[$label]:-0} )); then
      BEST_RPS[$label]=$RPS
      BEST_P99[$label]=$P99
    fi
  done
done
echo
echo "best of $ROUNDS: plain ${BEST_RPS[plain]} req/s (p99 ${BEST_P99[plain]} ms), receipt ${BEST_RPS[receipt]} req/s (p99 ${BEST_P99[receipt]} ms), landing with cookie ${BEST_RPS[landing]} req/s (p99 ${BEST_P99[landing]} ms)"
echo "ratio receipt/plain $(ratio "${BEST_RPS[receipt]}" "${BEST_RPS[plain]}")"
