#!/usr/bin/env bash
# Builds every fuzz/fuzz_<name>.cpp with clang + libFuzzer + ASan + UBSan and runs each for
# a bounded time (seconds, first argument) over a scratch copy of its seed corpus
# fuzz/corpus/<name>/. Any crash, leak or sanitizer report fails the run.
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-60}
tools/install-deps.sh clang libclang-rt-14-dev >/dev/null
cmake -S . -B build-fuzz -DCMAKE_CXX_COMPILER=clang++ -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DTESSEL_BUILD_FUZZ=ON -DTESSEL_BUILD_TESTS=OFF -DTESSEL_BUILD_EXAMPLES=OFF \
  -DTESSEL_BUILD_BENCH=OFF >/dev/null
cmake --build build-fuzz -j"$(nproc)"
for src in fuzz/fuzz_*.cpp; do
  name=$(basename "$src" .cpp)
  short=${name#fuzz_}
  work=$(mktemp -d)
  [ -d "fuzz/corpus/$short" ] && cp -r "fuzz/corpus/$short/." "$work/"
  echo "--- $name for ${secs}s (seeds: $(ls "$work" | wc -l))"
  status=0
  build-fuzz/bin/"$name" -max_total_time="$secs" -print_final_stats=1 -rss_limit_mb=2048 \
    -artifact_prefix="build-fuzz/$name-" "$work" > "build-fuzz/$name.log" 2>&1 || status=$?
  grep -E "stat::number_of_executed_units|ERROR|SUMMARY" "build-fuzz/$name.log" || true
  rm -rf "$work"
  if [ "$status" -ne 0 ]; then
    tail -40 "build-fuzz/$name.log" >&2
    echo "$name found a failure (exit $status); artifacts in build-fuzz/" >&2
    exit 1
  fi
done
