#!/usr/bin/env python3
"""The trained tiny model (assets/tiny) as llama.cpp writes it in every block type, with
llama.cpp's own greedy text for each file: what tests/it/peer_types.rs checks frugal against.

    python3 scripts/make_peer_fixtures.py [OUT_DIR]

Needs llama.cpp's build (scripts/build_llamacpp.sh: llama-quantize, llama-imatrix,
llama-simple) and frugal's (target/release/frugal); Python's standard library only. The files
are about 2-3 MB each, 70 MB in all, so they are made on demand (CI runs this script before the
tests) instead of being committed. Steps:

1. assets/tiny -> a BF16 GGUF by `frugal convert` (its GGUF export is checked against
   llama.cpp's converter by scripts/check_gguf_export.py; using it here keeps torch out of CI.
   Both engines then read the same files, so the comparison does not depend on it);
2. an importance matrix from assets/tiny/eval.txt by llama-imatrix (the 1- and 2-bit
   I-quants require one; every type is quantized with it, as people making such files do);
3. llama-quantize to each type in TYPES (its own per-tensor mix for that file type);
4. llama-simple's greedy continuation of PROMPT for N_TOKENS tokens from each file.

Output: OUT_DIR/tiny-<TYPE>.gguf and OUT_DIR/expected.json ({type: {file, text}}, with the
llama.cpp version, the prompt and the token count). OUT_DIR defaults to target/peer-fixtures (not in git).
"""

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PEER = Path(os.environ.get("FRUGAL_PEER_DIR", Path.home() / ".cache/frugal/llamacpp"))
BIN = Path(os.environ.get("LLAMACPP_BIN", PEER / "build/bin"))
PROMPT = "def main(args):"
N_TOKENS = 32

# llama-quantize's file types for a dense Gemma model: every block type it writes appears in at
# least one of them. (MXFP4_MOE writes MXFP4 only for experts, Q8_0 elsewhere: no dense file
# holds MXFP4, whose blocks are checked by tests/fixtures/quant/dequant instead.)
TYPES = [
    "Q8_0", "Q6_K", "Q5_K_M", "Q5_K_S", "Q5_1", "Q5_0", "Q4_K_M", "Q4_K_S", "Q4_1", "Q4_0",
    "Q3_K_L", "Q3_K_M", "Q3_K_S", "Q2_K", "Q2_K_S", "IQ4_NL", "IQ4_XS", "IQ3_M", "IQ3_S",
    "IQ3_XS", "IQ3_XXS", "IQ2_M", "IQ2_S", "IQ2_XS", "IQ2_XXS", "IQ1_M", "IQ1_S", "TQ2_0",
    "TQ1_0", "Q2_0", "Q1_0",
]

FRUGAL = Path(os.environ.get("FRUGAL_BIN", ROOT / "target/release/frugal"))


def run(args, **kw):
    return subprocess.run([str(a) for a in args], check=True, capture_output=True, text=True, **kw)


def main():
    out = Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / "target/peer-fixtures"
    out.mkdir(parents=True, exist_ok=True)
    version = (PEER / "VERSION").read_text().strip() if (PEER / "VERSION").is_file() else "?"
    expected = {"llama.cpp": version, "prompt": PROMPT, "n_tokens": N_TOKENS, "types": {}}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        src = tmp / "tiny-bf16.gguf"
        run([FRUGAL, "convert", ROOT / "assets/tiny", src])
        imatrix = tmp / "imatrix.gguf"
        run([BIN / "llama-imatrix", "-m", src, "-f", ROOT / "assets/tiny/eval.txt", "-o", imatrix,
             "-c", "128", "-t", "2"])
        for ty in TYPES:
            dst = out / f"tiny-{ty}.gguf"
            part = out / f"tiny-{ty}.gguf.part"
            run([BIN / "llama-quantize", "--imatrix", imatrix, src, part, ty, "2"])
            part.rename(dst)
            text = run([BIN / "llama-simple", "-m", dst, "-n", str(N_TOKENS), PROMPT]).stdout
            text = text.removeprefix("<bos>")
            expected["types"][ty] = {"file": dst.name, "text": text}
            print(f"{ty}: {text!r}", file=sys.stderr)
    (out / "expected.json").write_text(json.dumps(expected, indent=1) + "\n")
    print(out)


if __name__ == "__main__":
    main()
