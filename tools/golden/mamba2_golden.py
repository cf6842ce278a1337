#!/usr/bin/env python3
"""Golden data for tessel's Mamba-2 scan, mixer and model (tests/test_mamba2.cpp).

The reference is the Mamba-2 equations (Dao & Gu 2024) as a plain sequential loop over time in
float64 on float32 (or float16) rounded inputs: no chunked SSD, no library Mamba code. Per
layer, with d_inner = 2·d_model, H heads of P = 16 channels, G groups of N = 16 lanes:

    [z, xBC, dt] = in_proj(u)
    xBC = silu(causal depthwise conv1d(xBC) + bias);  [x, B, C] = xBC
    Δ = softplus(dt + dt_bias);  A = -exp(A_log)                     (a scalar per head)
    S_h = exp(Δ_h·A_h)·S_h + Δ_h·x_h ⊗ B_g;  y_h = S_h·C_g + D_h·x_h   (g = h // (H / G))
    y = rms_norm(y·silu(z)) · norm_weight, the norm over each group of d_inner / G channels
    out = out_proj(y)

Model: embedding, layers of x + mixer(rms_norm(x)), final rms_norm, head (tied, or lm_head).
Two models (2 layers, d_model 64, vocabulary 96): mamba2_g1 (1 group, tied head, stored as F16)
and mamba2_g2 (2 groups, untied lm_head, F32), each as model.safetensors with the names of
transformers' Mamba2ForCausalLM and a config.json (n_groups, layer_norm_epsilon) beside it.
Also two stand-alone scans (mamba2_scan_{a,b}_*.npy).

Run with Debian's PyTorch:  /usr/bin/python3 tools/golden/mamba2_golden.py
Writes tests/data/mamba/mamba2_*.
"""
import json
import math
import os
import struct

import numpy as np
import torch

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "tests", "data", "mamba")

D_MODEL, D_STATE, D_CONV, EXPAND, HEADDIM, LAYERS, VOCAB = 64, 16, 4, 2, 16, 2, 96
D_INNER = EXPAND * D_MODEL
HEADS = D_INNER // HEADDIM
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


def rounder(dtype):
    return lambda t: t.to(dtype).to(torch.float64)


def softplus(x):
    return torch.where(x > 20, x, torch.log1p(torch.exp(x)))


def silu(x):
    return x * torch.sigmoid(x)


def rms_norm(x, w):
    return x / torch.sqrt((x * x).mean(-1, keepdim=True) + EPS) * w


def make_weights(g, groups, untied, rnd):
    rn = lambda *s: torch.randn(*s, generator=g, dtype=torch.float64)
    ru = lambda *s: torch.rand(*s, generator=g, dtype=torch.float64)
    conv_dim = D_INNER + 2 * groups * D_STATE
    proj = 2 * D_INNER + 2 * groups * D_STATE + HEADS
    w = {"backbone.embeddings.weight": rnd(rn(VOCAB, D_MODEL))}
    for l in range(LAYERS):
        p = f"backbone.layers.{l}."
        m = p + "mixer."
        w[p + "norm.weight"] = rnd(1 + 0.1 * rn(D_MODEL))
        w[m + "in_proj.weight"] = rnd(rn(proj, D_MODEL) / math.sqrt(D_MODEL))
        w[m + "conv1d.weight"] = rnd(rn(conv_dim, 1, D_CONV) / math.sqrt(D_CONV))
        w[m + "conv1d.bias"] = rnd(0.1 * rn(conv_dim))
        # Mamba-2's init: Δ = softplus(dt_bias) log-uniform in [1e-3, 1e-1]; A in [1, 16].
        dt = torch.exp(ru(HEADS) * (math.log(0.1) - math.log(1e-3)) + math.log(1e-3))
        w[m + "dt_bias"] = rnd(dt + torch.log(-torch.expm1(-dt)))
        w[m + "A_log"] = rnd(torch.log(1 + 15 * ru(HEADS)))
        w[m + "D"] = rnd(1 + 0.1 * rn(HEADS))
        w[m + "norm.weight"] = rnd(1 + 0.1 * rn(D_INNER))
        w[m + "out_proj.weight"] = rnd(rn(D_MODEL, D_INNER) / math.sqrt(D_INNER))
    w["backbone.norm_f.weight"] = rnd(1 + 0.1 * rn(D_MODEL))
    if untied:
        w["lm_head.weight"] = rnd(rn(VOCAB, D_MODEL))
    return w


def ssd_scan(x, dt, A, B, C, D, dt_bias, S, groups, soft=True):
    """x [L, H·P], dt [L, H], A [H], B/C [L, G·N], D/dt_bias [H] or None, S [H, P, N] (updated)."""
    L, H = dt.shape
    P = x.shape[1] // H
    N = B.shape[1] // groups
    y = torch.zeros_like(x)
    for t in range(L):
        for h in range(H):
            g = h // (H // groups)
            v = dt[t, h] + (dt_bias[h] if dt_bias is not None else 0)
            delta = softplus(v) if soft else v
            xh = x[t, h * P:(h + 1) * P]
            Bg, Cg = B[t, g * N:(g + 1) * N], C[t, g * N:(g + 1) * N]
            S[h] = torch.exp(delta * A[h]) * S[h] + delta * torch.outer(xh, Bg)
            y[t, h * P:(h + 1) * P] = S[h] @ Cg + (D[h] * xh if D is not None else 0)
    return y


