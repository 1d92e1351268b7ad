#!/usr/bin/env bash
# Two builds of frugal on the same model, alternating, medians: did a change move speed or
# memory?
#
#   scripts/ab_binaries.sh OLD_FRUGAL NEW_FRUGAL MODEL [ROUNDS] [-- extra bench args]
#
# Each round runs `frugal bench MODEL --runs 3 --json` (64-token prefill, 32 generated, 2
# threads unless THREADS says) with OLD then NEW (NEW first on even rounds), and reads decode and
# prefill rates, decode as a share of the read ceiling measured in the same run (this machine's
# memory bandwidth swings two-fold within minutes: the share is what compares), and the run's
# peak RSS and peak anonymous memory (the bench's own report, from /proc/self/status). Prints each round and a Markdown table of medians with NEW/OLD ratios.
# Needs python3 (standard library only).
set -euo pipefail
OLD="${1:?usage: $0 OLD NEW MODEL [ROUNDS] [-- args]}"
NEW="${2:?usage: $0 OLD NEW MODEL [ROUNDS] [-- args]}"
MODEL="${3:?usage: $0 OLD NEW MODEL [ROUNDS] [-- args]}"
ROUNDS="${4:-5}"
shift $(($# < 4 ? $# : 4))
[ "${1:-}" = "--" ] && shift
EXTRA=("$@")
THREADS="${THREADS:-2}"
TMP="$(mktemp -d)"
trap 'rm -rf "$TMP"' EXIT
run() { # label binary round
    "$2" bench -m "$MODEL" --prompt-tokens 64 --gen-tokens 32 --ctx 256 --runs 3 \
        --threads "$THREADS" --json "${EXTRA[@]}" 2>/dev/null >"$TMP/$1-$3.json" || {
        echo "$1 failed" >&2
        exit 1
    }
}
for i in $(seq 1 "$ROUNDS"); do
    if [ $((i % 2)) -eq 1 ]; then order="old new"; else order="new old"; fi
    for who in $order; do
        bin=$OLD
        [ "$who" = new ] && bin=$NEW
        run "$who" "$bin" "$i"
    done
    echo "round $i done ($order)" >&2
done
python3 - "$TMP" "$ROUNDS" "$MODEL" "${EXTRA[*]}" <<'PY'
import json, statistics, sys
tmp, rounds, model, extra = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
keys = [("decode_tok_s", "decode tok/s", 1),
        ("decode_of_ceiling", "decode % of the read ceiling", 0.01),
        ("prefill_tok_s", "prefill tok/s", 1),
        ("peak_rss_bytes", "peak RSS MiB", 2**20), ("peak_anon_bytes", "peak anonymous MiB", 2**20)]
def get(d, k):
    return d[k] if k in d else d["peaks"][k]
rows = {w: [json.load(open(f"{tmp}/{w}-{i}.json")) for i in range(1, rounds + 1)] for w in ("old", "new")}
for i in range(rounds):
    print(f"round {i+1}: " + "; ".join(
        f"{name}: old {get(rows['old'][i], k)/s:.2f} new {get(rows['new'][i], k)/s:.2f}" for k, name, s in keys))
print()
print(f"`scripts/ab_binaries.sh OLD NEW {model} {rounds}{(' -- ' + extra) if extra else ''}`, medians of {rounds} alternating rounds")
print()
print("| | old | new | new/old |")
print("|---|---|---|---|")
for k, name, s in keys:
    o = statistics.median(get(d, k) for d in rows["old"]) / s
    n = statistics.median(get(d, k) for d in rows["new"]) / s
    print(f"| {name} | {o:.2f} | {n:.2f} | {n/o:.3f} |")
w = rows["new"][0]["weights_bytes"] / 2**20
print(f"| weights MiB | | {w:.1f} | |")
PY
