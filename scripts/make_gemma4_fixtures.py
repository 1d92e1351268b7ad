#!/usr/bin/env python3
"""Generate the tiny random Gemma 4 fixtures from transformers (>= 5.25, see scripts/requirements.txt).

Run from the repo root:  .venv/bin/python scripts/make_gemma4_fixtures.py

Writes tests/fixtures/models/gemma4-*/{config.json, model.safetensors, reference.json, logits.f32}
in the layout scripts/make_fixtures.py uses (tests/fixtures/README.md), three flavours of the text
decoder (docs: /work/shared/reference/gemma4.md, sections 1-3):

  gemma4-e-bf16      E2B-like: per-layer embeddings (PLE), KV sharing (3 consumer layers, donors
                     of each type not the last owning layer), double-wide MLP on the consumers,
                     sliding and full layers with different head sizes; num_global_key_value_heads
                     given but ignored (attention_k_eq_v false). Saved as Google ships it: the
                     multimodal layout (`model.language_model.*`, Gemma4ForConditionalGeneration
                     config with `text_config`), Google's keys (`global_head_dim`,
                     `num_global_key_value_heads`), and the unused k/v/k_norm of the shared layers.
  gemma4-dense-f32   31B-like: attention_k_eq_v (no v_proj on full layers, V = raw K) with
                     num_global_key_value_heads; Gemma4ForCausalLM (`model.*`), the config as
                     transformers writes it back (`per_layer_config`).
  gemma4-moe-bf16    26B-like: enable_moe_block (8 experts, top 2, beside the dense MLP) + k_eq_v;
                     multimodal layout, config as transformers writes it back.

Every weight is random away from its default: norm weights (plain multipliers in Gemma 4),
`layer_scalar` (0.3-0.9), `router.scale`, `router.per_expert_scale`. No tokenizer: token ids are
random (seeded), starting with bos 2. References are float32 logits of transformers' eager
implementation reloaded from the saved folder (bf16 weights upcast exactly), for 24 positions
(past the sliding window of 8), and a 12-token greedy continuation of the first 7.
"""

import json
import os
import shutil
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from make_fixtures import (FIX, MarginError, full_logits, greedy, load_f32,  # noqa: E402
                           write_reference, MAX_NEW, PROMPT_LEN, T_TOKENS)

torch.use_deterministic_algorithms(True)
torch.set_num_threads(1)

V = 256
S, F = "sliding_attention", "full_attention"
COMMON = dict(vocab_size=V, hidden_size=64, num_attention_heads=4, num_key_value_heads=2,
              head_dim=16, global_head_dim=32, rms_norm_eps=1e-6, max_position_embeddings=512,
              sliding_window=8, final_logit_softcapping=30.0, pad_token_id=0, eos_token_id=1,
              bos_token_id=2, tie_word_embeddings=True, hidden_activation="gelu_pytorch_tanh",
              vocab_size_per_layer_input=V)


def specs():
    return [
        dict(name="gemma4-e-bf16", dtype=torch.bfloat16, seed=401, layout="multimodal",
             keys="google", unused_shared_kv=True,
             config=dict(COMMON, intermediate_size=64, num_hidden_layers=7,
                         layer_types=[S, S, F, S, S, S, F], hidden_size_per_layer_input=16,
                         num_kv_shared_layers=3, use_double_wide_mlp=True,
                         attention_k_eq_v=False, num_global_key_value_heads=1)),
        dict(name="gemma4-dense-f32", dtype=torch.float32, seed=411, layout="causal",
             keys="transformers",
             config=dict(COMMON, intermediate_size=64, num_hidden_layers=5,
                         layer_types=[S, S, F, S, F], hidden_size_per_layer_input=0,
                         attention_k_eq_v=True, num_global_key_value_heads=1)),
        dict(name="gemma4-moe-bf16", dtype=torch.bfloat16, seed=421, layout="multimodal",
             keys="transformers",
             config=dict(COMMON, intermediate_size=48, num_hidden_layers=6,
                         layer_types=[S, S, F, S, S, F], hidden_size_per_layer_input=0,
                         attention_k_eq_v=True, num_global_key_value_heads=1,
                         enable_moe_block=True, num_experts=8, top_k_experts=2,
                         moe_intermediate_size=16)),
    ]


# The fixtures' conditioning: transformers' own float32 logits must stay this close to its
# float64 ones, so that a float32 reimplementation can be held to 1e-4 of them.
F64_TOLERANCE = 2e-5


