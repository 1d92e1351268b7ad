"""The PyTorch side of the gemma_pytorch comparison: load a gemma_pytorch .ckpt the way
gemma_pytorch does (parameters allocated first in bf16, then torch.load with mmap and
load_state_dict copying into them) and report load time and peak memory as the OS counts it.

    .venv/bin/python scripts/pytorch_load_path.py MODEL.ckpt

Prints JSON: load_s, peak_rss_bytes (VmHWM), peak_anon_bytes (sampled RssAnon), weights_bytes.
On a 24 GiB machine a gemma-7b-shaped file (16 GB of bf16) needs about twice its size this way.
"""
import json
import os
import sys
import threading
import time

import torch


def status():
    out = {}
    with open("/proc/self/status") as f:
        for line in f:
            k, _, v = line.partition(":")
            if k in ("VmHWM", "RssAnon"):
                out[k] = int(v.split()[0]) * 1024
    return out


def main():
    path = sys.argv[1]
    peak_anon = [0]
    stop = [False]

    def sample():
        while not stop[0]:
            peak_anon[0] = max(peak_anon[0], status().get("RssAnon", 0))
            time.sleep(0.002)

    t = threading.Thread(target=sample, daemon=True)
    t.start()
    t0 = time.time()
    # Shapes from the file (metadata only), then parameters allocated as the model would be.
    sd = torch.load(path, mmap=True, weights_only=True)
    sd = sd.get("model_state_dict", sd)
    params = {k: torch.empty(v.shape, dtype=v.dtype) for k, v in sd.items()}
    for p in params.values():
        p.zero_()  # the model's initialisation touches every parameter
    # load_state_dict: copy every tensor into its parameter.
    with torch.no_grad():
        for k, v in sd.items():
            params[k].copy_(v)
    load_s = time.time() - t0
    stop[0] = True
    t.join()
    weights = sum(v.numel() * v.element_size() for v in sd.values())
    print(json.dumps({"load_s": load_s, "peak_rss_bytes": status()["VmHWM"], "peak_anon_bytes": peak_anon[0],
                      "weights_bytes": weights, "file": os.path.abspath(path)}))


if __name__ == "__main__":
    main()
