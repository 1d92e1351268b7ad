#!/usr/bin/env python3
"""Writes tests/fixtures/quant/dequant/: blocks of every GGUF block type that frugal reads
but does not write, and their dequantized values from a reference no one here wrote, for
crates/quant/tests/dequant.rs. (Q8_0, Q4_0, Q4_K and Q6_K have theirs in
tests/fixtures/quant/, from scripts/make_quant_fixtures.py.)

Run with the project's venv and a llama.cpp build (scripts/build_llamacpp.sh):

    /work/main/.venv/bin/python scripts/make_dequant_fixtures.py

Env: LLAMACPP_BUILD (default ~/.cache/frugal/llamacpp/build), LLAMACPP_SRC (default
~/.cache/frugal/llamacpp/src/llama.cpp; its gguf-py is put first on sys.path, since the PyPI
gguf may lack the newest types).

Per type <t> (all little-endian):
  <t>.bin                ROWS x COLS inputs (made here, seeded) quantized by llama.cpp:
                         gguf-py's gguf.quants.quantize where it quantizes the type, else
                         ggml's ggml_quantize_chunk (the function llama-quantize calls for each
                         tensor) from libggml-base.a, with an importance matrix for the I-quants
  <t>.dequant.f32        its dequantized values
  random.<t>.bin         random blocks: random bytes, f16 scales set to finite values (one
                         negative, one an f16 subnormal), E8M0 / UE4M3 scale bytes covering the edge
                         codes
  random.<t>.dequant.f32 their dequantized values
  manifest.json          for each type: who wrote the blocks, who gave the values, sizes

The values are gguf-py's gguf.quants.dequantize where gguf-py has the type, and are checked
bit for bit against llama.cpp's own dequantize_row_* (ggml's type_traits to_float, from
libggml-base.a, compiled with the flags llama.cpp's build used); where gguf-py lacks the type
(Q1_0, Q2_0) the values are the C function's. The script stops if the two ever disagree.
"""

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

SRC = Path(os.environ.get("LLAMACPP_SRC", Path.home() / ".cache/frugal/llamacpp/src/llama.cpp"))
BUILD = Path(os.environ.get("LLAMACPP_BUILD", Path.home() / ".cache/frugal/llamacpp/build"))
if (SRC / "gguf-py").is_dir():
    sys.path.insert(0, str(SRC / "gguf-py"))

import gguf  # noqa: E402
from gguf import GGMLQuantizationType as T  # noqa: E402
from gguf import quants  # noqa: E402

ROWS, COLS = 4, 256
RANDOM_VALUES = 1024
ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "tests" / "fixtures" / "quant" / "dequant"

# name: (block elements, block bytes, offsets of f16 scale fields)
TYPES = {
    "q4_1": (32, 20, [0, 2]),
    "q5_0": (32, 22, [0]),
    "q5_1": (32, 24, [0, 2]),
    "q2_k": (256, 84, [80, 82]),
    "q3_k": (256, 110, [108]),
    "q5_k": (256, 176, [0, 2]),
    "iq2_xxs": (256, 66, [0]),
    "iq2_xs": (256, 74, [0]),
    "iq2_s": (256, 82, [0]),
    "iq3_xxs": (256, 98, [0]),
    "iq3_s": (256, 110, [0]),
    "iq1_s": (256, 50, [0]),
    "iq1_m": (256, 56, []),  # the f16 is spread over the scale words' top nibbles
    "iq4_nl": (32, 18, [0]),
    "iq4_xs": (256, 136, [0]),
    "tq1_0": (256, 54, [52]),
    "tq2_0": (256, 66, [64]),
    "mxfp4": (32, 17, []),  # E8M0 byte 0
    "nvfp4": (64, 36, []),  # UE4M3 bytes 0..4
    "q1_0": (128, 18, [0]),
    "q2_0": (64, 18, [0]),
}

HELPER_C = r"""
#include "ggml.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* dqref q TYPE NROWS NCOLS [IMATRIX.f32] < rows.f32 > blocks
   dqref d TYPE NVALUES < blocks > values.f32 */
static enum ggml_type type_named(const char * name) {
    for (int t = 0; t < GGML_TYPE_COUNT; t++) {
        const char * n = ggml_get_type_traits((enum ggml_type) t)->type_name;
        if (n && strcasecmp(n, name) == 0) return (enum ggml_type) t;
    }
    fprintf(stderr, "unknown type %s\n", name);
    exit(2);
}

static void * read_all(size_t n) {
    void * p = malloc(n ? n : 1);
    if (fread(p, 1, n, stdin) != n) { fprintf(stderr, "short input\n"); exit(3); }
    return p;
}

int main(int argc, char ** argv) {
    if (argc < 4) return 1;
    enum ggml_type t = type_named(argv[2]);
    if (argv[1][0] == 'q') {
        long nrows = atol(argv[3]), ncols = atol(argv[4]);
        float * im = NULL;
        if (argc > 5) {
            FILE * f = fopen(argv[5], "rb");
            im = malloc(ncols * sizeof(float));
            if (!f || fread(im, sizeof(float), ncols, f) != (size_t) ncols) return 4;
            fclose(f);
        }
        float * x = read_all(nrows * ncols * sizeof(float));
        size_t nb = ggml_row_size(t, ncols) * nrows;
        void * y = calloc(nb, 1);
        size_t got = ggml_quantize_chunk(t, x, y, 0, nrows, ncols, im);
        if (got != nb) { fprintf(stderr, "wrote %zu of %zu bytes\n", got, nb); return 5; }
        fwrite(y, 1, nb, stdout);
    } else {
        long n = atol(argv[3]);
        size_t nb = ggml_row_size(t, n);
        void * x = read_all(nb);
        float * y = malloc(n * sizeof(float));
        ggml_get_type_traits(t)->to_float(x, y, n);
        fwrite(y, sizeof(float), n, stdout);
    }
    return 0;
}
"""


