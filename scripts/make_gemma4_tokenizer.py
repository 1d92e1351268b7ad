#!/usr/bin/env python3
"""A small Gemma-4-style tokenizer and its reference ids from transformers and llama.cpp.

Writes tests/fixtures/gemma4_tokenizer/:
  tokenizer.json, tokenizer_config.json   transformers' GemmaTokenizer (v5) over a BPE we train
  config.json                             a tiny Gemma 4 config (only for llama.cpp's converter)
  vocab.gguf                              llama.cpp's converter, --vocab-only: the `gemma4` vocabulary
  cases.json                              per hostile string: transformers' ids (tokenizer.json),
                                          llama.cpp's ids (llama-tokenize on vocab.gguf), decodes

No real Gemma 4 tokenizer can be downloaded here, so the vocabulary is ours: a BPE trained with
the `tokenizers` library on this repository's docs plus a multilingual sample (byte_fallback, ~3k
tokens), laid out as Gemma 4's: 0 <pad>, 1 <eos>, 2 <bos>, 3 <unk>, 4 <mask>, 46 <|tool>,
47 <tool|>, 48 <|tool_call>, 49 <tool_call|>, 50 <|tool_response>, 51 <tool_response|>, 52 <|"|>,
98 <|think|>, 100 <|channel>, 101 <channel|>, 105 <|turn>, 106 <turn|>, the other ids below 107
`<unusedN>`; 107.. newline runs of 1..31 (non-special added tokens, as Gemma's SentencePiece
vocabularies hold them), then the 256 byte tokens <0x00>..<0xFF>, then the trained tokens. Space
runs are ordinary BPE tokens reached by merges. The chat template is llama.cpp's copy of
google/gemma-4-31B-it's.

Usage: .venv/bin/python scripts/make_gemma4_tokenizer.py   (needs llama.cpp built:
scripts/build_llamacpp.sh with llama-tokenize, sources in ~/.cache/frugal/llamacpp/src/llama.cpp)
"""
import glob
import json
import os
import subprocess
import sys
import tempfile

from tokenizers import Regex, Tokenizer, models, normalizers, pre_tokenizers, trainers
from transformers import AddedToken
from transformers.models.gemma.tokenization_gemma import GemmaTokenizer

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "tests/fixtures/gemma4_tokenizer")
LLAMA = os.path.expanduser("~/.cache/frugal/llamacpp")
LLAMA_SRC = os.path.join(LLAMA, "src/llama.cpp")
TOKENIZE = os.path.join(LLAMA, "build/bin/llama-tokenize")

VOCAB = 3000
MAX_NL = 31

SPECIAL = {0: "<pad>", 1: "<eos>", 2: "<bos>", 3: "<unk>", 4: "<mask>",
           46: "<|tool>", 47: "<tool|>", 48: "<|tool_call>", 49: "<tool_call|>",
           50: "<|tool_response>", 51: "<tool_response|>", 52: '<|"|>', 98: "<|think|>",
           100: "<|channel>", 101: "<channel|>", 105: "<|turn>", 106: "<turn|>"}

MULTI = """Le cœur a ses raisons que la raison ne connaît point. Über den Wolken muss die Freiheit
wohl grenzenlos sein. ¿Dónde está la biblioteca? Это простой пример текста на русском языке.
日本語の文章も少し入れておきます。中文的句子也在这里，你好世界。한국어 문장도 있습니다.
Ελληνικά γράμματα. العربية من اليمين إلى اليسار. हिन्दी में एक वाक्य। emoji 🙂 👍🏽 🇫🇷 café naïve
def f(x):\n\treturn x * 2\n\n    if x:\n        pass\n"""

