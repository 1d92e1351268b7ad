#!/usr/bin/env python3
"""frugal's --quant kinds against the files llama-quantize writes for the same file types, on
the same weights; writes tests/fixtures/mixes/llamacpp.json and prints a markdown table.

    cargo build --release
    /work/main/.venv/bin/python scripts/llamacpp_mixes.py [--work DIR] [--no-1b]

For each kind (q8 = Q8_0, q4 = --pure Q4_0, q4k = --pure Q4_K_S, q4km = Q4_K_M, q5km = Q5_K_M,
q6k = Q6_K) and each model:
  - tiny: assets/tiny (hidden 256, 4 layers, trained), made a bf16 GGUF by llama.cpp's
    convert_hf_to_gguf.py (exact: the weights are bf16), then llama-quantize;
  - gemma3-1b: `frugal synth --shape gemma3-1b` (hidden 1152: rows that are not whole 256
    super-blocks, so every fallback), converted and quantized the same way; its files (2 GB
    each) are deleted as soon as they are compared (--no-1b skips it);
the script records the dtype llama-quantize chose for every matrix (gguf-py lists them) and
checks that every 1-D tensor stayed F32; writes the same model with `frugal convert --quant`
and compares every tensor's dtype and bytes with llama-quantize's; and for the tiny model
runs `frugal perplexity` on llama.cpp's file, on frugal's file and with frugal's quantize-on-load
(assets/tiny/eval.txt, --ctx 256, --threads 2).

The JSON keeps what the tests need without llama.cpp: the chosen dtypes (tests/it/mix.rs
compares frugal's choices with them), a digest of each of llama.cpp's tiny tensors (frugal's
must equal them), and the perplexity of llama.cpp's tiny files as frugal measures them (frugal's
q4km must not exceed llama.cpp's Q4_K_M).

Env: LLAMACPP_BUILD (default ~/.cache/frugal/llamacpp/build), LLAMACPP_SRC (default
~/.cache/frugal/llamacpp/src/llama.cpp; its gguf-py is used).
"""

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

SRC = Path(os.environ.get("LLAMACPP_SRC", Path.home() / ".cache/frugal/llamacpp/src/llama.cpp"))
BUILD = Path(os.environ.get("LLAMACPP_BUILD", Path.home() / ".cache/frugal/llamacpp/build"))
if (SRC / "gguf-py").is_dir():
    sys.path.insert(0, str(SRC / "gguf-py"))
import gguf  # noqa: E402
import numpy as np  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
FRUGAL = ROOT / "target" / "release" / "frugal"
OUT = ROOT / "tests" / "fixtures" / "mixes" / "llamacpp.json"
EVAL = ROOT / "assets" / "tiny" / "eval.txt"
CTX, THREADS = 256, 2

# frugal's kind: (llama-quantize's file type, extra arguments, llama_ftype)
KINDS = {
    "q8": ("Q8_0", [], 7),
    "q4": ("Q4_0", ["--pure"], 2),
    "q4k": ("Q4_K_S", ["--pure"], 14),
    "q4km": ("Q4_K_M", [], 15),
    "q5km": ("Q5_K_M", [], 17),
    "q6k": ("Q6_K", [], 18),
}


def run(cmd, **kw):
    r = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, **kw)
    if r.returncode != 0:
        sys.exit(f"failed: {' '.join(map(str, cmd))}\n{r.stderr[-4000:]}")
    return r.stdout


def to_gguf(folder, out):
    run([sys.executable, SRC / "convert_hf_to_gguf.py", folder, "--outtype", "bf16",
         "--outfile", out])


def quantize(src, out, kind):
    ftype, extra, _ = KINDS[kind]
    run([BUILD / "bin" / "llama-quantize", *extra, src, out, ftype])


def tensors(path):
    """name -> (type name, ne list, data as a memory-mapped byte array) of a GGUF file."""
    r = gguf.GGUFReader(str(path))
    out = {}
    for t in r.tensors:
        data = np.asarray(t.data).reshape(-1).view(np.uint8)
        out[t.name] = (t.tensor_type.name, [int(x) for x in t.shape], data)
    ft = r.fields.get("general.file_type")
    file_type = int(ft.parts[ft.data[0]][0]) if ft else None
    return out, file_type


