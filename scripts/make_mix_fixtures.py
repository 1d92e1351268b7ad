#!/usr/bin/env python3
"""Writes tests/fixtures/quant/ggml/: blocks of every type frugal quantizes to, written by
llama.cpp's `ggml_quantize_chunk` without an importance matrix (the call `llama-quantize`
makes for each tensor when it has none, which goes to `quantize_row_<t>_ref`), for
tests/it/quant.rs to compare frugal's quantizers with byte for byte.

Run with the project's venv and a llama.cpp build (scripts/build_llamacpp.sh):

    /work/main/.venv/bin/python scripts/make_mix_fixtures.py

Env: LLAMACPP_BUILD (default ~/.cache/frugal/llamacpp/build), LLAMACPP_SRC (default
~/.cache/frugal/llamacpp/src/llama.cpp).

Contents (little-endian, rows of COLS = 256 values):
  rows.f32        EXTRA x 256 f32 inputs made here (seeded), after tests/fixtures/quant/rows.f32's
                  8 rows of awkward values (scripts/make_quant_fixtures.py): the input is
                  those 8 rows then these
  <t>.bin         the 8 + EXTRA rows quantized by ggml_quantize_chunk(<t>, ..., imatrix NULL),
                  for <t> in q8_0 q4_0 q5_0 q5_1 q4_k q5_k q6_k
  manifest.json   shapes, the llama.cpp version, the function called
"""

import json
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np

SRC = Path(os.environ.get("LLAMACPP_SRC", Path.home() / ".cache/frugal/llamacpp/src/llama.cpp"))
BUILD = Path(os.environ.get("LLAMACPP_BUILD", Path.home() / ".cache/frugal/llamacpp/build"))
ROOT = Path(__file__).resolve().parent.parent
BASE = ROOT / "tests" / "fixtures" / "quant"
OUT = BASE / "ggml"
COLS = 256
EXTRA = 4
TYPES = ["q8_0", "q4_0", "q5_0", "q5_1", "q4_K", "q5_K", "q6_K"]

HELPER_C = r"""
#include "ggml.h"
#include <stdio.h>
#include <stdlib.h>
#include <strings.h>

/* qchunk TYPE NROWS NCOLS < rows.f32 > blocks: ggml_quantize_chunk without an imatrix */
int main(int argc, char ** argv) {
    if (argc != 4) return 1;
    enum ggml_type t = GGML_TYPE_COUNT;
    for (int i = 0; i < GGML_TYPE_COUNT; i++) {
        const char * n = ggml_get_type_traits((enum ggml_type) i)->type_name;
        if (n && strcasecmp(n, argv[1]) == 0) t = (enum ggml_type) i;
    }
    if (t == GGML_TYPE_COUNT) { fprintf(stderr, "unknown type %s\n", argv[1]); return 2; }
    long nrows = atol(argv[2]), ncols = atol(argv[3]);
    float * x = malloc(nrows * ncols * sizeof(float));
    if (fread(x, sizeof(float), nrows * ncols, stdin) != (size_t) (nrows * ncols)) return 3;
    size_t nb = ggml_row_size(t, ncols) * nrows;
    void * y = calloc(nb, 1);
    if (ggml_quantize_chunk(t, x, y, 0, nrows, ncols, NULL) != nb) return 4;
    fwrite(y, 1, nb, stdout);
    return 0;
}
"""


def helper():
    lib = BUILD / "ggml" / "src" / "libggml-base.a"
    cc = shutil.which("cc") or shutil.which("gcc")
    if not lib.exists() or cc is None:
        raise SystemExit(f"need {lib} and a C compiler (see scripts/build_llamacpp.sh)")
    tmp = Path(tempfile.mkdtemp())
    (tmp / "qchunk.c").write_text(HELPER_C)
    exe = tmp / "qchunk"
    subprocess.run(
        [cc, "-O2", f"-I{SRC / 'ggml' / 'include'}", str(tmp / "qchunk.c"), str(lib), "-lm",
         "-lpthread", "-lstdc++", "-fopenmp", "-o", str(exe)],
        check=True,
    )

    def run(name, rows):
        rows = np.ascontiguousarray(rows, dtype=np.float32)
        out = subprocess.run(
            [str(exe), name, str(rows.shape[0]), str(rows.shape[1])],
            input=rows.tobytes(), capture_output=True, check=True,
        )
        return np.frombuffer(out.stdout, dtype=np.uint8)

    return run


def bf16_round(x):
    """Nearest bf16 (ties to even), as f32."""
    b = np.asarray(x, dtype=np.float32).view(np.uint32).astype(np.uint64)
    b = ((b + 0x7FFF + ((b >> 16) & 1)) >> 16) << 16
    return b.astype(np.uint32).view(np.float32)


def extra_rows(rng):
    """Rows like a trained model's weights (bf16), and the 5-bit formats' edge cases."""
    f = np.float32
    rows = []
    # bf16 weights of a trained matrix's typical size.
    rows.append(bf16_round(rng.standard_normal(COLS) * 0.05))
    # bf16 with a skew (Q5_1 / Q5_K minimums far from zero) and an outlier per 64.
    v = rng.standard_normal(COLS) * 0.03 + 0.02
    v[::64] = 0.9
    rows.append(bf16_round(v))
    # Q5_0 ties: max -16 -> d = 1, x * (1/d) + 16.5 an exact integer; Q5_1 ties: min 0, max
    # 31 -> d = 1, x + 0.5 an exact integer.
    a = (rng.integers(-16, 16, 32) + 0.5).astype(f)
    a[2] = -16.0
    b = rng.integers(0, 32, 32).astype(f) + 0.5
    b[0], b[1] = 0.0, 31.0
    c = rng.uniform(-1, 1, 192).astype(f)
    rows.append(np.concatenate([a, b, c]))
    # Positive blocks of 32 (Q5_K's min = 0 path), then uniform magnitudes per 32.
    v = np.abs(rng.standard_normal(COLS))
    v[128:] = (rng.standard_normal(128) * np.repeat([1e-4, 1e-2, 1.0, 100.0], 32))
    rows.append(v.astype(np.float16).astype(f))
    return np.stack(rows).astype(np.float32)


def main():
    np.seterr(all="ignore")
    rng = np.random.default_rng(20261215)
    OUT.mkdir(parents=True, exist_ok=True)
    base = np.fromfile(BASE / "rows.f32", dtype=np.float32).reshape(-1, COLS)
    extra = extra_rows(rng)
    extra.tofile(OUT / "rows.f32")
    rows = np.concatenate([base, extra])
    run = helper()
    for name in TYPES:
        run(name, rows).tofile(OUT / f"{name.lower()}.bin")
    version = Path.home() / ".cache/frugal/llamacpp/VERSION"
    manifest = {
        "cols": COLS,
        "rows": int(rows.shape[0]),
        "input": "tests/fixtures/quant/rows.f32 then rows.f32",
        "writer": "ggml_quantize_chunk(type, rows, dst, 0, nrows, 256, NULL) from libggml-base.a",
        "llamacpp": version.read_text().strip() if version.exists() else "unknown",
        "types": [t.lower() for t in TYPES],
    }
    (OUT / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n")
    total = sum(p.stat().st_size for p in OUT.iterdir())
    print(f"wrote {OUT} ({total} bytes)")


if __name__ == "__main__":
    main()
