// The one list of stored formats (quant/format_list.hpp) against GGUF's published table, and
// every run-time dispatch that follows from it: each listed format round-trips a random row
// through its quantizer and the f32 widening chosen by GGUF type id, and each weight format
// through nn::any_weight.
#include <doctest/doctest.h>

#include <cmath>
#include <cstring>
#include <iterator>
#include <random>
#include <string>
#include <vector>

#include "tessel/io/formats/gguf.hpp"
#include "tessel/io/load/load_llama.hpp"
#include "tessel/nn/any_weight.hpp"
#include "tessel/quant/format_list.hpp"
#include "tessel/quant/formats.hpp"

using namespace tessel;

namespace {

// GGUF's types as the specification and ggml's type_traits define them, written out here from
// the block layouts (ggml-common.h) rather than taken from tessel: id, name, elements per block,
// bytes per block; then tessel's own choices: whether an nn::any_weight matrix may hold it, and
// the relative RMS error its round trip of a Gaussian row must stay under (0: exact).
struct spec_row {
  std::uint32_t id;
  const char* name;
  std::int64_t block_elems, block_bytes;
  bool weight;
  double max_rel_rmse;
};
constexpr std::int64_t half = 2, qk_k = 256, k_scale_size = 12;
const spec_row spec[] = {
    {0, "f32", 1, 4, true, 0},
    {1, "f16", 1, 2, true, 1.0 / 2048},
    {30, "bf16", 1, 2, true, 1.0 / 256},
    {2, "q4_0", 32, half + 32 / 2, true, 0.15},                       // d, 4-bit quants
    {3, "q4_1", 32, 2 * half + 32 / 2, true, 0.12},                   // d, m
    {6, "q5_0", 32, half + 4 + 32 / 2, true, 0.08},                   // d, qh[4]
    {7, "q5_1", 32, 2 * half + 4 + 32 / 2, true, 0.06},               // d, m, qh[4]
    {8, "q8_0", 32, half + 32, true, 0.01},                           // d, 8-bit quants
    {9, "q8_1", 32, 2 * half + 32, false, 0.01},                      // d, s
    {10, "q2_k", qk_k, qk_k / 16 + qk_k / 4 + 2 * half, true, 0.40},  // scales, qs, d, dmin
    {11, "q3_k", qk_k, qk_k / 8 + qk_k / 4 + 12 + half, true, 0.22},  // hmask, qs, scales, d
    {12, "q4_k", qk_k, 2 * half + k_scale_size + qk_k / 2, true, 0.11},
    {13, "q5_k", qk_k, 2 * half + k_scale_size + qk_k / 8 + qk_k / 2, true, 0.06},
    {14, "q6_k", qk_k, qk_k / 2 + qk_k / 4 + qk_k / 16 + half, true, 0.03},  // ql, qh, sc, d
    {15, "q8_k", qk_k, 4 + qk_k + qk_k / 16 * 2, false, 0.02},               // f32 d, qs, i16 bsums
    {24, "i8", 1, 1, false, 0},
    {25, "i16", 1, 2, false, 0},
    {26, "i32", 1, 4, false, 0},
    {27, "i64", 1, 8, false, 0},
    {28, "f64", 1, 8, false, 0},
};

const spec_row* spec_of(io::ggml_type t) {
  for (const auto& r : spec)
    if (r.id == static_cast<std::uint32_t>(t)) return &r;
  return nullptr;
}

std::vector<float> gaussian(std::size_t n, unsigned seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> d(0.f, 1.f);
  std::vector<float> v(n);
  for (auto& x : v) x = d(rng);
  return v;
}

double rel_rmse(const std::vector<float>& x, const std::vector<float>& y) {
  double se = 0, s2 = 0;
  for (std::size_t i = 0; i < x.size(); ++i) {
    se += (double(x[i]) - y[i]) * (double(x[i]) - y[i]);
    s2 += double(x[i]) * x[i];
  }
  return std::sqrt(se / s2);
}

// x stored as T, found by GGUF type id: blocks through T's quantizer, numbers rounded.
std::vector<std::byte> store_as(io::ggml_type t, const std::vector<float>& x) {
  std::vector<std::byte> out;
  with_gguf_format<gguf_widening_formats>(t, [&]<class T>(type_tag<T>) {
    const index_t n = index_t(x.size());
    out.resize(std::size_t(n / block_elems_v<T>) * sizeof(T));
    T* dst = reinterpret_cast<T*>(out.data());
    if constexpr (is_block_format_v<T>)
      T::quantize_row(x.data(), dst, n);
    else
      for (index_t j = 0; j < n; ++j) dst[j] = from_f32<T>(x[std::size_t(j)]);
  });
  return out;
}

template <class E>
void check_entry(int& listed) {
  using T = typename E::type;
  ++listed;
  const spec_row* s = spec_of(E::id);
  INFO("GGUF type " << static_cast<std::uint32_t>(E::id));
  REQUIRE(s != nullptr);
  CHECK(format_name(E::id) == s->name);
  CHECK(block_elems_v<T> == s->block_elems);
  CHECK(std::int64_t(sizeof(T)) == s->block_bytes);
  if constexpr (is_block_format_v<T>) CHECK(std::string(T::name) == s->name);
  // GGUF's table as tessel carries it, and the type a tensor view and the writer use.
  const io::ggml_type_info& g = io::info(E::id);
  CHECK(g.block_elems == s->block_elems);
  CHECK(g.block_bytes == s->block_bytes);
  static_assert(io::ggml_type_of<T>().has_value());
  CHECK(io::ggml_type_of<T>()->type == E::id);
  CHECK(io::ggml_type_of<const T>()->type == E::id);
  CHECK((E::role == format_role::weight) == s->weight);
  CHECK(io::weight_kind_of(E::id).has_value() == s->weight);

  if constexpr (E::role != format_role::data) {
    // A random row (whole blocks of every format) through the dispatch by id.
    const auto x = gaussian(512, unsigned(E::id) + 1);
    const auto stored = store_as(E::id, x);
    std::vector<float> y(x.size()), direct(x.size());
    REQUIRE(widen_row(E::id, stored.data(), y.data(), 512));
    CHECK(rel_rmse(x, y) <= s->max_rel_rmse);
    // The same bytes and values as T's own functions, called by name.
    if constexpr (is_block_format_v<T>) {
      std::vector<T> q(512 / T::block_elems);
      T::quantize_row(x.data(), q.data(), 512);
      CHECK(std::memcmp(q.data(), stored.data(), stored.size()) == 0);
      T::dequantize_row(q.data(), direct.data(), 512);
    } else {
      for (std::size_t j = 0; j < x.size(); ++j) direct[j] = to_f32(from_f32<T>(x[j]));
    }
    CHECK(std::memcmp(direct.data(), y.data(), y.size() * sizeof(float)) == 0);
    // Unaligned source bytes (as in a mapped file) widen the same.
    std::vector<std::byte> shifted(stored.size() + 1);
    std::memcpy(shifted.data() + 1, stored.data(), stored.size());
    std::vector<float> z(x.size());
    REQUIRE(widen_row(E::id, shifted.data() + 1, z.data(), 512));
    CHECK(std::memcmp(z.data(), y.data(), y.size() * sizeof(float)) == 0);

    if constexpr (E::role == format_role::weight) {
      // nn::any_weight: the kind by id and by type agree, and a matrix holding the bytes
      // widens its rows to the same values.
      const auto k = io::weight_kind_of(E::id);
      REQUIRE(k.has_value());
      CHECK(*k == nn::weight_kind_of<T>());
      CHECK(nn::name(*k) == s->name);
      bool visited = false;
      nn::with_weight_kind(*k, [&]<class U>(type_tag<U>) { visited = std::is_same_v<U, T>; });
      CHECK(visited);
      std::vector<float> x2(1024);
      std::copy(x.begin(), x.end(), x2.begin());
      std::copy(x.begin(), x.end(), x2.begin() + 512);
      nn::AnyMatrix<dyn, dyn> m(Shape<dyn, dyn>(2, 512));
      m.assign(*k, store_as(E::id, x2).data());
      CHECK(m.kind() == *k);
      CHECK(m.bytes() == 2 * stored.size());
      std::vector<float> row(512);
      m.row_f32(1, row.data());
      CHECK(std::memcmp(row.data(), y.data(), y.size() * sizeof(float)) == 0);
    }
  } else {
    std::vector<float> y(4);
    std::vector<std::byte> b(4 * sizeof(T));
    CHECK_FALSE(widen_row(E::id, b.data(), y.data(), 4));
  }
}

}  // namespace

