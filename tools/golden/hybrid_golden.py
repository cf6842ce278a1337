#!/usr/bin/env python3
"""Golden logits for tessel's Jamba-style hybrid model (tests/test_mamba.cpp, models/hybrid.hpp).

Four layers, layer 2 attention and the others Mamba-1 mixers (one attention layer in four),
each followed by a SwiGLU MLP, all with pre-RMSNorm residuals; final RMSNorm; head tied to
the embedding. d_model 64, Mamba d_state 16 / d_conv 4 / expand 2 / dt_rank 4, attention 4
heads with 2 K/V heads (GQA) and no positional encoding (as Jamba), MLP hidden 128, vocab 96.
The reference is written from the equations as plain loops in float64: the Mamba mixer of
mamba_golden.py (token by token) and causal softmax attention row by row.

Weights are random, rounded to float16 and stored under tessel's / GGUF's names (blk.N.ssm_a holds A = -exp(A_log)
as llama.cpp's converter writes it; ssm_conv1d.weight is [d_inner, d_conv]) in a safetensors
file written by mamba_golden.py's writer.

Run with Debian's PyTorch:  /usr/bin/python3 tools/golden/hybrid_golden.py
Writes tests/data/mamba/hybrid.safetensors, hybrid_tokens.npy, hybrid_logits.npy.
"""
import math
import os

import numpy as np
import torch

import mamba_golden as mg

D_MODEL, LAYERS, VOCAB, HEADS, KV_HEADS, HIDDEN = 64, 4, 96, 4, 2, 128
D_INNER, D_STATE, D_CONV, DT_RANK = mg.D_INNER, mg.D_STATE, mg.D_CONV, mg.DT_RANK
ATTN_PERIOD, ATTN_OFFSET = 4, 2


def f32(t):
    """Rounded to float16 (the file stores F16, to keep the test data small), held in float64."""
    return t.to(torch.float16).to(torch.float64)


def make_weights(g):
    rn = lambda *s: torch.randn(*s, generator=g, dtype=torch.float64)
    lin = lambda o, i: f32(rn(o, i) / math.sqrt(i))
    w = {"token_embd.weight": f32(rn(VOCAB, D_MODEL))}
    hd = D_MODEL // HEADS
    for l in range(LAYERS):
        p = f"blk.{l}."
        w[p + "attn_norm.weight"] = f32(1 + 0.1 * rn(D_MODEL))
        w[p + "ffn_norm.weight"] = f32(1 + 0.1 * rn(D_MODEL))
        w[p + "ffn_gate.weight"] = lin(HIDDEN, D_MODEL)
        w[p + "ffn_up.weight"] = lin(HIDDEN, D_MODEL)
        w[p + "ffn_down.weight"] = lin(D_MODEL, HIDDEN)
        if l % ATTN_PERIOD == ATTN_OFFSET:
            w[p + "attn_q.weight"] = lin(D_MODEL, D_MODEL)
            w[p + "attn_k.weight"] = lin(KV_HEADS * hd, D_MODEL)
            w[p + "attn_v.weight"] = lin(KV_HEADS * hd, D_MODEL)
            w[p + "attn_output.weight"] = lin(D_MODEL, D_MODEL)
        else:
            hf = {k: f32(v) for k, v in mg.make_weights(g).items()}  # layer 0's, renamed
            m = "backbone.layers.0.mixer."
            w[p + "ssm_in.weight"] = hf[m + "in_proj.weight"]
            w[p + "ssm_conv1d.weight"] = hf[m + "conv1d.weight"][:, 0, :]
            w[p + "ssm_conv1d.bias"] = hf[m + "conv1d.bias"]
            w[p + "ssm_x.weight"] = hf[m + "x_proj.weight"]
            w[p + "ssm_dt.weight"] = hf[m + "dt_proj.weight"]
            w[p + "ssm_dt.bias"] = hf[m + "dt_proj.bias"]
            w[p + "ssm_a"] = f32(-torch.exp(hf[m + "A_log"]))
            w[p + "ssm_d"] = hf[m + "D"]
            w[p + "ssm_out.weight"] = hf[m + "out_proj.weight"]
    w["output_norm.weight"] = f32(1 + 0.1 * rn(D_MODEL))
    return w


def mamba_layer(w, p, u):
    """mamba_golden's mixer, fed this layer's weights under its HF names."""
    m = "x."
    hf = {m + "in_proj.weight": w[p + "ssm_in.weight"],
          m + "conv1d.weight": w[p + "ssm_conv1d.weight"][:, None, :],
          m + "conv1d.bias": w[p + "ssm_conv1d.bias"],
          m + "x_proj.weight": w[p + "ssm_x.weight"],
          m + "dt_proj.weight": w[p + "ssm_dt.weight"],
          m + "dt_proj.bias": w[p + "ssm_dt.bias"],
          m + "A_log": torch.log(-w[p + "ssm_a"]),
          m + "D": w[p + "ssm_d"],
          m + "out_proj.weight": w[p + "ssm_out.weight"]}
    return mg.mixer(hf, m, u)


def attention(w, p, x):
    """Causal softmax attention, row by row, K/V head j shared by query heads j·G .. j·G+G-1."""
    L = x.shape[0]
    hd = D_MODEL // HEADS
    q = x @ w[p + "attn_q.weight"].T
    k = x @ w[p + "attn_k.weight"].T
    v = x @ w[p + "attn_v.weight"].T
    out = torch.zeros(L, D_MODEL, dtype=torch.float64)
    for t in range(L):
        for h in range(HEADS):
            kv = h // (HEADS // KV_HEADS)
            qh = q[t, h * hd:(h + 1) * hd]
            s = torch.stack([qh @ k[j, kv * hd:(kv + 1) * hd] for j in range(t + 1)]) / math.sqrt(hd)
            a = torch.softmax(s, 0)
            out[t, h * hd:(h + 1) * hd] = sum(a[j] * v[j, kv * hd:(kv + 1) * hd] for j in range(t + 1))
    return out @ w[p + "attn_output.weight"].T


def ffn(w, p, x):
    return (mg.silu(x @ w[p + "ffn_gate.weight"].T) * (x @ w[p + "ffn_up.weight"].T)) @ w[p + "ffn_down.weight"].T


def model(w, tokens):
    x = w["token_embd.weight"][tokens]
    for l in range(LAYERS):
        p = f"blk.{l}."
        h = mg.rms_norm(x, w[p + "attn_norm.weight"])
        x = x + (attention(w, p, h) if l % ATTN_PERIOD == ATTN_OFFSET else mamba_layer(w, p, h))
        x = x + ffn(w, p, mg.rms_norm(x, w[p + "ffn_norm.weight"]))
    return mg.rms_norm(x, w["output_norm.weight"]) @ w["token_embd.weight"].T


def main():
    g = torch.Generator().manual_seed(4321)
    w = make_weights(g)
    mg.write_safetensors(os.path.join(mg.OUT, "hybrid.safetensors"),
                         {k: v.numpy() for k, v in w.items()}, "F16")
    tokens = torch.randint(0, VOCAB, (40,), generator=g)
    np.save(os.path.join(mg.OUT, "hybrid_tokens.npy"), tokens.to(torch.float32).numpy())
    np.save(os.path.join(mg.OUT, "hybrid_logits.npy"), model(w, tokens).to(torch.float32).numpy())


if __name__ == "__main__":
    main()
