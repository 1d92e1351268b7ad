#!/usr/bin/env python3
"""Generate frugal's committed test fixtures from reference implementations.

Run from the repo root:  .venv/bin/python scripts/make_fixtures.py
(set up the venv with scripts/setup_python.sh first)

Writes:
  assets/tokenizer/tokenizer.model, assets/tokenizer/tokenizer.json
  tests/fixtures/tokenizer/cases.json
  tests/fixtures/models/<name>/{config.json, model.safetensors | shards+index, tokenizer.json,
                                reference.json, logits.f32}

Everything is seeded and deterministic for a given set of package versions
(scripts/requirements.txt) and CPython version (the tokenizer is trained on the
standard library's own .py sources).
"""

import glob
import json
import os
import shutil
import sys
import sysconfig

import numpy as np
import sentencepiece as spm
import torch
from tokenizers import Tokenizer

from gemma_spm import convert_to_json as gemma_spm_convert, train_bpe

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ASSETS = os.path.join(ROOT, "assets", "tokenizer")
FIX = os.path.join(ROOT, "tests", "fixtures")

torch.use_deterministic_algorithms(True)
torch.set_num_threads(1)

# --------------------------------------------------------------------------------------
# 1. Tokenizer
# --------------------------------------------------------------------------------------

VOCAB_SIZE = 2048
USER_SYMBOLS = ["<mask>", "[@BOS@]", "<start_of_turn>", "<end_of_turn>",
                "<start_of_image>", "<end_of_image>", "\n", "\n\n"]

# Multilingual sample. Repeated several times in the training text so that its
# characters make it into the vocabulary (with character_coverage < 1 the rarest
# characters are left to byte fallback on purpose).
MULTILINGUAL = """\
The quick brown fox jumps over the lazy dog. It was the best of times, it was the worst of times.
Hello, world! How are you doing today? I'm fine, thanks -- and you?
Der schnelle braune Fuchs springt über den faulen Hund. Grüße aus München, schöne Straße!
Le vif renard brun saute par-dessus le chien paresseux. Voilà où l'été commence, déjà.
El rápido zorro marrón salta sobre el perro perezoso. ¿Dónde está la niña? ¡Mañana!
Быстрая коричневая лиса прыгает через ленивую собаку. Привет, как дела?
Η γρήγορη καφέ αλεπού πηδά πάνω από τον τεμπέλη σκύλο. Καλημέρα κόσμε!
敏捷的棕色狐狸跳过了懒狗。你好，世界！今天天气很好，我们去公园吧。
素早い茶色の狐が怠け者の犬を飛び越える。こんにちは、世界！カタカナとひらがな。
빠른 갈색 여우가 게으른 개를 뛰어넘습니다. 안녕하세요, 세계!
الثعلب البني السريع يقفز فوق الكلب الكسول. مرحبا بالعالم!
तेज़ भूरी लोमड़ी आलसी कुत्ते के ऊपर कूदती है। नमस्ते दुनिया!
Emoji: 😀 😃 😄 🎉 🚀 ❤️ 👍🏽 🇩🇪 👨‍👩‍👧 ✨ 🔥
Numbers: 0 1 2 3 4 5 6 7 8 9 10 42 123 2024 3.14159 1,000,000 -7 1e-6 0x1F
Whitespace:    four spaces,        eight spaces, 	tab	separated	values	here
\tindented with a tab
\t\tindented with two tabs
    def f(x):\treturn x  # trailing spaces   
Mixed: price 9.99€ / 12,50 £ / ¥1000 / ₹500 — "quotes" ‘single’ «guillemets» …
"""


def training_text():
    stdlib = sysconfig.get_paths()["stdlib"]
    files = sorted(glob.glob(os.path.join(stdlib, "*.py")))
    lines = []
    total = 0
    cap = 3_000_000
    for f in files:
        with open(f, encoding="utf-8", errors="replace") as fh:
            for line in fh.read().split("\n"):
                if not line.strip():
                    continue
                lines.append(line)
                total += len(line)
        if total >= cap:
            break
    sample = [l for l in MULTILINGUAL.split("\n") if l]
    return lines + sample * 30, len(files)


