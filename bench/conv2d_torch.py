#!/usr/bin/env python3
"""PyTorch (CPU, f32, oneDNN) GFLOP/s of the 3x3 convolutions of bench/conv2d.cpp: stride 1,
padding 1, C_in = C_out, at the Stable Diffusion shapes 64x64x320, 32x32x640, 16x16x1280, batch
1 and 2, on 1 and 2 threads (torch.set_num_threads). FLOP = 2 * N * C * C * 9 * H * W, as in
the C++ benchmark. Prints the median over --reps runs of --iters calls each (wall time), and
GFLOP per CPU-second (process time) to show per-core efficiency on a busy machine.

    /usr/bin/python3 bench/conv2d_torch.py [--reps 5] [--iters 5] [--threads 1 2]

bench/diffusion_compare.py runs this next to tessel-bench and prints both side by side.
"""
import argparse
import statistics
import time

import torch
import torch.nn.functional as F

SHAPES = [(320, 64), (640, 32), (1280, 16)]


def rate(n, c, hw, threads, reps, iters):
    torch.set_num_threads(threads)
    g = torch.Generator().manual_seed(1)
    x = torch.rand(n, c, hw, hw, generator=g) * 2 - 1
    w = (torch.rand(c, c, 3, 3, generator=g) * 2 - 1) * 0.05
    b = torch.rand(c, generator=g) * 2 - 1
    flop = 2.0 * n * c * c * 9 * hw * hw
    walls, cpus = [], []
    with torch.no_grad():
        F.conv2d(x, w, b, padding=1)  # warm-up (oneDNN primitive creation)
        for _ in range(reps):
            t0, c0 = time.perf_counter(), time.process_time()
            for _ in range(iters):
                F.conv2d(x, w, b, padding=1)
            walls.append((time.perf_counter() - t0) / iters)
            cpus.append((time.process_time() - c0) / iters)
    return flop / statistics.median(walls) / 1e9, flop / statistics.median(cpus) / 1e9


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--iters", type=int, default=5)
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    a = ap.parse_args()
    print(f"torch {torch.__version__}, mkldnn {torch.backends.mkldnn.is_available()}")
    for threads in a.threads:
        for n in (1, 2):
            for c, hw in SHAPES:
                gf, gfc = rate(n, c, hw, threads, a.reps, a.iters)
                print(f"conv3x3 {hw}x{hw}x{c} batch {n} threads {threads}: {gf:6.1f} GFLOP/s "
                      f"({gfc:6.1f} GFLOP/CPU-s)")


if __name__ == "__main__":
    main()