class Ggml:
    """llama.cpp's quantizers and dequantizers through a tiny program on libggml-base.a."""

    def __init__(self):
        lib = BUILD / "ggml" / "src" / "libggml-base.a"
        cc = shutil.which("cc") or shutil.which("gcc")
        if not lib.exists() or cc is None:
            raise SystemExit(f"need {lib} and a C compiler (see scripts/build_llamacpp.sh)")
        self.tmp = Path(tempfile.mkdtemp())
        src = self.tmp / "dqref.c"
        src.write_text(HELPER_C)
        self.exe = self.tmp / "dqref"
        subprocess.run(
            [cc, "-O2", f"-I{SRC / 'ggml' / 'include'}", str(src), str(lib), "-lm", "-lpthread",
             "-lstdc++", "-fopenmp", "-o", str(self.exe)],
            check=True,
        )

    def quantize(self, name, rows, imatrix=None):
        rows = np.ascontiguousarray(rows, dtype=np.float32)
        args = [str(self.exe), "q", name, str(rows.shape[0]), str(rows.shape[1])]
        if imatrix is not None:
            p = self.tmp / "imatrix.f32"
            np.ascontiguousarray(imatrix, dtype=np.float32).tofile(p)
            args.append(str(p))
        out = subprocess.run(args, input=rows.tobytes(), capture_output=True, check=True)
        return np.frombuffer(out.stdout, dtype=np.uint8).reshape(rows.shape[0], -1)

    def dequantize(self, name, blocks, n):
        out = subprocess.run(
            [str(self.exe), "d", name, str(n)],
            input=np.ascontiguousarray(blocks).tobytes(),
            capture_output=True,
            check=True,
        )
        return np.frombuffer(out.stdout, dtype=np.float32)


def bf16_round(x):
    """Nearest bf16 (ties to even), as f32."""
    b = np.asarray(x, dtype=np.float32).view(np.uint32).astype(np.uint64)
    b = ((b + 0x7FFF + ((b >> 16) & 1)) >> 16) << 16
    return b.astype(np.uint32).view(np.float32)


def make_rows(rng):
    f = np.float32
    rows = []
    # 0: plain normal values.
    rows.append(rng.standard_normal(COLS).astype(f))
    # 1: bf16 values with heavy tails (a few large values, like Gemma's outlier channels).
    v = rng.standard_normal(COLS) * 0.02
    v[rng.choice(COLS, 8, replace=False)] = rng.standard_normal(8) * 3
    rows.append(bf16_round(v))
    # 2: special blocks of 32.
    b = [
        np.zeros(32),  # all zero
        np.full(32, 0.3),  # all equal
        np.full(32, -0.3),  # all equal, negative
        rng.integers(-16, 16, 32) / 4.0,  # quarters: exact ties
        np.where(rng.random(32) < 0.2, rng.standard_normal(32), 0.0),  # sparse
        rng.uniform(-1, 1, 32) * 1e-5,  # tiny
        rng.uniform(-1, 1, 32) * 1e3,  # large
        np.concatenate([[-4.0, 4.0], rng.uniform(-1, 1, 30)]),  # negative max first
    ]
    rows.append(np.concatenate(b).astype(f))
    # 3: all positive in the first half (minimum 0), then a magnitude per block of 32.
    v = rng.standard_normal(COLS)
    v[:128] = np.abs(v[:128])
    v[128:] *= np.repeat([1e-3, 0.1, 10.0, 1.0], 32)
    rows.append(v.astype(np.float16).astype(f))
    return np.stack(rows).astype(np.float32)


