#!/usr/bin/env python3
"""GGUF fixtures for tests/gguf_read.rs, written by llama.cpp's own tools.

    .venv/bin/python scripts/make_gguf_fixtures.py

Needs llama.cpp's source and build (scripts/build_llamacpp.sh): `convert_hf_to_gguf.py` (the
reference writer, with its own gguf-py) and `llama-quantize`. For each fixture:

1. a Hugging Face folder: a tiny model of tests/fixtures/models (or a new 256-wide one for the
   K-quants, whose rows must be whole super-blocks of 256), with the SentencePiece
   `tokenizer.model` of assets/tokenizer and the `tokenizer_config.json` transformers writes
   for it. `query_pre_attn_scalar` is set to the head size, because GGUF has no key for it and
   llama.cpp scales queries by 1/sqrt(head size);
2. `convert_hf_to_gguf.py --outtype f32|f16|bf16|q8_0`, and `llama-quantize` for Q4_0 (--pure),
   Q4_K_M and Q6_K;
3. the reference: every tensor of the GGUF dequantized by gguf-py (`gguf.quants.dequantize`),
   renamed back to Hugging Face names, norms minus 1 (the converter stores 1 + w), loaded into
   transformers in float32 with eager attention; logits of the fixture's tokens and the greedy
   continuation of its prompt -> `logits.f32`, `reference.json` (same format as
   tests/fixtures/models).

Output: tests/fixtures/gguf/<name>.gguf and tests/fixtures/gguf/<name>/{reference.json,logits.f32}.
"""

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
LLAMA = Path(os.environ.get("LLAMACPP_SRC", Path.home() / ".cache/frugal/llamacpp/src/llama.cpp"))
BIN = Path(os.environ.get("LLAMACPP_BIN", Path.home() / ".cache/frugal/llamacpp/build/bin"))
OUT = ROOT / "tests/fixtures/gguf"
MODELS = ROOT / "tests/fixtures/models"
MAX_NEW = 12

# llama.cpp's gguf-py, as its converter uses it.
sys.path.insert(0, str(LLAMA / "gguf-py"))
import gguf  # noqa: E402
from gguf import GGUFReader  # noqa: E402
from gguf.quants import dequantize  # noqa: E402

# (name, source model folder or "kwide", converter outtype, llama-quantize type or None)
SPECS = [
    ("gemma1-f32", "gemma1-mha-f32", "f32", None),
    ("gemma1-q8_0", "gemma1-mqa-bf16", "q8_0", None),
    ("gemma2-bf16", "gemma2-gqa-bf16", "bf16", None),
    ("gemma2-q4_0", "gemma2-gqa-bf16", "f32", "Q4_0"),
    ("gemma3-f16", "gemma3-bf16", "f16", None),
    ("gemma3-q8_0", "gemma3-bf16", "q8_0", None),
    ("gemma3-q4_k_m", "kwide", "f32", "Q4_K_M"),
    ("gemma3-q6_k", "kwide", "f32", "Q6_K"),
]

HF_OF_GGUF = {
    "token_embd.weight": "model.embed_tokens.weight",
    "output_norm.weight": "model.norm.weight",
    "output.weight": "lm_head.weight",
}
LAYER = {
    "attn_norm": "input_layernorm",
    "attn_q": "self_attn.q_proj",
    "attn_k": "self_attn.k_proj",
    "attn_v": "self_attn.v_proj",
    "attn_output": "self_attn.o_proj",
    "attn_q_norm": "self_attn.q_norm",
    "attn_k_norm": "self_attn.k_norm",
    "post_attention_norm": "post_attention_layernorm",
    "post_ffw_norm": "post_feedforward_layernorm",
    "ffn_gate": "mlp.gate_proj",
    "ffn_up": "mlp.up_proj",
    "ffn_down": "mlp.down_proj",
}


def hf_name(name, arch):
    if name in HF_OF_GGUF:
        return HF_OF_GGUF[name]
    _, l, part, w = name.split(".")
    if part == "ffn_norm":
        p = "post_attention_layernorm" if arch == "gemma" else "pre_feedforward_layernorm"
    else:
        p = LAYER[part]
    return f"model.layers.{l}.{p}.{w}"


def kwide_folder(dst):
    """A Gemma 3 text model whose matrices are all whole super-blocks of 256 columns."""
    from transformers import Gemma3ForCausalLM, Gemma3TextConfig
    torch.manual_seed(61)
    cfg = Gemma3TextConfig(
        vocab_size=2048, hidden_size=256, intermediate_size=512, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, head_dim=64, query_pre_attn_scalar=64,
        sliding_window=8, sliding_window_pattern=6, max_position_embeddings=512,
        rope_theta=1_000_000.0, rope_local_base_freq=10000.0, rms_norm_eps=1e-6,
        initializer_range=0.08, tie_word_embeddings=True, bos_token_id=2, eos_token_id=1,
        pad_token_id=0,
    )
    m = Gemma3ForCausalLM(cfg).eval()
    with torch.no_grad():
        for n, p in m.named_parameters():
            if n.endswith("norm.weight"):
                p.copy_(torch.randn_like(p) * 0.3)
    m.save_pretrained(dst, safe_serialization=True)


