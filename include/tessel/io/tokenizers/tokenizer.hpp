#pragma once
// Tokenizers: SentencePiece BPE (Llama family; from vectors or llama2.c's tokenizer.bin) and
// GPT-2 byte-level BPE (from encoder.json + vocab.bpe, a Hugging Face tokenizer.json, or
// vectors), one Tokenizer type over both, and a streaming decoder. See docs/tokenizers.md.

#include <tessel/core/error.hpp>
#include <tessel/io/tokenizers/llama2c_tokenizer.hpp>
#include <tessel/io/tokenizers/tokenizer_gpt2.hpp>
#include <tessel/io/tokenizers/tokenizer_sentencepiece.hpp>
#include <tessel/io/tokenizers/utf8.hpp>

#include <cstddef>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <variant>
#include <vector>

namespace tessel {

/// Either tokenizer behind one interface, for code that takes whatever a model file carries.
class Tokenizer {
 public:
  Tokenizer(SentencePieceTokenizer t) : impl_(std::move(t)) {}
  Tokenizer(Gpt2Tokenizer t) : impl_(std::move(t)) {}

  std::vector<token_id> encode(std::string_view text, bool add_bos = false,
                               bool add_eos = false) const {
    return std::visit([&](const auto& t) { return t.encode(text, add_bos, add_eos); }, impl_);
  }
  std::string decode(std::span<const token_id> ids) const {
    return std::visit([&](const auto& t) { return t.decode(ids); }, impl_);
  }
  void append_token_bytes(std::string& out, token_id id, bool& at_start) const {
    std::visit([&](const auto& t) { t.append_token_bytes(out, id, at_start); }, impl_);
  }
  utf8_replacement replacement() const {
    return std::visit([](const auto& t) { return t.replacement(); }, impl_);
  }
  std::size_t vocab_size() const {
    return std::visit([](const auto& t) { return t.vocab_size(); }, impl_);
  }
  token_id bos_id() const {
    return std::visit([](const auto& t) { return t.bos_id(); }, impl_);
  }
  token_id eos_id() const {
    return std::visit([](const auto& t) { return t.eos_id(); }, impl_);
  }
  const std::string& token(token_id id) const {
    return std::visit([&](const auto& t) -> const std::string& { return t.token(id); }, impl_);
  }
  /// The tokenizer inside, for what only one kind has (SentencePiece scores, token types).
  const std::variant<SentencePieceTokenizer, Gpt2Tokenizer>& get() const noexcept { return impl_; }

 private:
  std::variant<SentencePieceTokenizer, Gpt2Tokenizer> impl_;
};

/// Turns token ids, one at a time, into text as it becomes complete: bytes of a character that
/// later tokens will finish are held back, so every piece returned is whole UTF-8. The pieces
/// of push() followed by flush() concatenate to decode() of the same ids. The tokenizer must
/// outlive the decoder.
template <class Tok>
class StreamDecoder {
 public:
  explicit StreamDecoder(const Tok& tok) : tok_(&tok) {}

  /// The text completed by this token (often empty while a character is unfinished). Throws
  /// value_error on an id outside the vocabulary.
  std::string push(token_id id) {
    tok_->append_token_bytes(pending_, id, at_start_);
    std::string out;
    std::size_t i = 0;
    while (i < pending_.size()) {
      const utf8_step st = utf8_next(pending_, i);
      if (st.status == utf8_step::incomplete) break;  // may still be finished by later bytes
      if (st.status == utf8_step::ok) {
        out.append(pending_, i, st.len);
      } else {
        append_replacement(out, st.len, tok_->replacement());
      }
      i += st.len;
    }
    pending_.erase(0, i);
    return out;
  }

  /// The held-back bytes, which no token will finish now, as U+FFFD; resets the decoder.
  std::string flush() {
    std::string out = utf8_sanitize(pending_, tok_->replacement());
    pending_.clear();
    at_start_ = true;
    return out;
  }

 private:
  const Tok* tok_;
  std::string pending_;
  bool at_start_ = true;
};

}  // namespace tessel
