"""Writes the PyTorch-checkpoint fixtures under tests/fixtures/pytorch with torch itself:

- hf-gemma1-bf16/: the gemma1-mqa-bf16 fixture's weights saved by torch.save as a Hugging Face
  pytorch_model.bin (reference logits: tests/fixtures/models/gemma1-mqa-bf16).
- gemma_pytorch/*.ckpt: two tiny fixtures in gemma_pytorch's layout (fused qkv, RoPE buffers,
  model_state_dict wrapper; reference logits: their tests/fixtures/models twins).
- gemma_pytorch/gemma2-gqa-int8/: the gemma2-gqa-bf16 fixture quantized the way gemma_pytorch's
  int8 checkpoints are stored (every matrix int8 with a bf16 `weight_scaler` per row), with
  transformers' float32 logits and greedy tokens on the dequantised weights (q * scale in f32).
- hostile/*.ckpt: files frugal must refuse: a pickle that calls os.system through REDUCE, one
  that reaches builtins.eval, a disallowed reduce nested in a dict value, a storage larger than
  its zip record, a storage key missing from the archive, a truncated zip, a non-contiguous
  tensor.

Run: .venv/bin/python scripts/make_pytorch_fixtures.py
"""
import io
import os
import shutil
import zipfile

import json
import sys

import torch
from safetensors.torch import load_file

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import make_fixtures  # noqa: E402  (greedy decoding and reference writing, shared)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "tests", "fixtures", "pytorch")


class CallsSystem:
    def __reduce__(self):
        return (os.system, ("echo pwned",))


class CallsEval:
    def __reduce__(self):
        import builtins
        return (builtins.eval, ("1+1",))


class CallsExec:
    def __reduce__(self):
        import builtins
        return (builtins.exec, ("import os",))


def rewrite_zip(src, dst, edit):
    """Copies a torch zip, letting edit(name, data) return new data or None to drop it."""
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w", zipfile.ZIP_STORED) as zout:
        for info in zin.infolist():
            data = edit(info.filename, zin.read(info.filename))
            if data is not None:
                zout.writestr(info, data)


def load_fixture(name):
    src = os.path.join(ROOT, "tests", "fixtures", "models", name)
    sd = {}
    for f in sorted(os.listdir(src)):
        if f.endswith(".safetensors"):
            sd.update(load_file(os.path.join(src, f)))
    return src, sd


def quantize_rows(w):
    """Symmetric per-row int8 with bf16 scales, as gemma_pytorch's int8 checkpoints store them.
    Returns (int8 weights, bf16 scales, the f32 weights they stand for)."""
    w = w.float()
    scale = (w.abs().amax(dim=1) / 127.0).clamp(min=1e-8).to(torch.bfloat16)
    q = torch.round(w / scale.float()[:, None]).clamp(-127, 127).to(torch.int8)
    return q, scale, q.float() * scale.float()[:, None]


