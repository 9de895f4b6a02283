#!/usr/bin/env bash
# Secrets-scan throughput: egressguard's scanner vs gitleaks (default rules)
# on the same generated tree, in one run. Not part of `make test`.
#
#   bench/scan.sh                 # 20 MB tree, seed 1
#   SIZE=200MB bench/scan.sh      # larger (gitleaks needs about half an hour per 10 MB of this tree on 2 busy cores)
#
# Prints a Markdown table: wall MB/s, CPU seconds, peak RSS, and ratios.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
WORK=${WORK:-/tmp/egressguard-scan-bench}
SIZE=${SIZE:-20MB}
SEED=${SEED:-1}
GITLEAKS_VERSION=${GITLEAKS_VERSION:-v8.30.1}
mkdir -p "$WORK/bin"

echo "# building the corpus generator and the scanner driver" >&2
(cd "$ROOT" && go build -o "$WORK/bin/stagegen" ./secrets-scan/testdata/stagegen/cmd/stagegen)
(cd "$ROOT" && go build -o "$WORK/bin/egscan" ./bench/scan/egscan)
(cd "$ROOT" && go build -o "$WORK/bin/egressguard" ./cmd/egressguard)

if [ ! -x "$WORK/bin/gitleaks" ]; then
	echo "# installing gitleaks $GITLEAKS_VERSION (go install)" >&2
	GOBIN="$WORK/bin" GOFLAGS=-mod=mod go install "github.com/zricethezav/gitleaks/v8@$GITLEAKS_VERSION"
fi

TREE="$WORK/tree-$SIZE-$SEED"
CATALOG="$WORK/catalog-$SIZE-$SEED.yaml"
if [ ! -d "$TREE" ]; then
	echo "# generating $SIZE (seed $SEED) in $TREE" >&2
	"$WORK/bin/stagegen" -out "$TREE.tmp" -size "$SIZE" -seed "$SEED" -labels "$WORK/labels-$SIZE-$SEED.json" -catalog "$WORK/catalog-$SIZE-$SEED.yaml" >&2
	mv "$TREE.tmp" "$TREE"
fi
BYTES=$(find "$TREE" -type f -printf '%s\n' | awk '{s+=$1} END {print s}')
FILES=$(find "$TREE" -type f | wc -l)

# Warm the page cache so both tools read from memory.
find "$TREE" -type f -exec cat {} + >/dev/null

# measure NAME CMD...: wall seconds, user+sys seconds, max RSS (KiB)
measure() {
	local name=$1; shift
	local tf="$WORK/time-$name.txt"
	/usr/bin/time -f '%e %U %S %M' -o "$tf" "$@" >"$WORK/out-$name.log" 2>&1 || true
	# the last line: GNU time first notes a non-zero exit status (findings)
	read -r wall user sys rss < <(tail -n 1 "$tf")
	echo "$name $wall $(echo "$user + $sys" | bc) $rss"
}

echo "# scanning $FILES files, $BYTES bytes" >&2
[ -f "$CATALOG" ] || "$WORK/bin/stagegen" -out "$WORK/unused" -size 1KB -seed "$SEED" -catalog "$CATALOG" >/dev/null
# The CLI exactly as users run it (catalog file; JWT issuers and Twilio SIDs are not in
# the catalog schema yet), and the library with the corpus's complete production.
CLI=$(measure egressguard-cli "$WORK/bin/egressguard" scan --catalog "$CATALOG" --format json -o "$WORK/egressguard-cli.json" "$TREE")
EG=$(measure egressguard "$WORK/bin/egscan" -seed "$SEED" -o "$WORK/egressguard.json" "$TREE")
GL=$(measure gitleaks "$WORK/bin/gitleaks" dir "$TREE" --no-banner --log-level error --exit-code 0 --report-format json --report-path "$WORK/gitleaks.json")
tail -n 2 "$WORK/out-egressguard.log" >&2