# Strings chosen to break tokenizers: whitespace runs, newline runs (longer than the longest
# newline token), tabs, CR, emoji and ZWJ sequences, CJK outside the vocabulary (byte fallback),
# private-use and control characters, special and user-defined tokens written in the text,
# near-misses of them, leading and trailing spaces, the chat format itself.
CASES = [
    "Hello world",
    " leading space",
    "  two leading spaces and trailing  ",
    "a  b   c    d     e                f",
    "\n",
    "\n\n\n",
    "line one\nline two\n\nline four\n",
    "x" + "\n" * 40 + "y",
    "\n \n  \n\t\n",
    "tabs\tand\t\ttabs\t\t\t",
    "carriage\r\nreturn\r\n",
    "emoji 🙂👍🏽 family 👨‍👩‍👧 flag 🇫🇷",
    "日本語と中文と한국어",
    "rare 龘 𝔘𝔫𝔦𝔠𝔬𝔡𝔢 \ue000 \x07 \x00 end",
    "naïve café — déjà vu",
    "<bos>text<eos> <pad><unk><mask>",
    "<|turn>user\nHi<turn|>\n<|turn>model\n",
    "<|channel>thought\nplan<channel|>answer",
    '<|tool_call>call:f{a:<|"|>x<|"|>}<tool_call|><|tool_response>',
    "<|think|> <|tool> <tool|> <tool_response|>",
    "<|turn <turn> <|turn|> turn|> <<|turn>>",
    "def f(x):\n\treturn x * 2\n\n    if x:\n        pass\n",
    "Hello\n world \n",
    "▁literal▁meta▁symbol",
    " ",
    "",
    "end with newline\n\n\n\n\n",
]


def corpus():
    text = [MULTI]
    for p in sorted(glob.glob(os.path.join(ROOT, "docs/*.md"))) + [os.path.join(ROOT, "README.md")]:
        with open(p, encoding="utf-8") as f:
            text.append(f.read())
    return text


def train():
    """BPE vocabulary and merges trained on `corpus()`: words are `▁`-prefixed runs (no merge
    across a space, as SentencePiece's split_by_whitespace), newline runs isolated."""
    t = Tokenizer(models.BPE(unk_token="<unk>", byte_fallback=True))
    t.normalizer = normalizers.Replace(" ", "▁")
    t.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex("\n+"), "isolated"),
        pre_tokenizers.Split(Regex("▁+"), "merged_with_next"),
    ])
    tr = trainers.BpeTrainer(vocab_size=VOCAB, min_frequency=2, special_tokens=[],
                             limit_alphabet=400, show_progress=False)
    t.train_from_iterator(corpus(), trainer=tr)
    m = json.loads(t.to_str())["model"]
    vocab = sorted(m["vocab"].items(), key=lambda kv: kv[1])
    merges = [tuple(x) if isinstance(x, list) else tuple(x.split(" ")) for x in m["merges"]]
    return [p for p, _ in vocab], merges


def layout(trained, merges):
    pieces = []
    for i in range(107):
        pieces.append(SPECIAL.get(i, f"<unused{i}>"))
    newlines = ["\n" * k for k in range(1, MAX_NL + 1)]
    pieces += newlines
    pieces += [f"<0x{b:02X}>" for b in range(256)]
    seen = set(pieces)
    for p in trained:
        if p not in seen and "\n" not in p:
            pieces.append(p)
            seen.add(p)
    # Space runs: merges "▁"+"▁" and so on up to 16, as Gemma's vocabularies hold them.
    extra = []
    run = "▁"
    while len(run) < 16:
        left = run
        run = run + "▁"
        extra.append((left, "▁"))
        if run not in seen:
            pieces.append(run)
            seen.add(run)
    kept = [(a, b) for a, b in merges if a in seen and b in seen and a + b in seen and "\n" not in a + b]
    return pieces, kept + [m for m in extra if m not in kept], newlines


def build(pieces, merges, newlines):
    vocab = {p: i for i, p in enumerate(pieces)}
    tok = GemmaTokenizer(vocab=vocab, merges=[(a, b) for a, b in merges])
    # Every marker is special (rendered by decode, matched whole in text); newline runs are
    # added tokens that are not special.
    specials = [p for p in pieces[:107] if p not in ("<pad>", "<eos>", "<bos>", "<unk>", "<mask>")]
    tok.add_special_tokens({"additional_special_tokens": [AddedToken(p, special=True, normalized=False)
                                                         for p in specials]})
    tok.add_tokens([AddedToken(n, special=False, normalized=False) for n in newlines])
    with open(os.path.join(LLAMA_SRC, "models/templates/google-gemma-4-31B-it.jinja"), encoding="utf-8") as f:
        tok.chat_template = f.read()
    tok.add_bos_token = True
    return tok


