#!/usr/bin/env python3
"""llama.cpp's greedy ids on the Gemma 4 GGUF fixtures against transformers' (reference.json).

    python3 scripts/gemma4_llamacpp_agreement.py     (after scripts/make_gemma4_gguf_fixtures.py)

Feeds each fixture's prompt to `llama-simple` (greedy; it adds <bos>) as text: in the fixtures'
vocabulary token i >= 5 is the character U+4E00+i (6 is 5 twice), so the prompt's ids are its
characters, and the printed continuation maps back to ids the same way. Prints one line per
fixture: agreement, the first differing position, and transformers' smallest top-2 margin over
the continuation (reference.json). Not a test: llama.cpp is the reference for neither the
per-layer embeddings nor the experts (docs: gemma4.md, pitfall 21).
"""
import json
import os
import subprocess

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FIX = os.path.join(ROOT, "tests/fixtures/models")
BIN = os.path.expanduser(os.environ.get("FRUGAL_PEER_DIR", "~/.cache/frugal/llamacpp") + "/build/bin")
BASE = 0x4E00


def text(ids):
    return "".join(chr(BASE + 5) * 2 if i == 6 else chr(BASE + i) for i in ids)


def ids(s):
    out = []
    for c in s:
        i = ord(c) - BASE
        if 5 <= i < 256:
            out.append(i)
    return out


def main():
    for name in ("gemma4-dense-f32", "gemma4-e-bf16", "gemma4-moe-bf16"):
        r = json.load(open(os.path.join(FIX, name, "reference.json")))
        prompt = r["prompt"][1:]  # llama-simple adds <bos>
        p = subprocess.run([os.path.join(BIN, "llama-simple"), "-m",
                            os.path.join(FIX, name, "model.gguf"), "-n", str(len(r["greedy"])),
                            text(prompt)], capture_output=True)
        if p.returncode != 0:
            err = [ln for ln in p.stderr.decode(errors="replace").splitlines()
                   if "error" in ln or "GGML_ASSERT" in ln]
            print(f"{name}: llama.cpp failed (exit {p.returncode}): {err[:1]}")
            continue
        out = p.stdout
        s = out.decode("utf-8", errors="replace").replace("<bos>", "")
        got = ids(s)[len(prompt):]
        want = r["greedy"]
        first = next((i for i, (a, b) in enumerate(zip(got, want)) if a != b), None)
        print(f"{name}: llama.cpp {got}\n{' ' * len(name)}  transformers {want}\n"
              f"{' ' * len(name)}  {'agree' if got == want else f'differ from position {first}'}"
              f" (transformers' smallest top-2 margin {r.get('greedy_min_top2_margin')})")


if __name__ == "__main__":
    main()
