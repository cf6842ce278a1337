#!/usr/bin/env bash
# Compile time of a translation unit that includes single_include/tessel.hpp and evaluates
# one expression and one matmul, at -O2 (the issue's budget: <= 5 s). Prints the median of
# N runs of wall and CPU (user + sys) seconds.
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-3}
CXX=${CXX:-g++}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cat > "$tmp/tu.cpp" <<'CPP'
#include "tessel.hpp"
using namespace tessel;
int main() {
  Tensor<float, Shape<dyn, 256>> a(64), b(64), c(64);
  Tensor<float, Shape<256>> bias;
  eval(c, silu(a) * b + bias);
  Tensor<f16, Shape<128, 256>> w;
  auto y = matmul(c, w.transpose());
  return static_cast<int>(y(0, 0));
}
CPP
walls=()
cpus=()
for _ in $(seq "$N"); do
  /usr/bin/time -f "%e %U %S" -o "$tmp/t" "$CXX" -std=c++20 -O2 -march=x86-64-v3 \
    -I single_include -I /usr/include/eigen3 -c "$tmp/tu.cpp" -o "$tmp/tu.o"
  read -r w u s < "$tmp/t"
  walls+=("$w")
  cpus+=("$(echo "$u + $s" | bc)")
done
med() { printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
echo "compile time of one expression + one matmul over single_include/tessel.hpp ($CXX -O2):"
echo "  wall $(med "${walls[@]}") s, cpu $(med "${cpus[@]}") s (median of $N)"
