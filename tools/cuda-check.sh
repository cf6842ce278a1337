#!/usr/bin/env bash
# Compiles the CUDA backend and its tests with nvcc (no GPU needed to compile). Where a GPU
# is present, also runs the tests.
set -euo pipefail
cd "$(dirname "$0")/.."
NVCC=${NVCC:-/usr/local/cuda/bin/nvcc}
out=build-cuda
mkdir -p "$out"
shopt -s nullglob
for src in tests/cuda/*.cu; do
  name=$(basename "$src" .cu)
  echo "nvcc $src"
  "$NVCC" -std=c++20 -O2 -arch=native -I include -I /usr/include/eigen3 \
    --expt-relaxed-constexpr -Xcompiler -Wall,-Wextra "$src" -o "$out/$name" 2>/dev/null ||
  "$NVCC" -std=c++20 -O2 -I include -I /usr/include/eigen3 --expt-relaxed-constexpr \
    -Xcompiler -Wall,-Wextra "$src" -o "$out/$name"
  if command -v nvidia-smi >/dev/null && nvidia-smi -L >/dev/null 2>&1; then
    "$out/$name" || [ $? -eq 77 ]  # 77: skipped (no usable device)
  fi
done
