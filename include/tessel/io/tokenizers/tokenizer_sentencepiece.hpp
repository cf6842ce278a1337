#pragma once
// SentencePiece BPE encoding (the Llama family's tokenizer), built from plain vectors so that
// GGUF (tokenizer.ggml.tokens / scores / token_type) and llama2.c's tokenizer.bin can feed it.
//
// Behaviour follows the SentencePiece library (checked against python3-sentencepiece):
// - normalization is identity; spaces become U+2581 '▁'; add_dummy_prefix prepends one, and
//   remove_extra_whitespaces drops leading/trailing spaces and collapses runs of spaces;
// - the input is split into characters, then the adjacent pair whose concatenation is a piece
//   with the highest score is merged, leftmost first on ties, until no pair is a piece;
// - a symbol that is no piece becomes its UTF-8 bytes as <0xNN> tokens (byte fallback), or the
//   unknown token when the vocabulary has no byte tokens;
// - text that is not UTF-8 has each bad byte replaced by U+FFFD first, as SentencePiece does.

#include <tessel/core/error.hpp>
#include <tessel/io/tokenizers/utf8.hpp>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <limits>
#include <queue>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

namespace tessel {

using token_id = std::int32_t;

/// Token types, with the values of GGUF's tokenizer.ggml.token_type (= SentencePiece's enum).
enum class token_type : std::int32_t {
  undefined = 0,
  normal = 1,
  unknown = 2,
  control = 3,
  user_defined = 4,
  unused = 5,
  byte = 6,
};

/// The normalizer settings a SentencePiece model carries (normalizer_spec); llama2.c's
/// tokenizer.bin does not carry them, so its loader takes them from the caller.
struct sentencepiece_options {
  bool add_dummy_prefix = true;           // GGUF: tokenizer.ggml.add_space_prefix
  bool remove_extra_whitespaces = false;  // GGUF: tokenizer.ggml.remove_extra_whitespaces
  bool byte_fallback = true;              // use <0xNN> tokens for characters not in the vocab
};

namespace detail {

inline constexpr std::string_view sp_space = "\xE2\x96\x81";  // U+2581, SentencePiece's space
inline constexpr std::string_view sp_unknown_surface = " \xE2\x81\x87 ";  // " ⁇ "

// Hash that lets unordered_map<std::string, ...> be searched with a string_view.
struct string_hash {
  using is_transparent = void;
  std::size_t operator()(std::string_view s) const noexcept {
    return std::hash<std::string_view>{}(s);
  }
};
using piece_map = std::unordered_map<std::string, token_id, string_hash, std::equal_to<>>;

// "<0xNN>" -> NN, or -1.
inline int parse_byte_piece(std::string_view p) noexcept {
  if (p.size() != 6 || p.substr(0, 3) != "<0x" || p[5] != '>') return -1;
  int v = 0;
  for (char c : p.substr(3, 2)) {
    int d;
    if (c >= '0' && c <= '9') {
      d = c - '0';
    } else if (c >= 'A' && c <= 'F') {
      d = c - 'A' + 10;
    } else if (c >= 'a' && c <= 'f') {
      d = c - 'a' + 10;
    } else {
      return -1;
    }
    v = v * 16 + d;
  }
  return v;
}

}  // namespace detail

class SentencePieceTokenizer {
 public:
  /// tokens, scores and types are indexed by token id and must have the same length; bos and eos
  /// may be -1 (absent), unk must be a valid id. Throws value_error otherwise. Where a piece
  /// appears twice, the first id wins.
  SentencePieceTokenizer(std::vector<std::string> tokens, std::vector<float> scores,
                         std::vector<token_type> types, token_id bos, token_id eos, token_id unk,
                         sentencepiece_options options = {})
      : pieces_(std::move(tokens)),
        scores_(std::move(scores)),
        types_(std::move(types)),
        bos_(bos),
        eos_(eos),
        unk_(unk),
        options_(options) {
    const std::size_t n = pieces_.size();
    if (n == 0 || n > static_cast<std::size_t>(std::numeric_limits<token_id>::max()))
      throw value_error("SentencePiece vocabulary: expected 1 to 2^31-1 tokens, got " +
                        std::to_string(n));
    if (scores_.size() != n || types_.size() != n)
      throw value_error("SentencePiece vocabulary: " + std::to_string(n) + " tokens but " +
                        std::to_string(scores_.size()) + " scores and " +
                        std::to_string(types_.size()) + " token types");
    const auto check_id = [&](token_id id, const char* what, bool optional) {
      if ((optional && id == -1) || (id >= 0 && static_cast<std::size_t>(id) < n)) return;
      throw value_error(std::string("SentencePiece vocabulary: ") + what + " id " +
                        std::to_string(id) + " is outside [0, " + std::to_string(n) + ")");
    };
    check_id(bos_, "BOS", true);
    check_id(eos_, "EOS", true);
    check_id(unk_, "unknown-token", false);
    byte_ids_.fill(-1);
    for (std::size_t i = 0; i < n; ++i) {
      const auto id = static_cast<token_id>(i);
      if (std::isnan(scores_[i])) scores_[i] = -std::numeric_limits<float>::infinity();
      switch (types_[i]) {
        case token_type::undefined:
        case token_type::normal:
        case token_type::unused:
          pieces_map_.emplace(pieces_[i], id);
          break;
        case token_type::user_defined:
          if (!pieces_[i].empty()) {
            pieces_map_.emplace(pieces_[i], id);
            user_defined_.push_back(id);
          }
          break;
        case token_type::byte: {
          const int b = detail::parse_byte_piece(pieces_[i]);
          if (b < 0)
            throw value_error("SentencePiece vocabulary: byte token " + std::to_string(i) +
                              " is spelled \"" + pieces_[i] + "\", expected <0xNN>");
          if (byte_ids_[static_cast<std::size_t>(b)] < 0)
            byte_ids_[static_cast<std::size_t>(b)] = id;
          break;
        }
        case token_type::unknown:
        case token_type::control:
          break;
        default:
          throw value_error("SentencePiece vocabulary: token " + std::to_string(i) + " has type " +
                            std::to_string(static_cast<int>(types_[i])) + ", expected 0 to 6");
      }
    }
    // Longest user-defined symbol first, so matching prefers it.
    std::sort(user_defined_.begin(), user_defined_.end(), [&](token_id a, token_id b) {
      return pieces_[static_cast<std::size_t>(a)].size() >
             pieces_[static_cast<std::size_t>(b)].size();
    });
  }

