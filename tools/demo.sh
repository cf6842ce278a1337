#!/usr/bin/env bash
# `make demo`: run the examples, then a short kernel benchmark summary.
set -euo pipefail
BUILD=${1:-build}
cd "$(dirname "$0")/.."
for ex in examples/*.cpp; do
  name=$(basename "$ex" .cpp)
  case "$name" in
    tessel-*) continue ;;  # command-line tools, run below with arguments
  esac
  echo "=== example: $name"
  "$BUILD/bin/$name"
  echo
done
if [ -x "$BUILD/bin/tessel-inspect" ] && [ -f ../shared/models/stories260K/gguf/stories260K-Q8_0-mixed.gguf ]; then
  echo "=== tessel-inspect ../shared/models/stories260K/gguf/stories260K-Q8_0-mixed.gguf (first lines)"
  "$BUILD/bin/tessel-inspect" ../shared/models/stories260K/gguf/stories260K-Q8_0-mixed.gguf | head -25
  echo
fi
echo "=== kernel benchmark summary (short runs; 'make bench' for the full set)"
python3 tools/bench_summary.py "$BUILD/bin/tessel-bench"
