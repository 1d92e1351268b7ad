#!/usr/bin/env bash
# frugal and llama.cpp side by side on the same GGUF files: a dated markdown table for
# docs/BENCHMARKS.md.
#
#   scripts/bench_gguf.sh [MODEL_DIR] [ROUNDS]
#
# MODEL_DIR (default /work/models/gemma-2b) is a Hugging Face Gemma folder, e.g. from
# `frugal synth --shape gemma-2b`. Its bf16 GGUF is made by llama.cpp's own converter and the
# quantized files by llama.cpp's llama-quantize (cached beside it, see peer_llamacpp.sh):
# $TYPES (default "Q8_0 Q8_0+q8 Q4_0 Q4_0+q4 Q4_K_M", llama-quantize's default mixes; TYPE+qN is that
# file again with frugal's --quant qN, which rearranges its Q8_0 or Q4_0 blocks). For each file, ROUNDS
# (default 3) alternating rounds, $THREADS (2) threads, each program on the same bytes:
#   - speed: `frugal bench` (64-token prefill, 32 generated; median of $RUNS, default 3) and
#     `llama-bench -p 64 -n 32 -r $RUNS` (mean of $RUNS after its warm-up run);
#   - load: wall time to the first token of a 1-token generation (page cache warm);
#   - memory: a 16-token greedy generation with --ctx 256 under /usr/bin/time -v (peak RSS)
#     while /proc/PID/status is sampled (peak anonymous memory).
# Medians. The table goes to stdout and to $OUT (default /tmp/bench_gguf.md), to be pasted into
# docs/BENCHMARKS.md under its date (the file holds the whole diary: never overwrite it).
set -euo pipefail
MODEL_DIR="${1:-/work/models/gemma-2b}"
ROUNDS="${2:-3}"
THREADS="${THREADS:-2}"
RUNS="${RUNS:-3}"
TYPES="${TYPES:-Q8_0 Q8_0+q8 Q4_0 Q4_0+q4 Q4_K_M}"
HERE="$(cd "$(dirname "$0")" && pwd)"
ROOT="$(dirname "$HERE")"
OUT="${OUT:-/tmp/bench_gguf.md}"
FRUGAL="$ROOT/target/release/frugal"
BIN="$("$HERE/build_llamacpp.sh" | tail -1)"
(cd "$ROOT" && cargo build --release -q)
PROMPT="The quick brown fox jumps over the lazy dog. Once upon a time"
TMP="$(mktemp -d)"
trap 'rm -rf "$TMP"' EXIT

# Peak RSS (VmHWM from /usr/bin/time) and sampled peak RssAnon of a command, in bytes.
measure() {
    python3 - "$@" <<'PY'
import subprocess, sys, time, re, tempfile
cmd = sys.argv[1:]
tf = tempfile.NamedTemporaryFile(delete=False).name
p = subprocess.Popen(["/usr/bin/time", "-v", "-o", tf, *cmd], stdout=subprocess.DEVNULL,
                     stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL)
child, anon, t0 = None, 0, time.time()
while p.poll() is None:
    if child is None:
        try:
            kids = open(f"/proc/{p.pid}/task/{p.pid}/children").read().split()
            child = int(kids[0]) if kids else None
        except FileNotFoundError:
            pass
    if child is not None:
        try:
            for line in open(f"/proc/{child}/status"):
                if line.startswith("RssAnon:"):
                    anon = max(anon, int(line.split()[1]) * 1024)
        except (FileNotFoundError, ProcessLookupError):
            pass
    time.sleep(0.002)
wall = time.time() - t0
if p.returncode != 0:
    sys.exit(f"{cmd[0]} failed ({p.returncode})")
hwm = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", open(tf).read()).group(1)) * 1024
print(hwm, anon, f"{wall:.3f}")
PY
}

