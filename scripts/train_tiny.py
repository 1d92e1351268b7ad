#!/usr/bin/env python3
"""Train frugal's tiny demo model: a Gemma-architecture model trained on Python source.

Run from the repo root (set up the venv with scripts/setup_python.sh first):

    .venv/bin/python scripts/train_tiny.py [--steps N] [--out assets/tiny]

Data: the .py files of the running CPython's standard library
(sysconfig.get_paths()["stdlib"], recursively, without site-packages and test directories),
in sorted order of their relative paths. Every 40th file (index % 40 == 0) is held out; the
first ~40 KB of those files, concatenated, is the eval text (assets/tiny/eval.txt). The rest
is the training text.

Tokenizer: SentencePiece BPE (byte fallback, Gemma's special ids <pad>=0 <eos>=1 <bos>=2
<unk>=3, <start_of_turn>/<end_of_turn> user-defined), converted to tokenizer.json with
transformers' own slow->fast converter.

Model: transformers GemmaForCausalLM (model_type "gemma"), trained in float32 with AdamW on
random windows of the token stream (every file is <bos> text <eos>), saved in bfloat16.

Deterministic for a given CPython (the stdlib is the data), package versions
(scripts/requirements.txt) and thread count: fixed seeds, fixed file order,
torch.use_deterministic_algorithms(True).
"""

import argparse
import json
import math
import os
import sysconfig
import time

import numpy as np
import sentencepiece as spm
import torch

from gemma_spm import convert_to_json as gemma_spm_convert, train_bpe

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

VOCAB_SIZE = 4096
EVAL_EVERY_NTH_FILE = 40
EVAL_CHARS = 40_000
SEED = 1234

MODEL = dict(
    vocab_size=VOCAB_SIZE,
    hidden_size=256,
    intermediate_size=768,
    num_hidden_layers=4,
    num_attention_heads=4,
    num_key_value_heads=1,
    head_dim=64,
    max_position_embeddings=2048,
    rope_theta=10000.0,
    rms_norm_eps=1e-6,
    hidden_activation="gelu_pytorch_tanh",
    tie_word_embeddings=True,
    attention_bias=False,
    attention_dropout=0.0,
    pad_token_id=0,
    eos_token_id=1,
    bos_token_id=2,
)


def stdlib_files():
    """(relative path, text) of every stdlib .py file, sorted, minus tests and site-packages."""
    root = sysconfig.get_paths()["stdlib"]
    skip_dirs = {"site-packages", "test", "tests", "idle_test", "__pycache__"}
    out = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames if d not in skip_dirs]
        for name in filenames:
            if name.endswith(".py"):
                full = os.path.join(dirpath, name)
                out.append(os.path.relpath(full, root).replace(os.sep, "/"))
    out.sort()
    files = []
    for rel in out:
        try:
            with open(os.path.join(root, rel), encoding="utf-8") as f:
                text = f.read()
        except (UnicodeDecodeError, OSError):
            continue
        text = text.replace("\r\n", "\n")
        if text.strip():
            files.append((rel, text))
    return files


def split(files):
    train, held = [], []
    for i, (rel, text) in enumerate(files):
        (held if i % EVAL_EVERY_NTH_FILE == 0 else train).append((rel, text))
    # The eval text: held-out files concatenated, cut at a line end after EVAL_CHARS.
    text = "\n".join(t for _, t in held)
    cut = text.find("\n", EVAL_CHARS)
    eval_text = text[: cut + 1] if cut >= 0 else text
    return train, held, eval_text


def chunks(text, size=4000):
    """Pieces of about `size` characters, cut after a newline, newlines kept."""
    lines = text.splitlines(keepends=True)
    buf = ""
    for line in lines:
        if buf and len(buf) + len(line) > size:
            yield buf
            buf = ""
        buf += line
    if buf:
        yield buf


def train_tokenizer(train, out_dir):
    sentences = [c for _, t in train for c in chunks(t)]
    return train_bpe(sentences, os.path.join(out_dir, "tokenizer.model"), VOCAB_SIZE,
                     ["<start_of_turn>", "<end_of_turn>"], num_threads=2)