def f64_gap(model, tokens):
    """max |float32 logits - float64 logits| of `model` (a float32 copy is made double)."""
    import copy
    m = copy.deepcopy(model).double()
    m.config._experts_implementation = "eager"
    with torch.no_grad():
        lg64 = m(torch.tensor([tokens]), use_cache=False).logits[0]
    return float((full_logits(model, tokens).double() - lg64).abs().max())


GAIN = 1.0
QK_NORM_MEAN = 0.6
POST_NORM_MEAN = 0.4


# MoE routing is discontinuous: the k-th and (k+1)-th router probabilities of every token in
# every layer must be at least this far apart, or float32 rounding could flip a choice.
ROUTER_MARGIN = 5e-4


def router_margin(model, tokens):
    """The smallest gap between the k-th and (k+1)-th router probability over all tokens and
    layers (None without experts)."""
    gaps = []

    def hook(mod, inp, out):
        p = out[0].float().sort(dim=-1, descending=True).values
        k = mod.config.top_k_experts
        gaps.append(float((p[:, k - 1] - p[:, k]).min()))

    hs = [m.register_forward_hook(hook) for n, m in model.named_modules() if n.endswith(".router")]
    if not hs:
        return None
    full_logits(model, tokens)
    for h in hs:
        h.remove()
    return min(gaps)


def init_weights(model, seed):
    """Embeddings N(0, 0.1); linears N(0, 1/sqrt(fan_in)) (3-D experts per expert); norm
    weights 1 + N(0, 0.3) (the final norm 2 + N(0, 0.3)); layer_scalar
    U(0.3, 0.9); router.scale 1 + N(0, 0.3); router.proj N(0, 2); per_expert_scale U(0.5, 1.5).
    q/k norms 0.6 + N(0, 0.3) and post-norms 0.4 + N(0, 0.3) keep the tiny random models well
    conditioned (float32 within F64_TOLERANCE of float64)."""
    g = torch.Generator().manual_seed(seed)
    rnd = lambda shape: torch.randn(shape, generator=g)
    with torch.no_grad():
        items = sorted(list(model.named_parameters()) + list(model.named_buffers()))
        for name, p in items:
            if name.endswith("inv_freq") or name.endswith("embed_scale"):
                continue  # computed, not stored
            if name.endswith("embed_tokens.weight") or name.endswith("embed_tokens_per_layer.weight"):
                p.copy_(rnd(p.shape) * 0.1)
            elif name.endswith("layer_scalar"):
                p.copy_(0.3 + 0.6 * torch.rand(p.shape, generator=g))
            elif name.endswith("router.per_expert_scale"):
                p.copy_(0.5 + torch.rand(p.shape, generator=g))
            elif name.endswith("router.scale") or "norm" in name:
                mean = 2.0 if name == "model.norm.weight" else (POST_NORM_MEAN if ".post_" in name else 1.0)
                if name.endswith("q_norm.weight") or name.endswith("k_norm.weight"):
                    mean = QK_NORM_MEAN
                p.copy_(mean + rnd(p.shape) * 0.3)
            elif name.endswith("router.proj.weight"):
                # The router's input is scaled by 1/sqrt(hidden): logits of std ~2, so that
                # the routing is clear-cut.
                p.copy_(rnd(p.shape) * 2.0)
            elif p.dim() == 2:
                p.copy_(rnd(p.shape) * GAIN / p.shape[1] ** 0.5)
            elif p.dim() == 3:
                p.copy_(rnd(p.shape) * GAIN / p.shape[2] ** 0.5)
            else:
                raise ValueError(f"{name} {tuple(p.shape)}")


def round_bf16(model):
    with torch.no_grad():
        # Parameters and the persistent layer_scalar buffers (not the computed rotary tables).
        for name, p in list(model.named_parameters()) + list(model.named_buffers()):
            if name.endswith(".weight") or name.endswith("layer_scalar") or p.dim() == 3 or "router." in name:
                p.copy_(p.to(torch.bfloat16).to(torch.float32))


def google_keys(text_cfg, spec):
    """The text config as Google's config.json files write it: `global_head_dim` and
    `num_global_key_value_heads` as plain keys, no `per_layer_config`."""
    text_cfg.pop("per_layer_config", None)
    text_cfg["global_head_dim"] = spec["config"]["global_head_dim"]
    text_cfg["num_global_key_value_heads"] = spec["config"].get("num_global_key_value_heads")
    return text_cfg