for T in $TYPES; do
    # TYPE+qN: the same file, frugal with --quant qN (its Q8_0 or Q4_0 blocks rearranged).
    BASE="${T%%+*}"
    Q=()
    [[ "$T" == *+* ]] && Q=(--quant "${T#*+}")
    GGUF_TYPE="$BASE" THREADS="$THREADS" PP=8 TG=2 REPS=1 "$HERE/peer_llamacpp.sh" "$MODEL_DIR" > /dev/null 2>&1 || true
    F="$MODEL_DIR/model-$BASE.gguf"
    [ -s "$F" ] || { echo "missing $F (llama-quantize failed?)" >&2; exit 1; }
    for i in $(seq 1 "$ROUNDS"); do
        echo "$T round $i/$ROUNDS" >&2
        "$FRUGAL" bench -m "$F" "${Q[@]}" --threads "$THREADS" --ctx 256 --prompt-tokens 64 --gen-tokens 32 \
            --runs "$RUNS" --json 2>/dev/null > "$TMP/f-$T-$i.json"
        "$BIN/llama-bench" -m "$F" -t "$THREADS" -p 64 -n 32 -r "$RUNS" -o json 2>/dev/null > "$TMP/l-$T-$i.json"
        # The read ceiling again, right after llama.cpp's run (frugal's bench measured it after its own).
        "$FRUGAL" bench -m "$F" "${Q[@]}" --threads "$THREADS" --ctx 8 --prompt-tokens 1 --gen-tokens 1 \
            --runs 1 --json 2>/dev/null > "$TMP/c-$T-$i.json"
        measure "$FRUGAL" run -m "$F" "${Q[@]}" --threads "$THREADS" --ctx 256 -n 16 -p "$PROMPT" > "$TMP/fm-$T-$i"
        measure "$BIN/llama-completion" -m "$F" -t "$THREADS" -c 256 -p "$PROMPT" -n 16 --temp 0 \
            --ignore-eos -no-cnv --no-display-prompt --simple-io > "$TMP/lm-$T-$i"
        measure "$FRUGAL" run -m "$F" "${Q[@]}" --threads "$THREADS" --ctx 256 -n 1 -p "$PROMPT" > "$TMP/fl-$T-$i"
        measure "$BIN/llama-completion" -m "$F" -t "$THREADS" -c 256 -p "$PROMPT" -n 1 --temp 0 \
            -no-cnv --no-display-prompt --simple-io > "$TMP/ll-$T-$i"
    done
done

python3 - "$TMP" "$ROUNDS" "$MODEL_DIR" "$OUT" "$THREADS" $TYPES <<'PY'
import json, os, statistics, subprocess, sys, datetime
tmp, rounds, model, out, threads, types = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5], sys.argv[6:]
med = statistics.median
GiB, MiB = 2**30, 2**20
def llama(path):
    d = json.load(open(path))
    pp = next(x["avg_ts"] for x in d if x["n_prompt"] > 0 and x["n_gen"] == 0)
    tg = next(x["avg_ts"] for x in d if x["n_gen"] > 0 and x["n_prompt"] == 0)
    return pp, tg
def mem(path):
    h, a, w = open(path).read().split()
    return int(h), int(a), float(w)
rows = []
for t in types:
    f = os.path.join(model, f"model-{t.split('+')[0]}.gguf")
    size = os.path.getsize(f)
    R = range(1, rounds + 1)
    fb = [json.load(open(f"{tmp}/f-{t}-{i}.json")) for i in R]
    lb = [llama(f"{tmp}/l-{t}-{i}.json") for i in R]
    fm = [mem(f"{tmp}/fm-{t}-{i}") for i in R]; lm = [mem(f"{tmp}/lm-{t}-{i}") for i in R]
    fl = [mem(f"{tmp}/fl-{t}-{i}") for i in R]; ll = [mem(f"{tmp}/ll-{t}-{i}") for i in R]
    fd, ld = med([x["decode_tok_s"] for x in fb]), med([x[1] for x in lb])
    # Decode as a fraction of the weights' read rate measured by frugal in the same round (the
    # mean of the probe after frugal's decode and the one after llama.cpp's).
    cb = [json.load(open(f"{tmp}/c-{t}-{i}.json")) for i in R]
    ceil = [(a["weights_read_bytes_per_s"] + c["weights_read_bytes_per_s"]) / 2 for a, c in zip(fb, cb)]
    bpt = fb[0]["decode_bytes_per_token"]
    fc = med([x["decode_tok_s"] * bpt / c for x, c in zip(fb, ceil)])
    lc = med([x[1] * bpt / c for x, c in zip(lb, ceil)])
    bw = med(ceil)
    fp, lp = med([x["prefill_tok_s"] for x in fb]), med([x[0] for x in lb])
    rows.append((t, size, fd, ld, fp, lp, med([x[0] for x in fm]), med([x[0] for x in lm]),
                 med([x[1] for x in fm]), med([x[1] for x in lm]), med([x[2] for x in fl]), med([x[2] for x in ll]),
                 fc, lc, bw))
