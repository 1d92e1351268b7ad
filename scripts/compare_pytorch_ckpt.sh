#!/usr/bin/env bash
# frugal against the gemma_pytorch loading path on the same synthetic .ckpt, in one run.
#
#   scripts/compare_pytorch_ckpt.sh SHAPE [DIR]
#
# SHAPE is a `frugal synth` shape (gemma-2b, gemma-7b, gemma2-9b, ...). DIR (default
# /work/models/SHAPE-ckpt) receives `frugal synth --shape SHAPE --format ckpt` unless it already
# holds model.ckpt; the disk must have room for it (about 17 GB for gemma-7b, 18.5 GB for
# gemma2-9b). Then, each from a cold page cache when this user may drop it (root):
#   1. frugal bench on DIR/model.ckpt: 8 prompt tokens, 16 generated, --ctx 64, 2 threads; time
#      to first token, peak RSS and peak anonymous memory (its report and /usr/bin/time -v);
#   2. scripts/pytorch_load_path.py (parameters allocated in bf16, torch.load with mmap,
#      load_state_dict copies) under a time limit of $LIMIT seconds (default 1800): load time and
#      peak memory, or how it ended (killed for lack of memory, or over the limit).
# Prints a Markdown table on stdout. Delete DIR afterwards if the disk is short.
set -euo pipefail
SHAPE="${1:?usage: $0 SHAPE [DIR]}"
DIR="${2:-/work/models/$SHAPE-ckpt}"
LIMIT="${LIMIT:-1800}"
THREADS="${THREADS:-2}"
HERE="$(cd "$(dirname "$0")" && pwd)"
ROOT="$(dirname "$HERE")"
FRUGAL="$ROOT/target/release/frugal"
PY="$ROOT/.venv/bin/python"
[ -x "$PY" ] || { echo "error: $PY missing: run scripts/setup_python.sh first" >&2; exit 1; }
(cd "$ROOT" && cargo build --release -q)
if [ ! -f "$DIR/model.ckpt" ]; then
    echo "writing $SHAPE to $DIR (frugal synth --format ckpt)" >&2
    "$FRUGAL" synth --shape "$SHAPE" --format ckpt --out "$DIR" >&2
fi
OUT="$(mktemp -d)"
trap 'rm -rf "$OUT"' EXIT
cold() {
    sync
    if [ -w /proc/sys/vm/drop_caches ]; then echo 3 > /proc/sys/vm/drop_caches; echo cold; else echo warm; fi
}

echo "frugal bench" >&2
CACHE_F="$(cold)"
/usr/bin/time -v -o "$OUT/frugal-time.txt" "$FRUGAL" bench -m "$DIR/model.ckpt" --threads "$THREADS" \
    --ctx 64 --prompt-tokens 8 --gen-tokens 16 --runs 1 --json > "$OUT/frugal.json" 2> "$OUT/frugal.err"

echo "PyTorch loading path (limit ${LIMIT}s)" >&2
CACHE_P="$(cold)"
set +e
/usr/bin/time -v -o "$OUT/torch-time.txt" timeout -s KILL "$LIMIT" "$PY" "$HERE/pytorch_load_path.py" "$DIR/model.ckpt" \
    > "$OUT/torch.json" 2> "$OUT/torch.err"
TORCH_RC=$?
set -e
KILLED_OOM=0
if [ "$TORCH_RC" -ne 0 ] && dmesg 2>/dev/null | tail -50 | grep -qi "killed process.*python"; then KILLED_OOM=1; fi

python3 - "$OUT" "$SHAPE" "$TORCH_RC" "$KILLED_OOM" "$LIMIT" "$CACHE_F" "$CACHE_P" <<'PY'
import json, re, sys
out, shape, rc, oom, limit, cache_f, cache_p = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4] == "1", int(sys.argv[5]), sys.argv[6], sys.argv[7]
GiB, MiB = 2**30, 2**20
def tv(name):
    t = open(f"{out}/{name}").read()
    hwm = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", t).group(1)) * 1024
    m = re.search(r"Elapsed \(wall clock\) time \(h:mm:ss or m:ss\): (?:(\d+):)?(\d+):([\d.]+)", t)
    wall = int(m.group(1) or 0) * 3600 + int(m.group(2)) * 60 + float(m.group(3))
    return hwm, wall
f = json.load(open(f"{out}/frugal.json"))
f_hwm, f_wall = tv("frugal-time.txt")
w = f["weights_bytes"]
kv = f.get("kv_cache_bytes", 0)
print(f"| {shape} | frugal | PyTorch path |")
print("|---|---|---|")
print(f"| page cache at start | {cache_f} | {cache_p} |")
t_hwm, t_wall = tv("torch-time.txt")
if rc == 0:
    t = json.load(open(f"{out}/torch.json"))
    torch_load = f"{t['load_s']:.1f} s (load only)"
    torch_rss = f"{t['peak_rss_bytes'] / GiB:.2f} GiB ({t['peak_rss_bytes'] / w:.2f}x)"
    torch_anon = f"{t['peak_anon_bytes'] / GiB:.2f} GiB"
else:
    how = "killed for lack of memory" if oom or rc in (137, -9) and t_wall < limit - 1 else f"stopped at the {limit} s limit"
    torch_load = f"did not finish: {how} after {t_wall:.0f} s"
    torch_rss = f"{t_hwm / GiB:.2f} GiB when stopped ({t_hwm / w:.2f}x)"
    torch_anon = "n/a"
print(f"| weights | {w / GiB:.2f} GiB | same file |")
print(f"| time to first token / load time | {f['ttft_s']:.1f} s (load {f['load_s']:.2f} s) | {torch_load} |")
print(f"| peak RSS | {f_hwm / GiB:.2f} GiB ({f_hwm / w:.3f}x; limit weights + KV + 64 MiB = {(w + kv + 64 * MiB) / GiB:.2f} GiB) | {torch_rss} |")
print(f"| peak anonymous | {f['peak_anon_bytes'] / MiB:.1f} MiB (KV cache {kv / MiB:.1f} MiB) | {torch_anon} |")
print(f"| decode | {f['decode_tok_s']:.2f} tok/s | - |")
PY