def mixer(w, m, u, groups):
    """One Mamba-2 mixer over a sequence u [L, d_model], fresh state, token by token."""
    L = u.shape[0]
    GN = groups * D_STATE
    conv_dim = D_INNER + 2 * GN
    A = -torch.exp(w[m + "A_log"])
    cw = w[m + "conv1d.weight"][:, 0, :]                       # [conv_dim, K]
    hist = torch.zeros(D_CONV - 1, conv_dim, dtype=torch.float64)
    S = torch.zeros(HEADS, HEADDIM, D_STATE, dtype=torch.float64)
    out = torch.zeros(L, D_MODEL, dtype=torch.float64)
    gs = D_INNER // groups
    for t in range(L):
        zxbcdt = w[m + "in_proj.weight"] @ u[t]
        z = zxbcdt[:D_INNER]
        xbc = zxbcdt[D_INNER:D_INNER + conv_dim]
        dt = zxbcdt[D_INNER + conv_dim:]
        window = torch.cat([hist, xbc[None]], 0)               # [K, conv_dim], oldest first
        xc = silu(w[m + "conv1d.bias"] + (cw * window.T).sum(1))
        hist = window[1:]
        x, B, C = xc[:D_INNER], xc[D_INNER:D_INNER + GN], xc[D_INNER + GN:]
        y = ssd_scan(x[None], dt[None], A, B[None], C[None], w[m + "D"], w[m + "dt_bias"], S,
                     groups)[0]
        y = y * silu(z)
        y = torch.cat([rms_norm(y[k * gs:(k + 1) * gs], w[m + "norm.weight"][k * gs:(k + 1) * gs])
                       for k in range(groups)])
        out[t] = w[m + "out_proj.weight"] @ y
    return out


def model(w, tokens, groups):
    x = w["backbone.embeddings.weight"][tokens]
    for l in range(LAYERS):
        p = f"backbone.layers.{l}."
        x = x + mixer(w, p + "mixer.", rms_norm(x, w[p + "norm.weight"]), groups)
    x = rms_norm(x, w["backbone.norm_f.weight"])
    head = w.get("lm_head.weight", w["backbone.embeddings.weight"])
    return x @ head.T


def save(name, t):
    np.save(os.path.join(OUT, name + ".npy"), t.to(torch.float32).numpy())


def scan_case(g, tag, L, H, P, N, groups, with_d, with_bias, big_dt):
    rnd = rounder(torch.float32)
    rn = lambda *s: torch.randn(*s, generator=g, dtype=torch.float64)
    x = rnd(rn(L, H * P))
    dt = rnd(rn(L, H) - 2)
    if big_dt:
        dt[3, 0] = 25.0  # past softplus's threshold
    A_log = rnd(torch.log(1 + 15 * torch.rand(H, generator=g, dtype=torch.float64)))
    B, C = rnd(rn(L, groups * N)), rnd(rn(L, groups * N))
    D = rnd(1 + 0.1 * rn(H)) if with_d else None
    bias = rnd(0.5 * rn(H)) if with_bias else None
    S0 = rnd(0.5 * rn(H, P, N))
    S = S0.clone()
    y = ssd_scan(x, dt, -torch.exp(A_log), B, C, D, bias, S, groups)
    arrays = {"x": x, "dt": dt, "A": -torch.exp(A_log), "B": B, "C": C, "S0": S0, "S": S, "y": y}
    if D is not None:
        arrays["D"] = D
    if bias is not None:
        arrays["dt_bias"] = bias
    for k, v in arrays.items():
        save(f"mamba2_scan_{tag}_{k}", v)


def main():
    os.makedirs(OUT, exist_ok=True)
    g = torch.Generator().manual_seed(2024)
    scan_case(g, "a", L=40, H=8, P=16, N=16, groups=2, with_d=True, with_bias=True, big_dt=False)
    scan_case(g, "b", L=17, H=3, P=12, N=5, groups=1, with_d=False, with_bias=False, big_dt=True)
    for tag, groups, untied, dtype in (("g1", 1, False, torch.float16),
                                       ("g2", 2, True, torch.float32)):
        w = make_weights(g, groups, untied, rounder(dtype))
        d = os.path.join(OUT, "mamba2_" + tag)
        os.makedirs(d, exist_ok=True)
        write_safetensors(os.path.join(d, "model.safetensors"),
                          {k: v.to(torch.float32).numpy() for k, v in w.items()},
                          "F16" if dtype == torch.float16 else "F32")
        with open(os.path.join(d, "config.json"), "w") as f:
            json.dump({"architectures": ["Mamba2ForCausalLM"], "hidden_size": D_MODEL,
                       "num_hidden_layers": LAYERS, "vocab_size": VOCAB, "state_size": D_STATE,
                       "head_dim": HEADDIM, "num_heads": HEADS, "n_groups": groups, "expand": EXPAND,
                       "conv_kernel": D_CONV, "layer_norm_epsilon": EPS,
                       "tie_word_embeddings": not untied}, f, indent=1)
        u = rounder(torch.float32)(torch.randn(48, D_MODEL, generator=g, dtype=torch.float64))
        save(f"mamba2_{tag}_mixer_in", u)
        save(f"mamba2_{tag}_mixer_out", mixer(w, "backbone.layers.0.mixer.", u, groups))
        tokens = torch.randint(0, VOCAB, (64,), generator=g)
        save(f"mamba2_{tag}_tokens", tokens)
        save(f"mamba2_{tag}_logits", model(w, tokens, groups))


if __name__ == "__main__":
    main()
