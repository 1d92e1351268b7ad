#!/usr/bin/env bash
# Layer streaming under a memory budget: decode speed against the rate implied by reading the
# streamed weights from disk once per token, and logits against the unbounded run.
#
#   scripts/stream_time.sh MODEL [BUDGET]        # BUDGET defaults to 4GiB; needs root (drops the page cache)
#
# 1. The disk's sequential read rate: the weight files read with `dd bs=16M iflag=direct` (large
#    direct reads: what the disk can deliver; buffered `cat` gets less on this machine's disk).
# 2. `frugal bench --max-memory BUDGET` (8 prompt tokens, 4 generated, --ctx 64) under
#    /usr/bin/time -v: decode tok/s, bytes streamed per token (the plan), the disk read rate while
#    decoding, peak RSS; the implied rate is the cold read rate / bytes streamed per token.
# 3. `frugal logits` of 8 tokens with and without the budget: the JSON outputs must be identical.
set -euo pipefail
model=${1:?usage: scripts/stream_time.sh MODEL [BUDGET]}
budget=${2:-4GiB}
here=$(cd "$(dirname "$0")/.." && pwd)
frugal=${FRUGAL:-$here/target/release/frugal}
threads=${THREADS:-2}
[ -x "$frugal" ] || (cd "$here" && cargo build --release)
files=$(find "$model" -maxdepth 1 \( -name '*.safetensors' -o -name '*.ckpt' -o -name '*.bin' -o -name '*.gguf' \) | sort)
[ -f "$model" ] && files=$model
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
sync; echo 3 > /proc/sys/vm/drop_caches
t0=$(date +%s.%N); for f in $files; do dd if="$f" of=/dev/null bs=16M iflag=direct status=none; done; t1=$(date +%s.%N)
bytes=$(stat -c %s $files | awk '{s += $1} END {printf "%.0f", s}')
sync; echo 3 > /proc/sys/vm/drop_caches
/usr/bin/time -v -o "$tmp/time" "$frugal" bench -m "$model" --max-memory "$budget" --threads "$threads" \
  --prompt-tokens 8 --gen-tokens 4 --runs 1 --ctx 64 --json > "$tmp/bench.json" 2> "$tmp/bench.err" ||
  { cat "$tmp/bench.err"; exit 1; }
toks=2,651,6974,573,11988,576,1913,235265
"$frugal" logits -m "$model" --tokens $toks --threads "$threads" --json > "$tmp/free.json" 2>/dev/null
"$frugal" logits -m "$model" --tokens $toks --threads "$threads" --max-memory "$budget" --json > "$tmp/budget.json" 2>/dev/null
same=$(python3 -c 'import json, sys; a, b = (json.load(open(f))["logits"] for f in sys.argv[1:]); print("identical" if a == b else "DIFFERENT")' "$tmp/free.json" "$tmp/budget.json")
python3 - "$tmp/bench.json" "$tmp/time" "$t0" "$t1" "$bytes" "$budget" "$same" <<'PY'
import json, re, sys
b = json.load(open(sys.argv[1]))
maxrss = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", open(sys.argv[2]).read()).group(1)) * 1024
rate = int(sys.argv[5]) / (float(sys.argv[4]) - float(sys.argv[3]))
G = 1 << 30
s = b.get("streamed_bytes_per_token")
print(f"budget {sys.argv[6]}: weights {b['weights_bytes'] / G:.2f} GiB, peak RSS {b['peak_rss_bytes'] / G:.3f} GiB"
      f" (time -v {maxrss / G:.3f} GiB), peak anonymous {b['peak_anon_bytes'] / (1 << 20):.1f} MiB")
if s:
    print(f"streamed per token {s / G:.2f} GiB; disk read {rate / 1e9:.2f} GB/s -> implied {rate / s:.4f} tok/s;"
          f" decode {b['decode_tok_s']:.4f} tok/s (disk read while decoding {b['decode_disk_read_bytes_per_s'] / 1e9:.2f} GB/s)")
else:
    print(f"not streamed: everything fits; decode {b['decode_tok_s']:.2f} tok/s")
print(f"logits with and without the budget: {sys.argv[7]}")
PY