def to_multimodal(out, text_cfg, extra_tensors):
    """Rewrites the folder's Gemma4ForCausalLM checkpoint in the layout of Google's
    Gemma4ForConditionalGeneration files: text weights under `model.language_model.`, one
    vision tensor the loader must ignore, a `gemma4` config wrapping the text config."""
    from safetensors.torch import load_file, save_file
    p = os.path.join(out, "model.safetensors")
    sd = load_file(p)
    mm = {}
    for k, v in sd.items():
        assert k.startswith("model."), k
        mm["model.language_model." + k[len("model."):]] = v
    for k, v in extra_tensors.items():
        mm["model.language_model." + k[len("model."):]] = v
    g = torch.Generator().manual_seed(499)
    dt = next(iter(sd.values())).dtype
    mm["model.vision_tower.encoder.fake.weight"] = torch.randn(4, 4, generator=g).to(dt)
    save_file(dict(sorted(mm.items())), p, metadata={"format": "pt"})
    text_cfg = dict(text_cfg)
    text_cfg.pop("architectures", None)
    text_cfg["model_type"] = "gemma4_text"
    cfg = {
        "architectures": ["Gemma4ForConditionalGeneration"],
        "model_type": "gemma4",
        "text_config": text_cfg,
        "vision_config": {"model_type": "gemma4_vision", "hidden_size": 16,
                          "intermediate_size": 32, "num_hidden_layers": 1,
                          "num_attention_heads": 2, "num_key_value_heads": 2, "head_dim": 8},
        "audio_config": None,
        "boi_token_id": 255999, "eoi_token_id": 258882, "image_token_id": 258880,
        "boa_token_id": 256000, "eoa_token_id": 258883, "audio_token_id": 258881,
        "tie_word_embeddings": True,
        "dtype": text_cfg.get("dtype"),
        "transformers_version": text_cfg.get("transformers_version"),
    }
    with open(os.path.join(out, "config.json"), "w") as f:
        json.dump(cfg, f, indent=2, sort_keys=True)
        f.write("\n")


def unused_shared_kv(cfg, seed, dtype):
    """k_proj / v_proj / k_norm for the KV-shared layers, as Google's original E2B/E4B files
    carry them (transformers ignores them on load)."""
    g = torch.Generator().manual_seed(seed + 1000)
    out = {}
    layers = cfg["num_hidden_layers"]
    for i in range(layers - cfg["num_kv_shared_layers"], layers):
        d = cfg["global_head_dim"] if cfg["layer_types"][i] == F else cfg["head_dim"]
        kv, h = cfg["num_key_value_heads"], cfg["hidden_size"]
        pre = f"model.layers.{i}.self_attn."
        out[pre + "k_proj.weight"] = (torch.randn(kv * d, h, generator=g) * 0.2).to(dtype)
        out[pre + "v_proj.weight"] = (torch.randn(kv * d, h, generator=g) * 0.2).to(dtype)
        out[pre + "k_norm.weight"] = (1 + torch.randn(d, generator=g) * 0.3).to(dtype)
    return out


def random_tokens(seed):
    g = torch.Generator().manual_seed(seed)
    return [2] + torch.randint(5, V, (T_TOKENS - 1,), generator=g).tolist()


