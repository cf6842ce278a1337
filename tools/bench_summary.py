#!/usr/bin/env python3
"""Run a short subset of tessel-bench and print one table, each figure read against the
roofline (FMA peak, read bandwidth) measured in the same run.

usage: bench_summary.py PATH/TO/tessel-bench [--filter REGEX] [--min-time SECONDS]
"""
import argparse
import json
import re
import subprocess
import sys

DEFAULT_FILTER = (
    r"BM_peak_|BM_expr_silu_mul_add|"
    r"BM_sgemm_(tessel_avx2|tessel_avx512|eigen|openblas)/n:(1024|2048)/|"
    r"BM_linear_(tessel_avx2|tessel_avx512|eigen|openblas)/M:(1|512)/N:4096/K:4096/|"
    r"BM_gemv_tessel_avx2_f16/M:1/N:4096/|"
    r"BM_qgemv<(q4_0|q8_0|q4_k|q6_k)>/4096/4096/|stories260K_decode"
)


def threads_of(b):
    """Thread count of a benchmark run, from its name (threads:N, or qgemv's third argument)."""
    name = b["name"]
    m = re.search(r"threads:(\d+)", name)
    if m:
        return int(m.group(1))
    m = re.match(r"BM_q(gemv|gemm)<[^>]*>/\d+/\d+/(\d+)", name)
    if m:
        return int(m.group(2))
    return 1


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("bench")
    ap.add_argument("--filter", default=DEFAULT_FILTER)
    ap.add_argument("--min-time", default="0.1")
    args = ap.parse_args()
    cmd = [args.bench, f"--benchmark_filter={args.filter}",
           f"--benchmark_min_time={args.min_time}", "--benchmark_format=json"]
    res = subprocess.run(cmd, capture_output=True, text=True)
    if res.returncode != 0:
        sys.stderr.write(res.stderr)
        return res.returncode
    data = json.loads(res.stdout)
    rows = [b for b in data["benchmarks"] if b.get("run_type", "iteration") == "iteration"]
    peak_avx2 = {}
    peak_wide = {}
    peak_bw = {}
    for b in rows:
        thr = threads_of(b)
        if b["name"].startswith("BM_peak_fma_avx2") and "FLOPS" in b:
            peak_avx2[thr] = b["FLOPS"]
        elif b["name"].startswith("BM_peak_fma") and "FLOPS" in b:
            peak_wide[thr] = b["FLOPS"]
        if b["name"].startswith("BM_peak_read_bw") and "bytes_per_second" in b:
            peak_bw[thr] = b["bytes_per_second"]
    print(f"{'benchmark':70} {'time':>12} {'GFLOP/s':>9} {'%FMA':>6} {'GB/s':>8} {'%BW':>6}")
    for b in rows:
        thr = threads_of(b)
        # tessel's AVX2 kernels are read against the AVX2 peak, everything else (AVX-512
        # variants, Eigen and OpenBLAS built for this machine) against the widest one.
        peak_flops = peak_avx2 if ("avx2" in b["name"] or "tessel" not in b["name"]
                                   and not peak_wide) else peak_wide
        if "tessel" in b["name"] and "avx512" not in b["name"]:
            peak_flops = peak_avx2
        t = f"{b['real_time']:.3g} {b['time_unit']}"
        gf = b.get("FLOPS")
        bw = b.get("bytes_per_second")
        pf = peak_flops.get(thr)
        pb = peak_bw.get(thr)
        cols = [
            f"{gf / 1e9:9.1f}" if gf else " " * 9,
            f"{100 * gf / pf:5.0f}%" if gf and pf and not b["name"].startswith("BM_peak") else " " * 6,
            f"{bw / 1e9:8.1f}" if bw else " " * 8,
            f"{100 * bw / pb:5.0f}%" if bw and pb and not b["name"].startswith("BM_peak") else " " * 6,
        ]
        print(f"{b['name'][:70]:70} {t:>12} {' '.join(cols)}")
    print("\n%FMA: share of the FMA peak measured above at the same thread count (AVX2 peak for "
          "tessel's AVX2 kernels, the widest vectors for the rest); %BW: share of the read "
          "bandwidth measured above at the same thread count.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