  std::size_t vocab_size() const noexcept { return pieces_.size(); }
  token_id bos_id() const noexcept { return bos_; }
  token_id eos_id() const noexcept { return eos_; }
  token_id unk_id() const noexcept { return unk_; }
  const sentencepiece_options& options() const noexcept { return options_; }
  /// The piece as the vocabulary spells it (with '▁' for spaces); throws on a bad id.
  const std::string& token(token_id id) const { return pieces_[checked(id)]; }
  float score(token_id id) const { return scores_[checked(id)]; }
  token_type type(token_id id) const { return types_[checked(id)]; }
  /// The id of a piece (normal, user-defined or unused), or -1.
  token_id find(std::string_view piece) const {
    const auto it = pieces_map_.find(piece);
    return it == pieces_map_.end() ? -1 : it->second;
  }

  /// Token ids of the text; BOS first and EOS last when asked for and the vocabulary has them.
  std::vector<token_id> encode(std::string_view text, bool add_bos = false,
                               bool add_eos = false) const {
    std::vector<token_id> out;
    if (add_bos && bos_ >= 0) out.push_back(bos_);
    const std::string norm = normalize(text);
    if (!norm.empty()) encode_normalized(norm, out);
    if (add_eos && eos_ >= 0) out.push_back(eos_);
    return out;
  }

  /// The text of the ids, as SentencePiece decodes: control tokens vanish, the unknown token
  /// reads " ⁇ ", byte tokens join into UTF-8 (bad bytes become U+FFFD each), and the first
  /// piece loses the space of its dummy prefix. Throws value_error on an id outside the vocab.
  std::string decode(std::span<const token_id> ids) const {
    std::string raw;
    bool at_start = true;
    for (token_id id : ids) append_token_bytes(raw, id, at_start);
    return utf8_sanitize(raw, utf8_replacement::per_byte);
  }

