#!/usr/bin/env python3
"""tessel against PyTorch (CPU) in one run: 3x3 conv2d GFLOP/s at the Stable Diffusion
shapes and the U-Net step time, on 1 and 2 threads. Runs tessel-bench (bench/conv2d.cpp,
bench/unet.cpp) and the PyTorch scripts (bench/conv2d_torch.py, bench/unet_torch.py) in turn,
--rounds times (alternating, so both see the same machine load), and prints the median of each
figure side by side with its spread. Needs Debian's python3-torch (/usr/bin/python3).

    /usr/bin/python3 bench/diffusion_compare.py --bench build/bin/tessel-bench [--rounds 3]
        [--skip-conv] [--skip-unet] [--sd-only]
"""
import argparse
import json
import os
import re
import statistics
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))


def tessel(bench, flt, extra=()):
    out = subprocess.run([bench, f"--benchmark_filter={flt}", "--benchmark_format=json",
                          *extra], check=True, capture_output=True, text=True).stdout
    return json.loads(out)["benchmarks"]


def torch_script(name, *args):
    out = subprocess.run([sys.executable, os.path.join(HERE, name), *args], check=True,
                         capture_output=True, text=True).stdout
    return out.splitlines()


def med(xs):
    return f"{statistics.median(xs):7.1f} ({min(xs):.0f}-{max(xs):.0f})" if xs else "-"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bench", default=os.path.join(HERE, "..", "build", "bin", "tessel-bench"))
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--skip-conv", action="store_true")
    ap.add_argument("--skip-unet", action="store_true")
    ap.add_argument("--sd-only", action="store_true", help="U-Net: only the SD-1.5 shape")
    a = ap.parse_args()
    conv = {}  # (who, hw, c, batch, threads) -> [GFLOP/s]
    unet = {}  # (who, config, threads) -> [ms]
    for r in range(a.rounds):
        print(f"round {r + 1}/{a.rounds}", file=sys.stderr)
        if not a.skip_conv:
            for b in tessel(a.bench, "conv2d_3x3"):
                m = re.search(r"BM_conv2d_3x3_(\w+?)/batch:(\d+)/C:(\d+)/HW:(\d+)/threads:(\d+)",
                              b["name"])
                who, n, c, hw, t = m.group(1), *map(int, m.groups()[1:])
                conv.setdefault((who, hw, c, n, t), []).append(b["FLOPS"] / 1e9)
                conv.setdefault(("peak", hw, c, n, t), []).append(b["peak_GFLOPS"])
            for line in torch_script("conv2d_torch.py", "--reps", "3", "--iters", "3"):
                m = re.match(r"conv3x3 (\d+)x\d+x(\d+) batch (\d+) threads (\d+):\s+([\d.]+)", line)
                if m:
                    hw, c, n, t = map(int, m.groups()[:4])
                    conv.setdefault(("pytorch", hw, c, n, t), []).append(float(m.group(5)))
        if not a.skip_unet:
            flt = "unet_step.*sd15:1" if a.sd_only else "unet_step"
            for b in tessel(a.bench, flt):
                m = re.search(r"BM_unet_step(_f16)?/sd15:(\d)/threads:(\d)", b["name"])
                who = "tessel f16" if m.group(1) else "tessel f32"
                cfg = "sd15" if m.group(2) == "1" else "small"
                unet.setdefault((who, cfg, int(m.group(3))), []).append(b["real_time"])
            cfgs = ["sd15"] if a.sd_only else ["small", "sd15"]
            for cfg in cfgs:
                for line in torch_script("unet_torch.py", "--config", cfg, "--iters", "3"):
                    m = re.match(r"(\w+)\s+threads (\d+):\s+([\d.]+) ms", line)
                    if m:
                        unet.setdefault(("pytorch", m.group(1), int(m.group(2))), []).append(
                            float(m.group(3)))
    if conv:
        print("3x3 conv2d, GFLOP/s: median (min-max) over rounds; % = tessel / FMA peak")
        print(f"{'shape':>12} {'batch':>5} {'thr':>3} | {'tessel':>16} {'%peak':>5} | "
              f"{'Eigen im2col':>16} | {'PyTorch':>16}")
        for t in (1, 2):
            for n in (1, 2):
                for c, hw in ((320, 64), (640, 32), (1280, 16)):
                    k = (hw, c, n, t)
                    ts = conv.get(("tessel",) + k, [])
                    pk = statistics.median(conv.get(("peak",) + k, [0]))
                    pct = 100 * statistics.median(ts) / pk if ts and pk else 0
                    print(f"{f'{hw}x{hw}x{c}':>12} {n:5d} {t:3d} | {med(ts):>16} {pct:5.0f} | "
                          f"{med(conv.get(('eigen_im2col',) + k, [])):>16} | "
                          f"{med(conv.get(('pytorch',) + k, [])):>16}")
    if unet:
        print("U-Net step (batch 1, 32x32 latents), ms: median (min-max) over rounds")
        for cfg in ("small", "sd15"):
            for t in (1, 2):
                row = [med(unet.get((w, cfg, t), [])) for w in
                       ("tessel f32", "tessel f16", "pytorch")]
                if any(x != "-" for x in row):
                    print(f"{cfg:>6} threads {t}: tessel f32 {row[0]}  tessel f16 {row[1]}  "
                          f"PyTorch f32 {row[2]}")


if __name__ == "__main__":
    main()
