// libFuzzer: .npy and .npz readers on arbitrary bytes must parse in bounds or throw
// tessel::error.
// clang -Wpedantic flags the compound literal inside the _cvtss_sh macro (core/numeric.hpp).
#pragma clang diagnostic ignored "-Wc99-extensions"
#include <tessel/io/formats/npy.hpp>

namespace {
volatile unsigned sink;
}

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::span bytes(reinterpret_cast<const std::byte*>(data), size);
  try {
    const auto f = tessel::io::NpyFile::from_bytes(bytes, "fuzz");
    const auto& a = f.array();
    if (a.descr == "|u1" && a.shape.size() == 2 && a.n_elements() > 0)
      sink = sink + a.to_tensor<std::uint8_t, 2>().data()[0];
  } catch (const tessel::error&) {
  }
  try {
    const auto z = tessel::io::NpzFile::from_bytes(bytes, "fuzz");
    for (const auto& [k, a] : z.arrays()) sink = sink + unsigned(a.data.size());
  } catch (const tessel::error&) {
  }
  return 0;
}
