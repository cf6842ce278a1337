// BERT against PyTorch: a random BERT in Hugging Face's safetensors layout, and the last hidden
// state and mean-pooled embeddings of an independent forward pass (tools/golden/bert_golden.py:
// F.multi_head_attention_forward with a key padding mask, in f64) for a batch of three
// sequences: no padding, right padding, left padding; two of them with token types 0 and 1.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "tessel/io/formats/npy.hpp"
#include "tessel/io/load/load_bert.hpp"

namespace {

const std::string dir = std::string(TESSEL_TEST_DATA_DIR) + "/bert";
const std::string st_path = dir + "/model.safetensors";

struct Golden {
  std::vector<std::int32_t> ids, types, mask;
  std::vector<float> hidden, pooled;  // [B, T, D], [B, D]
  tessel::index_t B = 0, T = 0;
};

Golden golden() {
  const auto z = tessel::io::NpzFile::open(dir + "/golden.npz");
  Golden g;
  const auto ids = z.get<std::int32_t, 2>("input_ids");
  const auto types = z.get<std::int32_t, 2>("token_type_ids");
  const auto mask = z.get<std::int32_t, 2>("attention_mask");
  const auto h = z.get<float, 3>("last_hidden_state");
  const auto p = z.get<float, 2>("mean_pooled");
  g.B = ids.extent(0), g.T = ids.extent(1);
  g.ids.assign(ids.data(), ids.data() + ids.size());
  g.types.assign(types.data(), types.data() + types.size());
  g.mask.assign(mask.data(), mask.data() + mask.size());
  g.hidden.assign(h.data(), h.data() + h.size());
  g.pooled.assign(p.data(), p.data() + p.size());
  return g;
}

double rel_err(std::span<const float> a, std::span<const float> b) {
  REQUIRE(a.size() == b.size());
  double d = 0, m = 0;
  for (std::size_t i = 0; i < a.size(); ++i) {
    d = std::max(d, std::abs(double(a[i]) - double(b[i])));
    m = std::max(m, std::abs(double(b[i])));
  }
  return d / m;
}

struct Tiny {  // tools/golden/bert_golden.py's config
  static constexpr int dim = 64, hidden = 128, layers = 2, heads = 4, vocab = 300, max_pos = 32;
};
struct WrongLayers : Tiny {
  static constexpr int layers = 3;
};

template <class T>
std::span<const T> cspan(const std::vector<T>& v) {
  return v;
}

// The golden checks run on the scalar reference and on the build's SIMD backend, with the same
// tolerances.
#define TESSEL_BACKENDS tessel::cpu_scalar, tessel::default_backend

template <class W, class B>
using RunTime = tessel::models::Bert<tessel::models::BertConfig, W, B>;

}  // namespace

TEST_CASE_TEMPLATE("bert safetensors: last hidden state and mean-pooled embeddings match PyTorch",
                   B, TESSEL_BACKENDS) {
  const Golden g = golden();
  auto m = tessel::io::load_bert<RunTime<float, B>>(st_path);  // heads, eps from config.json
  const auto& c = m.config();
  CHECK(c.dim == 64);
  CHECK(c.hidden == 128);
  CHECK(c.layers == 2);
  CHECK(c.heads == 4);
  CHECK(c.vocab == 300);
  CHECK(c.max_pos == 32);
  CHECK(c.type_vocab == 2);
  CHECK(c.norm_eps == doctest::Approx(1e-12));

  auto st = m.new_state();
  const auto h = m.forward(st, cspan(g.ids), cspan(g.mask), g.B, cspan(g.types));
  CHECK(rel_err(h, g.hidden) < 1e-4);
  const auto e = m.embed(st, cspan(g.ids), cspan(g.mask), g.B, cspan(g.types));
  CHECK(rel_err(e, g.pooled) < 1e-4);

  // One sequence at a time, without its padding: the same states at its tokens. A sequence's
  // result does not depend on the batch it is in.
  const tessel::index_t D = c.dim;
  for (tessel::index_t b = 0; b < g.B; ++b) {
    std::vector<std::int32_t> ids, types, mask;
    for (tessel::index_t t = 0; t < g.T; ++t) {
      const std::size_t i = std::size_t(b * g.T + t);
      ids.push_back(g.ids[i]);
      types.push_back(g.types[i]);
      mask.push_back(g.mask[i]);
    }
    const auto hb = m.forward(st, cspan(ids), cspan(mask), 1, cspan(types));
    CHECK(rel_err(hb, std::span(g.hidden).subspan(std::size_t(b * g.T * D), std::size_t(g.T * D))) <
          1e-4);
  }
}

