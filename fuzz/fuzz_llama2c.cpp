// libFuzzer: Llama2cFile on arbitrary bytes must parse in bounds or throw tessel::error; then the
// same bytes through load_llama_model, which tells the formats apart by their magic (GGUF, other
// formats named in its error, anything else read as llama2.c) and must build a model or throw
// tessel::error, never allocate past what the file holds.
// clang -Wpedantic flags the compound literal inside the _cvtss_sh macro (core/numeric.hpp).
#pragma clang diagnostic ignored "-Wc99-extensions"
// The model headers are written for GCC ([[gnu::noipa]]); clang also flags the defaulted
// constructors of the Mamba states, whose tensors have none (the states are rebuilt anyway).
#pragma clang diagnostic ignored "-Wunknown-attributes"
#pragma clang diagnostic ignored "-Wdefaulted-function-deleted"
#include <tessel/io/formats/llama2c.hpp>
#include <tessel/io/load/load_llama.hpp>

namespace {
volatile float sink;
}

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::span bytes(reinterpret_cast<const std::byte*>(data), size);
  try {
    const auto f = tessel::io::Llama2cFile::from_bytes(bytes, "fuzz");
    for (const auto& t : f.tensors()) {
      const auto s = t.span();
      if (!s.empty()) sink = sink + s.front() + s.back();
    }
  } catch (const tessel::error&) {
  }
  try {
    // A short context: the KV cache is a state's, sized by the run, not by the file.
    const auto m = tessel::io::load_llama_model<tessel::nn::any_weight>(
        tessel::io::MappedFile::from_bytes(bytes, "fuzz"), {.max_seq = 64});
    sink = sink + float(m.vocab());
  } catch (const tessel::error&) {
  }
  return 0;
}
