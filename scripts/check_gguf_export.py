#!/usr/bin/env python3
"""Checks `frugal convert IN OUT.gguf` against references no one here wrote.

    .venv/bin/python scripts/check_gguf_export.py [--write-expected] [--model DIR]

For the tiny fixture models (with the bundled tokenizer.model beside them) in bf16, q8 and q4:
  1. gguf-py (PyPI `gguf`) parses every file frugal writes: metadata, tensor names, shapes, types;
  2. gguf-py's dequantization of frugal's Q8_0/Q4_0 blocks equals gguf-py's dequantization of
     gguf-py's own quantization of the same source weights, exactly (the blocks are the same
     bytes), and bf16/f16/f32 matrices are the source bytes unchanged; norms are 1 + w in f32;
  3. if llama.cpp is built (scripts/build_llamacpp.sh), llama-simple's greedy text from each
     file next to frugal's from the source folder (`--exact` for float files, `--quant q8/q4` for
     quantized ones: both then multiply int8 blocks with activations quantized per block) (the random tiny models have
     near-ties, so the length of the common prefix is reported);
  4. `frugal convert` from each Q8_0 file: to a folder (gguf-py's dequantization equals the f32
     tensors written, PyPI sentencepiece reads the tokenizer.model written and tokenizes as frugal
     does on the file) and to Q4_0 (gguf-py's Q4_0 of its own dequantization of the Q8_0 blocks,
     byte for byte; llama.cpp runs it).
With --model DIR (a Hugging Face folder, e.g. a `frugal synth --shape gemma-2b` one) the same
for that model. --write-expected records the files' sha256 in tests/fixtures/gguf_export/,
which tests/gguf_export.rs compares against, so CI (which has no Python) catches any change in
the bytes frugal writes.
"""

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile

import numpy as np
import gguf
from gguf import quants
from safetensors.numpy import load_file

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FRUGAL = os.path.join(ROOT, "target", "release", "frugal")
FIXTURES = ["gemma1-mha-f32", "gemma1-mqa-bf16", "gemma2-f32-newkeys", "gemma3-bf16", "gemma3-mm-bf16"]
EXPECTED = os.path.join(ROOT, "tests", "fixtures", "gguf_export", "expected.json")
LLAMA = os.path.expanduser(os.environ.get("FRUGAL_PEER_DIR", "~/.cache/frugal/llamacpp") + "/build/bin")

GG = gguf.GGMLQuantizationType


def hf_name(gguf_name, family):
    """The Hugging Face name frugal maps a GGUF tensor name from (the inverse, for checking)."""
    if gguf_name == "token_embd.weight":
        return "model.embed_tokens.weight"
    if gguf_name == "output_norm.weight":
        return "model.norm.weight"
    _, l, part, _ = gguf_name.split(".")
    m = {
        "attn_norm": "input_layernorm", "attn_q": "self_attn.q_proj", "attn_k": "self_attn.k_proj",
        "attn_v": "self_attn.v_proj", "attn_output": "self_attn.o_proj", "attn_q_norm": "self_attn.q_norm",
        "attn_k_norm": "self_attn.k_norm", "post_attention_norm": "post_attention_layernorm",
        "ffn_norm": "post_attention_layernorm" if family == "gemma" else "pre_feedforward_layernorm",
        "post_ffw_norm": "post_feedforward_layernorm", "ffn_gate": "mlp.gate_proj", "ffn_up": "mlp.up_proj",
        "ffn_down": "mlp.down_proj",
    }
    return f"model.layers.{l}.{m[part]}.weight"


def load_source(folder):
    sd = {}
    for f in sorted(os.listdir(folder)):
        if f.endswith(".safetensors"):
            import torch
            from safetensors.torch import load_file as lt
            for k, v in lt(os.path.join(folder, f)).items():
                sd[k.replace("language_model.", "")] = v.float().numpy()
    return sd


def check_file(path, src, quant):
    r = gguf.GGUFReader(path)
    arch = r.fields["general.architecture"].contents()
    n = 0
    for t in r.tensors:
        w = src[hf_name(t.name, arch)]
        data = np.asarray(t.data)
        if t.name.endswith("norm.weight"):
            assert t.tensor_type == GG.F32, t.name
            np.testing.assert_array_equal(data.reshape(-1), (w + 1).astype(np.float32))
        elif quant:
            want_t = {"q8": GG.Q8_0, "q4": GG.Q4_0}[quant]
            assert t.tensor_type == want_t, (t.name, t.tensor_type)
            ours = quants.dequantize(data, t.tensor_type)
            ref = quants.dequantize(quants.quantize(w.astype(np.float32), want_t), want_t)
            np.testing.assert_array_equal(ours.reshape(w.shape), ref, err_msg=t.name)
        else:
            got = quants.dequantize(data, t.tensor_type) if t.tensor_type != GG.F32 else data
            np.testing.assert_array_equal(np.asarray(got, dtype=np.float32).reshape(w.shape), w, err_msg=t.name)
        n += 1
    return arch, n