  /// The bytes one token contributes to decoded text; at_start says whether no non-control
  /// token came before (it is cleared here). Used by decode and by StreamDecoder.
  void append_token_bytes(std::string& out, token_id id, bool& at_start) const {
    const std::size_t i = checked(id);
    switch (types_[i]) {
      case token_type::control:
        return;
      case token_type::unknown:
        out += detail::sp_unknown_surface;
        break;
      case token_type::byte:
        out += static_cast<char>(detail::parse_byte_piece(pieces_[i]));
        break;
      default: {
        // SentencePiece drops the dummy prefix's space from the first visible piece; with
        // remove_extra_whitespaces it keeps dropping leading spaces until text appears.
        std::string_view p = pieces_[i];
        bool consumed = false;
        if (at_start && (options_.add_dummy_prefix || options_.remove_extra_whitespaces) &&
            p.starts_with(detail::sp_space)) {
          p.remove_prefix(detail::sp_space.size());
          consumed = !options_.remove_extra_whitespaces;
        }
        for (std::size_t k = 0; k < p.size();) {
          if (p.substr(k).starts_with(detail::sp_space)) {
            out += ' ';
            k += detail::sp_space.size();
          } else {
            out += p[k++];
          }
        }
        if (consumed || !p.empty()) at_start = false;
        return;
      }
    }
    at_start = false;
  }
  static constexpr utf8_replacement replacement() noexcept { return utf8_replacement::per_byte; }

 private:
  std::size_t checked(token_id id) const {
    if (id < 0 || static_cast<std::size_t>(id) >= pieces_.size())
      throw value_error("token id " + std::to_string(id) + " is outside the vocabulary [0, " +
                        std::to_string(pieces_.size()) + ")");
    return static_cast<std::size_t>(id);
  }

  // SentencePiece's normalizer with the identity rule: bad UTF-8 -> U+FFFD per byte, spaces ->
  // '▁', dummy prefix, extra whitespace removal.
  std::string normalize(std::string_view text) const {
    std::string in;
    if (!utf8_valid(text)) {
      in = utf8_sanitize(text, utf8_replacement::per_byte);
      text = in;
    }
    const bool rm = options_.remove_extra_whitespaces;
    if (rm) {
      while (!text.empty() && text.front() == ' ') text.remove_prefix(1);
    }
    std::string out;
    if (text.empty()) return out;
    out.reserve(text.size() + text.size() / 2 + 3);
    if (options_.add_dummy_prefix) out += detail::sp_space;
    bool prev_space = false;
    for (char c : text) {
      if (c == ' ') {
        if (!(rm && prev_space)) out += detail::sp_space;
        prev_space = true;
      } else {
        out += c;
        prev_space = false;
      }
    }
    if (rm) {
      while (out.ends_with(detail::sp_space)) out.resize(out.size() - detail::sp_space.size());
    }
    return out;
  }

  struct symbol {
    std::size_t begin, len;  // bytes of the normalized text; len 0 once merged away
    std::ptrdiff_t prev, next;
    bool frozen;  // user-defined symbols are not merged further
  };
  struct candidate {
    float score;
    std::ptrdiff_t left, right;
    std::size_t len;  // combined length, to notice candidates made stale by other merges
    bool operator<(const candidate& o) const noexcept {
      // priority_queue pops the greatest: higher score, then the leftmost.
      if (score != o.score) return score < o.score;
      return left > o.left;
    }
  };