def convert_to_json(model_path, out_dir):
    """tokenizer.json from tokenizer.model (gemma_spm.convert_to_json, as make_fixtures.py)."""
    return gemma_spm_convert(model_path, os.path.join(out_dir, "tokenizer.json"), VOCAB_SIZE)


def check_tokenizer(model_path, json_path, sample):
    from tokenizers import Tokenizer

    sp = spm.SentencePieceProcessor(model_file=model_path)
    tk = Tokenizer.from_file(json_path)
    assert sp.get_piece_size() == VOCAB_SIZE == tk.get_vocab_size()
    assert [sp.id_to_piece(i) for i in range(4)] == ["<pad>", "<eos>", "<bos>", "<unk>"]
    a = sp.encode(sample)
    b = tk.encode(sample, add_special_tokens=False).ids
    assert a == b, "sentencepiece and tokenizer.json disagree on the eval text"
    assert sp.decode(a) == sample


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--out", default=os.path.join(ROOT, "assets", "tiny"))
    ap.add_argument("--steps", type=int, default=None,
                    help="total steps (reproduces a run exactly with its --decay-from)")
    ap.add_argument("--decay-from", type=int, default=None,
                    help="step where the learning rate starts its linear decay (default 0.8 * steps)")
    ap.add_argument("--time-budget", type=float, default=None,
                    help="seconds of training instead of --steps: the decay starts at the first step "
                         "after 80%% of the budget, and lasts a quarter of the steps before it; the log "
                         "says the --steps/--decay-from that reproduce the run")
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--seq", type=int, default=256)
    ap.add_argument("--lr", type=float, default=3e-3)
    ap.add_argument("--warmup", type=int, default=40)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--eval-every", type=int, default=100)
    args = ap.parse_args()

    torch.manual_seed(SEED)
    np.random.seed(SEED)
    torch.set_num_threads(args.threads)
    torch.use_deterministic_algorithms(True)
    os.makedirs(args.out, exist_ok=True)
    t_start = time.time()

    files = stdlib_files()
    train, held, eval_text = split(files)
    with open(os.path.join(args.out, "eval.txt"), "w", encoding="utf-8") as f:
        f.write(eval_text)
    n_train_chars = sum(len(t) for _, t in train)
    print(f"data: {len(files)} files, {len(train)} train ({n_train_chars:,} chars), "
          f"{len(held)} held out, eval.txt {len(eval_text):,} chars", flush=True)

    sp_path = train_tokenizer(train, args.out)
    json_path = convert_to_json(sp_path, args.out)
    check_tokenizer(sp_path, json_path, eval_text)
    sp = spm.SentencePieceProcessor(model_file=sp_path)
    print(f"tokenizer: {VOCAB_SIZE} pieces ({time.time() - t_start:.0f} s)", flush=True)

    stream = []
    for _, text in train:
        stream.append(2)
        stream.extend(sp.encode(text))
        stream.append(1)
    data = torch.tensor(stream, dtype=torch.long)
    eval_ids = torch.tensor([2] + sp.encode(eval_text), dtype=torch.long)
    print(f"train tokens: {len(data):,} ({n_train_chars / len(data):.2f} chars/token), "
          f"eval tokens: {len(eval_ids) - 1:,}", flush=True)

    from transformers import GemmaConfig, GemmaForCausalLM

    config = GemmaConfig(**MODEL)
    model = GemmaForCausalLM(config)
    model.train()
    n_params = sum(p.numel() for p in model.parameters())
    print(f"model: {n_params:,} parameters", flush=True)

    decay = [p for n, p in model.named_parameters() if p.dim() >= 2]
    no_decay = [p for n, p in model.named_parameters() if p.dim() < 2]
    opt = torch.optim.AdamW(
        [{"params": decay, "weight_decay": 0.1}, {"params": no_decay, "weight_decay": 0.0}],
        lr=args.lr, betas=(0.9, 0.95), eps=1e-8,
    )

    # Warmup, constant, then a linear decay to 10 % from `decay_from` to `steps`
    # ("warmup-stable-decay"): a run cut by --time-budget is reproduced by --steps/--decay-from.
    if args.steps is None and args.time_budget is None:
        args.steps = 600
    sched = {"steps": args.steps, "decay_from": args.decay_from}
    if args.steps is not None and sched["decay_from"] is None:
        sched["decay_from"] = int(0.8 * args.steps)

    def lr_at(step):
        if step < args.warmup:
            return args.lr * (step + 1) / args.warmup
        d, n = sched["decay_from"], sched["steps"]
        if d is None or step < d:
            return args.lr
        return args.lr * (1.0 - 0.9 * (step - d) / max(1, n - d))

    def eval_loss():
        # Non-overlapping windows of args.seq tokens, as frugal perplexity with --ctx seq.
        model.eval()
        text = eval_ids[1:]
        total, n = 0.0, 0
        with torch.no_grad():
            w = args.seq - 1
            for s in range(0, len(text), w):
                piece = text[s: s + w]
                ids = torch.cat([torch.tensor([2]), piece]).unsqueeze(0)
                logits = model(ids).logits.float()
                lp = torch.log_softmax(logits[0, :-1].double(), dim=-1)
                total -= lp.gather(1, ids[0, 1:, None]).sum().item()
                n += len(piece)
        model.train()
        return total / n

    gen = torch.Generator().manual_seed(SEED)
    t_train = time.time()
    ema = None
    log = []
    step = -1
    while True:
        step += 1
        if sched["steps"] is None and time.time() - t_train >= 0.8 * args.time_budget:
            sched["decay_from"] = step
            sched["steps"] = step + max(1, step // 4)
            print(f"time budget: decay from step {step} to {sched['steps']} "
                  f"(reproduce with --steps {sched['steps']} --decay-from {step})", flush=True)
        if sched["steps"] is not None and step >= sched["steps"]:
            break
        last = step == sched["steps"] - 1 if sched["steps"] is not None else False
        for g in opt.param_groups:
            g["lr"] = lr_at(step)
        starts = torch.randint(0, len(data) - args.seq - 1, (args.batch,), generator=gen)
        batch = torch.stack([data[s: s + args.seq + 1] for s in starts.tolist()])
        out = model(input_ids=batch[:, :-1])
        logits = out.logits
        loss = torch.nn.functional.cross_entropy(
            logits.reshape(-1, logits.shape[-1]), batch[:, 1:].reshape(-1))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        lv = loss.item()
        ema = lv if ema is None else 0.95 * ema + 0.05 * lv
        if step % 10 == 0 or last:
            el = time.time() - t_train
            print(f"step {step:5d}  loss {lv:.4f}  ema {ema:.4f}  lr {lr_at(step):.2e}  "
                  f"{el:.0f} s ({el / (step + 1):.2f} s/step)", flush=True)
        if (step + 1) % args.eval_every == 0 or last:
            ev = eval_loss()
            log.append({"step": step + 1, "train_loss_ema": ema, "eval_loss": ev})
            print(f"  eval loss {ev:.4f} (ppl {math.exp(ev):.2f})", flush=True)
    train_seconds = time.time() - t_train

    model = model.to(torch.bfloat16)
    model.config.dtype = torch.bfloat16
    model.save_pretrained(args.out, safe_serialization=True)
    for extra in ("generation_config.json",):
        p = os.path.join(args.out, extra)
        if os.path.exists(p):
            os.remove(p)
    summary = {
        "parameters": n_params,
        "steps": sched["steps"],
        "decay_from": sched["decay_from"],
        "train_tokens_seen": sched["steps"] * args.batch * args.seq,
        "train_seconds": round(train_seconds, 1),
        "total_seconds": round(time.time() - t_start, 1),
        "final_train_loss_ema": round(ema, 4),
        "final_eval_loss_f32": round(log[-1]["eval_loss"], 4),
        "args": vars(args) | {"out": os.path.relpath(args.out, ROOT)},
        "log": log,
    }
    with open(os.path.join(args.out, "train_log.json"), "w") as f:
        json.dump(summary, f, indent=1)
        f.write("\n")
    print(json.dumps({k: v for k, v in summary.items() if k != "log"}, indent=1))


if __name__ == "__main__":
    main()
