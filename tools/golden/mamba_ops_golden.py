#!/usr/bin/env python3
"""Golden data for tessel's Mamba kernels (tests/test_mamba_ops.cpp): conv1d and selective_scan.

The references are the equations of the Mamba paper (Gu & Dao 2023, Algorithm 2, with the
reference implementation's Δ = softplus(dt + dt_bias) and B̄ = Δ·B) written as a plain
sequential loop in float64 over float32-rounded random inputs. Layout is tessel's: time-major
[L, D]. The conv1d loop is also checked here against torch.nn.functional.conv1d.

Run with Debian's PyTorch:  /usr/bin/python3 tools/golden/mamba_ops_golden.py
Writes tests/data/mamba/<case>_<array>.npy (float32).
"""
import os

import numpy as np
import torch
import torch.nn.functional as F

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "tests", "data", "mamba")


def save(case, name, t):
    np.save(os.path.join(OUT, f"{case}_{name}.npy"), t.to(torch.float32).numpy())


def f32(t):
    """Rounded to float32 (what the kernel sees), held in float64 for the reference."""
    return t.to(torch.float32).to(torch.float64)


def softplus(x):
    return torch.where(x > 20, x, torch.log1p(torch.exp(x)))


def scan_reference(u, dt, A, B, C, D, dt_bias, z, h, dt_softplus=True):
    """h_t = exp(Δ_t A) ⊙ h_{t-1} + Δ_t B_t u_t;  y_t = C_t · h_t + D u_t;  y_t *= silu(z_t)."""
    L, Dm = u.shape
    h = h.clone()
    y = torch.zeros(L, Dm, dtype=torch.float64)
    for t in range(L):
        delta = dt[t] + (dt_bias if dt_bias is not None else 0)
        if dt_softplus:
            delta = softplus(delta)
        dA = torch.exp(delta[:, None] * A)                      # [D, N]
        h = dA * h + (delta * u[t])[:, None] * B[t][None, :]    # [D, N]
        yt = (h * C[t][None, :]).sum(1)
        if D is not None:
            yt = yt + D * u[t]
        if z is not None:
            yt = yt * z[t] * torch.sigmoid(z[t])
        y[t] = yt
    return y, h


def conv_reference(x, w, b, state):
    """y[t,d] = b[d] + Σ_k w[d,k] x[t-(K-1)+k, d]; inputs before t = 0 from state (or zeros)."""
    L, Dm = x.shape
    K = w.shape[1]
    hist = state if state is not None else torch.zeros(K - 1, Dm, dtype=torch.float64)
    full = torch.cat([hist, x], 0)                               # full[s + K-1] = x[s]
    y = torch.zeros(L, Dm, dtype=torch.float64)
    for t in range(L):
        acc = b.clone()
        for k in range(K):
            acc = acc + w[:, k] * full[t + k]
        y[t] = acc
    # An independent check: PyTorch's grouped convolution on the same padded input.
    yt = F.conv1d(full.T[None], w[:, None, :], b, groups=Dm)[0].T
    assert torch.allclose(y, yt, rtol=1e-12, atol=1e-12)
    return y, full[L:].clone()                                   # final state: last K-1 inputs


def scan_case(case, d_model, L, N, seed, gate, bias, skip, h0, big_dt=False):
    g = torch.Generator().manual_seed(seed)
    D = 2 * d_model
    rn = lambda *s: torch.randn(*s, generator=g, dtype=torch.float64)
    ru = lambda *s: torch.rand(*s, generator=g, dtype=torch.float64)
    u = f32(rn(L, D))
    # Mamba's init: A_log = log(1..N) per channel; dt_bias = softplus⁻¹ of Δ in [1e-3, 1e-1].
    A_log = f32(torch.log(torch.arange(1, N + 1, dtype=torch.float64))[None, :].repeat(D, 1)
                + 0.1 * rn(D, N))
    A = -torch.exp(A_log)
    if bias:
        delta0 = torch.exp(ru(D) * (np.log(0.1) - np.log(1e-3)) + np.log(1e-3))
        dt_bias = f32(delta0 + torch.log(-torch.expm1(-delta0)))
        dt = f32(0.5 * rn(L, D))
    else:
        dt_bias = None
        dt = f32(rn(L, D) - 2.0)
    if big_dt:
        dt[L // 2, 3] = 25.0  # past softplus's threshold
    B = f32(rn(L, N))
    C = f32(rn(L, N))
    Dk = f32(rn(D)) if skip else None
    z = f32(rn(L, D)) if gate else None
    h = f32(0.5 * rn(D, N)) if h0 else torch.zeros(D, N, dtype=torch.float64)
    y, hT = scan_reference(u, dt, A, B, C, Dk, dt_bias, z, h)
    for name, t in [("u", u), ("dt", dt), ("A_log", A_log), ("B", B), ("C", C), ("D", Dk),
                    ("dt_bias", dt_bias), ("z", z), ("h0", h), ("y", y), ("h", hT)]:
        if t is not None:
            save(case, name, t)


def conv_case(case, d_model, L, K, seed, with_state):
    g = torch.Generator().manual_seed(seed)
    D = 2 * d_model
    rn = lambda *s: torch.randn(*s, generator=g, dtype=torch.float64)
    x = f32(rn(L, D))
    w = f32(0.5 * rn(D, K))
    b = f32(rn(D))
    s0 = f32(rn(K - 1, D)) if with_state else None
    y, sT = conv_reference(x, w, b, s0)
    for name, t in [("x", x), ("w", w), ("b", b), ("state0", s0), ("y", y)]:
        if t is not None:
            save(case, name, t)
    if with_state:
        save(case, "state", sT)


if __name__ == "__main__":
    os.makedirs(OUT, exist_ok=True)
    # d_model 64: D = 128, every option on, a non-zero initial state.
    scan_case("scan_a", 64, 64, 16, 1, gate=True, bias=True, skip=True, h0=True)
    # d_model 98: D = 196 (not a multiple of 8), odd L, no gate / dt_bias, one dt past 20.
    scan_case("scan_b", 98, 33, 16, 2, gate=False, bias=False, skip=True, h0=False, big_dt=True)
    conv_case("conv_a", 64, 64, 4, 3, with_state=True)
    conv_case("conv_b", 98, 33, 4, 4, with_state=False)
