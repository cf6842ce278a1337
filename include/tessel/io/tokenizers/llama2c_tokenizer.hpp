#pragma once
// Reader of llama2.c's tokenizer.bin: int32 max_token_length, then for each token float32 score,
// int32 length, that many bytes (little-endian). The file holds no token count (llama2.c takes
// it from the checkpoint), no token types and no normalizer settings, so:
// - ids 0, 1, 2 are <unk>, <s> (BOS), </s> (EOS), as llama2.c assumes; tokens spelled <0xNN>
//   are byte tokens; the rest are normal;
// - the exporter wrote spaces for SentencePiece's '▁' (and "\n<s>\n", "\n</s>\n" for BOS/EOS):
//   this reader turns them back, so the pieces equal the SentencePiece model's;
// - the normalizer settings come from the caller (see docs/tokenizers.md: tok512 of stories260K
//   needs remove_extra_whitespaces = true, Llama 2's needs the defaults).

#include <tessel/core/error.hpp>
#include <tessel/io/tokenizers/tokenizer_sentencepiece.hpp>

#include <bit>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <fstream>
#include <iterator>
#include <optional>
#include <span>
#include <string>
#include <vector>

namespace tessel {

/// Parses tokenizer.bin bytes; `name` names the source in errors. With vocab_size, the file
/// must hold exactly that many tokens; without, tokens are read to the end of the data.
inline SentencePieceTokenizer parse_llama2c_tokenizer(std::span<const std::byte> data,
                                                      const std::string& name,
                                                      std::optional<std::size_t> vocab_size = {},
                                                      sentencepiece_options options = {}) {
  std::size_t pos = 0;
  const auto u32 = [&](const char* what) {
    if (data.size() - pos < 4)
      throw format_error(name, pos,
                         std::string("the file ends inside ") + what + ": expected 4 bytes, got " +
                             std::to_string(data.size() - pos));
    std::uint32_t v = 0;
    for (int k = 3; k >= 0; --k) v = (v << 8) | std::to_integer<std::uint32_t>(data[pos + k]);
    pos += 4;
    return v;
  };
  const auto max_len = static_cast<std::int32_t>(u32("max_token_length"));
  if (max_len < 0)
    throw format_error(
        name, 0,
        "max_token_length is " + std::to_string(max_len) + ", expected a non-negative length");
  std::vector<std::string> pieces;
  std::vector<float> scores;
  // Each token takes at least 8 bytes, which bounds the reservation by the data size.
  const std::size_t bound = (data.size() - pos) / 8;
  if (vocab_size && *vocab_size > bound)
    throw format_error(name, pos,
                       "expected " + std::to_string(*vocab_size) + " tokens, but " +
                           std::to_string(data.size()) + " bytes hold at most " +
                           std::to_string(bound));
  const std::size_t expect = vocab_size ? *vocab_size : bound;
  pieces.reserve(expect);
  scores.reserve(expect);
  while (vocab_size ? pieces.size() < *vocab_size : pos < data.size()) {
    const std::size_t at = pos;
    const float score = std::bit_cast<float>(u32("a token score"));
    const auto len = static_cast<std::int32_t>(u32("a token length"));
    if (len < 0 || len > max_len)
      throw format_error(name, at + 4,
                         "token " + std::to_string(pieces.size()) + " has length " +
                             std::to_string(len) + ", expected 0 to max_token_length " +
                             std::to_string(max_len));
    if (data.size() - pos < static_cast<std::size_t>(len))
      throw format_error(name, pos,
                         "the file ends inside token " + std::to_string(pieces.size()) +
                             ": expected " + std::to_string(len) + " bytes, got " +
                             std::to_string(data.size() - pos));
    std::string raw(reinterpret_cast<const char*>(data.data() + pos),
                    static_cast<std::size_t>(len));
    pos += static_cast<std::size_t>(len);
    std::string piece;
    for (char c : raw) {
      if (c == ' ') {
        piece += detail::sp_space;
      } else {
        piece += c;
      }
    }
    pieces.push_back(std::move(piece));
    scores.push_back(score);
  }
  if (pos != data.size())
    throw format_error(name, pos,
                       "expected " + std::to_string(pieces.size()) + " tokens, but " +
                           std::to_string(data.size() - pos) + " bytes follow the last one");
  if (pieces.size() < 3)
    throw format_error(
        name, pos,
        "expected at least 3 tokens (<unk>, <s>, </s>), got " + std::to_string(pieces.size()));
  std::vector<token_type> types(pieces.size(), token_type::normal);
  types[0] = token_type::unknown;
  types[1] = token_type::control;
  types[2] = token_type::control;
  if (pieces[1] == "\n<s>\n") pieces[1] = "<s>";
  if (pieces[2] == "\n</s>\n") pieces[2] = "</s>";
  for (std::size_t i = 3; i < pieces.size(); ++i)
    if (detail::parse_byte_piece(pieces[i]) >= 0) types[i] = token_type::byte;
  try {
    return SentencePieceTokenizer(std::move(pieces), std::move(scores), std::move(types), 1, 2, 0,
                                  options);
  } catch (const value_error& e) {
    throw format_error(name, 0, e.what());
  }
}

/// Reads a tokenizer.bin file (see parse_llama2c_tokenizer).
inline SentencePieceTokenizer load_llama2c_tokenizer(const std::string& path,
                                                     std::optional<std::size_t> vocab_size = {},
                                                     sentencepiece_options options = {}) {
  std::ifstream f(path, std::ios::binary);
  if (!f) throw error(path + ": cannot open the tokenizer file");
  const std::vector<char> bytes((std::istreambuf_iterator<char>(f)),
                                std::istreambuf_iterator<char>());
  return parse_llama2c_tokenizer(std::as_bytes(std::span(bytes)), path, vocab_size, options);
}

}  // namespace tessel
