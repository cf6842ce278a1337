#!/usr/bin/python3
"""PyTorch goldens for tessel's GPT-2 (tests/test_gpt2.cpp).

A random GPT-2 in a small config is written as a Hugging Face checkpoint (model.safetensors
with HF's names, Conv1D weights stored [in, out]; config.json) by a writer that follows the
safetensors specification (https://github.com/huggingface/safetensors#format). The reference
forward pass is plain PyTorch (F.layer_norm, F.multi_head_attention_forward with a causal
mask — Debian's torch 1.13 predates scaled_dot_product_attention —, F.gelu(approximate="tanh")), run in float64 on the f32 weights, over the whole sequence at
once. Writes, under tests/data/gpt2/:

  model.safetensors, config.json   the checkpoint
  golden.npz                       tokens [T] (int32) and logits [T, vocab] (float32)

Run with Debian's PyTorch: /usr/bin/python3 tools/golden/gpt2_golden.py
"""
import json
import os
import struct

import numpy as np
import torch
import torch.nn.functional as F

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
OUT = os.path.join(ROOT, "tests", "data", "gpt2")

CFG = dict(n_embd=64, n_layer=2, n_head=4, n_inner=128, vocab_size=300, n_positions=32,
           layer_norm_epsilon=1e-5)


def write_safetensors(path, tensors):
    """tensors: list of (name, float32 ndarray). Offsets 8-aligned; header padded with spaces."""
    header, blobs, off = {}, [], 0
    for name, a in tensors:
        b = np.ascontiguousarray(a, dtype="<f4").tobytes()
        header[name] = {"dtype": "F32", "shape": list(a.shape), "data_offsets": [off, off + len(b)]}
        blobs.append(b)
        off += len(b)
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * (-len(h) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for b in blobs:
            f.write(b)


def random_weights(g):
    D, H, V, P = CFG["n_embd"], CFG["n_inner"], CFG["vocab_size"], CFG["n_positions"]

    def rnd(*shape, std=0.1, mean=0.0):
        return (mean + std * torch.randn(*shape, generator=g)).float()

    w = {"wte.weight": rnd(V, D, std=0.5), "wpe.weight": rnd(P, D, std=0.3)}
    for l in range(CFG["n_layer"]):
        p = f"h.{l}."
        w[p + "ln_1.weight"] = rnd(D, mean=1.0)
        w[p + "ln_1.bias"] = rnd(D)
        w[p + "attn.c_attn.weight"] = rnd(D, 3 * D, std=0.2)  # Conv1D: [in, out]
        w[p + "attn.c_attn.bias"] = rnd(3 * D)
        w[p + "attn.c_proj.weight"] = rnd(D, D, std=0.15)
        w[p + "attn.c_proj.bias"] = rnd(D)
        w[p + "ln_2.weight"] = rnd(D, mean=1.0)
        w[p + "ln_2.bias"] = rnd(D)
        w[p + "mlp.c_fc.weight"] = rnd(D, H, std=0.15)
        w[p + "mlp.c_fc.bias"] = rnd(H)
        w[p + "mlp.c_proj.weight"] = rnd(H, D, std=0.1)
        w[p + "mlp.c_proj.bias"] = rnd(D)
    w["ln_f.weight"] = rnd(D, mean=1.0)
    w["ln_f.bias"] = rnd(D)
    return w


def forward(w, ids):
    """Logits [T, vocab] of token ids [T], float64."""
    D, nh, eps = CFG["n_embd"], CFG["n_head"], CFG["layer_norm_epsilon"]
    w = {k: v.double() for k, v in w.items()}
    T = len(ids)
    x = w["wte.weight"][ids] + w["wpe.weight"][torch.arange(T)]
    causal = torch.ones(T, T, dtype=torch.bool).triu(1)  # True: may not attend
    for l in range(CFG["n_layer"]):
        p = f"h.{l}."
        a = F.layer_norm(x, (D,), w[p + "ln_1.weight"], w[p + "ln_1.bias"], eps)
        # torch's own multi-head attention; its in_proj is [3D, D], the Conv1D weight transposed.
        o, _ = F.multi_head_attention_forward(
            a[:, None], a[:, None], a[:, None], D, nh, w[p + "attn.c_attn.weight"].T.contiguous(),
            w[p + "attn.c_attn.bias"], None, None, False, 0.0, w[p + "attn.c_proj.weight"].T,
            w[p + "attn.c_proj.bias"], training=False, need_weights=False, attn_mask=causal)
        x = x + o[:, 0]
        m = F.layer_norm(x, (D,), w[p + "ln_2.weight"], w[p + "ln_2.bias"], eps)
        m = F.gelu(m @ w[p + "mlp.c_fc.weight"] + w[p + "mlp.c_fc.bias"], approximate="tanh")
        x = x + m @ w[p + "mlp.c_proj.weight"] + w[p + "mlp.c_proj.bias"]
    x = F.layer_norm(x, (D,), w["ln_f.weight"], w["ln_f.bias"], eps)
    return x @ w["wte.weight"].T  # the LM head is tied to the token embedding


def main():
    os.makedirs(OUT, exist_ok=True)
    g = torch.Generator().manual_seed(2024)
    w = random_weights(g)
    write_safetensors(os.path.join(OUT, "model.safetensors"),
                      [(k, v.numpy()) for k, v in w.items()])
    cfg = dict(CFG, model_type="gpt2", architectures=["GPT2LMHeadModel"],
               activation_function="gelu_new")
    with open(os.path.join(OUT, "config.json"), "w") as f:
        json.dump(cfg, f, indent=2)
    ids = torch.randint(0, CFG["vocab_size"], (20,), generator=g)
    logits = forward(w, ids)
    np.savez(os.path.join(OUT, "golden.npz"), tokens=ids.numpy().astype(np.int32),
             logits=logits.float().numpy())


if __name__ == "__main__":
    main()