def write_int8(gp, name, out_name):
    """gemma_pytorch int8 layout of a fixture, with transformers' logits on the dequantised weights."""
    from transformers import AutoConfig, AutoModelForCausalLM
    src, sd = load_fixture(name)
    out, deq = {}, {}
    for k, v in sd.items():
        if v.dim() == 2:
            q, s, d = quantize_rows(v)
            out[k], out[k + "_scaler"], deq[k] = q, s, d
        else:
            out[k], deq[k] = v, v.float()
    ck = {}
    for k, v in out.items():
        if k.startswith("model.embed_tokens.weight"):
            ck[k.replace("model.embed_tokens.weight", "embedder.weight")] = v
        elif ".self_attn.q_proj." in k:
            p, suffix = k.split("q_proj.")
            ck[p + "qkv_proj." + suffix] = torch.cat(
                [out[p + "q_proj." + suffix], out[p + "k_proj." + suffix], out[p + "v_proj." + suffix]], 0).contiguous()
        elif ".self_attn.k_proj." in k or ".self_attn.v_proj." in k:
            continue
        else:
            ck[k] = v
    hd = config_head_dim(src)
    freqs = torch.polar(torch.ones(32, hd // 2), torch.outer(torch.arange(32.0), torch.rand(hd // 2)))
    for b in (["local_freqs_cis", "global_freqs_cis"] if "gemma3" in name else ["freqs_cis"]):
        ck[b] = freqs.clone()
    dst = os.path.join(gp, out_name)
    os.makedirs(dst)
    torch.save({"model_state_dict": ck}, os.path.join(dst, "model.ckpt"))
    shutil.copy(os.path.join(src, "config.json"), dst)
    shutil.copy(os.path.join(src, "tokenizer.json"), dst)

    config = AutoConfig.from_pretrained(src)
    model = AutoModelForCausalLM.from_config(config, attn_implementation="eager", dtype=torch.float32).eval()
    missing, unexpected = model.load_state_dict(deq, strict=False)
    assert not unexpected and all("lm_head" in m for m in missing), (missing, unexpected)
    model.tie_weights()
    with open(os.path.join(src, "reference.json")) as f:
        ref = json.load(f)
    tokens, prompt = ref["tokens"], ref["prompt"]
    logits = make_fixtures.full_logits(model, tokens)
    gen, margin = make_fixtures.greedy(model, prompt)
    if margin < 0.01:
        shutil.rmtree(dst)
        return False
    make_fixtures.write_reference(dst, tokens, logits, prompt, gen,
                                  {"dequantised_from": name, "greedy_min_top2_margin": round(margin, 4)})
    bf16_logits = torch.from_numpy(
        __import__("numpy").fromfile(os.path.join(src, "logits.f32"), dtype="<f4")).reshape(logits.shape)
    print(f"  {out_name}: int8 vs bf16 logits max |diff| {float((logits - bf16_logits).abs().max()):.4f}; greedy {gen} (min top-2 margin {margin:.4f})")
    return True


def to_gemma_pytorch(sd, name):
    """A Hugging Face state dict in gemma_pytorch's layout: fused qkv, query/key norms, RoPE buffers."""
    out = {}
    for k, v in sd.items():
        if k == "model.embed_tokens.weight":
            out["embedder.weight"] = v
        elif ".self_attn.q_proj." in k:
            p = k.replace("q_proj.weight", "")
            out[p + "qkv_proj.weight"] = torch.cat([sd[p + "q_proj.weight"], sd[p + "k_proj.weight"], sd[p + "v_proj.weight"]], 0).contiguous()
        elif ".self_attn.k_proj." in k or ".self_attn.v_proj." in k:
            continue
        else:
            out[k.replace("self_attn.q_norm", "self_attn.query_norm").replace("self_attn.k_norm", "self_attn.key_norm")] = v
    hd = out["model.layers.0.self_attn.query_norm.weight"].shape[0] if "gemma3" in name else 32
    freqs = torch.polar(torch.ones(32, hd // 2), torch.outer(torch.arange(32.0), torch.rand(hd // 2)))
    if "gemma3" in name:
        out["local_freqs_cis"] = freqs
        out["global_freqs_cis"] = freqs.clone()
    else:
        out["freqs_cis"] = freqs
    return out


def write_sharded(folder, sd, stem):
    """`sd` split in two torch.save shards with a `<stem>.bin.index.json` weight map."""
    os.makedirs(folder)
    keys = sorted(sd)
    halves = [keys[: len(keys) // 2], keys[len(keys) // 2:]]
    weight_map, total = {}, 0
    for i, part in enumerate(halves):
        fname = f"{stem}-{i + 1:05d}-of-00002.bin"
        torch.save({k: sd[k] for k in part}, os.path.join(folder, fname))
        for k in part:
            weight_map[k] = fname
            total += sd[k].numel() * sd[k].element_size()
    with open(os.path.join(folder, f"{stem}.bin.index.json"), "w") as f:
        json.dump({"metadata": {"total_size": total}, "weight_map": weight_map}, f, indent=1, sort_keys=True)


def config_head_dim(src):
    with open(os.path.join(src, "config.json")) as f:
        c = json.load(f)
    return c.get("head_dim") or c["hidden_size"] // c["num_attention_heads"]


def main():
    torch.manual_seed(0)
    shutil.rmtree(OUT, ignore_errors=True)
    hf = os.path.join(OUT, "hf-gemma1-bf16")
    os.makedirs(hf)
    src = os.path.join(ROOT, "tests", "fixtures", "models", "gemma1-mqa-bf16")
    sd = load_file(os.path.join(src, "model.safetensors"))
    torch.save(sd, os.path.join(hf, "pytorch_model.bin"))
    shutil.copy(os.path.join(src, "config.json"), hf)

    # The same weights as a sharded Hugging Face folder (pytorch_model.bin.index.json).
    write_sharded(os.path.join(OUT, "hf-gemma1-sharded"), sd, "pytorch_model")
    shutil.copy(os.path.join(src, "config.json"), os.path.join(OUT, "hf-gemma1-sharded"))

    # gemma_pytorch layout: fused qkv, query_norm/key_norm, RoPE buffers, model_state_dict wrapper.
    gp = os.path.join(OUT, "gemma_pytorch")
    os.makedirs(gp)
    # gemma_pytorch's sharded folders: its layout, plain state dicts per shard, HF-style index
    # (gemma_pytorch's load_weights reads pytorch_model.bin.index.json the same way).
    write_sharded(os.path.join(gp, "gemma1-mqa-sharded"), to_gemma_pytorch(sd, "gemma1-mqa-bf16"), "pytorch_model")
    for name in ["gemma2-gqa-bf16", "gemma3-bf16"]:
        src = os.path.join(ROOT, "tests", "fixtures", "models", name)
        sd = {}
        for f in sorted(os.listdir(src)):
            if f.endswith(".safetensors"):
                sd.update(load_file(os.path.join(src, f)))
        out = to_gemma_pytorch(sd, name)
        torch.save({"model_state_dict": out}, os.path.join(gp, f"{name}.ckpt"))
        if name == "gemma2-gqa-bf16":
            # One layer only: a shape no known variant has, for the inference error.
            odd = {k: v for k, v in out.items() if not k.startswith("model.layers.") or k.startswith("model.layers.0.")}
            torch.save({"model_state_dict": odd}, os.path.join(OUT, "odd-shape.ckpt"))

    # The first fixture whose int8 greedy continuation has no near-tie (a stable reference).
    for name in ["gemma3-bf16", "gemma2-gqa-bf16", "gemma1-mqa-bf16"]:
        if write_int8(gp, name, name.replace("bf16", "int8")):
            break
    else:
        raise RuntimeError("no fixture with a clear int8 greedy margin")

    hostile = os.path.join(OUT, "hostile")
    os.makedirs(hostile)
    w = torch.arange(12, dtype=torch.float32).reshape(3, 4)
    torch.save({"model_state_dict": {"w": w, "evil": CallsSystem()}}, os.path.join(hostile, "os_system.ckpt"))
    torch.save({"w": w, "x": CallsEval()}, os.path.join(hostile, "eval.ckpt"))
    torch.save({"model_state_dict": {"w": w, "meta": {"inner": {"deep": CallsExec()}}}}, os.path.join(hostile, "nested_reduce.ckpt"))
    good = os.path.join(hostile, "_good.ckpt")
    torch.save({"w": w}, good)
    rewrite_zip(good, os.path.join(hostile, "storage_too_big.ckpt"),
                lambda n, d: d[:16] if n.endswith("/data/0") else d)
    rewrite_zip(good, os.path.join(hostile, "missing_storage.ckpt"),
                lambda n, d: None if n.endswith("/data/0") else d)
    data = open(good, "rb").read()
    open(os.path.join(hostile, "truncated.ckpt"), "wb").write(data[: len(data) // 2])
    torch.save({"w": w.t()}, os.path.join(hostile, "non_contiguous.ckpt"))
    os.remove(good)
    print("wrote", OUT)


if __name__ == "__main__":
    main()
