#!/usr/bin/env bash
# Issues 3 and 15: how long `cofferdam build` takes on a 10,000-page site, with and without
# the .br/.gz twins. Targets on the 2-core machine: < 3 s with precompression, < 1 s without.
# What hyperfine times is a rebuild of the same, unchanged site: each build writes over the
# output the build before it kept (.cofferdam-previous-dist), as when you build again after an
# edit. The cold figure, a build into an empty folder with nothing kept (the first build of a
# checkout), is timed too (COLD_RUNS each). Prints both wall times (hyperfine mean ± stddev),
# the ratio precompress / no-precompress and the ratio rebuild / cold.
#
# Usage: bench/build.sh            (PAGES=10000 RUNS=3 by default; env vars override)
#        ALSO_QUALITY=9 bench/build.sh   also times precompression at that brotli quality
#                                        (quality 9 took ~150 s a build here: expect minutes)
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=bench/lib.sh
source bench/lib.sh
trap cleanup EXIT

PAGES=${PAGES:-10000}
RUNS=${RUNS:-3}
COLD_RUNS=${COLD_RUNS:-1}

need hyperfine python3
build_release

# Two copies of the same generated site, differing only in [build] precompress, so the ratio
# isolates the cost of the twins.
# SITE_DIR=/dev/shm/x puts the sites on tmpfs, to tell the build's own time from the disk's.
SITE_DIR=${SITE_DIR:-$OUT}
mkdir -p "$SITE_DIR"
SITE_BR="$SITE_DIR/build-site-br"
SITE_PLAIN="$SITE_DIR/build-site-plain"
python3 bench/gen-site.py . "$SITE_BR" "$PAGES"
rm -rf "$SITE_PLAIN"
cp -r "$SITE_BR" "$SITE_PLAIN"
sed -i 's/^precompress = true/precompress = false/' "$SITE_PLAIN/cofferdam.toml"
grep -q '^precompress = false' "$SITE_PLAIN/cofferdam.toml"
QUALITY=$(sed -n 's/^brotli_quality = \([0-9]*\).*/\1/p' "$SITE_BR/cofferdam.toml")
LEVEL=$(sed -n 's/^gzip_level = \([0-9]*\).*/\1/p' "$SITE_BR/cofferdam.toml")
EXTRA=()
if [[ -n ${ALSO_QUALITY:-} ]]; then
  SITE_Q="$SITE_DIR/build-site-q$ALSO_QUALITY"
  rm -rf "$SITE_Q"
  cp -r "$SITE_BR" "$SITE_Q"
  sed -i "s/^brotli_quality = .*/brotli_quality = $ALSO_QUALITY/" "$SITE_Q/cofferdam.toml"
  EXTRA=(-n "precompress-q$ALSO_QUALITY" "$BIN build --site $SITE_Q")
fi

# Cold: nothing built yet and nothing kept (deleting them is not timed).
hyperfine --runs "$COLD_RUNS" --style basic --export-json "$OUT/build-cold.json" \
  --prepare "rm -rf $SITE_BR/dist $SITE_BR/.cofferdam-previous-dist $SITE_PLAIN/dist $SITE_PLAIN/.cofferdam-previous-dist" \
  -n precompress "$BIN build --site $SITE_BR" \
  -n no-precompress "$BIN build --site $SITE_PLAIN"
# One build first (not timed) so both the page cache and dist/ exist, as on a rebuild; with
# hyperfine's warm-up build, the timed runs then find the previous output kept.
"$BIN" build --site "$SITE_BR" >/dev/null
"$BIN" build --site "$SITE_PLAIN" >/dev/null
# The floor this disk sets for a build that writes every file: creating and then deleting
# 10,000 folders with one file each (or three: the page and its twins), as a build did before
# the previous output was kept. A cold build cannot beat it; a rebuild avoids most of it.
floor() {
  python3 - "$SITE_DIR/fs-floor" "$PAGES" "$1" <<'PY'
import os, shutil, sys, time
root, n, per = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
shutil.rmtree(root, ignore_errors=True)
t = time.time()
for i in range(n):
    d = os.path.join(root, "p", f"{i:05d}")
    os.makedirs(d)
    for name in ("index.html", "index.html.br", "index.html.gz")[:per]:
        with open(os.path.join(d, name), "wb") as f:
            f.write(b"x" * 2960)
shutil.rmtree(root)
print(f"{time.time() - t:.2f}")
PY
}
FLOOR1=$(floor 1)
FLOOR3=$(floor 3)

hyperfine --warmup 1 --runs "$RUNS" --style basic \
  --export-json "$OUT/build.json" \
  -n precompress "$BIN build --site $SITE_BR" \
  -n no-precompress "$BIN build --site $SITE_PLAIN" \
  "${EXTRA[@]}"

# What the twins cost in bytes, to weigh time against size.
sizes() { find "$1/dist" -type f -name "$2" -printf '%s\n' | awk '{s+=$1} END {printf "%.1f MiB", s/1048576}'; }
echo
echo "== build: $PAGES pages in $SITE_DIR ($(df --output=fstype "$SITE_DIR" | tail -1)), $(nproc) cores, brotli_quality=$QUALITY gzip_level=$LEVEL"
echo "html: $(sizes "$SITE_BR" '*.html')   .br: $(sizes "$SITE_BR" '*.br')   .gz: $(sizes "$SITE_BR" '*.gz')"
echo "filesystem floor (python3 creating + deleting $PAGES folders): 1 file each $FLOOR1 s, 3 files each $FLOOR3 s"
python3 - "$OUT/build.json" "$OUT/build-cold.json" <<'PY'
import json, sys
r = {x["command"]: x for x in json.load(open(sys.argv[1]))["results"]}
cold = {x["command"]: x for x in json.load(open(sys.argv[2]))["results"]}
br, plain = r["precompress"], r["no-precompress"]
rows = [("precompress", br, 3.0), ("no-precompress", plain, 1.0)]
rows += [(k, v, 3.0) for k, v in r.items() if k.startswith("precompress-q")]
print("rebuild of the unchanged site, previous output kept:")
for name, x, target in rows:
    verdict = "meets" if x["mean"] < target else "MISSES"
    print(f"  {name:15s} mean {x['mean']:.3f} s ± {x['stddev'] or 0:.3f}  min {x['min']:.3f} s  "
          f"(target < {target:g} s: {verdict})")
print(f"  ratio precompress/no-precompress: {br['mean'] / plain['mean']:.2f}")
print("cold build into an empty folder, nothing kept:")
for name in ("precompress", "no-precompress"):
    x = cold[name]
    print(f"  {name:15s} mean {x['mean']:.3f} s  min {x['min']:.3f} s  ({len(x['times'])} runs); "
          f"rebuild/cold {r[name]['mean'] / x['mean']:.2f}")
PY
