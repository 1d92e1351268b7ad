#!/usr/bin/env bash
# frugal and llama.cpp side by side on the same weights, alternating runs, medians.
#
#   scripts/compare_llamacpp.sh MODEL_DIR [ROUNDS]
#
# MODEL_DIR is a Hugging Face Gemma folder (e.g. from `frugal synth --shape gemma-2b`); the peer
# runs on a bf16 GGUF converted from it (scripts/peer_llamacpp.sh). QUANT=q8 or q4 compares
# frugal's quantize-on-load (`--quant`) with llama.cpp's Q8_0 or Q4_0 file of the same weights
# (made by llama-quantize; PURE=1 for every tensor in that type, else llama.cpp's default mix). Each round measures, with
# $THREADS (2) threads: frugal bench (64-token prefill, 32-token decode), llama.cpp's llama-bench
# (pp64, tg32), and both programs' peak RSS and peak anonymous memory over a 16-token generation
# with --ctx 256. Prints a Markdown table of medians on stdout.
set -euo pipefail
MODEL_DIR="${1:?usage: $0 MODEL_DIR [ROUNDS]}"
ROUNDS="${2:-3}"
THREADS="${THREADS:-2}"
QUANT="${QUANT:-}"
case "$QUANT" in
    "") QARGS=(); GGUF_TYPE=BF16 ;;
    q8) QARGS=(--quant q8); GGUF_TYPE=Q8_0 ;;
    q4) QARGS=(--quant q4); GGUF_TYPE=Q4_0 ;;
    *) echo "QUANT must be q8 or q4" >&2; exit 2 ;;
esac
HERE="$(cd "$(dirname "$0")" && pwd)"
ROOT="$(dirname "$HERE")"
FRUGAL="$ROOT/target/release/frugal"
(cd "$ROOT" && cargo build --release -q)
OUT="$(mktemp -d)"
trap 'rm -rf "$OUT"' EXIT
for i in $(seq 1 "$ROUNDS"); do
    echo "round $i/$ROUNDS: frugal" >&2
    "$FRUGAL" bench -m "$MODEL_DIR" --threads "$THREADS" --ctx 256 --prompt-tokens 64 --gen-tokens 32 --runs 1 --json "${QARGS[@]}" \
        > "$OUT/frugal-bench-$i.json" 2>/dev/null
    "$FRUGAL" run -m "$MODEL_DIR" "${QARGS[@]}" --threads "$THREADS" --ctx 256 -n 16 -p "The quick brown fox jumps over the lazy dog. Once upon a time" \
        > /dev/null 2> "$OUT/frugal-run-$i.txt"
    /usr/bin/time -v -o "$OUT/frugal-time-$i.txt" "$FRUGAL" run -m "$MODEL_DIR" "${QARGS[@]}" --threads "$THREADS" --ctx 256 -n 16 \
        -p "The quick brown fox jumps over the lazy dog. Once upon a time" > /dev/null 2>&1
    echo "round $i/$ROUNDS: llama.cpp" >&2
    GGUF_TYPE="$GGUF_TYPE" THREADS="$THREADS" PP=64 TG=32 REPS=1 "$HERE/peer_llamacpp.sh" "$MODEL_DIR" > "$OUT/peer-$i.json" 2>/dev/null
    # The read ceiling right after llama.cpp's runs, on the file it ran (frugal's bench
    # measured it after its own decode).
    if [[ "$GGUF_TYPE" == BF16 ]]; then PEER_FILE="$MODEL_DIR/model-bf16.gguf"; else PEER_FILE="$MODEL_DIR/model-$GGUF_TYPE${PURE:+-pure}.gguf"; fi
    "$FRUGAL" bench -m "$PEER_FILE" --threads "$THREADS" --ctx 8 --prompt-tokens 1 --gen-tokens 1 --runs 1 --json \
        > "$OUT/ceiling-$i.json" 2>/dev/null
done
GGUF_TYPE="$GGUF_TYPE" python3 - "$OUT" "$ROUNDS" "$MODEL_DIR" <<'PY'
import json, re, statistics, sys, glob, os
out, rounds, model = sys.argv[1], int(sys.argv[2]), sys.argv[3]
med = statistics.median
fb = [json.load(open(f"{out}/frugal-bench-{i}.json")) for i in range(1, rounds + 1)]
pr = [json.load(open(f"{out}/peer-{i}.json")) for i in range(1, rounds + 1)]
def parse_run(i):
    t = open(f"{out}/frugal-run-{i}.txt").read()
    unit = {"MiB": 2**20, "GiB": 2**30}
    rss = re.search(r"peak RSS\s+([\d.]+) (MiB|GiB)", t); anon = re.search(r"peak anonymous\s+([\d.]+) (MiB|GiB)", t)
    tv = open(f"{out}/frugal-time-{i}.txt").read()
    hwm = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", tv).group(1)) * 1024
    return float(rss.group(1)) * unit[rss.group(2)], float(anon.group(1)) * unit[anon.group(2)], hwm
runs = [parse_run(i) for i in range(1, rounds + 1)]
w = fb[0]["weights_bytes"]
g = pr[0]["gguf_bytes"]
f_dec, p_dec = med([x["decode_tok_s"] for x in fb]), med([x["decode_tok_s"] for x in pr])
f_pre, p_pre = med([x["prefill_tok_s"] for x in fb]), med([x["prefill_tok_s"] for x in pr])
f_rss = med([r[2] for r in runs]); f_anon = med([r[1] for r in runs])
# Decode as a fraction of the read ceiling: frugal's probe after its own decode and after
# llama.cpp's, averaged per round; each program's bytes per token are those of what it runs.
cb = [json.load(open(f"{out}/ceiling-{i}.json")) for i in range(1, rounds + 1)]
ceil = [(a["weights_read_bytes_per_s"] + c["weights_read_bytes_per_s"]) / 2 for a, c in zip(fb, cb)]
f_c = med([x["decode_tok_s"] * x["decode_bytes_per_token"] / c for x, c in zip(fb, ceil)])
p_c = med([x["decode_tok_s"] * cb[0]["decode_bytes_per_token"] / c for x, c in zip(pr, ceil)])
p_rss = med([x["peak_rss_bytes"] for x in pr]); p_anon = med([x["peak_anon_bytes"] for x in pr])
GiB = 2**30; MiB = 2**20
q = os.environ.get("QUANT") or "bf16"
peer = os.environ.get("GGUF_TYPE", "BF16") + (" --pure" if os.environ.get("PURE") else "")
print(f"Model: {model}, frugal {q} ({w/GiB:.2f} GiB of weights as used), llama.cpp {peer} GGUF ({g/GiB:.2f} GiB), {rounds} alternating rounds, medians, 2 threads\n")
print("| | frugal | llama.cpp | frugal / llama.cpp |")
print("|---|---|---|---|")
print(f"| decode tok/s | {f_dec:.2f} | {p_dec:.2f} | {f_dec/p_dec:.2f}x |")
print(f"| decode, % of the read ceiling ({med(ceil)/1e9:.1f} GB/s) | {100*f_c:.0f} % | {100*p_c:.0f} % | |")
print(f"| prefill tok/s (64) | {f_pre:.1f} | {p_pre:.1f} | {f_pre/p_pre:.2f}x |")
print(f"| peak RSS, 16 tokens, ctx 256 | {f_rss/GiB:.3f} GiB ({f_rss/w:.3f}x weights) | {p_rss/GiB:.3f} GiB ({p_rss/g:.3f}x file) | |")
print(f"| peak anonymous | {f_anon/MiB:.1f} MiB | {p_anon/MiB:.1f} MiB | |")
PY
