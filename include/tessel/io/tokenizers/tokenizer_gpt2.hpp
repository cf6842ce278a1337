#pragma once
// GPT-2 byte-level BPE: text is split by GPT-2's pre-tokenizer pattern
//   's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
// (matched by hand, no regex engine), each piece's UTF-8 bytes are mapped to GPT-2's printable
// alphabet, and merges apply lowest rank first, every occurrence of that pair left to right, as
// GPT-2's encoder.py does. Checked against the npm package gpt-3-encoder.
// Text that is not UTF-8 has each bad byte replaced by U+FFFD first (the same rule as the
// SentencePiece tokenizer); special tokens such as <|endoftext|> in the text are plain text.

#include <tessel/core/error.hpp>
#include <tessel/io/tokenizers/tokenizer_sentencepiece.hpp>
#include <tessel/io/tokenizers/tokenizer_unicode.hpp>
#include <tessel/io/tokenizers/utf8.hpp>

#include <nlohmann/json.hpp>

#include <algorithm>
#include <array>
#include <cstddef>
#include <cstdint>
#include <fstream>
#include <iterator>
#include <limits>
#include <optional>
#include <queue>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

namespace tessel {

namespace detail {

inline std::string read_text_file(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) throw error(path + ": cannot open the tokenizer file");
  return std::string((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
}

// GPT-2's bytes_to_unicode: printable bytes map to themselves, the others to U+0100 upward.
inline std::array<std::uint32_t, 256> gpt2_byte_to_unicode() {
  std::array<std::uint32_t, 256> t{};
  std::uint32_t n = 0;
  for (std::uint32_t b = 0; b < 256; ++b) {
    const bool printable = (b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || b >= 0xAE;
    t[b] = printable ? b : 256 + n++;
  }
  return t;
}

// Byte ranges [begin, end) of the pre-tokens of valid UTF-8 text.
inline std::vector<std::pair<std::size_t, std::size_t>> gpt2_pretokenize(std::string_view s) {
  struct ch {
    std::uint32_t cp;
    std::size_t at;
    unicode_class cls;
  };
  std::vector<ch> c;
  c.reserve(s.size());
  for (std::size_t i = 0; i < s.size();) {
    const utf8_step st = utf8_next(s, i);
    c.push_back({st.cp, i, classify(st.cp)});
    i += st.len;
  }
  const std::size_t n = c.size();
  const auto cls = [&](std::size_t k) { return c[k].cls; };
  const auto run = [&](std::size_t k, unicode_class x) {
    while (k < n && cls(k) == x) ++k;
    return k;
  };
  std::vector<std::pair<std::size_t, std::size_t>> out;
  for (std::size_t i = 0; i < n;) {
    std::size_t j = i;
    const std::uint32_t cp = c[i].cp;
    if (cp == '\'' && i + 1 < n) {  // contractions, lowercase ASCII only
      const std::uint32_t a = c[i + 1].cp;
      const std::uint32_t b = i + 2 < n ? c[i + 2].cp : 0;
      if (a == 's' || a == 't' || a == 'm' || a == 'd') {
        j = i + 2;
      } else if ((a == 'r' && b == 'e') || (a == 'v' && b == 'e') || (a == 'l' && b == 'l')) {
        j = i + 3;
      }
    }
    if (j == i) {
      // An optional ' ' joins a following letter, number or other (non-space) run.
      const std::size_t k =
          (cp == ' ' && i + 1 < n && cls(i + 1) != unicode_class::space) ? i + 1 : i;
      if (cls(k) != unicode_class::space) {
        j = run(k, cls(k));
      } else {
        // \s+(?!\S) leaves the last space of a run before a non-space; \s+ takes a lone one.
        const std::size_t e = run(i, unicode_class::space);
        j = (e == n || e - i == 1) ? e : e - 1;
      }
    }
    out.emplace_back(c[i].at, j < n ? c[j].at : s.size());
    i = j;
  }
  return out;
}

}  // namespace detail

class Gpt2Tokenizer {
 public:
  /// tokens indexed by id (spelled in GPT-2's byte alphabet); merges in rank order, each
  /// "left right" (as vocab.bpe and GGUF's tokenizer.ggml.merges hold them). bos and eos may be
  /// -1; by default they are the id of <|endoftext|> when the vocabulary has it. Throws
  /// value_error when a byte has no token, a merge is not "a b", or a merge's result is no token.
  /// Where a token or a merge appears twice, the first wins.
  Gpt2Tokenizer(std::vector<std::string> tokens, const std::vector<std::string>& merges,
                std::optional<token_id> bos = {}, std::optional<token_id> eos = {})
      : tokens_(std::move(tokens)) {
    const std::size_t n = tokens_.size();
    if (n == 0 || n > static_cast<std::size_t>(std::numeric_limits<token_id>::max()))
      throw value_error("GPT-2 vocabulary: expected 1 to 2^31-1 tokens, got " + std::to_string(n));
    for (std::size_t i = 0; i < n; ++i) ids_.emplace(tokens_[i], static_cast<token_id>(i));
    const auto b2u = detail::gpt2_byte_to_unicode();
    std::array<std::uint32_t, 0x144> u2b{};  // inverse map; every image is below U+0144
    std::array<bool, 0x144> mapped{};
    for (std::size_t b = 0; b < 256; ++b) {
      std::string ch;
      append_utf8(ch, b2u[b]);
      const auto it = ids_.find(ch);
      if (it == ids_.end())
        throw value_error("GPT-2 vocabulary: byte " + std::to_string(b) + " has no token \"" + ch +
                          "\"");
      byte_ids_[b] = it->second;
      u2b[b2u[b]] = static_cast<std::uint32_t>(b);
      mapped[b2u[b]] = true;
    }
    ranks_.reserve(merges.size());
    for (std::size_t r = 0; r < merges.size(); ++r) {
      const std::string& m = merges[r];
      const std::size_t sp = m.find(' ');
      if (sp == std::string::npos || sp == 0 || sp + 1 == m.size() ||
          m.find(' ', sp + 1) != std::string::npos)
        throw value_error("GPT-2 merges: merge " + std::to_string(r) + " is \"" + m +
                          "\", expected two tokens separated by one space");
      const auto a = ids_.find(std::string_view(m).substr(0, sp));
      const auto b = ids_.find(std::string_view(m).substr(sp + 1));
      // A merge of something that is no token can never apply: symbols are always tokens.
      if (a == ids_.end() || b == ids_.end()) continue;
      const auto ab = ids_.find(m.substr(0, sp) + m.substr(sp + 1));
      if (ab == ids_.end())
        throw value_error("GPT-2 merges: merge " + std::to_string(r) + " (\"" + m +
                          "\") makes a token that is not in the vocabulary");
      ranks_.emplace(pair_key(a->second, b->second),
                     merge{static_cast<std::uint32_t>(r), ab->second});
    }
    // Decoded bytes of every token; characters outside the byte alphabet stay as UTF-8.
    bytes_.resize(n);
    for (std::size_t i = 0; i < n; ++i) {
      const std::string_view t = tokens_[i];
      for (std::size_t k = 0; k < t.size();) {
        const utf8_step st = utf8_next(t, k);
        if (st.status == utf8_step::ok && st.cp < u2b.size() && mapped[st.cp]) {
          bytes_[i] += static_cast<char>(u2b[st.cp]);
        } else {
          bytes_[i].append(t.substr(k, st.len));
        }
        k += st.len;
      }
    }
    const auto eot = ids_.find(std::string_view("<|endoftext|>"));
    const token_id dflt = eot == ids_.end() ? -1 : eot->second;
    bos_ = bos.value_or(dflt);
    eos_ = eos.value_or(dflt);
    for (token_id id : {bos_, eos_})
      if (id < -1 || id >= static_cast<token_id>(n))
        throw value_error("GPT-2 vocabulary: BOS/EOS id " + std::to_string(id) +
                          " is outside [0, " + std::to_string(n) + ")");
  }

  std::size_t vocab_size() const noexcept { return tokens_.size(); }
  token_id bos_id() const noexcept { return bos_; }
  token_id eos_id() const noexcept { return eos_; }
  /// The token as the vocabulary spells it (GPT-2's byte alphabet); throws on a bad id.
  const std::string& token(token_id id) const { return tokens_[checked(id)]; }
  /// The id of a token, or -1.
  token_id find(std::string_view token) const {
    const auto it = ids_.find(token);
    return it == ids_.end() ? -1 : it->second;
  }

  /// Token ids of the text; BOS first and EOS last when asked for and the vocabulary has them.
  std::vector<token_id> encode(std::string_view text, bool add_bos = false,
                               bool add_eos = false) const {
    std::vector<token_id> out;
    if (add_bos && bos_ >= 0) out.push_back(bos_);
    std::string clean;
    if (!utf8_valid(text)) {
      clean = utf8_sanitize(text, utf8_replacement::per_byte);
      text = clean;
    }
    for (const auto& [b, e] : detail::gpt2_pretokenize(text)) bpe(text.substr(b, e - b), out);
    if (add_eos && eos_ >= 0) out.push_back(eos_);
    return out;
  }

  /// The text of the ids; bytes that do not form UTF-8 become U+FFFD per maximal ill-formed
  /// subsequence, as GPT-2's decoders do. Throws value_error on an id outside the vocab.
  std::string decode(std::span<const token_id> ids) const {
    std::string raw;
    bool at_start = true;
    for (token_id id : ids) append_token_bytes(raw, id, at_start);
    return utf8_sanitize(raw, utf8_replacement::per_subpart);
  }

  /// The bytes one token contributes to decoded text (used by decode and StreamDecoder).
  void append_token_bytes(std::string& out, token_id id, bool& at_start) const {
    out += bytes_[checked(id)];
    at_start = false;
  }
  static constexpr utf8_replacement replacement() noexcept { return utf8_replacement::per_subpart; }

 private:
  struct merge {
    std::uint32_t rank;
    token_id result;
  };
  static std::uint64_t pair_key(token_id a, token_id b) noexcept {
    return (static_cast<std::uint64_t>(static_cast<std::uint32_t>(a)) << 32) |
           static_cast<std::uint32_t>(b);
  }
  std::size_t checked(token_id id) const {
    if (id < 0 || static_cast<std::size_t>(id) >= tokens_.size())
      throw value_error("token id " + std::to_string(id) + " is outside the vocabulary [0, " +
                        std::to_string(tokens_.size()) + ")");
    return static_cast<std::size_t>(id);
  }

  // GPT-2's bpe(): each round takes the lowest-ranked adjacent pair and merges all its
  // occurrences left to right; pairs made in a round wait for the next round. A heap keyed by
  // (rank, position) gives the same result in O(n log n).
  void bpe(std::string_view piece, std::vector<token_id>& out) const {
    const std::size_t n = piece.size();
    std::vector<token_id> id(n);
    std::vector<std::ptrdiff_t> prev(n), next(n);
    for (std::size_t i = 0; i < n; ++i) {
      id[i] = byte_ids_[static_cast<unsigned char>(piece[i])];
      prev[i] = static_cast<std::ptrdiff_t>(i) - 1;
      next[i] = i + 1 < n ? static_cast<std::ptrdiff_t>(i + 1) : -1;
    }
    struct cand {
      std::uint32_t rank;
      std::ptrdiff_t left;
      token_id a, b;  // the pair when queued, to notice candidates made stale
      bool operator>(const cand& o) const noexcept {
        return rank != o.rank ? rank > o.rank : left > o.left;
      }
    };
    std::priority_queue<cand, std::vector<cand>, std::greater<>> heap;
    std::vector<std::ptrdiff_t> alive(n, 1);
    const auto push = [&](std::ptrdiff_t l) {
      if (l < 0 || next[static_cast<std::size_t>(l)] < 0) return;
      const token_id a = id[static_cast<std::size_t>(l)];
      const token_id b = id[static_cast<std::size_t>(next[static_cast<std::size_t>(l)])];
      const auto it = ranks_.find(pair_key(a, b));
      if (it != ranks_.end()) heap.push({it->second.rank, l, a, b});
    };
    const auto valid = [&](const cand& c) {
      const auto l = static_cast<std::size_t>(c.left);
      return alive[l] && next[l] >= 0 && id[l] == c.a &&
             id[static_cast<std::size_t>(next[l])] == c.b;
    };
    for (std::size_t i = 0; i + 1 < n; ++i) push(static_cast<std::ptrdiff_t>(i));
    std::vector<std::ptrdiff_t> merged;
    while (!heap.empty()) {
      const std::uint32_t rank = heap.top().rank;
      const token_id result = ranks_.find(pair_key(heap.top().a, heap.top().b))->second.result;
      // One round: every queued occurrence of this pair, left to right.
      merged.clear();
      while (!heap.empty() && heap.top().rank == rank) {
        const cand c = heap.top();
        heap.pop();
        if (!valid(c)) continue;
        const auto l = static_cast<std::size_t>(c.left);
        const auto r = static_cast<std::size_t>(next[l]);
        id[l] = result;
        next[l] = next[r];
        if (next[r] >= 0) prev[static_cast<std::size_t>(next[r])] = c.left;
        alive[r] = 0;
        merged.push_back(c.left);
      }
      for (std::ptrdiff_t l : merged) {
        if (!alive[static_cast<std::size_t>(l)]) continue;
        push(prev[static_cast<std::size_t>(l)]);
        push(l);
      }
    }
    for (std::ptrdiff_t k = n ? 0 : -1; k >= 0; k = next[static_cast<std::size_t>(k)])
      out.push_back(id[static_cast<std::size_t>(k)]);
  }

  std::vector<std::string> tokens_;
  std::vector<std::string> bytes_;
  detail::piece_map ids_;
  std::unordered_map<std::uint64_t, merge> ranks_;
  std::array<token_id, 256> byte_ids_{};
  token_id bos_ = -1, eos_ = -1;
};

namespace detail {

// Token spellings indexed by id from (token, id) entries; ids must be exactly 0..n-1.
inline std::vector<std::string> dense_vocab(
    std::vector<std::pair<std::string, std::int64_t>> entries, const std::string& name) {
  std::sort(entries.begin(), entries.end(), [](const auto& a, const auto& b) {
    return a.second != b.second ? a.second < b.second : a.first < b.first;
  });
  entries.erase(std::unique(entries.begin(), entries.end()), entries.end());
  std::vector<std::string> tokens;
  tokens.reserve(entries.size());
  for (auto& [tok, id] : entries) {
    if (id != static_cast<std::int64_t>(tokens.size()))
      throw format_error(name, 0,
                         "token ids must be 0 to n-1, each once; token \"" + tok + "\" has id " +
                             std::to_string(id) + ", expected " + std::to_string(tokens.size()));
    tokens.push_back(std::move(tok));
  }
  return tokens;
}

template <class Json>
void gpt2_vocab_entries(const Json& j, std::vector<std::pair<std::string, std::int64_t>>& entries,
                        const std::string& name) {
  entries.reserve(entries.size() + j.size());
  for (auto it = j.begin(); it != j.end(); ++it) {
    if (!it.value().is_number_integer())
      throw format_error(name, 0, "the id of token \"" + it.key() + "\" is not an integer");
    entries.emplace_back(it.key(), it.value().template get<std::int64_t>());
  }
}

template <class Json>
void gpt2_vocab_from_json(const Json& j, std::vector<std::string>& tokens,
                          const std::string& name) {
  std::vector<std::pair<std::string, std::int64_t>> entries;
  gpt2_vocab_entries(j, entries, name);
  tokens = dense_vocab(std::move(entries), name);
}

}  // namespace detail

/// Loads GPT-2's encoder.json (token -> id) and vocab.bpe (merges) from memory; the names are
/// used in errors. Throws format_error on bad input.
// The JSON readers are templates (Json defaults to nlohmann::json) so that nlohmann's parser is
// instantiated only in programs that call them.
template <class Json = nlohmann::json>
Gpt2Tokenizer parse_gpt2_tokenizer(std::string_view encoder_json, std::string_view vocab_bpe,
                                   const std::string& encoder_name = "encoder.json",
                                   const std::string& vocab_name = "vocab.bpe") {
  std::vector<std::string> tokens;
  {
    const auto j = Json::parse(encoder_json, nullptr, false);
    if (j.is_discarded() || !j.is_object())
      throw format_error(encoder_name, 0, "expected a JSON object of token -> id");
    detail::gpt2_vocab_from_json(j, tokens, encoder_name);
  }
  std::vector<std::string> merges;
  std::size_t pos = 0;
  bool first = true;
  while (pos < vocab_bpe.size()) {
    std::size_t e = vocab_bpe.find('\n', pos);
    if (e == std::string_view::npos) e = vocab_bpe.size();
    std::string_view line = vocab_bpe.substr(pos, e - pos);
    if (line.ends_with('\r')) line.remove_suffix(1);
    const bool header = first && line.starts_with("#version");
    first = false;
    if (!line.empty() && !header) {
      const std::size_t sp = line.find(' ');
      if (sp == std::string_view::npos || sp == 0 || sp + 1 == line.size() ||
          line.find(' ', sp + 1) != std::string_view::npos)
        throw format_error(vocab_name, pos,
                           "expected a merge \"left right\", got \"" + std::string(line) + "\"");
      merges.emplace_back(line);
    }
    pos = e + 1;
  }
  try {
    return Gpt2Tokenizer(std::move(tokens), merges);
  } catch (const value_error& e) {
    throw format_error(vocab_name, 0, e.what());
  }
}

/// Loads GPT-2's encoder.json and vocab.bpe files (see parse_gpt2_tokenizer).
template <class Json = nlohmann::json>
Gpt2Tokenizer load_gpt2_tokenizer(const std::string& encoder_json_path,
                                  const std::string& vocab_bpe_path) {
  return parse_gpt2_tokenizer<Json>(detail::read_text_file(encoder_json_path),
                                    detail::read_text_file(vocab_bpe_path), encoder_json_path,
                                    vocab_bpe_path);
}

/// Loads a byte-level BPE from a Hugging Face tokenizer.json held in memory: model.vocab,
/// model.merges ("a b" strings or ["a", "b"] pairs) and added_tokens. Throws format_error.
template <class Json = nlohmann::json>
Gpt2Tokenizer parse_hf_tokenizer_json(std::string_view text,
                                      const std::string& name = "tokenizer.json") {
  const auto j = Json::parse(text, nullptr, false);
  if (j.is_discarded() || !j.is_object()) throw format_error(name, 0, "not a JSON object");
  const auto model = j.find("model");
  if (model == j.end() || !model->is_object())
    throw format_error(name, 0, "expected an object \"model\"");
  if (const auto t = model->find("type"); t != model->end() && *t != "BPE")
    throw format_error(name, 0, "model.type is " + t->dump() + ", expected \"BPE\"");
  const auto vocab = model->find("vocab");
  const auto merges = model->find("merges");
  if (vocab == model->end() || !vocab->is_object() || merges == model->end() || !merges->is_array())
    throw format_error(name, 0, "expected model.vocab (object) and model.merges (array)");
  std::vector<std::pair<std::string, std::int64_t>> entries;
  detail::gpt2_vocab_entries(*vocab, entries, name);
  if (const auto added = j.find("added_tokens"); added != j.end()) {
    if (!added->is_array()) throw format_error(name, 0, "added_tokens is not an array");
    for (const auto& a : *added) {
      const auto id = a.is_object() ? a.find("id") : a.end();
      const auto content = a.is_object() ? a.find("content") : a.end();
      if (id == a.end() || content == a.end() || !id->is_number_integer() || !content->is_string())
        throw format_error(name, 0, "an added token lacks an integer id or a string content");
      entries.emplace_back(content->template get<std::string>(), id->template get<std::int64_t>());
    }
  }
  std::vector<std::string> tokens = detail::dense_vocab(std::move(entries), name);
  std::vector<std::string> merge_list;
  merge_list.reserve(merges->size());
  for (const auto& m : *merges) {
    if (m.is_string()) {
      merge_list.push_back(m.template get<std::string>());
    } else if (m.is_array() && m.size() == 2 && m[0].is_string() && m[1].is_string()) {
      merge_list.push_back(m[0].template get<std::string>() + " " +
                           m[1].template get<std::string>());
    } else {
      throw format_error(name, 0,
                         "model.merges holds " + m.dump() + ", expected \"a b\" or [\"a\", \"b\"]");
    }
  }
  try {
    return Gpt2Tokenizer(std::move(tokens), merge_list);
  } catch (const value_error& e) {
    throw format_error(name, 0, e.what());
  }
}

/// Loads a Hugging Face tokenizer.json file (see parse_hf_tokenizer_json).
template <class Json = nlohmann::json>
Gpt2Tokenizer load_hf_tokenizer_json(const std::string& path) {
  return parse_hf_tokenizer_json<Json>(detail::read_text_file(path), path);
}

}  // namespace tessel
