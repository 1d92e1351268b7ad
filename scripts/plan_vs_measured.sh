#!/usr/bin/env bash
# The memory plan against the peaks the kernel reports, for one model: runs that fill their
# context (logits of 64 tokens, bench of 64+16, a generation to a full --ctx 256), each with
# --mem-trace; the trace's `info` line holds the prediction made before loading, its `end` line the
# measured peaks (VmHWM; RssAnon and RssFile sampled every 2 ms).
#
#   scripts/plan_vs_measured.sh MODEL [THREADS]
#   QUANT=q8 scripts/plan_vs_measured.sh MODEL      # the same with --quant q8 (or any kind)
#
# MODEL: a model folder or .ckpt (e.g. `frugal synth --shape gemma-2b --out M`). Needs python3.
set -euo pipefail
model=${1:?usage: scripts/plan_vs_measured.sh MODEL [THREADS]}
threads=${2:-2}
here=$(cd "$(dirname "$0")/.." && pwd)
frugal=${FRUGAL:-$here/target/release/frugal}
[ -x "$frugal" ] || (cd "$here" && cargo build --release)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
toks=$(python3 -c "print(','.join(str(i + 5) for i in range(64)))")
prompt="The quick brown fox jumps over the lazy dog while the memory map keeps every weight in place and nothing is copied twice"

measure() {
  local label=$1
  shift
  "$frugal" "$@" ${QUANT:+--quant "$QUANT"} --threads "$threads" --mem-trace "$tmp/$label.jsonl" >/dev/null 2>"$tmp/$label.err" ||
    { echo "$label failed:"; tail -5 "$tmp/$label.err"; return 1; }
  python3 - "$tmp/$label.jsonl" "$label" <<'PY'
import json, sys
info, end = {}, {}
for line in open(sys.argv[1]):
    try:
        v = json.loads(line)
    except ValueError:
        continue
    if v["kind"] == "info":
        info.update(v)
    elif v["kind"] == "end":
        end = v
M = 1 << 20
pr, pa = info["predicted_peak_rss_bytes"], info["predicted_peak_anon_bytes"]
mr, ma = end["peak_rss_bytes"], end["peak_anon_bytes"]
print(f"{sys.argv[2]:10s} peak RSS predicted {pr / M:10.1f} MiB, measured {mr / M:10.1f} MiB ({100 * (pr - mr) / mr:+5.2f} %)"
      f" | peak anonymous predicted {pa / M:8.1f} MiB, measured {ma / M:8.1f} MiB")
PY
}

measure logits64 logits -m "$model" --tokens "$toks"
measure bench bench -m "$model" --prompt-tokens 64 --gen-tokens 16 --runs 1
measure run256 run -m "$model" -p "$prompt $prompt" -n 1000 --ctx 256