def train_tokenizer():
    os.makedirs(ASSETS, exist_ok=True)
    lines, _ = training_text()
    return train_bpe(lines, os.path.join(ASSETS, "tokenizer.model"), VOCAB_SIZE, USER_SYMBOLS,
                     num_threads=1, seed_sentencepiece_size=1000000)


def convert_to_json(model_path):
    """tokenizer.json from tokenizer.model (see gemma_spm.convert_to_json)."""
    return gemma_spm_convert(model_path, os.path.join(ASSETS, "tokenizer.json"))


TOKENIZER_CASES = [
    "Hello, world!",
    "The quick brown fox jumps over the lazy dog.",
    "Grüße aus München: schöne Straße, Öl und Äpfel.",
    "¿Dónde está la niña? Voilà, l'été!",
    "Привет, как дела? Ελληνικά κείμενα.",
    "你好，世界！今天天气很好。",
    "こんにちは、世界！カタカナ",
    "안녕하세요 세계",
    "مرحبا بالعالم",
    "नमस्ते दुनिया",
    "Emoji 😀🎉🚀 👍🏽 🇩🇪 👨‍👩‍👧",
    "Digits 1234567890 and 3.14159, 2024-01-01",
    "    four leading spaces and   runs    of   spaces   ",
    "tabs\tand\nnewlines\n\nand\r\nCRLF\t\t",
    "def f(x):\n    return x * 2  # comment\n",
    "rare CJK 龘 𠀀 and private use \ue000 and control \x01\x7f",
    " ",
    "\n",
    "a",
    "<start_of_turn>user\nHi there!<end_of_turn>\n<start_of_turn>model\n",
    "mixed<mask>special <bos> text <eos>",
]


def check_tokenizer(model_path, json_path):
    sp = spm.SentencePieceProcessor(model_file=model_path)
    tk = Tokenizer.from_file(json_path)
    assert sp.pad_id() == 0 and sp.eos_id() == 1 and sp.bos_id() == 2 and sp.unk_id() == 3
    assert sp.id_to_piece(0) == "<pad>" and sp.id_to_piece(1) == "<eos>"
    assert sp.id_to_piece(2) == "<bos>" and sp.id_to_piece(3) == "<unk>"
    assert sp.get_piece_size() == VOCAB_SIZE == tk.get_vocab_size()
    for i in range(sp.get_piece_size()):
        p = sp.id_to_piece(i)
        hp = tk.id_to_token(i)
        if p != hp:
            print(f"  vocab differs at id {i}: sp {p!r} vs tokenizers {hp!r}")
    diffs = []
    texts = [l for l in MULTILINGUAL.split("\n")] + [MULTILINGUAL] + TOKENIZER_CASES
    for t in texts:
        a = sp.encode(t)
        b = tk.encode(t, add_special_tokens=False).ids
        if a != b:
            diffs.append((t, a, b))
    for t, a, b in diffs:
        print(f"  TOKENIZER DIFF on {t!r}:\n    sp  {a}\n    tok {b}")
    print(f"tokenizer: {len(texts)} texts checked, {len(diffs)} differ")
    cases = []
    for t in TOKENIZER_CASES:
        ids = tk.encode(t, add_special_tokens=False).ids
        cases.append({
            "text": t,
            "ids": ids,
            "sp_ids": sp.encode(t),
            "decoded": tk.decode(ids, skip_special_tokens=False),
            "sp_decoded": sp.decode(sp.encode(t)),
        })
    os.makedirs(os.path.join(FIX, "tokenizer"), exist_ok=True)
    with open(os.path.join(FIX, "tokenizer", "cases.json"), "w", encoding="utf-8") as f:
        json.dump(cases, f, ensure_ascii=False, indent=1)
        f.write("\n")
    return tk


def main_tokenizer():
    mp = train_tokenizer()
    jp = convert_to_json(mp)
    tk = check_tokenizer(mp, jp)
    return jp, tk


# --------------------------------------------------------------------------------------
# 2. Tiny models
# --------------------------------------------------------------------------------------