cpu = subprocess.run(["sh", "-c", "grep -m1 'model name' /proc/cpuinfo | cut -d: -f2"], capture_output=True, text=True).stdout.strip()
lines = [
    "# Benchmarks: frugal and llama.cpp on the same GGUF files",
    "",
    f"Made by `scripts/bench_gguf.sh {model} {rounds}` on {datetime.date.today()}: {cpu}, {threads} threads, "
    f"{rounds} alternating rounds, medians. The model is `frugal synth --shape gemma-2b` (random weights, real shapes); "
    "its bf16 GGUF comes from llama.cpp's own converter and the quantized files from its `llama-quantize` "
    "(default mixes: Q4_0 and Q4_K_M keep some tensors in Q6_K). Both programs run each file in place, except on the "
    "`--quant` rows: there frugal rearranges the file's Q8_0 or Q4_0 blocks while loading (losslessly, into the x4 layouts its "
    "AVX-512 kernels stream, releasing the file's pages as it goes: anonymous memory instead of file-backed, the same peak), "
    "where llama.cpp repacks Q4_0 into a second copy by default (its peak RSS and anonymous memory show it).",
    "",
    "| file | size | decode tok/s frugal / llama.cpp | decode, % of the read ceiling (GB/s) | prefill tok/s (64) frugal / llama.cpp | peak RSS frugal / llama.cpp | peak anonymous frugal / llama.cpp | 1-token run, wall s frugal / llama.cpp |",
    "|---|---|---|---|---|---|---|---|",
]
for (t, size, fd, ld, fp, lp, fr, lr, fa, la, fw, lw, fc, lc, bw) in rows:
    if "+" in t:
        t = f"{t.split('+')[0]}, frugal `--quant {t.split('+')[1]}`"
    lines.append(f"| {t} | {size/GiB:.2f} GiB | {fd:.2f} / {ld:.2f} ({fd/ld:.2f}x) | {100*fc:.0f} % / {100*lc:.0f} % ({bw/1e9:.1f}) | {fp:.1f} / {lp:.1f} ({fp/lp:.2f}x) | "
                 f"{fr/GiB:.2f} GiB ({fr/size:.3f}x file) / {lr/GiB:.2f} GiB ({lr/size:.3f}x) | {fa/MiB:.0f} / {la/MiB:.0f} MiB | {fw:.2f} / {lw:.2f} |")
lines += ["", "Memory bandwidth on this machine varies with its neighbours (30-70 GB/s for 2 threads, minute to minute); runs alternate so both programs see the same conditions. "
          "The read ceiling is the rate at which frugal's probe (`frugal bench`: `weights_read_bytes_per_s`, every byte of the matrices a token reads, "
          "64-byte vector loads, each line prefetched a page ahead, no arithmetic) reads the same file's weights in the same round, once after each program's decode; "
          "a program's percentage is its decode rate times the bytes a token reads, over that rate. A decoder cannot run faster than its ceiling: "
          "when both programs are near it, their ratio is bounded by it."]
text = "\n".join(lines) + "\n"
open(out, "w").write(text)
print(text)
PY
