"""Writes the PyTorch-checkpoint fixtures under tests/fixtures/pytorch with torch itself:

- hf-gemma1-bf16/: the gemma1-mqa-bf16 fixture's weights saved by torch.save as a Hugging Face
  pytorch_model.bin (reference logits: tests/fixtures/models/gemma1-mqa-bf16).
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

import torch
from safetensors.torch import load_file

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


def main():
    shutil.rmtree(OUT, ignore_errors=True)
    hf = os.path.join(OUT, "hf-gemma1-bf16")
    os.makedirs(hf)
    src = os.path.join(ROOT, "tests", "fixtures", "models", "gemma1-mqa-bf16")
    sd = load_file(os.path.join(src, "model.safetensors"))
    torch.save(sd, os.path.join(hf, "pytorch_model.bin"))
    shutil.copy(os.path.join(src, "config.json"), hf)

    # gemma_pytorch layout: fused qkv, query_norm/key_norm, RoPE buffers, model_state_dict wrapper.
    gp = os.path.join(OUT, "gemma_pytorch")
    os.makedirs(gp)
    for name in ["gemma2-gqa-bf16", "gemma3-bf16"]:
        src = os.path.join(ROOT, "tests", "fixtures", "models", name)
        sd = {}
        for f in sorted(os.listdir(src)):
            if f.endswith(".safetensors"):
                sd.update(load_file(os.path.join(src, f)))
        out = {}
        layers = sorted({int(k.split(".")[2]) for k in sd if k.startswith("model.layers.")})
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
        torch.save({"model_state_dict": out}, os.path.join(gp, f"{name}.ckpt"))
        if name == "gemma2-gqa-bf16":
            # One layer only: a shape no known variant has, for the inference error.
            odd = {k: v for k, v in out.items() if not k.startswith("model.layers.") or k.startswith("model.layers.0.")}
            torch.save({"model_state_dict": odd}, os.path.join(OUT, "odd-shape.ckpt"))

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