T_TOKENS = 24          # positions in reference logits (longer than every sliding window)
PROMPT_LEN = 7         # bos + 6 tokens
MAX_NEW = 12
REF_TEXT = ("The quick brown fox jumps over the lazy dog. Grüße aus München! "
            "你好，世界！ 12345 \tdef f(x):\n    return x  😀")


def reference_tokens(tk):
    ids = tk.encode(REF_TEXT, add_special_tokens=False).ids
    assert len(ids) >= T_TOKENS - 1, len(ids)
    return [2] + ids[: T_TOKENS - 1]


def init_weights(model, seed, emb_std, lin_gain, qk_gain, norm_std, final_norm_mean, post_norm_mean):
    """Random init with realistic activations: embeddings N(0, emb_std), linears
    N(0, gain/sqrt(fan_in)) (q/k get qk_gain extra), every norm weight mean + N(0, norm_std)
    (nonzero, so the 1+w offset matters). The final norm and the Gemma 2/3 post-norms get a
    positive mean so the blocks, not the (tied) input embedding, dominate the logits; otherwise
    a random model just repeats its last input token."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in sorted(model.named_parameters()):
            if name.endswith("embed_tokens.weight"):
                p.copy_(torch.randn(p.shape, generator=g) * emb_std)
            elif "norm" in name:
                mean = final_norm_mean if name == "model.norm.weight" else (
                    post_norm_mean if (".post_" in name) else 0.0)
                w = mean + torch.randn(p.shape, generator=g) * norm_std
                p.copy_(w)
                assert (p != 0).all()
            elif p.dim() == 2:
                gain = lin_gain * (qk_gain if ("q_proj" in name or "k_proj" in name) else 1.0)
                p.copy_(torch.randn(p.shape, generator=g) * gain / p.shape[1] ** 0.5)
            else:
                raise ValueError(name)


def round_bf16(model):
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(p.to(torch.bfloat16).to(torch.float32))


def load_f32(path):
    from transformers import AutoModelForCausalLM
    m = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32, attn_implementation="eager")
    m.eval()
    assert m.config._attn_implementation == "eager"
    return m


@torch.no_grad()
def full_logits(model, tokens):
    out = model(torch.tensor([tokens]), use_cache=False)
    return out.logits[0].float()


@torch.no_grad()
def greedy(model, prompt):
    out = model.generate(torch.tensor([prompt]), do_sample=False, max_new_tokens=MAX_NEW,
                         attention_mask=torch.ones(1, len(prompt), dtype=torch.long),
                         pad_token_id=0)
    new = out[0, len(prompt):].tolist()
    # cross-check against a cache-free greedy loop, and measure the top-1/top-2 margin
    seq = list(prompt)
    margins = []
    for _ in range(len(new)):
        lg = full_logits(model, seq)[-1]
        top = torch.topk(lg, 2).values
        margins.append(float(top[0] - top[1]))
        seq.append(int(lg.argmax()))
    assert seq[len(prompt):] == new, (seq[len(prompt):], new)
    return new, min(margins)


class MarginError(Exception):
    pass


class CapProbe:
    """Records max |score| before the attention softcap and max |logit| before the final one."""

    def __init__(self, module_name):
        import importlib
        self.mod = importlib.import_module(module_name)
        self.orig = self.mod.eager_attention_forward
        self.attn = []

    def __enter__(self):
        orig = self.orig
        probe = self

        def wrapped(module, query, key, value, attention_mask, scaling=None, **kw):
            from transformers.models.gemma2.modeling_gemma2 import repeat_kv
            k = repeat_kv(key, module.num_key_value_groups)
            s = torch.matmul(query, k.transpose(2, 3)) * scaling
            if attention_mask is not None:
                allowed = attention_mask[:, :, :, : k.shape[-2]] == 0
                s = s.masked_select(allowed.expand_as(s))
            probe.attn.append(s.abs().flatten())
            return orig(module, query, key, value, attention_mask, scaling=scaling, **kw)

        self.mod.eager_attention_forward = wrapped
        return self

    def __exit__(self, *a):
        self.mod.eager_attention_forward = self.orig


def rewrite_config(path, fn):
    cp = os.path.join(path, "config.json")
    with open(cp) as f:
        cfg = json.load(f)
    cfg = fn(cfg)
    with open(cp, "w") as f:
        json.dump(cfg, f, indent=2, sort_keys=True)
        f.write("\n")
    return cfg


def old_keys_common(cfg):
    """Hub-style (transformers 4.4x) config: no layer_types / rope_parameters, torch_dtype."""
    cfg.pop("layer_types", None)
    cfg.pop("rope_parameters", None)
    cfg.pop("_sliding_window_pattern", None)
    if not cfg.get("use_bidirectional_attention"):
        cfg.pop("use_bidirectional_attention", None)
    if "dtype" in cfg:
        cfg["torch_dtype"] = cfg.pop("dtype")
    return cfg


def old_keys_gemma(cfg, theta):
    old_keys_common(cfg)
    cfg["rope_theta"] = theta
    return cfg


def old_keys_gemma2(cfg, theta):
    old_keys_common(cfg)
    cfg["rope_theta"] = theta
    cfg["cache_implementation"] = "hybrid"
    return cfg


def old_keys_gemma3(cfg, global_theta, local_theta, factor, pattern):
    old_keys_common(cfg)
    cfg["rope_theta"] = global_theta
    cfg["rope_local_base_freq"] = local_theta
    cfg["rope_scaling"] = {"rope_type": "linear", "factor": factor} if factor else None
    cfg["sliding_window_pattern"] = pattern
    return cfg


def write_reference(out, tokens, logits, prompt, gen, extra):
    logits = logits.contiguous().numpy().astype("<f4")
    with open(os.path.join(out, "logits.f32"), "wb") as f:
        f.write(logits.tobytes())
    ref = {"tokens": tokens, "logits_shape": list(logits.shape), "prompt": prompt, "greedy": gen}
    ref.update(extra)
    with open(os.path.join(out, "reference.json"), "w") as f:
        f.write("{\n" + ",\n".join(f" {json.dumps(k)}: {json.dumps(v)}" for k, v in ref.items()) + "\n}\n")


def build_model(spec, tk_json, tokens, models_dir):
    import transformers
    name = spec["name"]
    out = os.path.join(models_dir, name)
    shutil.rmtree(out, ignore_errors=True)
    os.makedirs(out)
    cfg_cls = getattr(transformers, spec["config_cls"])
    model_cls = getattr(transformers, spec["model_cls"])
    config = cfg_cls(**spec["config"])
    config._attn_implementation = "eager"
    torch.manual_seed(spec["seed"])
    model = model_cls(config).eval()
    init_weights(model, spec["seed"], **spec["init"])
    if spec["dtype"] == torch.bfloat16:
        round_bf16(model)
    mem_logits = full_logits(model, tokens)

    save_kw = {}
    if spec.get("max_shard_size"):
        save_kw["max_shard_size"] = spec["max_shard_size"]
    model.to(spec["dtype"]).save_pretrained(out, **save_kw)
    for junk in ("generation_config.json",):
        jp = os.path.join(out, junk)
        if os.path.exists(jp):
            os.remove(jp)
    shards = sorted(f for f in os.listdir(out) if f.endswith(".safetensors"))
    if spec.get("shards"):
        assert len(shards) == spec["shards"], shards
        assert os.path.exists(os.path.join(out, "model.safetensors.index.json"))
    else:
        assert shards == ["model.safetensors"], shards
    shutil.copy(tk_json, os.path.join(out, "tokenizer.json"))

    # reference: reload from disk in float32, eager attention
    ref_model = load_f32(out)
    logits = full_logits(ref_model, tokens)
    assert torch.allclose(logits, mem_logits, atol=1e-5, rtol=1e-5), (logits - mem_logits).abs().max()
    cfg_new = ref_model.config

    if spec.get("old_keys"):
        rewrite_config(out, spec["old_keys"])
        m2 = load_f32(out)
        c2 = m2.config
        for k in ("layer_types", "rope_parameters", "sliding_window", "query_pre_attn_scalar",
                  "attn_logit_softcapping", "final_logit_softcapping", "head_dim"):
            assert getattr(c2, k, None) == getattr(cfg_new, k, None), (k, getattr(c2, k, None), getattr(cfg_new, k, None))
        l2 = full_logits(m2, tokens)
        assert torch.equal(l2, logits), "old-key config changes logits"
        print(f"  {name}: old-key config.json reloads to identical logits")
    else:
        with open(os.path.join(out, "config.json")) as f:
            c = json.load(f)
        assert "rope_parameters" in c, "expected the installed transformers to write rope_parameters"
        if spec["config_cls"] != "GemmaConfig":
            assert "layer_types" in c

    extra = {}
    if spec.get("softcap_module"):
        cap_a = config.attn_logit_softcapping
        cap_f = config.final_logit_softcapping
        pre = {}
        h = ref_model.lm_head.register_forward_hook(lambda m, i, o: pre.__setitem__("l", o.detach()))
        with CapProbe(spec["softcap_module"]) as probe:
            l3 = full_logits(ref_model, tokens)
        h.remove()
        assert torch.equal(l3, logits)
        scores = torch.cat(probe.attn)
        frac_a = float((scores > cap_a).float().mean())
        frac_f = float((pre["l"].abs() > cap_f).float().mean())
        print(f"  {name}: max|score| {float(scores.max()):.2f} (cap {cap_a}, {frac_a:.1%} above), "
              f"max|pre-cap logit| {float(pre['l'].abs().max()):.2f} (cap {cap_f}, {frac_f:.1%} above)")
        assert frac_a > 0.01 and frac_f > 0.001, "softcaps do not bite"
        extra["softcap_check"] = {"max_abs_attn_score_before_cap": round(float(scores.max()), 3),
                                  "max_abs_logit_before_cap": round(float(pre["l"].abs().max()), 3)}

    prompt = tokens[:PROMPT_LEN]
    gen, margin = greedy(ref_model, prompt)
    assert len(gen) == MAX_NEW, gen
    if margin < 0.02:
        raise MarginError(f"{name}: greedy top-2 margin {margin:.4f} too small with seed {spec['seed']}")
    if len(set(gen)) < 4:
        raise MarginError(f"{name}: greedy output {gen} too repetitive with seed {spec['seed']}")
    V = logits.shape[1]
    extra["seed"] = spec["seed"]
    extra["greedy_min_top2_margin"] = round(margin, 4)
    print(f"  {name}: seed {spec['seed']} T={len(tokens)} V={V} logits range [{float(logits.min()):.2f}, {float(logits.max()):.2f}] "
          f"std {float(logits.std()):.2f}; greedy {gen} (min top-2 margin {margin:.4f})")
    write_reference(out, tokens, logits, prompt, gen, extra)
    return out, model, logits, gen


def g3_rope(local_theta, global_theta, factor):
    full = {"rope_type": "linear", "factor": factor, "rope_theta": global_theta} if factor \
        else {"rope_type": "default", "rope_theta": global_theta}
    return {"sliding_attention": {"rope_type": "default", "rope_theta": local_theta}, "full_attention": full}


INIT = dict(emb_std=0.1, lin_gain=1.5, qk_gain=1.0, norm_std=0.3, final_norm_mean=2.0, post_norm_mean=1.0)
COMMON = dict(hidden_size=64, intermediate_size=128, rms_norm_eps=1e-6, max_position_embeddings=512,
              pad_token_id=0, eos_token_id=1, bos_token_id=2, tie_word_embeddings=True)


def model_specs(V):
    return [
        dict(name="gemma1-mqa-bf16", config_cls="GemmaConfig", model_cls="GemmaForCausalLM",
             dtype=torch.bfloat16, seed=102, init=INIT,
             config=dict(COMMON, vocab_size=V, num_hidden_layers=2, num_attention_heads=4,
                         num_key_value_heads=1, head_dim=32, hidden_act="gelu_pytorch_tanh",
                         rope_parameters={"rope_type": "default", "rope_theta": 10000.0}),
             old_keys=lambda c: old_keys_gemma(c, 10000.0)),
        dict(name="gemma1-mha-f32", config_cls="GemmaConfig", model_cls="GemmaForCausalLM",
             dtype=torch.float32, seed=102, init=INIT,
             config=dict(COMMON, vocab_size=V + 64, num_hidden_layers=2, num_attention_heads=4,
                         num_key_value_heads=4, head_dim=16, hidden_act="gelu_pytorch_tanh",
                         rope_parameters={"rope_type": "default", "rope_theta": 10000.0})),
        dict(name="gemma2-gqa-bf16", config_cls="Gemma2Config", model_cls="Gemma2ForCausalLM",
             dtype=torch.bfloat16, seed=201, init=dict(INIT, qk_gain=1.2, final_norm_mean=3.0),
             config=dict(COMMON, vocab_size=V, num_hidden_layers=4, num_attention_heads=4,
                         num_key_value_heads=2, head_dim=32, query_pre_attn_scalar=24,
                         sliding_window=8, attn_logit_softcapping=8.0, final_logit_softcapping=8.0,
                         hidden_activation="gelu_pytorch_tanh",
                         rope_parameters={"rope_type": "default", "rope_theta": 10000.0}),
             old_keys=lambda c: old_keys_gemma2(c, 10000.0),
             softcap_module="transformers.models.gemma2.modeling_gemma2",
             max_shard_size="400KB", shards=2),
        dict(name="gemma2-f32-newkeys", config_cls="Gemma2Config", model_cls="Gemma2ForCausalLM",
             dtype=torch.float32, seed=202, init=dict(INIT, qk_gain=1.2, final_norm_mean=3.0),
             config=dict(COMMON, vocab_size=V, num_hidden_layers=2, num_attention_heads=4,
                         num_key_value_heads=2, head_dim=16, query_pre_attn_scalar=16,
                         sliding_window=8, attn_logit_softcapping=8.0, final_logit_softcapping=8.0,
                         hidden_activation="gelu_pytorch_tanh",
                         rope_parameters={"rope_type": "default", "rope_theta": 10000.0}),
             softcap_module="transformers.models.gemma2.modeling_gemma2"),
        dict(name="gemma3-bf16", config_cls="Gemma3TextConfig", model_cls="Gemma3ForCausalLM",
             dtype=torch.bfloat16, seed=301, init=INIT,
             config=dict(COMMON, vocab_size=V, num_hidden_layers=7, num_attention_heads=4,
                         num_key_value_heads=2, head_dim=32, query_pre_attn_scalar=32,
                         sliding_window=8, hidden_activation="gelu_pytorch_tanh",
                         rope_parameters=g3_rope(10000.0, 1000000.0, 8.0)),
             old_keys=lambda c: old_keys_gemma3(c, 1000000.0, 10000.0, 8.0, 6)),
        dict(name="gemma3-f32-newkeys", config_cls="Gemma3TextConfig", model_cls="Gemma3ForCausalLM",
             dtype=torch.float32, seed=304, init=INIT,
             config=dict(COMMON, vocab_size=V, num_hidden_layers=6, num_attention_heads=4,
                         num_key_value_heads=1, head_dim=16, query_pre_attn_scalar=24,
                         sliding_window=8, hidden_activation="gelu_pytorch_tanh",
                         # irregular on purpose: layer_types, not i % 6 == 5, decides
                         layer_types=["sliding_attention", "full_attention", "sliding_attention",
                                      "sliding_attention", "sliding_attention", "full_attention"],
                         rope_parameters=g3_rope(10000.0, 500000.0, 4.0))),
    ]


def build_multimodal(g3_dir, models_dir):
    """gemma3-mm-bf16: gemma3-bf16's text weights under the older multimodal prefix
    `language_model.model.`, a model_type "gemma3" config wrapping the text config, and one
    vision tensor the loader must ignore. Same reference as gemma3-bf16."""
    from safetensors.torch import load_file, save_file
    from transformers import AutoConfig

    out = os.path.join(models_dir, "gemma3-mm-bf16")
    shutil.rmtree(out, ignore_errors=True)
    os.makedirs(out)
    sd = load_file(os.path.join(g3_dir, "model.safetensors"))
    mm = {}
    for k, v in sd.items():
        assert k.startswith("model."), k
        mm["language_model.model." + k[len("model."):]] = v
    g = torch.Generator().manual_seed(399)
    mm["vision_tower.vision_model.fake.weight"] = torch.randn(4, 4, generator=g).to(torch.bfloat16)
    save_file(dict(sorted(mm.items())), os.path.join(out, "model.safetensors"), metadata={"format": "pt"})
    with open(os.path.join(g3_dir, "config.json")) as f:
        text_cfg = json.load(f)
    text_cfg.pop("architectures", None)
    cfg = {
        "architectures": ["Gemma3ForConditionalGeneration"],
        "model_type": "gemma3",
        "boi_token_index": 8,
        "eoi_token_index": 9,
        "image_token_index": 5,
        "mm_tokens_per_image": 4,
        "initializer_range": 0.02,
        "torch_dtype": "bfloat16",
        "transformers_version": text_cfg.get("transformers_version"),
        "text_config": text_cfg,
        "vision_config": {
            "model_type": "siglip_vision_model", "hidden_size": 16, "intermediate_size": 32,
            "num_hidden_layers": 1, "num_attention_heads": 2, "image_size": 28, "patch_size": 14,
            "vision_use_head": False,
        },
    }
    with open(os.path.join(out, "config.json"), "w") as f:
        json.dump(cfg, f, indent=2, sort_keys=True)
        f.write("\n")
    c = AutoConfig.from_pretrained(out)
    t = AutoConfig.from_pretrained(g3_dir)
    assert c.model_type == "gemma3" and c.text_config.model_type == "gemma3_text"
    for k in ("layer_types", "rope_parameters", "sliding_window", "vocab_size", "head_dim",
              "num_hidden_layers", "query_pre_attn_scalar"):
        assert getattr(c.text_config, k) == getattr(t, k), k
    for f in ("tokenizer.json", "reference.json", "logits.f32"):
        shutil.copy(os.path.join(g3_dir, f), os.path.join(out, f))
    # transformers itself must map the older prefix and reproduce gemma3-bf16's logits
    from transformers import Gemma3ForConditionalGeneration
    m = Gemma3ForConditionalGeneration.from_pretrained(out, dtype=torch.float32,
                                                       attn_implementation="eager").eval()
    with open(os.path.join(out, "reference.json")) as f:
        ref = json.load(f)
    with torch.no_grad():
        lg = m(input_ids=torch.tensor([ref["tokens"]])).logits[0].float()
    exp = torch.from_numpy(np.fromfile(os.path.join(out, "logits.f32"), dtype="<f4").reshape(ref["logits_shape"]))
    assert torch.equal(lg, exp), float((lg - exp).abs().max())
    print("  gemma3-mm-bf16: Gemma3ForConditionalGeneration loads it to gemma3-bf16's exact logits")


def main():
    import transformers
    transformers.utils.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    print(f"python {sys.version.split()[0]}, torch {torch.__version__}, transformers {transformers.__version__}")
    tk_json, tk = main_tokenizer()
    V = tk.get_vocab_size()
    tokens = reference_tokens(tk)
    models_dir = os.path.join(FIX, "models")
    os.makedirs(models_dir, exist_ok=True)
    dirs = {}
    for spec in model_specs(V):
        # a near-tie in greedy decoding makes a fragile fixture: bump the seed (deterministically)
        for attempt in range(20):
            try:
                dirs[spec["name"]] = build_model(spec, tk_json, tokens, models_dir)[0]
                break
            except MarginError as e:
                print(f"  {e}; retrying with seed {spec['seed'] + 1}")
                spec["seed"] += 1
        else:
            raise RuntimeError("no seed with a clear greedy margin")
    build_multimodal(dirs["gemma3-bf16"], models_dir)


if __name__ == "__main__":
    main()
