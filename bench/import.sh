#!/usr/bin/env bash
# Issue 4: `cofferdam import` of 1,000,000 collected orders into PostgreSQL, against loading the
# same rows with `psql \copy` (CSV) into the same tables of the same database, in one run.
# Prints both wall times, records/s and the ratio cofferdam/\copy.
#
# The records are written by examples/gen_records.rs with the library's own Record type and
# segment naming, so they are byte-for-byte what the collector writes. The same program
# writes the users/orders/order_items rows those orders become under the example [import]
# mapping, as CSV, for \copy. PostgreSQL: the local instance (PG_URL_BASE, default
# postgres://postgres@127.0.0.1:5432), scratch database cofferdam_bench_import, dropped at the end.
#
# Usage: bench/import.sh   (COUNT=1000000 PG_URL_BASE=... override)
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=bench/lib.sh
source bench/lib.sh

COUNT=${COUNT:-1000000}
PG_URL_BASE=${PG_URL_BASE:-postgres://postgres@127.0.0.1:5432}
DB=cofferdam_bench_import
URL="$PG_URL_BASE/$DB"
# Import and \copy each get this long at most: the bench must end on its own.
LIMIT=${LIMIT:-600}

need postgresql-client python3
build_release
cargo build --release --quiet --example gen_records
GEN="$(dirname "$BIN")/examples/gen_records"

SCRATCH=$(mktemp -d "${TMPDIR:-/tmp}/cofferdam-import.XXXXXX")
PSQL=(psql "$PG_URL_BASE/postgres" -v ON_ERROR_STOP=1 -qAt)
# shellcheck disable=SC2317  # run from the trap
on_exit() {
  cleanup
  "${PSQL[@]}" -c "DROP DATABASE IF EXISTS $DB" >/dev/null 2>&1 || true
  rm -rf "$SCRATCH"
}
trap on_exit EXIT

# A copy of the example site whose collected/ holds the generated records.
SITE="$SCRATCH/site"
mkdir -p "$SITE"
cp -r cofferdam.toml content templates "$SITE/"
T0=$(date +%s.%N)
"$GEN" "$SITE/collected" "$COUNT" "$SCRATCH/csv"
T1=$(date +%s.%N)
echo "bench: generated $COUNT records ($(du -sh "$SITE/collected" | cut -f1)) and their CSV rows in $(awk -v a="$T0" -v b="$T1" 'BEGIN {printf "%.1f", b - a}') s"

counts() {
  psql "$URL" -qAt -c "select (select count(*) from users) || ' users, ' || (select count(*) from orders) || ' orders, ' || (select count(*) from order_items) || ' items'"
}

fresh_db() {
  "${PSQL[@]}" -c "DROP DATABASE IF EXISTS $DB" -c "CREATE DATABASE $DB"
  psql "$URL" -v ON_ERROR_STOP=1 -q -f examples/shop.postgres.sql
}

# --- cofferdam import ----------------------------------------------------------------------
fresh_db
echo "== cofferdam import --to $URL ($COUNT orders)"
T0=$(date +%s.%N)
set +e
timeout "$LIMIT" "$BIN" import --site "$SITE" --to "$URL" >"$OUT/import-cofferdam.log" 2>&1
IMPORT_RC=$?
set -e
T1=$(date +%s.%N)
IMPORT_SECS=$(awk -v a="$T0" -v b="$T1" 'BEGIN {printf "%.2f", b - a}')
tail -5 "$OUT/import-cofferdam.log"
if ((IMPORT_RC == 0)); then
  ROWS=$(counts)
  echo "bench: import took $IMPORT_SECS s -> $ROWS"
else
  echo "bench: cofferdam import FAILED (exit $IMPORT_RC after $IMPORT_SECS s); its output is in $OUT/import-cofferdam.log"
fi

# --- psql \copy of the same rows -----------------------------------------------------------
fresh_db
echo "== psql \\copy of the same rows (CSV), one transaction per table as \\copy does"
T0=$(date +%s.%N)
timeout "$LIMIT" psql "$URL" -v ON_ERROR_STOP=1 -q <<SQL
\copy users (id, email, given_name, family_name, newsletter, created_at) FROM '$SCRATCH/csv/users.csv' WITH (FORMAT csv)
\copy orders (id, user_id, ref, number, ship_to, street, postcode, city, country, phone, item_count, total_cents, currency, status, paid_cents, payment_provider, payment_id, paid_at, created_at) FROM '$SCRATCH/csv/orders.csv' WITH (FORMAT csv)
\copy order_items (id, order_id, sku, name, quantity, unit_cents) FROM '$SCRATCH/csv/order_items.csv' WITH (FORMAT csv)
SQL
T1=$(date +%s.%N)
COPY_SECS=$(awk -v a="$T0" -v b="$T1" 'BEGIN {printf "%.2f", b - a}')
ROWS=$(counts)
echo "bench: \\copy took $COPY_SECS s -> $ROWS"

echo
echo "== import of $COUNT orders into PostgreSQL $(psql "$URL" -qAt -c 'show server_version'), $(nproc) cores"
rate() { awk -v n="$COUNT" -v s="$1" 'BEGIN {printf "%.0f", n / s}'; }
if ((IMPORT_RC == 0)); then
  echo "cofferdam import  $IMPORT_SECS s  $(rate "$IMPORT_SECS") records/s"
else
  echo "cofferdam import  FAILED (exit $IMPORT_RC), see above"
fi
echo "psql \\copy        $COPY_SECS s  $(rate "$COPY_SECS") records/s"
if ((IMPORT_RC == 0)); then
  echo "ratio cofferdam/\\copy (records/s): $(ratio "$COPY_SECS" "$IMPORT_SECS")"
fi
exit "$IMPORT_RC"