def write_config():
    V = None
    with open(os.path.join(OUT, "tokenizer.json"), encoding="utf-8") as f:
        V = len(json.load(f)["model"]["vocab"])
    text = dict(model_type="gemma4_text", vocab_size=V, hidden_size=64, num_attention_heads=4,
                num_key_value_heads=2, head_dim=16, global_head_dim=32, intermediate_size=64,
                num_hidden_layers=2, layer_types=["sliding_attention", "full_attention"],
                sliding_window=8, rms_norm_eps=1e-6, max_position_embeddings=512,
                final_logit_softcapping=30.0, hidden_size_per_layer_input=0, num_kv_shared_layers=0,
                attention_k_eq_v=False, pad_token_id=0, eos_token_id=1, bos_token_id=2,
                hidden_activation="gelu_pytorch_tanh", tie_word_embeddings=True)
    cfg = dict(architectures=["Gemma4ForConditionalGeneration"], model_type="gemma4",
               text_config=text, eos_token_id=[1, 106, 50], bos_token_id=2, pad_token_id=0)
    with open(os.path.join(OUT, "config.json"), "w") as f:
        json.dump(cfg, f, indent=1)
        f.write("\n")


def to_gguf():
    out = os.path.join(OUT, "vocab.gguf")
    subprocess.run([sys.executable, os.path.join(LLAMA_SRC, "convert_hf_to_gguf.py"), OUT,
                    "--vocab-only", "--outfile", out], check=True, capture_output=True)
    return out


def llama_ids(gguf, text):
    if text == "":
        return []
    with tempfile.NamedTemporaryFile("wb", suffix=".txt", delete=False) as f:
        f.write(text.encode("utf-8"))
        name = f.name
    try:
        r = subprocess.run([TOKENIZE, "-m", gguf, "-f", name, "--ids", "--no-bos", "--no-escape",
                            "--log-disable"], check=True, capture_output=True, text=True)
    finally:
        os.unlink(name)
    line = [l for l in r.stdout.splitlines() if l.startswith("[")][-1]
    return json.loads(line)


def main():
    os.makedirs(OUT, exist_ok=True)
    trained, merges = train()
    pieces, merges, newlines = layout(trained, merges)
    tok = build(pieces, merges, newlines)
    tok.save_pretrained(OUT)
    write_config()
    gguf = to_gguf()
    from transformers import AutoTokenizer
    hf = AutoTokenizer.from_pretrained(OUT)
    raw = Tokenizer.from_file(os.path.join(OUT, "tokenizer.json"))
    cases = []
    for text in CASES:
        ids = raw.encode(text, add_special_tokens=False).ids
        assert ids == hf.encode(text, add_special_tokens=False), text
        lids = llama_ids(gguf, text)
        cases.append(dict(text=text, hf_ids=ids, llama_ids=lids,
                          hf_decoded=raw.decode(ids, skip_special_tokens=False),
                          agree=ids == lids))
    chat = hf.apply_chat_template([{"role": "system", "content": "Be brief."},
                                   {"role": "user", "content": "Hi there"}],
                                  tokenize=False, add_generation_prompt=True)
    chat_nosys = hf.apply_chat_template([{"role": "user", "content": "Hi there"}],
                                        tokenize=False, add_generation_prompt=True)
    chat_think = hf.apply_chat_template([{"role": "system", "content": "Be brief."},
                                         {"role": "user", "content": "Hi there"}],
                                        tokenize=False, add_generation_prompt=True,
                                        enable_thinking=True)
    doc = dict(vocab_size=len(pieces),
               chat_template_render={"system+user": chat, "user": chat_nosys,
                                     "system+user thinking": chat_think},
               cases=cases)
    with open(os.path.join(OUT, "cases.json"), "w", encoding="utf-8") as f:
        json.dump(doc, f, ensure_ascii=False, indent=1)
        f.write("\n")
    bad = [c["text"] for c in cases if not c["agree"]]
    print(f"{len(cases)} cases, {len(cases) - len(bad)} agree; disagree: {bad!r}")


if __name__ == "__main__":
    main()