def check_from_gguf(q8, tmp, prompt, n):
    """`frugal convert` with a GGUF input (the Q8_0 file frugal wrote): to a folder, gguf-py's
    dequantization of every block tensor equals the folder's f32 tensor exactly, norms are the
    file's minus one, and PyPI sentencepiece reads the written tokenizer.model and tokenizes as
    frugal does on the file; to Q4_0, gguf-py's own Q4_0 of gguf-py's dequantized Q8_0 blocks is
    byte-equal to frugal's, and llama.cpp runs the file."""
    import sentencepiece as spm
    back = q8[:-5] + "-back"
    run([FRUGAL, "convert", q8, back, "--force"])
    st = {}
    for f in os.listdir(back):
        if f.endswith(".safetensors"):
            st.update(load_file(os.path.join(back, f)))
    r = gguf.GGUFReader(q8)
    arch = r.fields["general.architecture"].contents()
    for t in r.tensors:
        w = st[hf_name(t.name, arch)]
        assert w.dtype == np.float32, (t.name, w.dtype)
        data = np.asarray(t.data)
        if t.name.endswith("norm.weight"):
            np.testing.assert_array_equal(w.reshape(-1), data.reshape(-1) - np.float32(1), err_msg=t.name)
        else:
            np.testing.assert_array_equal(w, quants.dequantize(data, t.tensor_type).reshape(w.shape), err_msg=t.name)
    text = "Hello  world, \u4f60\u597d \U0001F600\n<start_of_turn>user\ttab def main():"
    sp = spm.SentencePieceProcessor(model_file=os.path.join(back, "tokenizer.model"))
    ours = json.loads(run([FRUGAL, "tokenize", "-m", q8, "--text", text, "--json"]).stdout)["ids"]
    assert sp.encode(text) == ours, (sp.encode(text), ours)
    q4 = q8[:-5] + "-requant-q4.gguf"
    run([FRUGAL, "convert", q8, q4, "--quant", "q4", "--force"])
    r4 = gguf.GGUFReader(q4)
    for t8, t4 in zip(r.tensors, r4.tensors):
        assert t8.name == t4.name
        if t8.tensor_type == GG.Q8_0:
            assert t4.tensor_type == GG.Q4_0, t4.name
            ref = quants.quantize(quants.dequantize(np.asarray(t8.data), GG.Q8_0), GG.Q4_0)
            np.testing.assert_array_equal(np.asarray(t4.data).view(np.uint8).reshape(-1), ref.view(np.uint8).reshape(-1), err_msg=t4.name)
    want = run([FRUGAL, "run", "-m", q4, "-p", prompt, "-n", str(n)]).stdout[len(prompt):].rstrip("\n")
    got = llama_text(q4, prompt, n)
    same = "llama.cpp not built" if got is None else ("same text" if got.rstrip("\n") == want else f"llama.cpp {got[:24]!r} vs frugal {want[:24]!r}")
    return f"from GGUF: folder = gguf-py's dequantization, sentencepiece ids = frugal's; requantized Q4_0 = gguf-py's; {same}"


def run(cmd, **kw):
    r = subprocess.run(cmd, check=True, capture_output=True, **kw)
    r.stdout = r.stdout.decode("utf-8", errors="replace")
    return r


def llama_text(gguf_path, prompt, n):
    """llama.cpp's greedy continuation: `llama-simple` prints the prompt's pieces, the new
    tokens and a newline, synchronously (llama-completion's logger can lose its output at exit).
    """
    exe = os.path.join(LLAMA, "llama-simple")
    if not os.path.exists(exe):
        return None
    out = run([exe, "-m", gguf_path, "-n", str(n), prompt], stdin=subprocess.DEVNULL).stdout
    out = out.split(prompt, 1)[1] if prompt in out else out
    return out[:-1] if out.endswith("\n") else out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--write-expected", action="store_true")
    ap.add_argument("--model")
    a = ap.parse_args()
    run(["cargo", "build", "--release", "-q"], cwd=ROOT)
    expected = {}
    tmp = tempfile.mkdtemp()
    models = [(f, os.path.join(ROOT, "tests", "fixtures", "models", f)) for f in FIXTURES]
    if a.model:
        models.append((os.path.basename(a.model.rstrip("/")), a.model))
    prompt, n = "def main():", 24
    for name, folder in models:
        work = os.path.join(tmp, name)
        shutil.copytree(folder, work)
        if not os.path.exists(os.path.join(work, "tokenizer.model")):
            shutil.copy(os.path.join(ROOT, "assets", "tokenizer", "tokenizer.model"), work)
        src = load_source(work)
        for quant in [None, "q8", "q4"]:
            mode = ["--quant", quant] if quant else ["--exact"]
            want = run([FRUGAL, "run", "-m", work, "-p", prompt, "-n", str(n)] + mode).stdout[len(prompt):].rstrip("\n")
            out = os.path.join(tmp, f"{name}-{quant or 'float'}.gguf")
            run([FRUGAL, "convert", work, out] + (["--quant", quant] if quant else []))
            arch, count = check_file(out, src, quant)
            sha = hashlib.sha256(open(out, "rb").read()).hexdigest()
            if name in FIXTURES:
                expected[f"{name}-{quant or 'float'}"] = sha
            got = llama_text(out, prompt, n)
            got = None if got is None else got.rstrip("\n")
            if got is None:
                same = "llama.cpp not built"
            elif got == want:
                same = f"same text ({n} tokens)"
            else:
                k = next(i for i, (x, y) in enumerate(zip(got + "\0", want + "\1")) if x != y)
                # Random tiny models have near-ties that accumulation order flips; what counts
                # is agreement over a long prefix (the trained model in assets/tiny has margins).
                same = f"same text for {k} characters, then {got[k:k+12]!r} vs {want[k:k+12]!r}"
            print(f"{name} {quant or 'float'}: gguf-py ok ({arch}, {count} tensors); llama.cpp vs frugal {' '.join(mode)}: {same}")
            if quant == "q8":
                print(f"{name} q8: {check_from_gguf(out, tmp, prompt, n)}")
    if a.write_expected:
        os.makedirs(os.path.dirname(EXPECTED), exist_ok=True)
        with open(EXPECTED, "w") as f:
            json.dump(expected, f, indent=1, sort_keys=True)
        print("wrote", EXPECTED)
    shutil.rmtree(tmp)


if __name__ == "__main__":
    main()
