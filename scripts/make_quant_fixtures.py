#!/usr/bin/env python3
"""Writes tests/fixtures/quant/: reference bytes and values for frugal's block formats.

Run with the project's venv (gguf pinned in scripts/requirements.txt):

    /work/main/.venv/bin/python scripts/make_quant_fixtures.py

Contents (all little-endian, rows of COLS = 256 values):
  rows.f32                 ROWS x 256 f32 inputs with awkward values (see make_rows)
  q8_0.bin, q4_0.bin       gguf-py's gguf.quants.quantize of rows.f32 (the byte-exact reference)
  q4_k.bin, q6_k.bin       llama.cpp's quantize_row_q4_K_ref / quantize_row_q6_K_ref of rows.f32,
                           when a llama.cpp build is found (LLAMACPP_BUILD, default
                           ~/.cache/frugal/llamacpp/build, see scripts/build_llamacpp.sh)
  <t>.dequant.f32          gguf-py's dequantize of <t>.bin
  random.<t>.bin           random valid blocks of every type (finite f16 scales)
  random.<t>.dequant.f32   gguf-py's dequantize of them
  manifest.json            shapes and the versions used
"""

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import gguf
from gguf import GGMLQuantizationType as T
from gguf import quants

COLS = 256
ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "tests" / "fixtures" / "quant"

TYPES = {"q8_0": T.Q8_0, "q4_0": T.Q4_0, "q4_k": T.Q4_K, "q6_k": T.Q6_K}


def bf16_round(x):
    """Nearest bf16 (ties to even), as f32."""
    b = np.asarray(x, dtype=np.float32).view(np.uint32).astype(np.uint64)
    b = ((b + 0x7FFF + ((b >> 16) & 1)) >> 16) << 16
    return b.astype(np.uint32).view(np.float32)


def make_rows(rng):
    rows = []
    f = np.float32

    # 0: plain normal values.
    rows.append(rng.standard_normal(COLS).astype(f))

    # 1: bf16-representable values (the loader's usual source), wide spread.
    rows.append(bf16_round(rng.standard_normal(COLS) * 3.0))

    # 2: exact ties and special blocks, one block of 32 each.
    b = []
    # Q8_0 ties: amax 127 -> d = 1, so x * (1/d) lands exactly on .5.
    v = (rng.integers(-126, 126, 32) + 0.5).astype(f)
    v[0], v[1] = 127.0, -126.5
    b.append(v)
    # Q4_0 ties: max -8 -> d = 1, x * (1/d) + 8.5 an exact integer.
    v = (rng.integers(-8, 8, 32) + 0.5).astype(f)
    v[3] = -8.0
    b.append(v)
    # Q4_0 scale exactly halfway between two f16 values: d = max / -8 is exact.
    v = rng.uniform(-1, 1, 32).astype(f)
    v[5] = -8.0 * (1.0 + 2.0**-11)
    b.append(v)
    # Q8_0 scale exactly halfway between two f16 values: 127 * (1 + 2^-11) / 127 is exact.
    v = rng.uniform(-1, 1, 32).astype(f) * 100
    v[7] = 127.0 * (1.0 + 2.0**-11)
    b.append(v)
    b.append(np.zeros(32, f))  # all zero
    b.append(np.full(32, 0.3, f))  # all equal
    b.append(np.full(32, -0.3, f))  # all equal, negative
    v = rng.uniform(-1, 1, 32).astype(f)
    v[11] = -4.0  # negative max
    v[12] = 4.0  # a later element of equal magnitude (first wins)
    b.append(v)
    rows.append(np.concatenate(b))

    # 3: magnitudes, one block of 32 each.
    scales = [1e15, 3e6, 1e-3, 1e-6, 1e-5, 1e-30, 1.0, 1e4]
    b = [rng.uniform(-1, 1, 32).astype(f) * f(s) for s in scales]
    b[6][0] = 100.0  # an outlier among values of size 1
    b[7][:16] = 0.0  # half zeros
    rows.append(np.concatenate(b))

    # 4: sparse: mostly zeros, a few values.
    v = np.zeros(COLS, f)
    idx = rng.choice(COLS, 20, replace=False)
    v[idx] = rng.standard_normal(20).astype(f)
    rows.append(v)

    # 5: f16-representable values, all positive in the first half (Q4_K min = 0 path).
    v = rng.standard_normal(COLS).astype(np.float16).astype(f)
    v[:128] = np.abs(v[:128])
    rows.append(v)

    # 6: halves and quarters (many exact ties at every scale).
    rows.append((rng.integers(-40, 40, COLS) / 4.0).astype(f))

    # 7: heavy tails (a few large values per block, like Gemma's outlier channels).
    v = rng.standard_normal(COLS).astype(f) * 0.02
    v[rng.choice(COLS, 8, replace=False)] = rng.standard_normal(8).astype(f) * 3
    rows.append(v)

    return np.stack(rows).astype(np.float32)


