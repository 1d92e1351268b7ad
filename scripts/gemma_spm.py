"""Gemma-style SentencePiece tokenizers for the project's scripts (make_fixtures.py,
train_tiny.py): one set of trainer options and one slow -> fast conversion, so the fixture
tokenizer and the tiny model's tokenizer are made the same way.
"""

import io
import json
import os
import shutil
import tempfile

import sentencepiece as spm

# BPE with byte fallback and Gemma's special ids (<pad>=0 <eos>=1 <bos>=2 <unk>=3), no
# normalization or dummy prefix, whitespace kept as it is (code and runs of spaces survive).
GEMMA_BPE_OPTIONS = dict(
    model_type="bpe",
    byte_fallback=True,
    add_dummy_prefix=False,
    remove_extra_whitespaces=False,
    normalization_rule_name="identity",
    split_digits=True,
    split_by_unicode_script=True,
    split_by_number=True,
    split_by_whitespace=True,
    allow_whitespace_only_pieces=True,
    character_coverage=0.9995,
    pad_id=0, pad_piece="<pad>",
    eos_id=1, eos_piece="<eos>",
    bos_id=2, bos_piece="<bos>",
    unk_id=3, unk_piece="<unk>",
    max_sentence_length=100000,
    input_sentence_size=0,
    shuffle_input_sentence=False,
    minloglevel=2,
)


def train_bpe(sentences, path, vocab_size, user_symbols, **extra):
    """Trains a Gemma-style BPE model on `sentences` and writes it to `path`; `extra` adds or
    overrides trainer options (e.g. num_threads)."""
    model = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(sentences),
        model_writer=model,
        vocab_size=vocab_size,
        user_defined_symbols=user_symbols,
        **GEMMA_BPE_OPTIONS,
        **extra,
    )
    with open(path, "wb") as f:
        f.write(model.getvalue())
    return path


def convert_to_json(model_path, out_path, vocab_size=None):
    """Slow -> fast conversion as the installed transformers does it for Gemma.

    transformers 5.x: GemmaTokenizer.from_pretrained(<dir holding only tokenizer.model>)
    extracts vocab + merges from the SentencePiece proto (SentencePieceExtractor) and builds
    the tokenizers pipeline: normalizer Replace(" " -> "▁"), pre_tokenizer Split(" ",
    merged_with_previous) (a no-op after the normalizer), BPE(byte_fallback, fuse_unk,
    unk "<unk>"), decoder Replace("▁" -> " ") / ByteFallback / Fuse.
    The 4.x GemmaConverter marked <start_of_turn>/<end_of_turn> special (as in the published
    Gemma tokenizer.json); 5.x makes every SentencePiece user-defined symbol a non-special added
    token, so we set special=true on those two to match the published files.
    `vocab_size`: drop added tokens at or past it (transformers adds a <mask> the model may
    lack, which the embedding has no row for).
    """
    from transformers import GemmaTokenizer

    with tempfile.TemporaryDirectory() as src, tempfile.TemporaryDirectory() as dst:
        shutil.copy(model_path, os.path.join(src, "tokenizer.model"))
        tok = GemmaTokenizer.from_pretrained(src)
        tok.save_pretrained(dst)
        with open(os.path.join(dst, "tokenizer.json"), encoding="utf-8") as f:
            j = json.load(f)
    if vocab_size is not None:
        j["added_tokens"] = [t for t in j["added_tokens"] if t["id"] < vocab_size]
    for t in j["added_tokens"]:
        if t["content"] in ("<start_of_turn>", "<end_of_turn>"):
            t["special"] = True
    with open(out_path, "w", encoding="utf-8") as f:
        json.dump(j, f, ensure_ascii=False, separators=(",", ":"))
        f.write("\n")
    return out_path