TEST_CASE_TEMPLATE("bert: no mask, no token types, static config, f16", B, TESSEL_BACKENDS) {
  const Golden g = golden();
  const auto m = tessel::io::load_bert<RunTime<float, B>>(st_path);
  auto st = m.new_state();
  // Sequence 0 has no padding and types 0 then 1; an empty mask means no padding, and with
  // types all 0 the result differs from the golden (the types are really used).
  const std::vector<std::int32_t> ids0(g.ids.begin(), g.ids.begin() + g.T);
  const std::vector<std::int32_t> types0(g.types.begin(), g.types.begin() + g.T);
  const auto want = std::span(g.hidden).first(std::size_t(g.T * 64));
  CHECK(rel_err(m.forward(st, cspan(ids0), std::span<const std::int32_t>(), 1, cspan(types0)),
                want) < 1e-4);
  CHECK(rel_err(m.forward(st, cspan(ids0), std::span<const std::int32_t>(), 1), want) > 1e-2);

  auto s = tessel::io::load_bert<tessel::models::Bert<Tiny, float, B>>(st_path);
  auto ss = s.new_state();
  CHECK(rel_err(s.embed(ss, cspan(g.ids), cspan(g.mask), g.B, cspan(g.types)), g.pooled) < 1e-4);

  auto h = tessel::io::load_bert<RunTime<tessel::f16, B>>(st_path);
  auto hs = h.new_state();
  const double eh =
      rel_err(h.embed(hs, cspan(g.ids), cspan(g.mask), g.B, cspan(g.types)), g.pooled);
  CHECK(eh < 5e-3);
  CHECK(eh > 1e-6);
}

TEST_CASE("bert: bad input") {
  CHECK_THROWS_AS(tessel::io::load_bert<tessel::models::Bert<WrongLayers>>(st_path),
                  tessel::format_error);
  tessel::io::BertLoadOptions o;
  o.heads = 5;
  CHECK_THROWS_AS(tessel::io::load_bert_safetensors<float>(st_path, o), tessel::format_error);

  auto m = tessel::io::load_bert_safetensors<float>(st_path);
  auto st = m.new_state();
  const std::vector<std::int32_t> ids{1, 2, 3, 4, 5, 6}, mask{1, 1, 1, 0, 0, 0};
  CHECK_THROWS_AS(m.forward(st, cspan(ids), cspan(mask), 4), tessel::shape_error);  // 6 % 4
  const std::vector<std::int32_t> short_mask{1, 1};
  CHECK_THROWS_AS(m.forward(st, cspan(ids), cspan(short_mask), 2), tessel::shape_error);
  CHECK_THROWS_AS(m.forward(st, cspan(ids), cspan(mask), 2), tessel::value_error);  // all padding
  const std::vector<std::int32_t> bad{1, 300};
  CHECK_THROWS_AS(m.forward(st, cspan(bad), std::span<const std::int32_t>(), 1),
                  tessel::value_error);
  const std::vector<std::int32_t> types{0, 2};
  CHECK_THROWS_AS(
      m.forward(st, cspan(ids).first(2), std::span<const std::int32_t>(), 1, cspan(types)),
      tessel::value_error);
  const std::vector<std::int32_t> long_seq(33, 1);
  CHECK_THROWS_AS(m.forward(st, cspan(long_seq), std::span<const std::int32_t>(), 1),
                  tessel::value_error);
}
