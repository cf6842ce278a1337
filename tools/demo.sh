#!/usr/bin/env bash
# `make demo`: run the examples and tools on the real checkpoints in ../shared/models, then
# a short kernel benchmark summary read against this machine's roofline.
set -euo pipefail
BUILD=${1:-build}
cd "$(dirname "$0")/.."
MODELS=../shared/models
bin=$BUILD/bin
banner() { echo; echo "=== $*"; }

banner "basics: tensors, views, fused expressions, matmul, norms"
"$bin/basics"

if [ -d "$MODELS/stories260K" ]; then
  banner "tessel-generate: stories260K (llama2.c checkpoint), greedy from BOS, 128 tokens"
  "$bin/tessel-generate" --model "$MODELS/stories260K/stories260K.bin" \
    --tokenizer "$MODELS/stories260K/tok512.bin" --prompt "" -n 128 --temp 0 --threads 1
  echo
  banner "tessel-generate: the Q8_0 GGUF written by llama.cpp, sampled (temp 0.8, top-p 0.9, seed 7)"
  "$bin/tessel-generate" --model "$MODELS/stories260K/gguf/stories260K-Q8_0-mixed.gguf" \
    --prompt "Once upon a time" -n 96 --temp 0.8 --top-p 0.9 --seed 7
  echo
  banner "tessel-inspect: the Q8_0 GGUF (first lines)"
  # sed reads to the end: head would close the pipe early and fail it under pipefail
  "$bin/tessel-inspect" "$MODELS/stories260K/gguf/stories260K-Q8_0-mixed.gguf" | sed -n 1,20p
else
  echo "($MODELS/stories260K not found: skipping the language-model demos)"
fi

banner "jamba_hybrid: Mamba mixers and attention interleaved, declared at compile time"
"$bin/jamba_hybrid"

if [ -d "$MODELS/mnist-ddpm" ]; then
  banner "mnist_ddpm: the real mnist-ddpm checkpoint, DDIM and DDPM samples as PNG grids"
  "$bin/mnist_ddpm" --out "$BUILD"
fi

banner "kernel benchmark summary (short runs; 'make bench' runs the full set)"
python3 tools/bench_summary.py "$bin/tessel-bench"
