#!/usr/bin/env python3
"""Write a tiny random-weight HF Gemma checkpoint to test scripts/peer_llamacpp.sh.

  .venv/bin/python scripts/peer_test_model.py OUT_DIR [--hidden 256 --layers 2 --vocab 256000]

Uses assets/tokenizer/tokenizer.{model,json} (2048 ids) with an embedding of --vocab rows,
like frugal's synthetic checkpoints.
"""
import argparse
import os
import shutil

import torch
from transformers import GemmaConfig, GemmaForCausalLM

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

ap = argparse.ArgumentParser()
ap.add_argument("out")
ap.add_argument("--hidden", type=int, default=256)
ap.add_argument("--layers", type=int, default=2)
ap.add_argument("--heads", type=int, default=4)
ap.add_argument("--kv-heads", type=int, default=1)
ap.add_argument("--head-dim", type=int, default=64)
ap.add_argument("--ffn", type=int, default=1024)
ap.add_argument("--vocab", type=int, default=256000)
ap.add_argument("--tokenizer-dir", default=os.path.join(ROOT, "assets", "tokenizer"))
a = ap.parse_args()

torch.manual_seed(0)
cfg = GemmaConfig(vocab_size=a.vocab, hidden_size=a.hidden, intermediate_size=a.ffn,
                  num_hidden_layers=a.layers, num_attention_heads=a.heads,
                  num_key_value_heads=a.kv_heads, head_dim=a.head_dim,
                  max_position_embeddings=8192, pad_token_id=0, eos_token_id=1,
                  bos_token_id=2, tie_word_embeddings=True)
model = GemmaForCausalLM(cfg).to(torch.bfloat16)
os.makedirs(a.out, exist_ok=True)
model.save_pretrained(a.out, safe_serialization=True)
for f in ("tokenizer.model", "tokenizer.json"):
    shutil.copy(os.path.join(a.tokenizer_dir, f), os.path.join(a.out, f))
print(a.out, sorted(os.listdir(a.out)))