TEST_CASE("every listed format agrees with GGUF's table and round-trips by dispatch") {
  int listed = 0;
  []<class... E>(type_list<E...>, int& n) { (check_entry<E>(n), ...); }(gguf_formats{}, listed);
  // Every format of the table above is listed, once.
  CHECK(listed == int(std::size(spec)));
}

TEST_CASE("weight kinds: the named ones are the listed formats, the rest are refused") {
  const std::pair<nn::weight_kind, const char*> named[] = {
      {nn::weight_kind::f32, "f32"},   {nn::weight_kind::f16, "f16"},
      {nn::weight_kind::bf16, "bf16"}, {nn::weight_kind::q8_0, "q8_0"},
      {nn::weight_kind::q4_0, "q4_0"}, {nn::weight_kind::q4_1, "q4_1"},
      {nn::weight_kind::q5_0, "q5_0"}, {nn::weight_kind::q5_1, "q5_1"},
      {nn::weight_kind::q2_k, "q2_k"}, {nn::weight_kind::q3_k, "q3_k"},
      {nn::weight_kind::q4_k, "q4_k"}, {nn::weight_kind::q5_k, "q5_k"},
      {nn::weight_kind::q6_k, "q6_k"}};
  for (const auto& [k, n] : named) {
    CHECK(nn::name(k) == n);
    CHECK(nn::with_weight_kind(k, []<class T>(type_tag<T>) { return std::size_t(sizeof(T)); }) ==
          std::size_t(spec_of(static_cast<io::ggml_type>(k))->block_bytes));
  }
  CHECK(nn::weight_kind_of<q4_k>() == nn::weight_kind::q4_k);
  CHECK(nn::weight_kind_of<float>() == nn::weight_kind::f32);
  // Every GGUF id that is not a weight format: no kind, and a forged kind is refused.
  for (std::uint32_t id = 0; id < 40; ++id) {
    const spec_row* s = spec_of(static_cast<io::ggml_type>(id));
    if (s && s->weight) continue;
    INFO("GGUF type " << id);
    CHECK_FALSE(io::weight_kind_of(static_cast<io::ggml_type>(id)).has_value());
    CHECK_THROWS_AS(nn::with_weight_kind(static_cast<nn::weight_kind>(id), [](auto) {}),
                    value_error);
  }
  // Formats GGUF cannot store have no ggml type.
  static_assert(!io::ggml_type_of<nf4>().has_value());
  static_assert(!io::ggml_type_of<int4_group<128>>().has_value());
  static_assert(!io::ggml_type_of<std::uint8_t>().has_value());
}

TEST_CASE("the loader widens a K-quant tensor by its GGUF type") {
  // Through io::detail::source_row_f32, the switch every loader converts with.
  const auto x = gaussian(2 * 256, 7);
  const auto stored = store_as(io::ggml_type::Q4_K, x);
  const std::string file = "memory";
  io::TensorSource src{"w", io::ggml_type::Q4_K, {2, 256}, stored.data(), &file, 0};
  std::vector<float> a(256), b(256);
  io::detail::source_row_f32(src, 1, 256, a.data());
  q4_k::dequantize_row(reinterpret_cast<const q4_k*>(stored.data()) + 1, b.data(), 256);
  CHECK(std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0);
  // A type no listed format widens is a format_error naming the tensor.
  io::TensorSource ints{"tok", io::ggml_type::I32, {2, 256}, stored.data(), &file, 0};
  CHECK_THROWS_WITH_AS(io::detail::source_row_f32(ints, 0, 256, a.data()),
                       doctest::Contains("'tok' is stored as I32"), format_error);
}
