// libFuzzer: GGUFFile on arbitrary bytes must either parse (and then every value and every
// tensor byte is readable in bounds) or throw tessel::error; a parsed file of a model
// architecture then goes through that architecture's loader, which must build the model or
// throw tessel::error: its checks come before any allocation, so a file whose metadata asks for
// more than its tensors hold never reaches a huge one (libFuzzer's -malloc_limit_mb reports it).
// clang -Wpedantic flags the compound literal inside the _cvtss_sh macro (core/numeric.hpp).
#pragma clang diagnostic ignored "-Wc99-extensions"
// The model headers are written for GCC ([[gnu::noipa]]); clang also flags the defaulted
// constructors of the Mamba states, whose tensors have none (the states are rebuilt anyway).
#pragma clang diagnostic ignored "-Wunknown-attributes"
#pragma clang diagnostic ignored "-Wdefaulted-function-deleted"
#include <tessel/io/formats/gguf.hpp>
#include <tessel/io/load/load_gpt2.hpp>
#include <tessel/io/load/load_llama.hpp>
#include <tessel/io/load/load_mamba.hpp>
#include <tessel/io/load/load_mamba2.hpp>

namespace {
volatile unsigned sink;
void touch(const tessel::io::GGUFFile& g, const tessel::io::GGUFValue& v, std::string_view k) {
  using tessel::io::gguf_type;
  if (v.type() == gguf_type::string)
    sink = sink + unsigned(v.as<std::string_view>(g.path(), k).size());
  if (!v.is_array()) return;
  if (v.elem_type() == gguf_type::string) {
    for (auto s : v.strings(g.path(), k)) sink = sink + (s.empty() ? 0u : unsigned(s.back()));
  } else if (v.elem_type() == gguf_type::array) {
    for (const auto& it : v.items(g.path(), k)) touch(g, it, k);
  } else {
    for (auto b : v.array_bytes()) sink = sink + std::to_integer<unsigned>(b);
  }
}

void load_model(const tessel::io::GGUFFile& g) {
  namespace io = tessel::io;
  namespace models = tessel::models;
  using tessel::nn::any_weight;
  const auto arch = g.get_or<std::string_view>("general.architecture", "");
  if (arch == "llama") {
    // The KV cache is sized by the context: a short one (a state's business, not the file's).
    const auto m =
        io::load_gguf<models::Llama<models::LlamaConfig, any_weight>>(g, {.max_seq = 64});
    sink = sink + unsigned(m.vocab());
  } else if (arch == "gpt2") {
    sink = sink + unsigned(io::load_gpt2<models::GPT2<models::GPT2Config, any_weight>>(g).vocab());
  } else if (arch == "mamba") {
    sink = sink +
           unsigned(io::load_mamba_gguf<models::Mamba<models::MambaConfig, any_weight>>(g).vocab());
  } else if (arch == "mamba2") {
    sink =
        sink +
        unsigned(io::load_mamba2_gguf<models::Mamba2<models::Mamba2Config, any_weight>>(g).vocab());
  }
}
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  try {
    const auto g = tessel::io::GGUFFile::from_bytes(
        std::span(reinterpret_cast<const std::byte*>(data), size), "fuzz");
    for (auto k : g.keys()) touch(g, g.value(k), k);
    for (const auto& t : g.tensors()) {
      const auto b = t.bytes();
      if (!b.empty()) sink = sink + std::to_integer<unsigned>(b.front() ^ b.back());
      if (t.type == tessel::io::ggml_type::F32) (void)t.view<float, 4>();
    }
    load_model(g);
  } catch (const tessel::error&) {
  }
  return 0;
}
