#!/usr/bin/env python3
"""Reference perplexities and logits of the tiny model (assets/tiny) by transformers.

Run from the repo root:  .venv/bin/python scripts/tiny_reference.py [--ctx 256]

Writes tests/fixtures/tiny/:
  eval_head.txt   the first ~12 KB of assets/tiny/eval.txt (cut at a line end): the tests' text
  reference.json  perplexities of eval.txt and eval_head.txt, and the prompt/greedy/logits keys
                  of tests/common (tokens, logits_shape, prompt, greedy)
  logits.f32      float32 logits of `tokens` (little-endian, [len(tokens), vocab])

Perplexity is defined exactly as frugal's (crates/engine/src/generate/perplexity.rs): the text is tokenized
without BOS, cut into consecutive pieces of ctx - 1 tokens, each evaluated as its own window
[BOS, piece...]; every text token is scored once; the mean NLL comes from the float32 logits
by log-softmax in float64; perplexity = exp(mean NLL).

Variants, each run by transformers in float32 (the bf16 weights widened exactly):
  f32   the stored weights
  q8_0  every matrix frugal quantizes with --quant (weights::matrix_names: the attention and
        MLP projections and the tied embedding, which is also the output projection) replaced
        by gguf-py's quantize(..., Q8_0) then dequantize: the reference Q8_0 algorithm, with
        activations kept in float32
  q4_0  the same with Q4_0
  q4_k  the same with Q4_K, if gguf-py can quantize to it (0.19.0 cannot: only dequantize)
"""

import argparse
import json
import math
import os

import numpy as np
import torch
from gguf import GGMLQuantizationType, quants
from importlib.metadata import version

gguf_version = version("gguf")
from tokenizers import Tokenizer
from transformers import GemmaForCausalLM

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MODEL = os.path.join(ROOT, "assets", "tiny")
OUT = os.path.join(ROOT, "tests", "fixtures", "tiny")
HEAD_CHARS = 12_000
LOGITS_PROMPT = "def main(argv):\n    parser = argparse.ArgumentParser("
GREEDY_PROMPT = "def main("
GREEDY_TOKENS = 24

torch.use_deterministic_algorithms(True)
torch.set_num_threads(2)


def perplexity(model, ids, bos, ctx):
    total, n = 0.0, 0
    with torch.no_grad():
        for s in range(0, len(ids), ctx - 1):
            piece = ids[s: s + ctx - 1]
            window = torch.tensor([[bos] + piece])
            logits = model(window).logits[0].float()
            lp = torch.log_softmax(logits[:-1].double(), dim=-1)
            total -= lp.gather(1, window[0, 1:, None]).sum().item()
            n += len(piece)
    nll = total / n
    return {"perplexity": math.exp(nll), "nll": nll, "tokens": n,
            "windows": -(-len(ids) // (ctx - 1))}


def quantized_copy(model, state, qtype):
    q = {}
    for name, t in state.items():
        if t.dim() == 2:
            w = t.float().numpy()
            d = quants.dequantize(quants.quantize(w, qtype), qtype)
            q[name] = torch.from_numpy(np.ascontiguousarray(d, dtype=np.float32)).reshape(t.shape)
        else:
            q[name] = t
    model.load_state_dict(q, strict=False)
    model.tie_weights()
    return model


def main():
    global MODEL, OUT
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--ctx", type=int, default=256)
    ap.add_argument("--model", default=MODEL)
    ap.add_argument("--out", default=OUT)
    args = ap.parse_args()
    MODEL, OUT = args.model, args.out
    os.makedirs(OUT, exist_ok=True)

    tok = Tokenizer.from_file(os.path.join(MODEL, "tokenizer.json"))
    with open(os.path.join(MODEL, "eval.txt"), encoding="utf-8") as f:
        text = f.read()
    cut = text.find("\n", HEAD_CHARS)
    head = text[: cut + 1]
    with open(os.path.join(OUT, "eval_head.txt"), "w", encoding="utf-8") as f:
        f.write(head)
    texts = {"eval.txt": text, "eval_head.txt": head}
    ids = {k: tok.encode(v, add_special_tokens=False).ids for k, v in texts.items()}

    model = GemmaForCausalLM.from_pretrained(MODEL, dtype=torch.float32, attn_implementation="eager")
    model.eval()
    bos = model.config.bos_token_id
    # The weights as stored (bf16 widened to f32), before any quantized copy replaces them.
    state = {k: v.clone() for k, v in model.state_dict().items()
             if k != "lm_head.weight"}  # tied: the embedding stands for both

    # Logits of a short sequence and a greedy continuation, in float32.
    tokens = [bos] + tok.encode(LOGITS_PROMPT, add_special_tokens=False).ids
    with torch.no_grad():
        logits = model(torch.tensor([tokens])).logits[0].float().numpy()
    prompt = [bos] + tok.encode(GREEDY_PROMPT, add_special_tokens=False).ids
    with torch.no_grad():
        g = model.generate(torch.tensor([prompt]), max_new_tokens=GREEDY_TOKENS, do_sample=False,
                           min_new_tokens=GREEDY_TOKENS, pad_token_id=0)
    greedy = g[0, len(prompt):].tolist()

    results = {}
    variants = [("f32", None), ("q8_0", GGMLQuantizationType.Q8_0),
                ("q4_0", GGMLQuantizationType.Q4_0), ("q4_k", GGMLQuantizationType.Q4_K)]
    for name, qtype in variants:
        if qtype is not None:
            try:
                quantized_copy(model, state, qtype)
            except NotImplementedError:
                print(f"{name}: gguf-py {gguf_version} has no quantizer for it, skipped")
                continue
        for k, v in ids.items():
            r = perplexity(model, v, bos, args.ctx)
            results.setdefault(k, {"ctx": args.ctx, "tokens": r["tokens"], "windows": r["windows"]})
            results[k][name] = {"perplexity": r["perplexity"], "nll": r["nll"]}
            print(f"{k:14s} {name:5s} ppl {r['perplexity']:.4f}  nll {r['nll']:.6f}  "
                  f"({r['tokens']} tokens, {r['windows']} windows of {args.ctx})", flush=True)

    ref = {
        "model": "assets/tiny",
        "definition": "text tokenized without BOS, pieces of ctx-1 tokens, each window [BOS, piece]; "
                      "mean NLL from f32 logits by log-softmax in f64",
        "perplexity": results,
        "tokens": tokens,
        "logits_shape": list(logits.shape),
        "prompt": prompt,
        "greedy": greedy,
        "greedy_text": tok.decode(greedy),
    }
    with open(os.path.join(OUT, "reference.json"), "w") as f:
        json.dump(ref, f, indent=1)
        f.write("\n")
    logits.astype("<f4").tofile(os.path.join(OUT, "logits.f32"))
    print("greedy:", repr(GREEDY_PROMPT + tok.decode(greedy)))


if __name__ == "__main__":
    main()