python3 - "$BYTES" "$FILES" "$WORK" "$TREE" "$WORK/labels-$SIZE-$SEED.json" "$EG" "$CLI" "$GL" <<'PY'
import json, sys
nbytes, files = int(sys.argv[1]), int(sys.argv[2])
work, tree, labels = sys.argv[3], sys.argv[4], sys.argv[5]
rows = [r.split() for r in sys.argv[6:]]
mb = nbytes / 1e6
def findings(name):
    try:
        d = json.load(open(f"{work}/{name}.json"))
        return len(d["findings"]) if isinstance(d, dict) else len(d)
    except Exception:
        return "?"
res = {}
for name, wall, cpu, rss in rows:
    wall, cpu, rss = float(wall), float(cpu), int(rss)
    res[name] = dict(wall=wall, cpu=cpu, rss=rss / 1024, mbs=mb / wall, cpumbs=mb / cpu if cpu else 0, findings=findings(name))
eg, gl = res["egressguard"], res["gitleaks"]
print(f"Tree: {files} files, {mb:.1f} MB (stagegen seed, page cache warm), 2 cores.\n")
print("| scanner | wall s | MB/s (wall) | CPU s | MB per CPU-s | peak RSS MiB | findings |")
print("|---|---:|---:|---:|---:|---:|---:|")
for name in ("egressguard", "egressguard-cli", "gitleaks"):
    r = res[name]
    print(f"| {name} | {r['wall']:.1f} | {r['mbs']:.2f} | {r['cpu']:.1f} | {r['cpumbs']:.2f} | {r['rss']:.0f} | {r['findings']} |")
cli = res["egressguard-cli"]
print(f"\negressguard = library with the corpus's full production; egressguard-cli = `egressguard scan --catalog`.")
print(f"Ratios egressguard-cli/gitleaks: throughput ×{cli['mbs']/gl['mbs']:.1f} (wall), ×{cli['cpumbs']/gl['cpumbs']:.1f} (per CPU-second); peak RSS ×{cli['rss']/gl['rss']:.2f}.")
print(f"Ratios egressguard/gitleaks: throughput ×{eg['mbs']/gl['mbs']:.1f} (wall), ×{eg['cpumbs']/gl['cpumbs']:.1f} (per CPU-second); peak RSS ×{eg['rss']/gl['rss']:.2f}.")

# Precision and recall against the generator's labels (file, line, kind; a
# label may span lines). gitleaks has no kinds: any finding on a line
# labeled secret or credential counts as found, any other is a false positive.
want = {}
for l in json.load(open(labels))["labels"]:
    for d in range(l["span"]):
        want[(l["file"], l["line"] + d, l["kind"])] = (l["file"], l["line"], l["kind"])
def rel(p):
    return p[len(tree) + 1:] if p.startswith(tree + "/") else p
def score(hits, kinds):
    pos = {v for v in want.values() if v[2] in kinds}
    found, fp = set(), 0
    for h in hits:
        m = [want.get((h[0], h[1], k)) for k in kinds]
        m = [x for x in m if x]
        if m:
            found.add(m[0])
        else:
            fp += 1
    tp = len(found)
    p = tp / max(tp + fp, 1)
    r = tp / max(len(pos), 1)
    return p, r, 2 * p * r / max(p + r, 1e-9)
print("\n| scanner | kind | precision | recall | F1 |")
print("|---|---|---:|---:|---:|")
for name in ("egressguard", "egressguard-cli"):
    fs = json.load(open(f"{work}/{name}.json"))["findings"]
    for kind in ("secret", "endpoint", "identifier", "credential"):
        hits = {(rel(f["file"]), f["line"]) for f in fs if f["kind"] == kind}
        p, r, f1 = score(hits, [kind])
        print(f"| {name} | {kind} | {p:.4f} | {r:.4f} | {f1:.4f} |")
gl = json.load(open(f"{work}/gitleaks.json"))
hits = {(rel(f["File"]), f["StartLine"]) for f in gl}
p, r, f1 = score(hits, ["secret", "credential"])
print(f"| gitleaks | any finding vs secret+credential labels | {p:.4f} | {r:.4f} | {f1:.4f} |")
PY
