#!/usr/bin/env python3
"""Converted models used unchanged by the user's other tools: `frugal convert` from each source
format frugal reads to the other formats, then the result loaded by transformers (PyPI) and by
llama.cpp (scripts/build_llamacpp.sh), compared with frugal on the source.

    scripts/setup_python.sh && .venv/bin/python scripts/check_roundtrip.py

Sources (the tiny fixture models, with the bundled tokenizer.model beside them):
  - a Hugging Face folder (tests/fixtures/models/gemma3-bf16) whose tokenizer_config.json is as
    Google publishes Gemma's (add_bos_token, the added tokens, the chat template);
  - a gemma_pytorch .ckpt (tests/fixtures/pytorch/gemma_pytorch/gemma3-bf16.ckpt): no config,
    no tokenizer config, Gemma's defaults;
  - a GGUF file written by llama.cpp's converter (tests/fixtures/gguf/gemma3-f16.gguf).
For each conversion to a Hugging Face folder: transformers' AutoTokenizer ids of a few strings
(its default special-token handling: BOS added when the model wants it) equal frugal's on the
source (`frugal tokenize --bos`), and its 16 greedy tokens (AutoModelForCausalLM.generate, f32)
equal frugal's (argmax of `frugal logits`, f32) from BOS + a prompt. For each conversion to GGUF:
llama.cpp's `llama-tokenize` ids and `llama-simple`'s 16 greedy tokens (their bytes) equal
frugal's (skipped, with a message, where llama.cpp is not built). Chat templates survive the
trip: the folder's template reaches the GGUF file and comes back into tokenizer_config.json.

Prints the table of round trips; exits non-zero if any differs. FRUGAL=path picks the binary.
"""

import json
import os
import shutil
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FRUGAL = os.environ.get("FRUGAL", os.path.join(ROOT, "target", "release", "frugal"))
LLAMA = os.path.expanduser(os.environ.get("FRUGAL_PEER_DIR", "~/.cache/frugal/llamacpp") + "/build/bin")
F = os.path.join(ROOT, "tests", "fixtures")
SPM = os.path.join(ROOT, "assets", "tokenizer", "tokenizer.model")
STRINGS = [
    "Hello world",
    "def main():\n    return 1",
    "<start_of_turn>user\nhi<end_of_turn>\n",
    "  two  spaces\tand a tab",
    "\u4f60\u597d \U0001F600 caf\u00e9",
]
PROMPT = "def main("
# Gemma's chat template as Google publishes it (Gemma 2 / 3 instruct models).
TEMPLATE = (
    "{{ bos_token }}{% for message in messages %}{% if (message['role'] == 'assistant') %}"
    "{% set role = 'model' %}{% else %}{% set role = message['role'] %}{% endif %}"
    "{{ '<start_of_turn>' + role + '\n' + message['content'] | trim + '<end_of_turn>\n' }}"
    "{% endfor %}{% if add_generation_prompt %}{{'<start_of_turn>model\n'}}{% endif %}"
)
# The bundled tokenizer's added tokens, special as in Google's published Gemma folders.
ADDED = ["<pad>", "<eos>", "<bos>", "<unk>", "<mask>", "[@BOS@]", "<start_of_turn>", "<end_of_turn>",
         "<start_of_image>", "<end_of_image>", "\n", "\n\n"]
SPECIAL = {0, 1, 2, 3, 6, 7}


def run(cmd, **kw):
    r = subprocess.run(cmd, capture_output=True, **kw)
    if r.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)}: {r.stderr.decode(errors='replace')[-2000:]}")
    return r.stdout.decode("utf-8", errors="replace")


def frugal_ids(model, text):
    return json.loads(run([FRUGAL, "tokenize", "-m", model, "--text", text, "--bos", "--json"]))["ids"]


def frugal_greedy(model, ids, n=16):
    ids = list(ids)
    out = []
    for _ in range(n):
        logits = json.loads(run([FRUGAL, "logits", "-m", model, "--tokens", ",".join(map(str, ids)),
                                 "--json", "--threads", "2"]))["logits"][-1]
        t = max(range(len(logits)), key=lambda i: logits[i])
        out.append(t)
        ids.append(t)
    return out


def piece_bytes(pieces):
    """The bytes SentencePiece pieces stand for (`▁` a space, `<0xNN>` a byte, others as
    written): what llama.cpp prints for them."""
    out = b""
    for p in pieces:
        if len(p) == 6 and p.startswith("<0x") and p.endswith(">"):
            out += bytes([int(p[3:5], 16)])
        else:
            out += p.replace("\u2581", " ").encode()
    return out


def transformers_check(folder, source_ids, source_greedy):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(folder)
    bad = [f"{s!r}: {tok(s)['input_ids']} vs {source_ids[s]}" for s in STRINGS
           if tok(s)["input_ids"] != source_ids[s]]
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32)
    prompt = tok(PROMPT, return_tensors="pt")
    with torch.no_grad():
        gen = model.generate(**prompt, max_new_tokens=16, do_sample=False)
    greedy = gen[0, prompt["input_ids"].shape[1]:].tolist()
    detail = ("ids: " + "; ".join(bad)) if bad else ""
    if greedy != source_greedy:
        detail += f"; greedy {greedy} vs {source_greedy}"
    return not bad, greedy == source_greedy, detail


