#!/usr/bin/env bash
# Measure llama.cpp (peer) on a Hugging Face Gemma folder; print one JSON object on stdout.
#
#   scripts/peer_llamacpp.sh MODEL_DIR
#
# MODEL_DIR: config.json, model.safetensors (or shards), tokenizer.model (+ tokenizer.json).
# Converts to MODEL_DIR/model-bf16.gguf (cached; redone when the safetensors are newer),
# then with $THREADS (2) threads:
#   llama-bench  pp$PP (64) and tg$TG (16), $REPS (3) repetitions -> medians of samples_ts
#   llama-completion 16-token greedy generation under /usr/bin/time -v (Maximum resident set
#   size) while sampling /proc/PID/status (VmHWM, RssAnon) every ~2 ms.
# Output: {"prefill_tok_s","decode_tok_s","peak_rss_bytes","peak_anon_bytes","gguf_bytes", ...}
# Env: FRUGAL_PEER_DIR (see build_llamacpp.sh), FRUGAL_PY (python with torch/transformers/
#      sentencepiece; default .venv/bin/python), THREADS, PP, TG, REPS, GEN_TOKENS, PROMPT,
#      GGUF_TYPE (BF16, or a llama-quantize type such as Q8_0, Q4_0, Q4_K_M), PURE=1.
set -euo pipefail

MODEL_DIR="${1:?usage: $0 MODEL_DIR}"
MODEL_DIR="$(cd "$MODEL_DIR" && pwd)"
HERE="$(cd "$(dirname "$0")" && pwd)"
ROOT="$(dirname "$HERE")"
PY="${FRUGAL_PY:-$ROOT/.venv/bin/python}"
THREADS="${THREADS:-2}"; PP="${PP:-64}"; TG="${TG:-16}"; REPS="${REPS:-3}"
GEN_TOKENS="${GEN_TOKENS:-16}"
PROMPT="${PROMPT:-The quick brown fox jumps over the lazy dog. Once upon a time}"
log() { echo "[peer_llamacpp] $*" >&2; }

BIN="$("$HERE/build_llamacpp.sh" | tail -1)"
PEER_DIR="${FRUGAL_PEER_DIR:-$HOME/.cache/frugal/llamacpp}"
CONVERT="$PEER_DIR/src/llama.cpp/convert_hf_to_gguf.py"

if [[ ! -x /usr/bin/time ]]; then
    log "installing GNU time"
    SUDO=""; [[ $(id -u) -eq 0 ]] || SUDO="sudo"
    $SUDO apt-get update -qq >&2
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq time >&2
fi

