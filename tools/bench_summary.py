#!/usr/bin/env python3
"""Run a short subset of tessel-bench and print one table, each figure read against the
roofline (FMA peak, read bandwidth) measured in the same run.

usage: bench_summary.py PATH/TO/tessel-bench [--filter REGEX] [--min-time SECONDS]
"""
import argparse
import json
import subprocess
import sys

DEFAULT_FILTER = (
    r"BM_peak_.*|BM_expr_silu_mul_add.*|BM_sgemm_square.*/(1024|2048)/.*|"
    r"BM_sgemm_llm.*|BM_gemv.*|BM_qgemv.*4096x4096.*"
)


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
    peak_flops = {}
    peak_bw = {}
    for b in rows:
        thr = b.get("threads_used", b.get("threads", 1))
        if b["name"].startswith("BM_peak_fma") and "FLOPS" in b:
            peak_flops[int(thr)] = b["FLOPS"]
        if b["name"].startswith("BM_peak_read_bw") and "bytes_per_second" in b:
            peak_bw[int(thr)] = b["bytes_per_second"]
    print(f"{'benchmark':58} {'time':>12} {'GFLOP/s':>9} {'%FMA':>6} {'GB/s':>8} {'%BW':>6}")
    for b in rows:
        thr = int(b.get("threads_used", b.get("threads", 1)))
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
        print(f"{b['name'][:58]:58} {t:>12} {' '.join(cols)}")
    print("\n%FMA / %BW: share of the FMA peak / read bandwidth measured above at the same "
          "thread count (the 'threads_used' counter of each benchmark).")
    return 0


if __name__ == "__main__":
    sys.exit(main())