  void encode_normalized(std::string_view s, std::vector<token_id>& out) const {
    std::vector<symbol> sym;
    sym.reserve(s.size());
    for (std::size_t i = 0; i < s.size();) {
      std::size_t len = 0;
      bool frozen = false;
      for (token_id u : user_defined_) {
        const std::string& p = pieces_[static_cast<std::size_t>(u)];
        if (s.substr(i).starts_with(p)) {
          len = p.size(), frozen = true;
          break;
        }
      }
      if (len == 0) len = utf8_next(s, i).len;  // s is valid UTF-8 here
      const auto k = static_cast<std::ptrdiff_t>(sym.size());
      sym.push_back({i, len, k - 1, k + 1, frozen});
      i += len;
    }
    sym.back().next = -1;

    std::priority_queue<candidate> agenda;
    // Only built when the vocabulary has unused pieces: how to split a merged unused piece.
    std::unordered_map<std::string, std::pair<std::string, std::string>, detail::string_hash,
                       std::equal_to<>>
        rev_merge;
    const auto text = [&](std::ptrdiff_t k) {
      const symbol& x = sym[static_cast<std::size_t>(k)];
      return s.substr(x.begin, x.len);
    };
    const auto consider = [&](std::ptrdiff_t l, std::ptrdiff_t r) {
      if (l < 0 || r < 0) return;
      const symbol& a = sym[static_cast<std::size_t>(l)];
      const symbol& b = sym[static_cast<std::size_t>(r)];
      if (a.frozen || b.frozen) return;
      const auto it = pieces_map_.find(s.substr(a.begin, a.len + b.len));
      if (it == pieces_map_.end()) return;
      agenda.push({scores_[static_cast<std::size_t>(it->second)], l, r, a.len + b.len});
    };
    for (std::size_t k = 1; k < sym.size(); ++k)
      consider(static_cast<std::ptrdiff_t>(k - 1), static_cast<std::ptrdiff_t>(k));

    while (!agenda.empty()) {
      const candidate c = agenda.top();
      agenda.pop();
      symbol& a = sym[static_cast<std::size_t>(c.left)];
      symbol& b = sym[static_cast<std::size_t>(c.right)];
      if (a.len == 0 || b.len == 0 || a.next != c.right || a.len + b.len != c.len) continue;
      const std::string_view merged = s.substr(a.begin, c.len);
      const token_id mid = pieces_map_.find(merged)->second;
      // Overwrites, as SentencePiece does: the last way a piece was made is the one undone.
      if (types_[static_cast<std::size_t>(mid)] == token_type::unused) {
        rev_merge.insert_or_assign(
            std::string(merged), std::pair{std::string(text(c.left)), std::string(text(c.right))});
      }
      a.len = c.len;
      a.next = b.next;
      if (b.next >= 0) sym[static_cast<std::size_t>(b.next)].prev = c.left;
      b.len = 0;
      consider(a.prev, c.left);
      consider(c.left, a.next);
    }

    bool prev_unknown = false;
    const std::function<void(std::string_view)> emit = [&](std::string_view w) {
      const auto it = pieces_map_.find(w);
      if (it != pieces_map_.end()) {
        if (types_[static_cast<std::size_t>(it->second)] == token_type::unused) {
          const auto r = rev_merge.find(w);
          if (r != rev_merge.end()) {
            emit(r->second.first);
            emit(r->second.second);
            return;
          }
        }
        out.push_back(it->second);
        prev_unknown = false;
        return;
      }
      if (options_.byte_fallback) {
        bool all = true;
        for (char ch : w) all = all && byte_ids_[static_cast<unsigned char>(ch)] >= 0;
        if (all) {
          for (char ch : w) out.push_back(byte_ids_[static_cast<unsigned char>(ch)]);
          prev_unknown = false;
          return;
        }
      }
      // SentencePiece reports a run of unknown symbols as one unknown token.
      if (!prev_unknown) out.push_back(unk_);
      prev_unknown = true;
    };
    for (std::ptrdiff_t k = 0; k >= 0; k = sym[static_cast<std::size_t>(k)].next) emit(text(k));
  }

  std::vector<std::string> pieces_;
  std::vector<float> scores_;
  std::vector<token_type> types_;
  token_id bos_, eos_, unk_;
  sentencepiece_options options_;
  detail::piece_map pieces_map_;        // pieces that merges may produce
  std::vector<token_id> user_defined_;  // matched whole in the input
  std::array<token_id, 256> byte_ids_{};
};

}  // namespace tessel
