#!/usr/bin/env bash
# Compile time of a translation unit that evaluates one expression and one matmul, at -O2, over
# the core header and over the single header (the budgets: <= 2 s and <= 5 s). Both headers are
# amalgamated from the current include/ first (tools/amalgamate.py), so the figures are those of
# the sources, whether or not single_include/ was regenerated. Prints the median of N runs of
# wall, CPU (user + sys) and user seconds. Other work on the machine inflates wall time: compare CPU,
# or run it under `nice -n -5`. Then builds examples/tessel-generate as CMake's Release build of
# the examples does (-O3 -march=native, the whole library) and prints its compile time (one run)
# and the size of the binary; TESSEL_CT_GENERATE=0 skips it.
#
#   bench/compile_time.sh [N]     N runs per header (default 3)
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-3}
CXX=${CXX:-g++}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
python3 tools/amalgamate.py --output "$tmp/tessel.hpp"
python3 tools/amalgamate.py --core --output "$tmp/tessel_core.hpp"
body='using namespace tessel;
int main() {
  Tensor<float, Shape<dyn, 256>> a(64), b(64), c(64);
  Tensor<float, Shape<256>> bias;
  eval(c, silu(a) * b + bias);
  Tensor<f16, Shape<128, 256>> w;
  auto y = matmul(c, w.transpose());
  return static_cast<int>(y(0, 0));
}'
med() { printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
for header in tessel_core.hpp tessel.hpp; do
  printf '#include "%s"\n%s\n' "$header" "$body" > "$tmp/tu.cpp"
  walls=()
  cpus=()
  users=()
  for _ in $(seq "$N"); do
    /usr/bin/time -f "%e %U %S" -o "$tmp/t" "$CXX" -std=c++20 -O2 -march=x86-64-v3 \
      -I "$tmp" -I /usr/include/eigen3 -c "$tmp/tu.cpp" -o "$tmp/tu.o"
    read -r w u s < "$tmp/t"
    walls+=("$w")
    users+=("$u")
    cpus+=("$(echo "$u + $s" | bc)")
  done
  echo "one expression + one matmul over single_include/$header ($CXX -O2):"
  echo "  wall $(med "${walls[@]}") s, cpu $(med "${cpus[@]}") s, user $(med "${users[@]}") s" \
    "(medians of $N)"
done
if [ "${TESSEL_CT_GENERATE:-1}" != 0 ]; then
  /usr/bin/time -f "%e %U %S" -o "$tmp/t" "$CXX" -std=c++20 -O3 -DNDEBUG -march=native \
    -mtune=native -I include -I /usr/include/eigen3 examples/tessel-generate.cpp -pthread \
    -o "$tmp/tessel-generate"
  read -r w u s < "$tmp/t"
  echo "examples/tessel-generate.cpp ($CXX -O3 -march=native, compile and link, one run):"
  echo "  wall $w s, cpu $(echo "$u + $s" | bc) s, user $u s; binary $(stat -c %s "$tmp/tessel-generate") bytes" \
    "($(size -A "$tmp/tessel-generate" | awk '$1 == ".text" {print $2}') bytes of .text)"
fi