def compact(types):
    """{token_embd: T, attn_q: [T per layer], ...} from {name: T} of the 2-D tensors."""
    out = {}
    for name, t in sorted(types.items(), key=lambda kv: kv[0]):
        parts = name.split(".")
        if parts[0] == "blk":
            layer, key = int(parts[1]), parts[2]
            lst = out.setdefault(key, [])
            while len(lst) <= layer:
                lst.append(None)
            lst[layer] = t
        else:
            out[parts[0]] = t
    return out


def cpu_isa():
    """frugal_kernels::isa()'s name for this CPU, from /proc/cpuinfo's flags: the kernels (so
    the order of their sums) the perplexities were measured with."""
    flags = set()
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("flags"):
            flags = set(line.split(":", 1)[1].split())
            break
    if {"avx512f", "avx512bw", "avx512vl"} <= flags:
        return "avx512vnni" if "avx512_vnni" in flags else "avx512"
    return "avx2" if {"avx2", "fma", "f16c"} <= flags else "scalar"


def perplexity(model, *args):
    out = run([FRUGAL, "perplexity", "-m", model, "-f", EVAL, "--ctx", CTX, "--threads", THREADS,
               "--json", *args])
    return json.loads(out)["perplexity"]


def compare(llama, frugal):
    """Per tensor: whether frugal's dtype and bytes equal llama.cpp's."""
    diffs = []
    for name, (t, ne, data) in llama.items():
        if name not in frugal:
            diffs.append(f"{name}: missing in frugal's file")
            continue
        ft, fne, fdata = frugal[name]
        if (ft, fne) != (t, ne):
            diffs.append(f"{name}: frugal {ft} {fne}, llama.cpp {t} {ne}")
        elif fdata.size != data.size or not np.array_equal(fdata, data):
            n = int(np.count_nonzero(fdata != data)) if fdata.size == data.size else "all"
            diffs.append(f"{name}: {t}, {n} of {data.size} bytes differ")
    return diffs


def model_kinds(name, folder, work, tiny):
    bf16 = work / f"{name}-bf16.gguf"
    print(f"{name}: converting to bf16 GGUF", file=sys.stderr)
    to_gguf(folder, bf16)
    src, _ = tensors(bf16)
    rec = {"types": {}, "identical": {}}
    if tiny:
        rec["digests"], rec["perplexity"] = {}, {"bf16": perplexity(bf16, "--exact")}
        rec["frugal_perplexity"] = {"full precision (--exact)": perplexity(folder, "--exact")}
    for kind, (ftype, extra, ft_id) in KINDS.items():
        print(f"{name}: {kind} ({' '.join(extra + [ftype])})", file=sys.stderr)
        q = work / f"{name}-{ftype}.gguf"
        quantize(bf16, q, kind)
        llama, file_type = tensors(q)
        assert file_type == ft_id, (kind, file_type)
        for n, (t, ne, _) in llama.items():
            if len(ne) == 1:
                assert t == "F32", f"{name} {kind}: {n} is {t}"
            assert src[n][1] == ne, n
        mats = {n: t for n, (t, ne, _) in llama.items() if len(ne) == 2}
        rec["types"][kind] = compact(mats)
        ours_path = work / f"{name}-frugal-{kind}.gguf"
        run([FRUGAL, "convert", folder, ours_path, "--quant", kind, "--force"])
        ours, our_ft = tensors(ours_path)
        diffs = compare(llama, ours)
        if our_ft != ft_id:
            diffs.append(f"general.file_type: frugal {our_ft}, llama.cpp {ft_id}")
        rec["identical"][kind] = (
            f"all {len(llama)} tensors" if not diffs else diffs
        )
        if tiny:
            rec["digests"][kind] = {
                n: hashlib.sha256(d.tobytes()).hexdigest()[:16]
                for n, (t, ne, d) in sorted(llama.items())
                if len(ne) == 2
            }
            rec["perplexity"][kind] = perplexity(q)
            rec["frugal_perplexity"][f"{kind} (frugal's GGUF file)"] = perplexity(ours_path)
            rec["frugal_perplexity"][f"{kind} (quantize on load)"] = perplexity(
                folder, "--quant", kind
            )
        q.unlink()
        ours_path.unlink()
    bf16.unlink()
    return rec


