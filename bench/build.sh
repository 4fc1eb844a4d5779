#!/usr/bin/env bash
# Issue 3: how long `cofferdam build` takes on a 10,000-page site, with and without the
# .br/.gz twins. Targets on the 2-core machine: < 5 s with precompression, < 1 s without.
# Prints both wall times (hyperfine mean ± stddev) and the ratio precompress / no-precompress.
#
# Usage: bench/build.sh            (PAGES=10000 RUNS=3 by default; env vars override)
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=bench/lib.sh
source bench/lib.sh
trap cleanup EXIT

PAGES=${PAGES:-10000}
RUNS=${RUNS:-3}

need hyperfine python3
build_release

# Two copies of the same generated site, differing only in [build] precompress, so the ratio
# isolates the cost of the twins.
SITE_BR="$OUT/build-site-br"
SITE_PLAIN="$OUT/build-site-plain"
python3 bench/gen-site.py . "$SITE_BR" "$PAGES"
rm -rf "$SITE_PLAIN"
cp -r "$SITE_BR" "$SITE_PLAIN"
sed -i 's/^precompress = true/precompress = false/' "$SITE_PLAIN/cofferdam.toml"
grep -q '^precompress = false' "$SITE_PLAIN/cofferdam.toml"
QUALITY=$(sed -n 's/^brotli_quality = //p' "$SITE_BR/cofferdam.toml")
LEVEL=$(sed -n 's/^gzip_level = //p' "$SITE_BR/cofferdam.toml")

# One build first (not timed) so both the page cache and dist/ exist, as on a rebuild.
"$BIN" build --site "$SITE_BR" >/dev/null
"$BIN" build --site "$SITE_PLAIN" >/dev/null

hyperfine --warmup 1 --runs "$RUNS" --style basic \
  --export-json "$OUT/build.json" \
  -n precompress "$BIN build --site $SITE_BR" \
  -n no-precompress "$BIN build --site $SITE_PLAIN"

# What the twins cost in bytes, to weigh time against size.
sizes() { find "$1/dist" -type f -name "$2" -printf '%s\n' | awk '{s+=$1} END {printf "%.1f MiB", s/1048576}'; }
echo
echo "== build: $PAGES pages, $(nproc) cores, brotli_quality=$QUALITY gzip_level=$LEVEL"
echo "html: $(sizes "$SITE_BR" '*.html')   .br: $(sizes "$SITE_BR" '*.br')   .gz: $(sizes "$SITE_BR" '*.gz')"
python3 - "$OUT/build.json" <<'PY'
import json, sys
r = {x["command"]: x for x in json.load(open(sys.argv[1]))["results"]}
br, plain = r["precompress"], r["no-precompress"]
for name, x, target in (("precompress", br, 5.0), ("no-precompress", plain, 1.0)):
    verdict = "meets" if x["mean"] < target else "MISSES"
    print(f"{name:15s} mean {x['mean']:.3f} s ± {x['stddev'] or 0:.3f}  min {x['min']:.3f} s  "
          f"(target < {target:g} s: {verdict})")
print(f"ratio precompress/no-precompress: {br['mean'] / plain['mean']:.2f}")
PY
