// libFuzzer: Llama2cFile on arbitrary bytes must parse in bounds or throw tessel::error.
// clang -Wpedantic flags the compound literal inside the _cvtss_sh macro (core/numeric.hpp).
#pragma clang diagnostic ignored "-Wc99-extensions"
#include <tessel/io/llama2c.hpp>

namespace {
volatile float sink;
}

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  try {
    const auto f = tessel::io::Llama2cFile::from_bytes(
        std::span(reinterpret_cast<const std::byte*>(data), size), "fuzz");
    for (const auto& t : f.tensors()) {
      const auto s = t.span();
      if (!s.empty()) sink = sink + s.front() + s.back();
    }
  } catch (const tessel::error&) {
  }
  return 0;
}
