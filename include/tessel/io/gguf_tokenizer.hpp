#pragma once
// The byte-level BPE tokenizer stored in a GGUF file's tokenizer.ggml.* keys, shared by the
// GPT-2 and Mamba loaders.

#include <optional>
#include <string>
#include <vector>

#include "tessel/io/gguf.hpp"
#include "tessel/io/tokenizer_gpt2.hpp"

namespace tessel::io {

/// The byte-level BPE tokenizer in a GGUF file (tokenizer.ggml.model = gpt2: GPT-NeoX's for
/// Mamba, GPT-2's): tokens, merges, BOS / EOS ids.
inline Gpt2Tokenizer load_gguf_bpe_tokenizer(const GGUFFile& f) {
  const auto model = f.get<std::string_view>("tokenizer.ggml.model");
  if (model != "gpt2")
    throw format_error(
        f.path(), 0,
        "tokenizer.ggml.model is '" + std::string(model) + "', expected 'gpt2' (byte-level BPE)");
  const auto& toks = f.get_strings("tokenizer.ggml.tokens");
  std::vector<std::string> tokens(toks.begin(), toks.end());
  std::vector<std::string> merges;
  if (f.contains("tokenizer.ggml.merges")) {
    const auto& ms = f.get_strings("tokenizer.ggml.merges");
    merges.assign(ms.begin(), ms.end());
  }
  const auto id = [&](const char* key) -> std::optional<token_id> {
    if (!f.contains(key)) return std::nullopt;
    return static_cast<token_id>(f.get_int(key));
  };
  try {
    return Gpt2Tokenizer(std::move(tokens), merges, id("tokenizer.ggml.bos_token_id"),
                         id("tokenizer.ggml.eos_token_id"));
  } catch (const value_error& e) {
    throw format_error(f.path(), 0, e.what());
  }
}

}  // namespace tessel::io