def llama_check(gguf_path, source_ids, prompt_bytes, source_bytes):
    """llama.cpp on a converted file: `llama-tokenize`'s ids (BOS as the file says) of each string
    against frugal's on the source, and `llama-simple`'s 16 greedy tokens (it prints the prompt's
    pieces, the new tokens' bytes and a newline, synchronously: llama-completion's logger can lose
    its output at exit) against the bytes of frugal's."""
    tokenize = os.path.join(LLAMA, "llama-tokenize")
    simple = os.path.join(LLAMA, "llama-simple")
    if not (os.path.exists(tokenize) and os.path.exists(simple)):
        return None
    bad = []
    for s in STRINGS:
        out = run([tokenize, "-m", gguf_path, "-p", s, "--ids", "--log-disable"], stdin=subprocess.DEVNULL)
        got = json.loads(out.strip().splitlines()[-1])
        if got != source_ids[s]:
            bad.append(f"{s!r}: {got} vs {source_ids[s]}")
    r = subprocess.run([simple, "-m", gguf_path, "-n", "16", PROMPT], stdin=subprocess.DEVNULL,
                       capture_output=True, check=True)
    text = r.stdout
    text = text[len(prompt_bytes):] if text.startswith(prompt_bytes) else text
    text = text[:-1] if text.endswith(b"\n") else text
    detail = ("ids: " + "; ".join(bad)) if bad else ""
    if text != source_bytes:
        detail += f"; text {text!r} vs {source_bytes!r}"
    return not bad, text == source_bytes, detail


def sources(tmp):
    hf = os.path.join(tmp, "hf-source")
    shutil.copytree(os.path.join(F, "models", "gemma3-bf16"), hf)
    shutil.copy(SPM, hf)
    json.dump({"add_bos_token": True, "add_eos_token": False, "tokenizer_class": "GemmaTokenizer",
               "bos_token": "<bos>", "eos_token": "<eos>", "pad_token": "<pad>", "unk_token": "<unk>",
               "added_tokens_decoder": {str(i): {"content": t, "special": i in SPECIAL, "lstrip": False,
                                                 "rstrip": False, "normalized": False, "single_word": False}
                                        for i, t in enumerate(ADDED)},
               "chat_template": TEMPLATE}, open(os.path.join(hf, "tokenizer_config.json"), "w"))
    ckpt_dir = os.path.join(tmp, "ckpt-source")
    os.makedirs(ckpt_dir)
    shutil.copy(os.path.join(F, "pytorch", "gemma_pytorch", "gemma3-bf16.ckpt"),
                os.path.join(ckpt_dir, "model.ckpt"))
    shutil.copy(SPM, ckpt_dir)
    return hf, [("Hugging Face folder", hf), ("gemma_pytorch .ckpt", os.path.join(ckpt_dir, "model.ckpt")),
                ("GGUF (llama.cpp's converter)", os.path.join(F, "gguf", "gemma3-f16.gguf"))]


def main():
    if not os.path.exists(FRUGAL):
        sys.exit("build frugal first: cargo build --release")
    from transformers import AutoTokenizer
    import gguf as gguf_py

    tmp = tempfile.mkdtemp()
    try:
        hf, srcs = sources(tmp)
        pieces = AutoTokenizer.from_pretrained(hf).convert_ids_to_tokens
        rows = []
        for label, src in srcs:
            source_ids = {s: frugal_ids(src, s) for s in STRINGS}
            prompt = frugal_ids(src, PROMPT)
            greedy = frugal_greedy(src, prompt)
            name = os.path.basename(src)
            if not src.endswith(".gguf"):
                out = os.path.join(tmp, name + ".gguf")
                run([FRUGAL, "convert", src, out, "--force"])
                r = llama_check(out, source_ids, piece_bytes(pieces(prompt)), piece_bytes(pieces(greedy)))
                rows.append((label, "GGUF", "llama.cpp", *(r or (None, None, "skipped: llama.cpp is not "
                                                                  "built (scripts/build_llamacpp.sh)"))))
            if src != hf:
                out = os.path.join(tmp, name + "-hf")
                run([FRUGAL, "convert", src, out, "--force"])
                rows.append((label, "Hugging Face folder", "transformers",
                             *transformers_check(out, source_ids, greedy)))

        # The chat template's trip: folder -> GGUF -> folder.
        g = os.path.join(tmp, "hf-source.gguf")
        field = gguf_py.GGUFReader(g).fields.get("tokenizer.chat_template")
        in_gguf = field is not None and bytes(field.parts[field.data[0]]).decode() == TEMPLATE
        back = os.path.join(tmp, "hf-source-back")
        run([FRUGAL, "convert", g, back, "--force"])
        tok = AutoTokenizer.from_pretrained(back)
        msgs = [{"role": "user", "content": "Hi"}]
        same = tok.chat_template == TEMPLATE and tok.apply_chat_template(msgs, tokenize=False) == \
            AutoTokenizer.from_pretrained(hf).apply_chat_template(msgs, tokenize=False)
        rows.append(("Hugging Face folder with a chat template", "GGUF, then a folder again",
                     "gguf-py, transformers", in_gguf, same,
                     "the template in the GGUF file; the same template and rendering back"))

        mark = lambda v: "skipped" if v is None else ("yes" if v else "NO")
        print("| source | converted to | read by | same ids | same greedy tokens | |")
        print("|---|---|---|---|---|---|")
        for label, kind, tool, a, b, detail in rows:
            print(f"| {label} | {kind} | {tool} | {mark(a)} | {mark(b)} | {detail} |")
        sys.exit(1 if any(a is False or b is False for *_, a, b, _ in rows) else 0)
    finally:
        shutil.rmtree(tmp)


if __name__ == "__main__":
    main()