def hf_folder(src, dst):
    dst.mkdir(parents=True)
    if src == "kwide":
        kwide_folder(dst)
    else:
        for f in (MODELS / src).iterdir():
            if f.name.endswith(".safetensors") or f.name.endswith(".json") and f.name not in ("reference.json", "tokenizer.json"):
                shutil.copy(f, dst / f.name)
    cfg = json.loads((dst / "config.json").read_text())
    if cfg["model_type"] != "gemma":
        cfg["query_pre_attn_scalar"] = cfg["head_dim"]
    (dst / "config.json").write_text(json.dumps(cfg, indent=1))
    from transformers import AutoTokenizer
    tok = AutoTokenizer.from_pretrained(ROOT / "assets/tokenizer")
    tok.save_pretrained(dst)
    # The added tokens as a published Gemma tokenizer_config.json lists them, which the
    # converter reads to mark control (special) and user-defined tokens.
    tj = json.loads((ROOT / "assets/tokenizer/tokenizer.json").read_text())
    tc_path = dst / "tokenizer_config.json"
    tc = json.loads(tc_path.read_text()) if tc_path.is_file() else {}
    tc["added_tokens_decoder"] = {
        str(t["id"]): {k: t[k] for k in ("content", "lstrip", "normalized", "rstrip", "single_word", "special")}
        for t in tj["added_tokens"]
    }
    tc_path.write_text(json.dumps(tc, indent=1))
    shutil.copy(ROOT / "assets/tokenizer/tokenizer.model", dst / "tokenizer.model")


def convert(hf, outtype, out):
    subprocess.run([sys.executable, str(LLAMA / "convert_hf_to_gguf.py"), str(hf),
                    "--outtype", outtype, "--outfile", str(out)], check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def quantize(src, qtype, out):
    args = [str(BIN / "llama-quantize")]
    if qtype == "Q4_0":
        args.append("--pure")
    subprocess.run(args + [str(src), str(out), qtype], check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def reference(hf, path, tokens, prompt):
    from transformers import AutoConfig, AutoModelForCausalLM
    r = GGUFReader(path)
    arch = str(bytes(r.fields["general.architecture"].parts[-1]), "utf-8")
    sd = {}
    types = {}
    for t in r.tensors:
        x = dequantize(t.data, t.tensor_type).astype(np.float32)
        x = x.reshape([int(d) for d in reversed(t.shape)])
        n = hf_name(t.name, arch)
        if n.endswith("norm.weight"):
            x = x - 1.0
        sd[n] = torch.from_numpy(np.ascontiguousarray(x))
        types[t.tensor_type.name] = types.get(t.tensor_type.name, 0) + 1
    cfg = AutoConfig.from_pretrained(hf)
    cfg.vocab_size = sd["model.embed_tokens.weight"].shape[0]
    m = AutoModelForCausalLM.from_config(cfg, attn_implementation="eager", dtype=torch.float32).eval()
    if "lm_head.weight" not in sd:
        sd["lm_head.weight"] = sd["model.embed_tokens.weight"]
    missing, unexpected = m.load_state_dict(sd, strict=False)
    assert not unexpected and all("rotary" in k for k in missing), (missing, unexpected)
    with torch.no_grad():
        logits = m(torch.tensor([tokens]), use_cache=False).logits[0].float().numpy()
        out = m.generate(torch.tensor([prompt]), do_sample=False, max_new_tokens=MAX_NEW,
                         attention_mask=torch.ones(1, len(prompt), dtype=torch.long), pad_token_id=0)
        greedy = out[0, len(prompt):].tolist()
        # Smallest top-1 minus top-2 margin over the greedy steps.
        seq, margins = list(prompt), []
        for g in greedy:
            l = m(torch.tensor([seq]), use_cache=False).logits[0, -1].float()
            top = torch.topk(l, 2).values
            margins.append(float(top[0] - top[1]))
            seq.append(g)
    return logits, greedy, min(margins), types


def main():
    OUT.mkdir(parents=True, exist_ok=True)
    tok_ref = json.loads((MODELS / "gemma3-bf16/reference.json").read_text())
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        for name, src, outtype, qtype in SPECS:
            hf = tmp / f"hf-{name}"
            hf_folder(src, hf)
            final = OUT / f"{name}.gguf"
            if qtype:
                mid = tmp / f"{name}-{outtype}.gguf"
                convert(hf, outtype, mid)
                quantize(mid, qtype, final)
            else:
                convert(hf, outtype, final)
            ref = tok_ref if src == "kwide" else json.loads((MODELS / src / "reference.json").read_text())
            tokens, prompt = ref["tokens"], ref["prompt"]
            logits, greedy, margin, types = reference(hf, final, tokens, prompt)
            d = OUT / name
            d.mkdir(exist_ok=True)
            logits.astype("<f4").tofile(d / "logits.f32")
            (d / "reference.json").write_text(json.dumps({
                "tokens": tokens, "logits_shape": list(logits.shape), "prompt": prompt,
                "greedy": greedy, "greedy_min_top2_margin": round(margin, 4),
                "tensor_types": types, "source": src,
            }, indent=1) + "\n")
            print(f"{name}: {final.stat().st_size} bytes, {types}, margin {margin:.4f}")


if __name__ == "__main__":
    main()
