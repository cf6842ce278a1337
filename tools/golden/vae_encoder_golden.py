#!/usr/bin/env python3
"""Golden data for tessel's AutoencoderKL encoder (tests/test_vae.cpp).

The oracle is plain PyTorch: AutoencoderKL's Encoder as Hugging Face diffusers lays it out
(conv_in; DownEncoderBlock2D levels of ResnetBlock2D with a Downsample2D that pads (0, 1, 0, 1)
and convolves with stride 2 and no padding, except at the last level; UNetMidBlock2D with one
single-head attention; GroupNorm, SiLU, conv_out to 2 * latent_channels; then quant_conv, 1x1)
and DiagonalGaussianDistribution (mean, logvar = chunk(moments, 2); logvar clamped to
[-30, 20]), written here from the published architecture, with diffusers' parameter names. The
decoder and the blocks are the ones of unet_golden.py.

Weights are random (a small config), norms perturbed away from 1 / 0; outputs computed in
float64 from the float32 weights and stored as float32.

Run with Debian's PyTorch:  /usr/bin/python3 tools/golden/vae_encoder_golden.py
Writes tests/data/diffusion/vae_kl_small.safetensors (encoder + decoder, today's names),
vae_kl_small_decoder_legacy.safetensors (the decoder's weights alone, with diffusers < 0.14's
attention names query / key / value / proj_attn), vae_kl_small.json and vae_kl_small_io.npz.
"""
import json
import os
import sys

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from unet_golden import (OUT, Block, Decoder, ResnetBlock2D, VAEAttention, f32,  # noqa: E402
                         randomize_norms, state, write_safetensors)


class EncoderDownsample2D(nn.Module):  # Downsample2D(padding=0): asymmetric pad, then conv
    def __init__(self, c):
        super().__init__()
        self.conv = nn.Conv2d(c, c, 3, stride=2, padding=0)

    def forward(self, x):
        return self.conv(F.pad(x, (0, 1, 0, 1), mode="constant", value=0))


class Encoder(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        ch, L, g = cfg["block_out_channels"], cfg["layers_per_block"], cfg["norm_num_groups"]
        self.conv_in = nn.Conv2d(cfg["in_channels"], ch[0], 3, padding=1)
        self.down_blocks = nn.ModuleList()
        out = ch[0]
        for i, c in enumerate(ch):
            prev, out = out, c
            b = Block()
            b.resnets = nn.ModuleList([ResnetBlock2D(prev if j == 0 else out, out, 0, g, 1e-6)
                                       for j in range(L)])
            if i + 1 < len(ch):
                b.downsamplers = nn.ModuleList([EncoderDownsample2D(out)])
            self.down_blocks.append(b)
        self.mid_block = Block()
        self.mid_block.resnets = nn.ModuleList([ResnetBlock2D(ch[-1], ch[-1], 0, g, 1e-6)
                                                for _ in range(2)])
        self.mid_block.attentions = nn.ModuleList([VAEAttention(ch[-1], g)])
        self.conv_norm_out = nn.GroupNorm(g, ch[-1], eps=1e-6)
        self.conv_out = nn.Conv2d(ch[-1], 2 * cfg["latent_channels"], 3, padding=1)

    def forward(self, x):
        h = self.conv_in(x)
        for b in self.down_blocks:
            for r in b.resnets:
                h = r(h)
            if hasattr(b, "downsamplers"):
                h = b.downsamplers[0](h)
        h = self.mid_block.resnets[1](self.mid_block.attentions[0](self.mid_block.resnets[0](h)))
        return self.conv_out(F.silu(self.conv_norm_out(h)))


class AutoencoderKL(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        lc = cfg["latent_channels"]
        self.encoder = Encoder(cfg)
        self.quant_conv = nn.Conv2d(2 * lc, 2 * lc, 1)
        self.decoder = Decoder(cfg)
        self.post_quant_conv = nn.Conv2d(lc, lc, 1)

    def encode(self, x):  # DiagonalGaussianDistribution's mean and (clamped) logvar
        mean, logvar = torch.chunk(self.quant_conv(self.encoder(x)), 2, dim=1)
        return mean, torch.clamp(logvar, -30.0, 20.0)

    def decode(self, z):
        return self.decoder(self.post_quant_conv(z))


def legacy_names(weights):  # diffusers < 0.14's AttentionBlock names
    out = {}
    for k, v in weights.items():
        for new, old in ((".to_q.", ".query."), (".to_k.", ".key."), (".to_v.", ".value."),
                         (".to_out.0.", ".proj_attn.")):
            k = k.replace(new, old)
        out[k] = v
    return out


def main():
    torch.manual_seed(1)
    cfg = {"in_channels": 3, "out_channels": 3, "latent_channels": 4,
           "block_out_channels": [8, 16], "layers_per_block": 2, "norm_num_groups": 4,
           "scaling_factor": 0.18215}
    vae = AutoencoderKL(cfg)
    randomize_norms(vae)
    weights = state(vae)
    write_safetensors(os.path.join(OUT, "vae_kl_small.safetensors"), weights)
    decoder_only = {k: v for k, v in weights.items()
                    if k.startswith("decoder.") or k.startswith("post_quant_conv.")}
    write_safetensors(os.path.join(OUT, "vae_kl_small_decoder_legacy.safetensors"),
                      legacy_names(decoder_only))
    with open(os.path.join(OUT, "vae_kl_small.json"), "w") as f:
        json.dump(cfg, f, indent=1)

    x = torch.rand(2, 3, 8, 8) * 2 - 1      # images in [-1, 1] -> latents [2, 4, 4, 4]
    x_odd = torch.rand(1, 3, 7, 5) * 2 - 1  # odd sizes: the asymmetric padding shows
    with torch.no_grad():
        vae.double()
        mean, logvar = vae.encode(x.double())
        mean_odd, logvar_odd = vae.encode(x_odd.double())
        y = vae.decode(mean)                 # decode(encode(x).mode()), unscaled
    io = {"x": x, "mean": mean, "logvar": logvar, "x_odd": x_odd, "mean_odd": mean_odd,
          "logvar_odd": logvar_odd, "y": y}
    np.savez(os.path.join(OUT, "vae_kl_small_io.npz"), **dict(zip(io, f32(*io.values()))))


if __name__ == "__main__":
    main()