def dump(v, ind=0):
    """JSON with one key a line and lists of scalars on one line."""
    pad = " " * (ind + 1)
    if isinstance(v, dict):
        if not v:
            return "{}"
        items = [f"{pad}{json.dumps(k)}: {dump(x, ind + 1)}" for k, x in v.items()]
        return "{\n" + ",\n".join(items) + "\n" + " " * ind + "}"
    if isinstance(v, list) and any(isinstance(x, (dict, list)) for x in v):
        return "[\n" + ",\n".join(pad + dump(x, ind + 1) for x in v) + "\n" + " " * ind + "]"
    return json.dumps(v)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--work", type=Path, help="scratch folder (default: a temporary one)")
    ap.add_argument("--no-1b", action="store_true", help="skip the gemma3-1b shape")
    a = ap.parse_args()
    if not FRUGAL.exists():
        sys.exit("build frugal first: cargo build --release")
    work = a.work or Path(tempfile.mkdtemp(prefix="frugal-mixes-"))
    work.mkdir(parents=True, exist_ok=True)
    version = Path.home() / ".cache/frugal/llamacpp/VERSION"
    isa = cpu_isa()
    res = {
        "about": "written by scripts/llamacpp_mixes.py: llama-quantize's choices, tiny tensor "
        "digests and the perplexity of its tiny files as frugal measures them",
        "llamacpp": version.read_text().strip() if version.exists() else "unknown",
        "kinds": {k: {"llama_quantize": " ".join(e + [f]), "file_type": i}
                  for k, (f, e, i) in KINDS.items()},
        "perplexity_command": f"frugal perplexity -m FILE -f assets/tiny/eval.txt --ctx {CTX} "
        f"--threads {THREADS} --json",
        "isa": isa,
        "models": {},
    }
    prev = json.loads(OUT.read_text()) if OUT.exists() else {}
    res["models"]["tiny"] = {"source": "assets/tiny", "layers": 4,
                             **model_kinds("tiny", ROOT / "assets" / "tiny", work, True)}
    if a.no_1b:
        if "gemma3-1b" in prev.get("models", {}):
            res["models"]["gemma3-1b"] = prev["models"]["gemma3-1b"]
    else:
        g = work / "gemma3-1b"
        print("gemma3-1b: frugal synth", file=sys.stderr)
        run([FRUGAL, "synth", "--shape", "gemma3-1b", "--out", g, "--force"])
        res["models"]["gemma3-1b"] = {"source": "frugal synth --shape gemma3-1b", "layers": 26,
                                      **model_kinds("gemma3-1b", g, work, False)}
        shutil.rmtree(g)
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(dump(res) + "\n")
    print(f"wrote {OUT}", file=sys.stderr)

    t = res["models"]["tiny"]
    print("| kind | llama.cpp file (by frugal) | frugal's file | frugal quantize-on-load | "
          "identical to llama-quantize |")
    print("|---|---|---|---|---|")
    for k in KINDS:
        fp = t["frugal_perplexity"]
        ident = {m: v["identical"][k] for m, v in res["models"].items()}
        ok = ", ".join(f"{m}: {v if isinstance(v, str) else len(v)} differ"
                       if not isinstance(v, str) else f"{m}: {v}" for m, v in ident.items())
        print(f"| {k} | {t['perplexity'][k]:.4f} | {fp[f'{k} (frugal' + chr(39) + 's GGUF file)']:.4f}"
              f" | {fp[f'{k} (quantize on load)']:.4f} | {ok} |")
    if not a.work:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
