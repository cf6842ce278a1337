#pragma once
// The byte-level BPE tokenizer stored in a GGUF file's tokenizer.ggml.* keys, shared by the
// GPT-2 and Mamba loaders, and the rule for whether a prompt starts with BOS.

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "tessel/io/formats/gguf.hpp"
#include "tessel/io/tokenizers/tokenizer_gpt2.hpp"

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

/// Whether a prompt for this file's model starts with BOS: tokenizer.ggml.add_bos_token when the
/// file has it (llama.cpp's converters copy it from tokenizer_config.json), else the custom of
/// the tokenizer family, as llama.cpp decides it: SentencePiece (`llama`) models were trained
/// with BOS first; byte-level BPE (`gpt2`: GPT-2's, GPT-NeoX's for Mamba) prompts go without
/// one, as Hugging Face's tokenizers encode them.
inline bool gguf_add_bos(const GGUFFile& f) {
  if (f.contains("tokenizer.ggml.add_bos_token"))
    return f.get<bool>("tokenizer.ggml.add_bos_token");
  return f.get_or<std::string_view>("tokenizer.ggml.model", "") == "llama";
}

}  // namespace tessel::io
