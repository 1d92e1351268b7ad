#!/usr/bin/env bash
# Fingerprints of the logits `frugal logits` gives on every committed fixture, so two builds can
# be compared bit for bit (a refactoring must not change a single logit):
#
#   scripts/logits_digest.sh [FRUGAL] > a.txt      # FRUGAL defaults to target/release/frugal
#   diff a.txt b.txt                               # no output: identical logits everywhere
#
# Each line: fixture, mode (`plan`: the `plan --json` prediction, hashed), sha256 of the logits as little-endian f32. Modes: `run` (24 greedy
# tokens of text through the fast bf16 path, its stdout hashed), logits (exact f32 activations;
# `logits` never takes the bf16 path), --exact, and --quant q8 / q4 / q4k (quantized while
# loading; GGUF block files keep their blocks). Token ids come from each fixture's reference.json
# (the tiny model's from tests/fixtures/tiny). Last, the files `synth` writes for the tiny
# shapes in each format. Needs python3 (standard library only).
set -euo pipefail
cd "$(dirname "$0")/.."
FRUGAL=${1:-target/release/frugal}
F=tests/fixtures

tokens_of() {
    python3 -c 'import json,sys; print(",".join(map(str, json.load(open(sys.argv[1]))["tokens"][:24])))' "$1"
}

digest() { # name model tokens args...
    local name=$1 model=$2 toks=$3
    shift 3
    local h
    h=$("$FRUGAL" logits -m "$model" --tokens "$toks" --json --threads 2 "$@" 2>/dev/null |
        python3 -c '
import hashlib, json, struct, sys
rows = json.load(sys.stdin)["logits"]
h = hashlib.sha256()
for r in rows:
    h.update(struct.pack("<%df" % len(r), *r))
print(h.hexdigest())') || h="error"
    printf '%-40s %-12s %s\n' "$name" "${*:-default}" "$h"
}

run_digest() { # name model: greedy text of `run` (the fast bf16 path), hashed
    local h
    h=$("$FRUGAL" run -m "$2" -p "def main(" -n 24 --threads 2 2>/dev/null | sha256sum | cut -c1-64) || h="error"
    printf '%-40s %-12s %s\n' "$1" "run" "$h"
}

plan_digest() { # name model: `plan --json` (the memory prediction), hashed
    local h
    h=$("$FRUGAL" plan -m "$2" --ctx 512 --threads 2 --json 2>/dev/null | sha256sum | cut -c1-64) || h="error"
    printf '%-40s %-12s %s\n' "$1" "plan" "$h"
}

each_mode() { # name model tokens
    plan_digest "$1" "$2"
    run_digest "$1" "$2"
    digest "$1" "$2" "$3"
    digest "$1" "$2" "$3" --exact
    for q in q8 q4 q4k; do
        digest "$1" "$2" "$3" --quant "$q"
    done
}

for d in "$F"/models/*/; do
    n=$(basename "$d")
    each_mode "models/$n" "$d" "$(tokens_of "$d/reference.json")"
done
for g in "$F"/gguf/*.gguf; do
    n=$(basename "$g" .gguf)
    each_mode "gguf/$n" "$g" "$(tokens_of "$F/gguf/$n/reference.json")"
done
pt_toks=$(tokens_of "$F/pytorch/gemma_pytorch/gemma1-mqa-int8/reference.json")
for p in "$F"/pytorch/hf-gemma1-bf16 "$F"/pytorch/hf-gemma1-sharded \
    "$F"/pytorch/gemma_pytorch/gemma1-mqa-int8 "$F"/pytorch/gemma_pytorch/gemma2-gqa-bf16.ckpt \
    "$F"/pytorch/gemma_pytorch/gemma3-bf16.ckpt; do
    each_mode "pytorch/$(basename "$p")" "$p" "$pt_toks"
done
each_mode "assets/tiny" assets/tiny "$(tokens_of "$F/tiny/reference.json")"

# What `synth` writes (seeded random weights): the same bytes from both builds.
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
for shape in tiny-gemma tiny-gemma2 tiny-gemma3; do
    for fmt in "safetensors" "ckpt" "ckpt --dtype int8"; do
        out="$tmp/$shape-${fmt// /}"
        # shellcheck disable=SC2086
        "$FRUGAL" synth --shape "$shape" --out "$out" --format $fmt 2>/dev/null
        h=$(cd "$out" && find . -type f | sort | xargs sha256sum | sha256sum | cut -c1-64)
        printf '%-40s %-12s %s\n' "synth/$shape" "${fmt// /}" "$h"
    done
done
