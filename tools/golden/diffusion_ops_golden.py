#!/usr/bin/env python3
"""Golden data for tessel's diffusion ops (tests/test_conv2d.cpp, tests/test_diffusion_ops.cpp).

The oracle is PyTorch: torch.nn.functional.conv2d / group_norm / interpolate / avg_pool2d on
random float32 inputs, and the sinusoidal timestep embedding of Hugging Face diffusers
(`get_timestep_embedding`, written out here in torch: exponent = -ln(max_period) * i /
(half - downscale_freq_shift), emb = scale * t * exp(exponent), [sin, cos], flipped to
[cos, sin] when flip_sin_to_cos, zero-padded when dim is odd).

Run with Debian's PyTorch:  /usr/bin/python3 tools/golden/diffusion_ops_golden.py
Writes tests/data/diffusion/{conv2d,ops}.npz (float32, uncompressed: tessel reads stored zips).
"""
import math
import os

import numpy as np
import torch
import torch.nn.functional as F

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "tests", "data",
                   "diffusion")
torch.manual_seed(0)


def rnd(*shape):
    return torch.randn(*shape, dtype=torch.float32)


def conv_cases():
    # name: (N, C, H, W, K, R, S, stride, padding, dilation, groups, bias)
    cases = {
        "s1p1": (2, 3, 9, 11, 4, 3, 3, 1, 1, 1, 1, True),
        "s2p0": (1, 3, 10, 13, 5, 3, 3, 2, 0, 1, 1, False),
        "k7p3": (1, 2, 12, 12, 5, 7, 7, 1, 3, 1, 1, True),
        "dil2": (1, 4, 11, 9, 6, 3, 3, 1, 2, 2, 1, True),
        "grp2": (2, 4, 9, 8, 6, 3, 3, 2, 1, 1, 2, True),
        "dw": (1, 6, 10, 9, 6, 3, 3, 1, 1, 1, 6, True),
        "dws2": (1, 6, 10, 9, 6, 5, 5, 2, 2, 1, 6, False),
        "dwx2": (1, 3, 8, 7, 6, 3, 3, 1, 1, 1, 3, True),
        "k1": (2, 8, 6, 5, 5, 1, 1, 1, 0, 1, 1, True),
        "k1s2": (1, 8, 7, 6, 3, 1, 1, 2, 0, 1, 1, False),
        "p3s2": (1, 3, 8, 9, 4, 3, 3, 2, 3, 1, 1, True),
    }
    out = {}
    for name, (N, C, H, W, K, R, S, st, pad, dil, g, has_b) in cases.items():
        x, w = rnd(N, C, H, W), rnd(K, C // g, R, S) / math.sqrt(C // g * R * S)
        b = rnd(K) if has_b else None
        y = F.conv2d(x.double(), w.double(), None if b is None else b.double(), stride=st,
                     padding=pad, dilation=dil, groups=g)
        out[f"{name}_x"], out[f"{name}_w"], out[f"{name}_y"] = x, w, y.float()
        if b is not None:
            out[f"{name}_b"] = b
    return out


def timestep_embedding(t, dim, flip_sin_to_cos, downscale_freq_shift, scale=1.0,
                       max_period=10000):
    half = dim // 2
    exponent = -math.log(max_period) * torch.arange(half, dtype=torch.float64)
    exponent = exponent / (half - downscale_freq_shift)
    emb = t.double()[:, None] * torch.exp(exponent)[None, :] * scale
    emb = torch.cat([torch.sin(emb), torch.cos(emb)], dim=-1)
    if flip_sin_to_cos:
        emb = torch.cat([emb[:, half:], emb[:, :half]], dim=-1)
    if dim % 2 == 1:
        emb = F.pad(emb, (0, 1))
    return emb.float()


def op_cases():
    out = {}
    for name, shape, groups, eps in [("gn_a", (2, 6, 5, 7), 3, 1e-5),
                                     ("gn_b", (1, 32, 8, 8), 32, 1e-6),
                                     ("gn_c", (2, 8, 10), 4, 1e-5),
                                     ("gn_d", (1, 12, 9, 9), 1, 1e-5)]:
        C = shape[1]
        x, w, b = rnd(*shape) * 3 + 1, rnd(C), rnd(C)
        out[f"{name}_x"], out[f"{name}_w"], out[f"{name}_b"] = x, w, b
        out[f"{name}_y"] = F.group_norm(x.double(), groups, w.double(), b.double(), eps).float()
    x = rnd(2, 3, 5, 4)
    out["up_x"], out["up_y"] = x, F.interpolate(x, scale_factor=2, mode="nearest")
    x = rnd(2, 3, 7, 6)
    out["pool_x"], out["pool_y"] = x, F.avg_pool2d(x, 2)
    t = torch.tensor([0.0, 1.0, 10.5, 999.0, 261.0])
    out["temb_t"] = t
    out["temb_a"] = timestep_embedding(t, 32, True, 0)    # Stable Diffusion's UNet
    out["temb_b"] = timestep_embedding(t, 7, False, 1)    # diffusers' defaults, odd dim
    return out


def main():
    os.makedirs(OUT, exist_ok=True)
    np.savez(os.path.join(OUT, "conv2d.npz"), **{k: v.numpy() for k, v in conv_cases().items()})
    np.savez(os.path.join(OUT, "ops.npz"), **{k: v.numpy() for k, v in op_cases().items()})


if __name__ == "__main__":
    main()
