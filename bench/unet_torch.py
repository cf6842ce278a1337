#!/usr/bin/env python3
"""PyTorch (CPU, f32) time of one U-Net step for the configs of bench/unet.cpp: batch 1, 32x32
latents, a 77-token context, random weights, 1 and 2 threads. The U-Net is the diffusers-layout
module of tools/golden/unet_golden.py (the oracle of tessel's tests), so both sides run the same
network. Prints the median of a few timed steps after one warm-up step.

    /usr/bin/python3 bench/unet_torch.py [--config small|sd15|both] [--iters 3] [--threads 1 2]

bench/diffusion_compare.py runs this next to tessel-bench and prints both side by side.
"""
import argparse
import os
import statistics
import sys
import time

import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tools",
                                "golden"))
from unet_golden import UNet  # noqa: E402

SMALL = {"in_channels": 4, "out_channels": 4, "block_out_channels": [8, 16],
         "layers_per_block": 1, "down_block_types": ["CrossAttnDownBlock2D", "DownBlock2D"],
         "attention_head_dim": 2, "cross_attention_dim": 12, "norm_num_groups": 4}
SD15 = {"in_channels": 4, "out_channels": 4, "block_out_channels": [320, 640, 1280, 1280],
        "layers_per_block": 2,
        "down_block_types": ["CrossAttnDownBlock2D"] * 3 + ["DownBlock2D"],
        "attention_head_dim": 8, "cross_attention_dim": 768, "norm_num_groups": 32}


def step_times(cfg, threads, iters):
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    with torch.no_grad():
        unet = UNet(cfg).eval()
        x = torch.randn(1, 4, 32, 32)
        t = torch.tensor([500.0])
        ctx = torch.randn(1, 77, cfg["cross_attention_dim"])
        unet(x, t, ctx)  # warm-up
        times = []
        for _ in range(iters):
            t0 = time.perf_counter()
            unet(x, t, ctx)
            times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--config", default="both", choices=["small", "sd15", "both"])
    ap.add_argument("--iters", type=int, default=3)
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    a = ap.parse_args()
    cfgs = {"small": SMALL, "sd15": SD15}
    names = ["small", "sd15"] if a.config == "both" else [a.config]
    print(f"torch {torch.__version__}")
    for name in names:
        for threads in a.threads:
            s = step_times(cfgs[name], threads, a.iters)
            print(f"{name:6s} threads {threads}: {1e3 * s:9.1f} ms / step (median of {a.iters})")


if __name__ == "__main__":
    main()
