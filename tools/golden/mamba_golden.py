#!/usr/bin/env python3
"""Golden data for tessel's Mamba mixer and model (tests/test_mamba.cpp).

A small Mamba-1 language model with random weights (d_model 64, d_state 16, d_conv 4,
expand 2, dt_rank 4, 2 layers, vocabulary 96), written as a safetensors file with the names of
transformers' MambaForCausalLM (a small writer that follows the safetensors spec: the pip
package is not needed). The reference is the Mamba paper's equations (Gu & Dao 2023,
Algorithm 2 with the reference implementation's Δ = softplus(dt_proj(δ) + dt_bias),
B̄ = Δ·B and the gate y·silu(z)) as a plain sequential loop over time in float64 on the
float32-rounded weights: no parallel scan, no library Mamba code.

Run with Debian's PyTorch:  /usr/bin/python3 tools/golden/mamba_golden.py
Writes tests/data/mamba/model_*.{safetensors,npy}.
"""
import json
import math
import os
import struct

import numpy as np
import torch

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "tests", "data", "mamba")

D_MODEL, D_STATE, D_CONV, EXPAND, LAYERS, VOCAB = 64, 16, 4, 2, 2, 96
D_INNER = EXPAND * D_MODEL
DT_RANK = math.ceil(D_MODEL / 16)
EPS = 1e-5


def write_safetensors(path, tensors, dtype="F32"):
    """The safetensors layout: u64 header length, JSON header, then the raw little-endian data."""
    header, blobs, off = {}, [], 0
    for name, t in tensors.items():
        b = t.astype({"F32": "<f4", "F16": "<f2"}[dtype]).tobytes()
        header[name] = {"dtype": dtype, "shape": list(t.shape), "data_offsets": [off, off + len(b)]}
        blobs.append(b)
        off += len(b)
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * (-len(h) % 8)  # the spec allows trailing spaces; aligns the data to 8 bytes
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for b in blobs:
            f.write(b)


def f32(t):
    return t.to(torch.float32).to(torch.float64)


def make_weights(g):
    rn = lambda *s: torch.randn(*s, generator=g, dtype=torch.float64)
    ru = lambda *s: torch.rand(*s, generator=g, dtype=torch.float64)
    w = {"backbone.embeddings.weight": f32(rn(VOCAB, D_MODEL))}
    for l in range(LAYERS):
        p = f"backbone.layers.{l}."
        m = p + "mixer."
        w[p + "norm.weight"] = f32(1 + 0.1 * rn(D_MODEL))
        w[m + "in_proj.weight"] = f32(rn(2 * D_INNER, D_MODEL) / math.sqrt(D_MODEL))
        w[m + "conv1d.weight"] = f32(rn(D_INNER, 1, D_CONV) / math.sqrt(D_CONV))
        w[m + "conv1d.bias"] = f32(0.1 * rn(D_INNER))
        w[m + "x_proj.weight"] = f32(rn(DT_RANK + 2 * D_STATE, D_INNER) / math.sqrt(D_INNER))
        w[m + "dt_proj.weight"] = f32(rn(D_INNER, DT_RANK) / math.sqrt(DT_RANK))
        # Mamba's init: Δ = softplus(dt_bias) log-uniform in [1e-3, 1e-1]; A_log = log(1..N).
        dt = torch.exp(ru(D_INNER) * (math.log(0.1) - math.log(1e-3)) + math.log(1e-3))
        w[m + "dt_proj.bias"] = f32(dt + torch.log(-torch.expm1(-dt)))
        w[m + "A_log"] = f32(torch.log(torch.arange(1, D_STATE + 1, dtype=torch.float64))
                             .repeat(D_INNER, 1) + 0.1 * rn(D_INNER, D_STATE))
        w[m + "D"] = f32(1 + 0.1 * rn(D_INNER))
        w[m + "out_proj.weight"] = f32(rn(D_MODEL, D_INNER) / math.sqrt(D_INNER))
    w["backbone.norm_f.weight"] = f32(1 + 0.1 * rn(D_MODEL))
    return w


def softplus(x):
    return torch.where(x > 20, x, torch.log1p(torch.exp(x)))


def silu(x):
    return x * torch.sigmoid(x)


def rms_norm(x, w):
    return x / torch.sqrt((x * x).mean(-1, keepdim=True) + EPS) * w


def mixer(w, m, u):
    """One Mamba mixer over a sequence u [L, d_model], fresh state, token by token."""
    L = u.shape[0]
    A = -torch.exp(w[m + "A_log"])                       # [D, N]
    cw = w[m + "conv1d.weight"][:, 0, :]                  # [D, K]
    hist = torch.zeros(D_CONV - 1, D_INNER, dtype=torch.float64)  # last K-1 inputs
    h = torch.zeros(D_INNER, D_STATE, dtype=torch.float64)
    out = torch.zeros(L, D_MODEL, dtype=torch.float64)
    for t in range(L):
        xz = w[m + "in_proj.weight"] @ u[t]
        x, z = xz[:D_INNER], xz[D_INNER:]
        window = torch.cat([hist, x[None]], 0)            # [K, D], oldest first
        xc = silu(w[m + "conv1d.bias"] + (cw * window.T).sum(1))
        hist = window[1:]
        xdbl = w[m + "x_proj.weight"] @ xc
        dlt, B, C = xdbl[:DT_RANK], xdbl[DT_RANK:DT_RANK + D_STATE], xdbl[DT_RANK + D_STATE:]
        delta = softplus(w[m + "dt_proj.weight"] @ dlt + w[m + "dt_proj.bias"])  # [D]
        h = torch.exp(delta[:, None] * A) * h + (delta * xc)[:, None] * B[None, :]
        y = h @ C + w[m + "D"] * xc
        y = y * silu(z)
        out[t] = w[m + "out_proj.weight"] @ y
    return out


def model(w, tokens):
    x = w["backbone.embeddings.weight"][tokens]
    for l in range(LAYERS):
        p = f"backbone.layers.{l}."
        x = x + mixer(w, p + "mixer.", rms_norm(x, w[p + "norm.weight"]))
    x = rms_norm(x, w["backbone.norm_f.weight"])
    return x @ w["backbone.embeddings.weight"].T        # tied head


def main():
    os.makedirs(OUT, exist_ok=True)
    g = torch.Generator().manual_seed(1234)
    w = make_weights(g)
    write_safetensors(os.path.join(OUT, "model.safetensors"),
                      {k: v.to(torch.float32).numpy() for k, v in w.items()})
    # The mixer alone: layer 0 on random rows.
    u = f32(torch.randn(48, D_MODEL, generator=g, dtype=torch.float64))
    np.save(os.path.join(OUT, "model_mixer_in.npy"), u.to(torch.float32).numpy())
    np.save(os.path.join(OUT, "model_mixer_out.npy"),
            mixer(w, "backbone.layers.0.mixer.", u).to(torch.float32).numpy())
    # The whole model: logits at every position of a 64-token prompt.
    tokens = torch.randint(0, VOCAB, (64,), generator=g)
    np.save(os.path.join(OUT, "model_tokens.npy"), tokens.to(torch.float32).numpy())
    np.save(os.path.join(OUT, "model_logits.npy"), model(w, tokens).to(torch.float32).numpy())


if __name__ == "__main__":
    main()
