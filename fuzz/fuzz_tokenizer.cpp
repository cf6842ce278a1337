// libFuzzer target for the tokenizers. The first input byte picks what the rest is:
//   0: text for a small SentencePiece vocabulary (every token type) and for GPT-2's vocabulary
//      (tests/data/tokenizer/gpt2); checks decode(encode(text)) and the stream decoder;
//   1: a llama2.c tokenizer.bin; when it parses, encodes and decodes with it;
//   2: a Hugging Face tokenizer.json.
// Anything but tessel::error escaping, a crash, or a broken round trip is a finding.
#include <tessel/io/tokenizers/tokenizer.hpp>

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace {

const tessel::SentencePieceTokenizer& small_sp() {
  static const tessel::SentencePieceTokenizer tok = [] {
    using T = tessel::token_type;
    std::vector<std::string> p{"<unk>", "<s>", "</s>"};
    std::vector<T> t{T::unknown, T::control, T::control};
    const char* hex = "0123456789ABCDEF";
    for (int b = 0; b < 256; ++b) {
      p.push_back(std::string("<0x") + hex[b >> 4] + hex[b & 15] + ">");
      t.push_back(T::byte);
    }
    const char* normal[] = {"\xE2\x96\x81",
                            "a",
                            "b",
                            "\xE2\x96\x81"
                            "a",
                            "ab",
                            "ba",
                            "\xE2\x96\x81"
                            "ab",
                            "aba",
                            "\xE2\x96\x81\xE2\x96\x81",
                            "\xC3\xA9"};
    for (const char* s : normal) p.push_back(s), t.push_back(T::normal);
    p.push_back("bab"), t.push_back(T::unused);
    p.push_back("<sep>"), t.push_back(T::user_defined);
    std::vector<float> scores;
    for (std::size_t i = 0; i < p.size(); ++i) scores.push_back(-static_cast<float>(i % 7));
    return tessel::SentencePieceTokenizer(p, scores, t, 1, 2, 0);
  }();
  return tok;
}

const tessel::Gpt2Tokenizer& gpt2() {
  static const tessel::Gpt2Tokenizer tok =
      tessel::load_gpt2_tokenizer(TESSEL_TEST_DATA_DIR "/tokenizer/gpt2/encoder.json",
                                  TESSEL_TEST_DATA_DIR "/tokenizer/gpt2/vocab.bpe");
  return tok;
}

void check(bool ok) {
  if (!ok) std::abort();
}

template <class Tok>
void stream_matches(const Tok& tok, const std::vector<tessel::token_id>& ids) {
  tessel::StreamDecoder dec(tok);
  std::string all;
  for (tessel::token_id id : ids) all += dec.push(id);
  all += dec.flush();
  check(all == tok.decode(ids));
}

void text(std::string_view s) {
  const bool valid = tessel::utf8_valid(s);
  const auto& sp = small_sp();
  const auto ids = sp.encode(s, true, true);
  const std::string back = sp.decode(ids);
  check(tessel::utf8_valid(back));
  // Identity normalization with byte fallback loses nothing but a literal U+2581.
  if (valid && s.find("\xE2\x96\x81") == std::string_view::npos) check(back == s);
  stream_matches(sp, ids);
  const auto& g = gpt2();
  const auto gids = g.encode(s);
  if (valid) check(g.decode(gids) == s);
  stream_matches(g, gids);
  // Arbitrary ids, reading the text's bytes as ids.
  std::vector<tessel::token_id> raw;
  for (unsigned char c : s) raw.push_back(static_cast<tessel::token_id>(c * 7u % sp.vocab_size()));
  check(tessel::utf8_valid(sp.decode(raw)));
  stream_matches(sp, raw);
}

void llama2c(std::span<const std::byte> data) {
  try {
    const auto tok = tessel::parse_llama2c_tokenizer(data, "fuzz.bin");
    const auto ids = tok.encode("Once upon a time \xF0\x9F\x98\x80 42", true);
    check(tessel::utf8_valid(tok.decode(ids)));
    std::vector<tessel::token_id> all;
    for (std::size_t i = 0; i < tok.vocab_size() && i < 64; ++i)
      all.push_back(static_cast<tessel::token_id>(i));
    stream_matches(tok, all);
  } catch (const tessel::error&) {
  }
}

void hf_json(std::string_view s) {
  try {
    const auto tok = tessel::parse_hf_tokenizer_json(s, "fuzz.json");
    const auto ids = tok.encode("Hello world 123 \xF0\x9F\x98\x80");
    check(tessel::utf8_valid(tok.decode(ids)));
  } catch (const tessel::error&) {
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size == 0) return 0;
  const std::string_view rest(reinterpret_cast<const char*>(data + 1), size - 1);
  switch (data[0] % 3) {
    case 0:
      text(rest);
      break;
    case 1:
      llama2c(std::as_bytes(std::span(data + 1, size - 1)));
      break;
    default:
      hf_json(rest);
  }
  return 0;
}