# --- convert ---------------------------------------------------------------
GGUF="$MODEL_DIR/model-bf16.gguf"
newest_st=$(ls -t "$MODEL_DIR"/*.safetensors | head -1)
if [[ ! -s "$GGUF" || "$newest_st" -nt "$GGUF" || "$MODEL_DIR/config.json" -nt "$GGUF" ]]; then
    log "converting $MODEL_DIR -> $GGUF"
    "$PY" "$CONVERT" "$MODEL_DIR" --outtype bf16 --outfile "$GGUF.tmp" >&2
    mv "$GGUF.tmp" "$GGUF"
fi
# A quantized peer file (GGUF_TYPE=Q8_0, Q4_0, Q4_K_M, ...), made by llama.cpp's own
# llama-quantize from the bf16 file; PURE=1 quantizes every tensor to that type (--pure), else
# llama-quantize's default mix (e.g. Q6_K for the tied embedding of a Q4_0 file).
GGUF_TYPE="${GGUF_TYPE:-BF16}"
if [[ "$GGUF_TYPE" != "BF16" ]]; then
    Q="$MODEL_DIR/model-$GGUF_TYPE${PURE:+-pure}.gguf"
    if [[ ! -s "$Q" || "$GGUF" -nt "$Q" ]]; then
        log "llama-quantize ${PURE:+--pure }$GGUF -> $Q"
        "$BIN/llama-quantize" ${PURE:+--pure} "$GGUF" "$Q.tmp" "$GGUF_TYPE" >&2
        mv "$Q.tmp" "$Q"
    fi
    GGUF="$Q"
fi
GGUF_BYTES=$(stat -c %s "$GGUF")

# --- throughput: llama-bench ------------------------------------------------
BENCH_JSON="$(mktemp)"; GEN_LOG="$(mktemp)"; TIME_LOG="$(mktemp)"
trap 'rm -f "$BENCH_JSON" "$GEN_LOG" "$TIME_LOG"' EXIT
log "llama-bench -t $THREADS -p $PP -n $TG -r $REPS"
"$BIN/llama-bench" -m "$GGUF" -t "$THREADS" -p "$PP" -n "$TG" -r "$REPS" -o json \
    > "$BENCH_JSON"

# --- memory: 16-token generation under /usr/bin/time -v + /proc polling -----
GEN_CMD=("$BIN/llama-completion" -m "$GGUF" -t "$THREADS" -p "$PROMPT" -n "$GEN_TOKENS"
         --temp 0 --ignore-eos -no-cnv --no-display-prompt --simple-io)
log "generation: ${GEN_CMD[*]}"

python3 - "$BENCH_JSON" "$GEN_LOG" "$TIME_LOG" "$GGUF_BYTES" "$GEN_TOKENS" "$PP" "$TG" "${GEN_CMD[@]}" <<'EOF'
import json, os, re, statistics, subprocess, sys, time

bench_json, gen_log, time_log, gguf_bytes, gen_tokens, pp, tg = sys.argv[1:8]
cmd = sys.argv[8:]

def status(pid):
    out = {}
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                k, _, v = line.partition(":")
                if k in ("VmHWM", "RssAnon", "VmRSS"):
                    out[k] = int(v.split()[0]) * 1024
    except (FileNotFoundError, ProcessLookupError, ValueError):
        pass
    return out

with open(gen_log, "wb") as glog:
    p = subprocess.Popen(["/usr/bin/time", "-v", "-o", time_log, *cmd],
                         stdout=glog, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    child, peak = None, {"VmHWM": 0, "RssAnon": 0}
    while p.poll() is None:
        if child is None:
            try:
                with open(f"/proc/{p.pid}/task/{p.pid}/children") as f:
                    kids = f.read().split()
                child = int(kids[0]) if kids else None
            except FileNotFoundError:
                pass
        if child is not None:
            for k, v in status(child).items():
                if k in peak:
                    peak[k] = max(peak[k], v)
        time.sleep(0.002)
if p.returncode != 0:
    sys.stderr.write(open(gen_log, errors="replace").read()[-4000:])
    sys.exit(f"generation failed (exit {p.returncode})")

tv = open(time_log).read()
maxrss = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", tv).group(1)) * 1024
wall = re.search(r"Elapsed \(wall clock\) time.*: (\S+)", tv).group(1)

res = {}
for t in json.load(open(bench_json)):
    ts = t.get("samples_ts") or [t["avg_ts"]]
    if t["n_prompt"] > 0 and t["n_gen"] == 0:
        res["prefill_tok_s"] = statistics.median(ts)
    elif t["n_gen"] > 0 and t["n_prompt"] == 0:
        res["decode_tok_s"] = statistics.median(ts)
        build = t.get("build_commit")
        cpu = t.get("cpu_info")
glog = open(gen_log, errors="replace").read()
out = {
    "prefill_tok_s": round(res["prefill_tok_s"], 3),
    "decode_tok_s": round(res["decode_tok_s"], 3),
    "peak_rss_bytes": maxrss,
    "peak_anon_bytes": peak["RssAnon"],          # sampled, a lower bound
    "gguf_bytes": int(gguf_bytes),
    "peak_vmhwm_bytes_sampled": peak["VmHWM"],
    "gen_wall": wall,
    "pp": int(pp), "tg": int(tg), "gen_tokens": int(gen_tokens),
    "llamacpp_commit": build, "cpu": cpu,
}
sys.stderr.write(glog[-1500:] + "\n")
print(json.dumps(out))
EOF