def build(spec, models_dir):
    from transformers import Gemma4ForCausalLM, Gemma4TextConfig
    name = spec["name"]
    out = os.path.join(models_dir, name)
    shutil.rmtree(out, ignore_errors=True)
    os.makedirs(out)
    config = Gemma4TextConfig(**spec["config"])
    config._attn_implementation = "eager"
    torch.manual_seed(spec["seed"])
    model = Gemma4ForCausalLM(config).eval()
    init_weights(model, spec["seed"])
    if spec["dtype"] == torch.bfloat16:
        round_bf16(model)
    tokens = random_tokens(spec["seed"])
    mem_logits = full_logits(model, tokens)
    model.to(spec["dtype"]).save_pretrained(out)
    for junk in ("generation_config.json",):
        jp = os.path.join(out, junk)
        if os.path.exists(jp):
            os.remove(jp)
    assert sorted(f for f in os.listdir(out) if f.endswith(".safetensors")) == ["model.safetensors"]

    ref_model = load_f32(out)
    logits = full_logits(ref_model, tokens)
    assert torch.allclose(logits, mem_logits, atol=1e-5, rtol=1e-5), (logits - mem_logits).abs().max()
    # The layer scalars and the norms are what was asked for (not reset on load).
    ls = [float(l.layer_scalar) for l in ref_model.model.layers]
    assert all(0.25 < s < 0.95 for s in ls), ls

    rm = router_margin(ref_model, tokens)
    if rm is not None and rm < ROUTER_MARGIN:
        raise MarginError(f"{name}: router top-k margin {rm:.1e} with seed {spec['seed']}")
    gap = f64_gap(ref_model, tokens)
    if gap > F64_TOLERANCE:
        raise MarginError(f"{name}: float32 logits {gap:.1e} from float64 with seed {spec['seed']}")
    prompt = tokens[:PROMPT_LEN]
    try:
        gen, margin = greedy(ref_model, prompt)
    except AssertionError as e:
        raise MarginError(f"{name}: generate() and a cache-free loop disagree with seed {spec['seed']}: {e}")
    assert len(gen) == MAX_NEW, gen
    if margin < 0.02:
        raise MarginError(f"{name}: greedy top-2 margin {margin:.4f} too small with seed {spec['seed']}")
    if len(set(gen)) < 4:
        raise MarginError(f"{name}: greedy output {gen} too repetitive with seed {spec['seed']}")

    with open(os.path.join(out, "config.json")) as f:
        text_cfg = json.load(f)
    assert "per_layer_config" in text_cfg and "global_head_dim" not in text_cfg, sorted(text_cfg)
    if spec["keys"] == "google":
        text_cfg = google_keys(text_cfg, spec)
    extra = unused_shared_kv(spec["config"], spec["seed"], spec["dtype"]) \
        if spec.get("unused_shared_kv") else {}
    if spec["layout"] == "multimodal":
        to_multimodal(out, text_cfg, extra)
    else:
        assert not extra
        with open(os.path.join(out, "config.json"), "w") as f:
            json.dump(text_cfg, f, indent=2, sort_keys=True)
            f.write("\n")
    check_reload(out, spec, tokens, logits)

    size = sum(os.path.getsize(os.path.join(out, f)) for f in os.listdir(out))
    print(f"  {name}: seed {spec['seed']} T={len(tokens)} V={V} logits range "
          f"[{float(logits.min()):.2f}, {float(logits.max()):.2f}] std {float(logits.std()):.2f}; "
          f"greedy {gen} (min top-2 margin {margin:.4f}); f32 vs f64 {gap:.1e}; layer_scalar {[round(s, 3) for s in ls]}; "
          f"{size / 1024:.0f} KiB")
    write_reference(out, tokens, logits, prompt, gen,
                    {"seed": spec["seed"], "greedy_min_top2_margin": round(margin, 4),
                     "max_abs_f32_vs_f64": float(f"{gap:.2e}"),
                     **({"min_router_margin": float(f"{rm:.2e}")} if rm is not None else {}),
                     "transformers_class": "Gemma4ForCausalLM"})


def check_reload(out, spec, tokens, logits):
    """The folder as written (either layout, either key form) loads in transformers to the
    same logits: Gemma4ForConditionalGeneration for the multimodal layout (its text path),
    Gemma4ForCausalLM otherwise."""
    import transformers
    if spec["layout"] == "multimodal":
        m = transformers.Gemma4ForConditionalGeneration.from_pretrained(
            out, dtype=torch.float32, attn_implementation="eager").eval()
        c = m.config.text_config
    else:
        m = load_f32(out)
        c = m.config
    sc = spec["config"]
    for k, v in sc.items():
        if k in ("global_head_dim", "num_global_key_value_heads", "head_dim", "num_key_value_heads"):
            continue
        assert getattr(c, k) == v, (k, getattr(c, k), v)
    # Per-layer geometry: full layers take global_head_dim, and num_global_key_value_heads
    # only with attention_k_eq_v.
    for i, t in enumerate(sc["layer_types"]):
        lc = c.per_layer_config[i]
        full = t == F
        kv = sc["num_global_key_value_heads"] if full and sc["attention_k_eq_v"] else sc["num_key_value_heads"]
        assert lc.head_dim == (sc["global_head_dim"] if full else sc["head_dim"]), (i, lc.head_dim)
        assert lc.num_key_value_heads == kv, (i, lc.num_key_value_heads)
    with torch.no_grad():
        lg = m(input_ids=torch.tensor([tokens])).logits[0].float()
    assert torch.equal(lg, logits), float((lg - logits).abs().max())
    print(f"  {spec['name']}: {type(m).__name__} reloads the {spec['layout']} layout "
          f"({spec['keys']} keys) to identical logits")


def main():
    import transformers
    transformers.utils.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    print(f"python {sys.version.split()[0]}, torch {torch.__version__}, transformers {transformers.__version__}")
    models_dir = os.path.join(FIX, "models")
    only = sys.argv[1:]
    for spec in specs():
        if only and spec["name"] not in only:
            continue
        for attempt in range(40):
            try:
                build(spec, models_dir)
                break
            except MarginError as e:
                print(f"  {e}; retrying with seed {spec['seed'] + 1}")
                spec["seed"] += 1
        else:
            raise RuntimeError("no seed with a clear greedy margin")


if __name__ == "__main__":
    main()
