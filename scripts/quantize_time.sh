#!/usr/bin/env bash
# Load-plus-quantize time against reading the checkpoint once, both from a cold page cache, in
# one run (issue 4's target: quantizing while loading costs at most 1.5x the cold read).
#
#   scripts/quantize_time.sh MODEL [q8 q4 q4k q4km ...]   # needs root (drops the page cache)
#
# For each kind: drop the page cache, `cat` every weight file to /dev/null (the cold read), drop
# the page cache again, then `frugal bench --quant KIND --prompt-tokens 8 --gen-tokens 1 --runs 1
# --json` under /usr/bin/time -v; prints load_s (map + quantize), the ratio to the cold read, and
# the run's peak RSS and anonymous memory against the quantized bytes.
set -euo pipefail
model=${1:?usage: scripts/quantize_time.sh MODEL [KIND...]}
shift

[ $# -gt 0 ] && kinds=("$@") || kinds=(q8 q4)
here=$(cd "$(dirname "$0")/.." && pwd)
frugal=${FRUGAL:-$here/target/release/frugal}
threads=${THREADS:-2}
[ -x "$frugal" ] || (cd "$here" && cargo build --release)
files=$(find "$model" -maxdepth 1 \( -name '*.safetensors' -o -name '*.ckpt' -o -name '*.bin' \) | sort)
[ -f "$model" ] && files=$model
drop() { sync; echo 3 > /proc/sys/vm/drop_caches; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
for k in "${kinds[@]}"; do
  drop
  t0=$(date +%s.%N)
  cat $files > /dev/null
  t1=$(date +%s.%N)
  drop
  /usr/bin/time -v -o "$tmp/time" "$frugal" bench -m "$model" --quant "$k" --threads "$threads" \
    --prompt-tokens 8 --gen-tokens 1 --runs 1 --ctx 64 --json > "$tmp/bench.json" 2>/dev/null
  python3 - "$tmp/bench.json" "$tmp/time" "$t0" "$t1" "$k" <<'PY'
import json, re, sys
b = json.load(open(sys.argv[1]))
maxrss = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", open(sys.argv[2]).read()).group(1)) * 1024
read = float(sys.argv[4]) - float(sys.argv[3])
G = 1 << 30
w = b["weights_bytes"]
print(f"{sys.argv[5]:4s} cold read {read:6.2f} s | load+quantize {b['load_s']:6.2f} s = {b['load_s'] / read:4.2f}x"
      f" | weights {w / G:.3f} GiB, peak RSS {b['peak_rss_bytes'] / G:.3f} GiB ({b['peak_rss_bytes'] / w:.3f}x;"
      f" time -v {maxrss / G:.3f} GiB), peak anonymous {b['peak_anon_bytes'] / G:.3f} GiB")
PY
done
