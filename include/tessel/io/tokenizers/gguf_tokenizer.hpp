#pragma once
// The tokenizers stored in a GGUF file's tokenizer.ggml.* keys (SentencePiece for `llama`
// files, byte-level BPE for GPT-2 and Mamba files), and the rule for whether a prompt starts
// with BOS.

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "tessel/io/formats/gguf.hpp"
#include "tessel/io/tokenizers/tokenizer_gpt2.hpp"
#include "tessel/io/tokenizers/tokenizer_sentencepiece.hpp"

namespace tessel::io {

/// The SentencePiece tokenizer stored in a GGUF file (tokenizer.ggml.model = llama).
inline SentencePieceTokenizer load_gguf_tokenizer(const GGUFFile& f) {
  const auto model = f.get<std::string_view>("tokenizer.ggml.model");
  if (model != "llama")
    throw format_error(
        f.path(), 0,
        "tokenizer.ggml.model is '" + std::string(model) + "', expected 'llama' (SentencePiece)");
  const auto& toks = f.get_strings("tokenizer.ggml.tokens");
  std::vector<std::string> pieces(toks.begin(), toks.end());
  std::vector<float> scores = f.contains("tokenizer.ggml.scores")
                                  ? f.get_array<float>("tokenizer.ggml.scores")
                                  : std::vector<float>(pieces.size(), 0.0f);
  std::vector<token_type> types(pieces.size(), token_type::normal);
  if (f.contains("tokenizer.ggml.token_type")) {
    const auto t = f.get_array<std::int32_t>("tokenizer.ggml.token_type");
    if (t.size() != pieces.size())
      throw format_error(f.path(), 0,
                         "tokenizer.ggml.token_type has " + std::to_string(t.size()) +
                             " entries for " + std::to_string(pieces.size()) + " tokens");
    for (std::size_t i = 0; i < t.size(); ++i) types[i] = static_cast<token_type>(t[i]);
  }
  const auto id = [&](const char* key, std::int64_t fallback) {
    return static_cast<token_id>(f.contains(key) ? f.get_int(key) : fallback);
  };
  sentencepiece_options o;
  o.add_dummy_prefix = f.get_or<bool>("tokenizer.ggml.add_space_prefix", true);
  o.remove_extra_whitespaces = f.get_or<bool>("tokenizer.ggml.remove_extra_whitespaces", false);
  try {
    return SentencePieceTokenizer(std::move(pieces), std::move(scores), std::move(types),
                                  id("tokenizer.ggml.bos_token_id", -1),
                                  id("tokenizer.ggml.eos_token_id", -1),
                                  id("tokenizer.ggml.unknown_token_id", 0), o);
  } catch (const value_error& e) {
    throw format_error(f.path(), 0, e.what());
  }
}

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

/// The byte-level BPE stored in a GGUF file (tokenizer.ggml.model = gpt2). GPT-2 files must
/// carry tokenizer.ggml.merges: a missing list is a format_error.
inline Gpt2Tokenizer load_gguf_gpt2_tokenizer(const GGUFFile& f) {
  if (f.get<std::string_view>("tokenizer.ggml.model") == "gpt2")
    (void)f.get_strings("tokenizer.ggml.merges");
  return load_gguf_bpe_tokenizer(f);
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