def random_blocks(rng, name):
    """Random bytes made valid: finite f16 scales (one negative, one subnormal), the edge
    codes of the E8M0 / UE4M3 scales."""
    bl, bs, f16_at = TYPES[name]
    n = RANDOM_VALUES // bl
    blocks = rng.integers(0, 256, (n, bs), dtype=np.uint8)

    def f16s(k):
        h = (rng.standard_normal(k) * 0.05).astype(np.float16)
        h[0] = -abs(h[0])
        if k > 1:
            h[1] = np.uint16(0x0123).view(np.float16)  # subnormal
        return h

    for off in f16_at:
        blocks[:, off : off + 2] = f16s(n).view(np.uint8).reshape(n, 2)
    if name == "iq1_m":
        # The scale's bits 4k..4k+4 go in the top nibble of the u16 at 48 + 2k.
        d = f16s(n).view(np.uint16)
        for k in range(4):
            hi = blocks[:, 49 + 2 * k]
            blocks[:, 49 + 2 * k] = (hi & 0x0F) | (((d >> (4 * k)) & 0xF) << 4).astype(np.uint8)
    if name == "mxfp4":
        blocks[:8, 0] = [0, 1, 2, 3, 126, 127, 254, 255]
    if name == "nvfp4":
        blocks[0, 0:4] = [0x00, 0x7F, 0x80, 0xFF]
        blocks[1, 0:4] = [0x01, 0x07, 0x08, 0x7E]
        blocks[2, 0:4] = [0x38, 0x39, 0xFE, 0x81]
    return blocks


def gguf_version():
    """gguf-py's version and where it came from."""
    from importlib.metadata import version

    here = Path(gguf.__file__).resolve()
    where = "llama.cpp tree" if SRC.resolve() in here.parents else "PyPI"
    try:
        v = version("gguf") if where == "PyPI" else None
    except Exception:
        v = None
    if v is None:
        toml = SRC / "gguf-py" / "pyproject.toml"
        m = [ln for ln in toml.read_text().splitlines() if ln.startswith("version")]
        v = m[0].split("=")[1].strip().strip('"') if m else "unknown"
    return f"{v} ({where})"


def gguf_quantizes(qtype):
    cls = quants._type_traits.get(qtype)
    return cls is not None and "quantize_blocks" in cls.__dict__


def gguf_dequantizes(qtype):
    return quants._type_traits.get(qtype) is not None


def same_bits(a, b):
    a, b = np.asarray(a, np.float32), np.asarray(b, np.float32)
    if a.shape != b.shape:
        return False
    nan = np.isnan(a) & np.isnan(b)
    return bool(np.all(nan | (a.view(np.uint32) == b.view(np.uint32))))


def dequantize(ggml, name, qtype, blocks, n):
    """(values, who gave them): gguf-py's, checked against the C function, or the C one's."""
    c = ggml.dequantize(name, blocks, n)
    if not gguf_dequantizes(qtype):
        return c, "llama.cpp dequantize_row_" + name
    py = quants.dequantize(blocks, qtype).astype(np.float32).reshape(-1)
    if not same_bits(py, c):
        i = int(np.flatnonzero(py.view(np.uint32) != c.view(np.uint32))[0])
        raise SystemExit(f"{name}: gguf-py and llama.cpp disagree at value {i}: {py[i]!r} {c[i]!r}")
    return py, "gguf-py dequantize (= llama.cpp dequantize_row_" + name + ")"


def main():
    np.seterr(all="ignore")
    rng = np.random.default_rng(20261207)
    OUT.mkdir(parents=True, exist_ok=True)
    ggml = Ggml()
    rows = make_rows(rng)
    # An importance matrix as llama-quantize's --imatrix gives (per-column mean of squared
    # activations): positive, uneven.
    imatrix = (0.1 + rng.random(COLS) ** 2 * 4).astype(np.float32)

    version = (BUILD.parent / "VERSION")
    manifest = {
        "rows": ROWS,
        "cols": COLS,
        "llamacpp": version.read_text().strip() if version.exists() else "unknown",
        "gguf-py": gguf_version(),
        "numpy": np.__version__,
        "types": {},
    }
    for name in TYPES:
        qtype = T[name.upper()]
        if gguf_quantizes(qtype):
            blocks = quants.quantize(rows, qtype)
            who = "gguf-py quantize"
        elif name.startswith("iq"):
            blocks = ggml.quantize(name, rows, imatrix)
            who = "llama.cpp ggml_quantize_chunk with an imatrix"
        else:
            blocks = ggml.quantize(name, rows)
            who = "llama.cpp ggml_quantize_chunk"
        values, ref = dequantize(ggml, name, qtype, blocks, rows.size)
        blocks.tofile(OUT / f"{name}.bin")
        values.astype(np.float32).tofile(OUT / f"{name}.dequant.f32")

        rblocks = random_blocks(rng, name)
        rvalues, rref = dequantize(ggml, name, qtype, rblocks, RANDOM_VALUES)
        assert rref == ref
        rblocks.tofile(OUT / f"random.{name}.bin")
        rvalues.astype(np.float32).tofile(OUT / f"random.{name}.dequant.f32")

        files = [f"{name}.bin", f"{name}.dequant.f32", f"random.{name}.bin",
                 f"random.{name}.dequant.f32"]
        manifest["types"][name] = {
            "blocks": who,
            "random blocks": rblocks.shape[0],
            "values": ref,
            "bytes": sum((OUT / f).stat().st_size for f in files),
        }
        print(f"{name:8} {who:45} {ref}", file=sys.stderr)

    (OUT / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n")
    shutil.rmtree(ggml.tmp, ignore_errors=True)
    total = sum(p.stat().st_size for p in OUT.iterdir())
    print(f"wrote {OUT} ({total} bytes)")


if __name__ == "__main__":
    main()
