#!/usr/bin/env python3
"""Convert the tiny Gemma 4 fixtures to GGUF with llama.cpp's own converter.

Run from the repo root after scripts/make_gemma4_fixtures.py:
    .venv/bin/python scripts/make_gemma4_gguf_fixtures.py
(needs llama.cpp's sources: scripts/build_llamacpp.sh, in ~/.cache/frugal/llamacpp/src/llama.cpp)

Writes tests/fixtures/models/gemma4-*/model.gguf: `convert_hf_to_gguf.py` (Gemma4Model) on a
copy of each fixture folder, f32 for the f32 fixture and bf16 for the bf16 ones (norms, scalars
and rope_freqs stay f32 either way, as the converter keeps 1-D tensors), so the GGUF holds the
very weights transformers' reference logits were computed from.

The fixtures carry no tokenizer, and the converter needs one (a `gemma4` vocabulary whose size is
the embedding's rows: it trims the embedding to it). The copy gets a 256-token one made here:
0 <pad>, 1 <eos>, 2 <bos>, 3 <unk>, 4 <mask>, then id i (5..255) is the single character
U+4E00+i, except 6, which is token 5 twice (llama.cpp wants at least one merge), so the text of
any ids without 5 followed by 5 tokenizes to exactly those ids
(what scripts/gemma4_llamacpp_agreement.py relies on to feed llama.cpp the fixtures' token ids
as text). frugal cannot build a `gemma4` vocabulary yet; the tests feed token ids.
"""
import os
import shutil
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FIX = os.path.join(ROOT, "tests/fixtures/models")
LLAMA_SRC = os.path.expanduser(
    os.environ.get("FRUGAL_PEER_DIR", "~/.cache/frugal/llamacpp") + "/src/llama.cpp")
FIXTURES = {"gemma4-e-bf16": "bf16", "gemma4-dense-f32": "f32", "gemma4-moe-bf16": "bf16"}
V = 256
BASE = 0x4E00


def piece(i):
    """The text of token `i` in the fixtures' vocabulary."""
    if i < 5:
        return ["<pad>", "<eos>", "<bos>", "<unk>", "<mask>"][i]
    # llama.cpp refuses a `gemma4` vocabulary without merges: one, token 5 twice is token 6.
    return chr(BASE + 5) * 2 if i == 6 else chr(BASE + i)


def write_tokenizer(out):
    from transformers.models.gemma.tokenization_gemma import GemmaTokenizer
    vocab = {piece(i): i for i in range(V)}
    tok = GemmaTokenizer(vocab=vocab, merges=[(piece(5), piece(5))])
    tok.add_bos_token = True
    tok.save_pretrained(out)


def convert(name, outtype):
    src = os.path.join(FIX, name)
    with tempfile.TemporaryDirectory() as tmp:
        d = os.path.join(tmp, name)
        os.makedirs(d)
        for f in ("config.json", "model.safetensors"):
            shutil.copy(os.path.join(src, f), d)
        write_tokenizer(d)
        out = os.path.join(src, "model.gguf")
        subprocess.run([sys.executable, os.path.join(LLAMA_SRC, "convert_hf_to_gguf.py"), d,
                        "--outtype", outtype, "--outfile", out + ".tmp"],
                       check=True, capture_output=True)
        os.replace(out + ".tmp", out)
        print(f"{out}: {os.path.getsize(out)} bytes")


def main():
    for name, outtype in FIXTURES.items():
        convert(name, outtype)


if __name__ == "__main__":
    main()
