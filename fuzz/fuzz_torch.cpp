// libFuzzer: TorchFile (zip + pickle) on arbitrary bytes must parse in bounds or throw
// tessel::error; every accepted tensor is copied out element by element through its strides.
// clang -Wpedantic flags the compound literal inside the _cvtss_sh macro (core/numeric.hpp).
#pragma clang diagnostic ignored "-Wc99-extensions"
#include <tessel/io/formats/torch.hpp>

namespace {
volatile unsigned sink;
}

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  try {
    const auto f = tessel::io::TorchFile::from_bytes(
        std::span(reinterpret_cast<const std::byte*>(data), size), "fuzz");
    for (const auto& t : f.tensors()) {
      if (t.dtype != tessel::io::torch_dtype::U8 || t.n_elements() > 4096) continue;
      if (t.shape.size() == 1) sink = sink + t.to_tensor<std::uint8_t, 1>().data()[0];
      if (t.shape.size() == 2 && t.n_elements() > 0)
        sink = sink + t.to_tensor<std::uint8_t, 2>().data()[0];
    }
  } catch (const tessel::error&) {
  }
  return 0;
}