def random_blocks(rng, name, n):
    """n random blocks of the type whose f16 fields are finite."""
    bs, ts = gguf.GGML_QUANT_SIZES[TYPES[name]]
    blocks = rng.integers(0, 256, (n, ts), dtype=np.uint8)

    def f16(k):
        return np.frombuffer(
            (rng.standard_normal(k) * 0.05).astype(np.float16).tobytes(), dtype=np.uint8
        ).reshape(k, 2)

    if name in ("q8_0", "q4_0"):
        blocks[:, 0:2] = f16(n)
    elif name == "q4_k":
        blocks[:, 0:2] = f16(n)
        blocks[:, 2:4] = f16(n)
    elif name == "q6_k":
        blocks[:, 208:210] = f16(n)
    return blocks


def llamacpp_quantizer():
    """Builds a tiny program around llama.cpp's reference K-quantizers; None if unavailable."""
    build = Path(os.environ.get("LLAMACPP_BUILD", Path.home() / ".cache/frugal/llamacpp/build"))
    lib = build / "ggml" / "src" / "libggml-base.a"
    cc = shutil.which("cc") or shutil.which("gcc")
    if not lib.exists() or cc is None:
        return None
    tmp = Path(tempfile.mkdtemp())
    src = tmp / "qref.c"
    src.write_text(
        r"""
#include <stdio.h>
#include <stdlib.h>
#include <stdint.h>
void quantize_row_q4_K_ref(const float * x, void * y, int64_t k);
void quantize_row_q6_K_ref(const float * x, void * y, int64_t k);
int main(int argc, char ** argv) {
    int t = atoi(argv[1]);
    long n = atol(argv[2]);
    float * x = malloc(n * 4);
    if (fread(x, 4, n, stdin) != (size_t) n) return 1;
    size_t nb = (size_t) n / 256 * (t == 4 ? 144 : 210);
    unsigned char * y = malloc(nb);
    if (t == 4) quantize_row_q4_K_ref(x, y, n); else quantize_row_q6_K_ref(x, y, n);
    fwrite(y, 1, nb, stdout);
    return 0;
}
"""
    )
    exe = tmp / "qref"
    subprocess.run(
        [cc, "-O2", str(src), str(lib), "-lm", "-lpthread", "-lstdc++", "-fopenmp", "-o", str(exe)],
        check=True,
    )

    def run(kind, x):
        x = np.ascontiguousarray(x, dtype=np.float32)
        out = subprocess.run(
            [str(exe), str(kind), str(x.size)], input=x.tobytes(), capture_output=True, check=True
        )
        return np.frombuffer(out.stdout, dtype=np.uint8)

    return run


def main():
    # The magnitude row overflows f16 scales on purpose (d = inf); numpy warns about it.
    np.seterr(all="ignore")
    rng = np.random.default_rng(20261124)
    OUT.mkdir(parents=True, exist_ok=True)
    rows = make_rows(rng)
    rows.tofile(OUT / "rows.f32")
    manifest = {
        "cols": COLS,
        "rows": int(rows.shape[0]),
        "gguf": gguf.__version__ if hasattr(gguf, "__version__") else "0.19.0",
        "numpy": np.__version__,
        "files": {},
    }

    for name in ("q8_0", "q4_0"):
        q = quants.quantize(rows, TYPES[name])
        q.tofile(OUT / f"{name}.bin")
        quants.dequantize(q, TYPES[name]).astype(np.float32).tofile(OUT / f"{name}.dequant.f32")
        manifest["files"][name] = "gguf-py quantize"

    ref = llamacpp_quantizer()
    if ref is None:
        print("llama.cpp build not found: q4_k.bin and q6_k.bin not written", file=sys.stderr)
    else:
        version = Path.home() / ".cache/frugal/llamacpp/VERSION"
        manifest["llamacpp"] = version.read_text().strip() if version.exists() else "unknown"
        for name, kind in (("q4_k", 4), ("q6_k", 6)):
            q = ref(kind, rows).reshape(rows.shape[0], -1)
            q.tofile(OUT / f"{name}.bin")
            quants.dequantize(q, TYPES[name]).astype(np.float32).tofile(
                OUT / f"{name}.dequant.f32"
            )
            manifest["files"][name] = "llama.cpp quantize_row_*_ref"

    for name in TYPES:
        n = 16 if name in ("q8_0", "q4_0") else 4
        blocks = random_blocks(rng, name, n)
        blocks.tofile(OUT / f"random.{name}.bin")
        quants.dequantize(blocks, TYPES[name]).astype(np.float32).tofile(
            OUT / f"random.{name}.dequant.f32"
        )

    (OUT / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n")
    total = sum(p.stat().st_size for p in OUT.iterdir())
    print(f"wrote {OUT} ({total} bytes)")


if __name__ == "__main__":
    main()
