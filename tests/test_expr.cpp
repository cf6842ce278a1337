// Expression templates: broadcasting, math functions, fused evaluation, reductions.
// Oracles: index-mapping loops written here, std:: functions in double, the scalar reference
// evaluator (for the SIMD one), and element counters.

#include <doctest/doctest.h>

#include <atomic>
#include <bit>
#include <cmath>
#include <cstdint>
#include <limits>
#include <random>
#include <string>
#include <tessel/backend/cpu/eval.hpp>
#include <vector>

using namespace tessel;

namespace {

constexpr float inf = std::numeric_limits<float>::infinity();
const float qnan = std::numeric_limits<float>::quiet_NaN();

template <class T, class S>
void fill_random(Tensor<T, S>& t, float lo, float hi, unsigned seed) {
  std::mt19937 g(seed);
  std::uniform_real_distribution<float> d(lo, hi);
  for (index_t i = 0; i < t.units(); ++i) t.data()[i] = from_f32<T>(d(g));
}

// Distance in units in the last place, on the ordered integer line of float bit patterns
// (so +inf is one ulp above FLT_MAX and -0 == +0).
std::int64_t ulp_distance(float a, float b) {
  auto key = [](float f) -> std::int64_t {
    const std::int32_t i = std::bit_cast<std::int32_t>(f);
    return i < 0 ? std::int64_t{INT32_MIN} - i : i;
  };
  const std::int64_t d = key(a) - key(b);
  return d < 0 ? -d : d;
}

// got vs a double reference: NaN where the reference is NaN, else within `ulps` of the
// reference rounded to float (values below 1e-30 in magnitude on both sides count as equal:
// underflow to 0 versus a subnormal).
// Where `rel` > 0, a relative error up to rel also passes (for ill-conditioned tails).
bool close_ulps(float got, double ref, std::int64_t ulps, double rel = 0) {
  if (std::isnan(ref)) return std::isnan(got);
  const float r = static_cast<float>(ref);
  if (std::fabs(got) < 1e-30f && std::fabs(r) < 1e-30f) return true;
  if (rel > 0 && std::isfinite(ref) && std::fabs(got - ref) <= rel * std::fabs(ref)) return true;
  return ulp_distance(got, r) <= ulps;
}

// The inputs a math function is checked on: a dense grid over [lo, hi] plus edge values.
std::vector<float> test_inputs(float lo, float hi, int n = 20001) {
  std::vector<float> v;
  for (int i = 0; i < n; ++i) v.push_back(lo + (hi - lo) * static_cast<float>(i) / (n - 1));
  for (float x : {0.f, -0.f, 1e-30f, -1e-30f, 1e-6f, -1e-6f, 1.f, -1.f, 1e4f, -1e4f, 1e30f, -1e30f,
                  inf, -inf, qnan, std::numeric_limits<float>::denorm_min(),
                  std::numeric_limits<float>::max(), std::numeric_limits<float>::lowest()})
    v.push_back(x);
  return v;
}

template <class Build, class Ref>
void check_unary(std::string name, Build build, Ref ref, float lo, float hi,
                 std::int64_t ulps_scalar, std::int64_t ulps_simd, double rel = 0) {
  const auto in = test_inputs(lo, hi);
  const auto n = static_cast<index_t>(in.size());
  Tensor<float, DynShape<1>> x(n);
  for (index_t i = 0; i < n; ++i) x.data()[i] = in[static_cast<std::size_t>(i)];
  auto rs = materialize(build(x), cpu_scalar{});
  auto rv = materialize(build(x), cpu{});
  std::int64_t worst_s = 0, worst_v = 0;
  int bad = 0;
  for (index_t i = 0; i < n; ++i) {
    const double r = ref(static_cast<double>(x.data()[i]));
    const float gs = rs.data()[i], gv = rv.data()[i];
    if (!std::isnan(r) && std::fabs(static_cast<float>(r)) >= 1e-30f) {
      worst_s = std::max(worst_s, ulp_distance(gs, static_cast<float>(r)));
      worst_v = std::max(worst_v, ulp_distance(gv, static_cast<float>(r)));
    }
    if (!close_ulps(gs, r, ulps_scalar, rel) || !close_ulps(gv, r, ulps_simd, rel)) {
      if (++bad <= 5)
        MESSAGE(name << "(" << x.data()[i] << "): ref " << r << " scalar " << gs << " simd " << gv);
    }
  }
  MESSAGE(name << ": worst error " << worst_s << " ulp (scalar), " << worst_v << " ulp (simd)");
  CHECK_MESSAGE(bad == 0, name);
}

}  // namespace

TEST_CASE("static broadcast shapes follow numpy rules") {
  static_assert(std::is_same_v<broadcast_shape_t<Shape<2, 1, 3>, Shape<4, 1>>, Shape<2, 4, 3>>);
  static_assert(std::is_same_v<broadcast_shape_t<Shape<dyn, 3>, Shape<1>>, Shape<dyn, 3>>);
  static_assert(std::is_same_v<broadcast_shape_t<Shape<dyn>, Shape<5>>, Shape<5>>);
  static_assert(std::is_same_v<broadcast_shape_t<Shape<>, Shape<2, 2>>, Shape<2, 2>>);
  static_assert(!detail::broadcast_static<Shape<2, 3>, Shape<4>>::ok);
  Tensor<float, Shape<2, 1, 3>> a;
  Tensor<float, Shape<4, 1>> b;
  auto e = a + b;
  static_assert(std::is_same_v<decltype(e)::shape_type, Shape<2, 4, 3>>);
  CHECK(e.shape().extents() == std::array<index_t, 3>{2, 4, 3});
}

namespace {
// Oracle: the element of operand (extents ae, row-major data) used at output index `o`.
template <std::size_t R, std::size_t N>
float broadcast_oracle(const float* data, const std::array<index_t, N>& ae,
                       const std::array<index_t, R>& o) {
  index_t off = 0;
  for (std::size_t a = 0; a < N; ++a) {
    const index_t i = ae[a] == 1 ? 0 : o[R - N + a];
    off = off * ae[a] + i;
  }
  return data[off];
}

template <std::size_t RA, std::size_t RB>
void check_broadcast_case(std::mt19937& g) {
  constexpr std::size_t R = RA > RB ? RA : RB;
  std::uniform_int_distribution<index_t> ext(1, 9);
  std::bernoulli_distribution one(0.3);
  std::array<index_t, R> out{};
  for (auto& e : out) e = ext(g);
  std::array<index_t, RA> ea{};
  std::array<index_t, RB> eb{};
  for (std::size_t k = 0; k < RA; ++k) ea[k] = one(g) ? 1 : out[R - RA + k];
  for (std::size_t k = 0; k < RB; ++k) eb[k] = one(g) ? 1 : out[R - RB + k];
  // Where neither operand has the axis at full size, the output extent is 1.
  for (std::size_t k = 0; k < R; ++k) {
    const index_t x = k >= R - RA ? ea[k - (R - RA)] : 1;
    const index_t y = k >= R - RB ? eb[k - (R - RB)] : 1;
    out[k] = std::max(x, y);
  }
  Tensor<float, DynShape<RA>> a(DynShape<RA>::from_array(ea));
  Tensor<float, DynShape<RB>> b(DynShape<RB>::from_array(eb));
  fill_random(a, -4.f, 4.f, static_cast<unsigned>(g()));
  fill_random(b, -4.f, 4.f, static_cast<unsigned>(g()));
  auto e = where(a > b, a - b, b * 3.f);
  REQUIRE(e.shape().extents() == out);
  auto rs = materialize(e, cpu_scalar{});
  auto rv = materialize(e, cpu{});
  std::array<index_t, R> o{};
  for (index_t i = 0; i < rs.size(); ++i) {
    index_t rem = i;
    for (std::size_t k = R; k-- > 0;) o[k] = rem % out[k], rem /= out[k];
    const float x = broadcast_oracle(a.data(), ea, o), y = broadcast_oracle(b.data(), eb, o);
    const float want = x > y ? x - y : y * 3.f;
    REQUIRE(rs.data()[i] == want);
    REQUIRE(rv.data()[i] == want);
  }
}
}  // namespace

TEST_CASE("broadcasting matches an index-mapping oracle") {
  std::mt19937 g(42);
  for (int t = 0; t < 12; ++t) {
    check_broadcast_case<3, 3>(g);
    check_broadcast_case<3, 1>(g);
    check_broadcast_case<2, 4>(g);
    check_broadcast_case<4, 4>(g);
    check_broadcast_case<1, 2>(g);
  }
}

TEST_CASE("shape errors name the operation and both shapes") {
  Tensor<float, DynShape<2>> a(2, 3);
  Tensor<float, DynShape<1>> b(4);
  auto message_of = [](auto&& f) -> std::string {
    try {
      f();
    } catch (const shape_error& e) {
      return e.what();
    }
    return "(no shape_error)";
  };
  const std::string m1 = message_of([&] { (void)(a + b); });
  CHECK(m1.find("add") != std::string::npos);
  CHECK(m1.find("[2, 3]") != std::string::npos);
  CHECK(m1.find("[4]") != std::string::npos);
  const std::string m2 = message_of([&] { (void)where(a, a, b); });
  CHECK(m2.find("where") != std::string::npos);
  CHECK(m2.find("[4]") != std::string::npos);
  Tensor<float, DynShape<2>> d(3, 2);
  const std::string m3 = message_of([&] { eval(d, a * 2.f); });
  CHECK(m3.find("eval") != std::string::npos);
  CHECK(m3.find("[2, 3]") != std::string::npos);
  CHECK(m3.find("[3, 2]") != std::string::npos);
  const std::string m4 = message_of([&] { (void)sum(a, 2); });
  CHECK(m4.find("sum") != std::string::npos);
  CHECK(m4.find("[2, 3]") != std::string::npos);
  Tensor<float, DynShape<2>> empty(3, 0);
  const std::string m5 = message_of([&] { (void)materialize(max(empty, axis<1>)); });
  CHECK(m5.find("max") != std::string::npos);
  CHECK(m5.find("empty") != std::string::npos);
}

TEST_CASE("math functions match std:: functions in double") {
  // Bounds in ulp of the float-rounded double result (measured worst cases are printed).
  check_unary(
      "exp", [](auto& x) { return exp(x); }, [](double v) { return std::exp(v); }, -104.f, 89.f, 1,
      2);
  check_unary(
      "log", [](auto& x) { return log(x); }, [](double v) { return std::log(v); }, 0.f, 1e6f, 1, 2);
  check_unary(
      "sqrt", [](auto& x) { return sqrt(x); }, [](double v) { return std::sqrt(v); }, 0.f, 1e30f, 0,
      0);
  check_unary(
      "rsqrt", [](auto& x) { return rsqrt(x); }, [](double v) { return 1.0 / std::sqrt(v); }, 0.f,
      1e30f, 1, 1);
  check_unary(
      "abs", [](auto& x) { return abs(x); }, [](double v) { return std::fabs(v); }, -1e30f, 1e30f,
      0, 0);
  check_unary(
      "neg", [](auto& x) { return -x; }, [](double v) { return -v; }, -1e30f, 1e30f, 0, 0);
  check_unary(
      "tanh", [](auto& x) { return tanh(x); }, [](double v) { return std::tanh(v); }, -20.f, 20.f,
      2, 4);
  check_unary(
      "erf", [](auto& x) { return erf(x); }, [](double v) { return std::erf(v); }, -6.f, 6.f, 2, 4);
  check_unary(
      "sigmoid", [](auto& x) { return sigmoid(x); },
      [](double v) { return 1.0 / (1.0 + std::exp(-v)); }, -100.f, 100.f, 3, 4);
  check_unary(
      "silu", [](auto& x) { return silu(x); }, [](double v) { return v / (1.0 + std::exp(-v)); },
      -100.f, 100.f, 3, 4);
  // gelu and gelu_tanh are ill-conditioned in the negative tail: an input rounding of 2^-24
  // becomes a relative error of about |erfc / exp argument| * z * 2^-24 (up to ~2e-5 at -15);
  // there a relative bound of 3e-5 applies instead of the ulp bound.
  check_unary(
      "gelu", [](auto& x) { return gelu(x); },
      [](double v) { return 0.5 * v * std::erfc(-v / std::sqrt(2.0)); }, -15.f, 15.f, 4, 6, 3e-5);
  check_unary(
      "gelu_tanh", [](auto& x) { return gelu_tanh(x); },
      [](double v) {
        // 0.5 v (1 + tanh(u)) with 1 + tanh(u) = 2 / (1 + e^(-2u)), exact in double for v << 0.
        const double u = std::sqrt(2.0 / M_PI) * (v + 0.044715 * v * v * v);
        return v / (1.0 + std::exp(-2.0 * u));
      },
      -15.f, 15.f, 4, 6, 3e-5);
  check_unary(
      "softplus", [](auto& x) { return softplus(x); },
      [](double v) { return v > 30 ? v + std::log1p(std::exp(-v)) : std::log1p(std::exp(v)); },
      -100.f, 100.f, 2, 3);
  check_unary(
      "relu", [](auto& x) { return relu(x); },
      [](double v) { return std::isnan(v) ? v : (v < 0 ? 0.0 : v); }, -1e30f, 1e30f, 0, 0);
}

TEST_CASE("binary operations: exact arithmetic, NaN-propagating min/max, comparisons, pow") {
  const auto in = test_inputs(-50.f, 50.f, 97);
  const auto n = static_cast<index_t>(in.size());
  Tensor<float, DynShape<2>> a(n, n), b(n, n);
  for (index_t i = 0; i < n; ++i)
    for (index_t j = 0; j < n; ++j)
      a(i, j) = in[static_cast<std::size_t>(i)], b(i, j) = in[static_cast<std::size_t>(j)];
  auto check = [&](std::string name, auto build, auto ref, std::int64_t ulps) {
    auto rs = materialize(build(a, b), cpu_scalar{});
    auto rv = materialize(build(a, b), cpu{});
    int bad = 0;
    for (index_t i = 0; i < a.size(); ++i) {
      const double r = ref(static_cast<double>(a.data()[i]), static_cast<double>(b.data()[i]));
      if (!close_ulps(rs.data()[i], r, ulps) || !close_ulps(rv.data()[i], r, ulps))
        if (++bad <= 3)
          MESSAGE(name << "(" << a.data()[i] << ", " << b.data()[i] << "): ref " << r << " scalar "
                       << rs.data()[i] << " simd " << rv.data()[i]);
    }
    CHECK_MESSAGE(bad == 0, name);
  };
  check(
      "add", [](auto& x, auto& y) { return x + y; }, [](double x, double y) { return x + y; }, 0);
  check(
      "sub", [](auto& x, auto& y) { return x - y; }, [](double x, double y) { return x - y; }, 0);
  check(
      "mul", [](auto& x, auto& y) { return x * y; }, [](double x, double y) { return x * y; }, 0);
  check(
      "div", [](auto& x, auto& y) { return x / y; }, [](double x, double y) { return x / y; }, 0);
  auto nanmax = [](double x, double y) {
    return std::isnan(x) || std::isnan(y) ? NAN : std::max(x, y);
  };
  auto nanmin = [](double x, double y) {
    return std::isnan(x) || std::isnan(y) ? NAN : std::min(x, y);
  };
  check(
      "max", [](auto& x, auto& y) { return max(x, y); }, nanmax, 0);
  check(
      "min", [](auto& x, auto& y) { return min(x, y); }, nanmin, 0);
  check(
      "less", [](auto& x, auto& y) { return x < y; },
      [](double x, double y) { return x < y ? 1.0 : 0.0; }, 0);
  check(
      "greater_equal", [](auto& x, auto& y) { return x >= y; },
      [](double x, double y) { return x >= y ? 1.0 : 0.0; }, 0);
  check(
      "equal", [](auto& x, auto& y) { return equal(x, y); },
      [](double x, double y) { return x == y ? 1.0 : 0.0; }, 0);
  check(
      "not_equal", [](auto& x, auto& y) { return not_equal(x, y); },
      [](double x, double y) { return x != y ? 1.0 : 0.0; }, 0);
  check(
      "where", [](auto& x, auto& y) { return where(x, x, y); },
      [](double x, double y) { return x != 0 ? x : y; }, 0);
  // pow on positive bases (negative bases need integer exponents: checked below).
  Tensor<float, DynShape<2>> p(64, 81), q(64, 81);
  for (index_t i = 0; i < 64; ++i)
    for (index_t j = 0; j < 81; ++j)
      p(i, j) = 0.01f + 3.f * static_cast<float>(i),
           q(i, j) = -10.f + 0.25f * static_cast<float>(j);
  auto ps = materialize(pow(p, q), cpu_scalar{});
  auto pv = materialize(pow(p, q), cpu{});
  int bad = 0;
  for (index_t i = 0; i < p.size(); ++i) {
    const double r = std::pow(static_cast<double>(p.data()[i]), static_cast<double>(q.data()[i]));
    if (!close_ulps(ps.data()[i], r, 1) || !close_ulps(pv.data()[i], r, 1))
      if (++bad <= 3)
        MESSAGE("pow(" << p.data()[i] << ", " << q.data()[i] << "): ulp "
                       << ulp_distance(ps.data()[i], static_cast<float>(r)) << " "
                       << ulp_distance(pv.data()[i], static_cast<float>(r)) << " ref " << r
                       << " scalar " << ps.data()[i] << " simd " << pv.data()[i]);
  }
  CHECK(bad == 0);
  Tensor<float, Shape<3>> nb;
  nb(0) = -2.f, nb(1) = -3.f, nb(2) = -0.5f;
  auto cube = materialize(pow(nb, 3.f));
  CHECK(cube(0) == -8.f);
  CHECK(cube(1) == -27.f);
  CHECK(cube(2) == -0.125f);
}

TEST_CASE("SIMD evaluator matches the scalar reference on views, odd sizes and mixed types") {
  std::mt19937 g(7);
  std::uniform_int_distribution<index_t> ext(1, 45);
  for (int t = 0; t < 20; ++t) {
    const index_t r = ext(g), c = ext(g);
    Tensor<float, DynShape<2>> a(r, c), base(c, r), wide(r, 2 * c + 1);
    Tensor<f16, DynShape<2>> h(r, c);
    Tensor<bf16, DynShape<1>> colv(c);
    Tensor<float, DynShape<2>> rowv(r, 1);
    fill_random(a, -6.f, 6.f, static_cast<unsigned>(g()));
    fill_random(base, -6.f, 6.f, static_cast<unsigned>(g()));
    fill_random(wide, -6.f, 6.f, static_cast<unsigned>(g()));
    fill_random(h, -3.f, 3.f, static_cast<unsigned>(g()));
    fill_random(colv, -2.f, 2.f, static_cast<unsigned>(g()));
    fill_random(rowv, 0.5f, 2.f, static_cast<unsigned>(g()));
    auto permuted = base.transpose();  // [r, c], strides [1, r]
    // Every other column of `wide`: inner stride 2.
    TensorView<const float, DynShape<2>> strided(wide.data() + 1, DynShape<2>(r, c),
                                                 {2 * c + 1, 2});
    auto e = where(a > permuted, silu(a) * colv, gelu(strided) - h) +
             exp(-abs(rowv * h)) / (1.f + softplus(permuted));
    auto check_dst = [&](auto tag, float rel) {
      using T = decltype(tag);
      Tensor<T, DynShape<2>> ds(r, c), dv(r, c);
      eval(cpu_scalar{}, ds, e);
      eval(cpu{}, dv, e);
      for (index_t i = 0; i < ds.size(); ++i) {
        const float x = to_f32(ds.data()[i]), y = to_f32(dv.data()[i]);
        REQUIRE(std::fabs(x - y) <= rel * std::max(1.f, std::fabs(x)));
      }
    };
    check_dst(float{}, 1e-5f);
    check_dst(f16{}, 1e-3f);   // one f16 rounding step apart at most
    check_dst(bf16{}, 8e-3f);  // one bf16 rounding step apart at most
    // A strided (transposed) destination.
    Tensor<float, DynShape<2>> ts(c, r), tv(c, r);
    eval(cpu_scalar{}, ts.transpose(), e);
    eval(cpu{}, tv.transpose(), e);
    for (index_t i = 0; i < ts.size(); ++i)
      REQUIRE(std::fabs(ts.data()[i] - tv.data()[i]) <=
              1e-5f * std::max(1.f, std::fabs(ts.data()[i])));
  }
}

TEST_CASE("f16 and bf16 destinations round to nearest even") {
  std::mt19937 g(3);
  std::uniform_int_distribution<std::uint32_t> bits(0, 0xffffffffu);
  Tensor<float, DynShape<1>> x(4099);
  for (index_t i = 0; i < x.size(); ++i) {
    float v;
    do v = std::bit_cast<float>(bits(g));
    while (std::isnan(v) || std::fabs(v) > 1e5f || std::fabs(v) < 1e-5f);
    // Every fourth value is an exact tie between two f16 / bf16 neighbours.
    if (i % 4 == 0)
      v = std::bit_cast<float>((std::bit_cast<std::uint32_t>(v) & ~0x1fffu) | 0x1000u);
    if (i % 4 == 1)
      v = std::bit_cast<float>((std::bit_cast<std::uint32_t>(v) & ~0xffffu) | 0x8000u);
    x(i) = v;
  }
  auto h = materialize<f16>(x * 1.f);
  auto b = materialize<bf16>(x * 1.f);
  for (index_t i = 0; i < x.size(); ++i) {
    CHECK(h(i).bits == f32_to_f16_bits_soft(x(i)));  // software encoder as the oracle
    // bf16 oracle: the nearer of the two bf16 neighbours in double, ties to the even one.
    const std::uint32_t u = std::bit_cast<std::uint32_t>(x(i));
    const std::uint32_t lo = u & 0xffff0000u, hi = lo + 0x10000u;
    const double dl = std::fabs(double(std::bit_cast<float>(lo)) - double(x(i)));
    const double dh = std::fabs(double(std::bit_cast<float>(hi)) - double(x(i)));
    const std::uint32_t want = dl < dh ? lo : dh < dl ? hi : ((lo >> 16) & 1u) ? hi : lo;
    CHECK(b(i).bits == want >> 16);
  }
}

namespace test_expr_counting {  // named: clang flags unused members of internal types
// A leaf that counts how often each of its elements is read (by get or by a vector load).
template <std::size_t R>
struct counting_eval {
  const float* data;
  std::atomic<int>* counts;
  std::array<index_t, R> st;
  index_t row = 0;
  float at(const index_t* idx) const {
    index_t off = 0;
    for (std::size_t k = 0; k < R; ++k) off += idx[k] * st[k];
    counts[off].fetch_add(1, std::memory_order_relaxed);
    return data[off];
  }
  void seek(const index_t* o) {
    row = 0;
    for (std::size_t k = 0; k + 1 < R; ++k) row += o[k] * st[k];
  }
  float get(index_t j) const {
    counts[row + j].fetch_add(1, std::memory_order_relaxed);
    return data[row + j];
  }
  template <class V>
  V load(index_t j) const {
    for (std::size_t k = 0; k < V::size; ++k)
      counts[row + j + static_cast<index_t>(k)].fetch_add(1, std::memory_order_relaxed);
    return V::load_unaligned(data + row + j);
  }
  template <class F>
  void for_each_leaf(F&& f) {
    f(st);
  }
};
struct counting_expr : expr_base {
  using shape_type = DynShape<2>;
  using result_type = float;
  static constexpr std::size_t rank = 2;
  static constexpr int spaces = host_bit;
  static constexpr bool has_reduction = false;
  const Tensor<float, DynShape<2>>* t;
  std::atomic<int>* counts;
  const DynShape<2>& shape() const { return t->shape(); }
  template <std::size_t R, class Ctx>
  counting_eval<R> bind(const std::array<index_t, R>& out, Ctx&) const {
    static_assert(R == 2);
    REQUIRE(out == t->shape().extents());  // this leaf does not broadcast
    return {t->data(), counts, {out[1], 1}};
  }
};
}  // namespace test_expr_counting
using test_expr_counting::counting_expr;

TEST_CASE("fused evaluation reads each leaf element exactly once") {
  const index_t r = 301, c = 517;  // large enough for the threaded path, odd inner size
  Tensor<float, DynShape<2>> a(r, c), b(r, c), out(r, c);
  Tensor<float, DynShape<1>> bias(c);
  fill_random(a, -3.f, 3.f, 1);
  fill_random(b, -3.f, 3.f, 2);
  fill_random(bias, -1.f, 1.f, 3);
  std::vector<std::atomic<int>> counts(static_cast<std::size_t>(r * c));
  const counting_expr leaf{{}, &a, counts.data()};
  for (int backend = 0; backend < 2; ++backend) {
    for (auto& k : counts) k = 0;
    auto e = silu(leaf) * b + bias * leaf - exp(leaf);
    if (backend == 0) {
      eval(cpu_scalar{}, out, e);
    } else {
      eval(cpu{}, out, e);
    }
    int wrong = 0;
    // Three uses of the leaf in the tree: each element is read three times, no more.
    for (auto& k : counts) wrong += k.load() != 3;
    CHECK(wrong == 0);
    for (index_t i = 0; i < r; i += 37)
      for (index_t j = 0; j < c; j += 13) {
        const double x = a(i, j);
        const double want = x / (1 + std::exp(-x)) * b(i, j) + bias(j) * x - std::exp(x);
        REQUIRE(std::fabs(out(i, j) - want) <= 1e-5 * std::max(1.0, std::fabs(want)));
      }
  }
  // A single use: once per element.
  for (auto& k : counts) k = 0;
  eval(out, silu(leaf) * b);
  int wrong = 0;
  for (auto& k : counts) wrong += k.load() != 1;
  CHECK(wrong == 0);
}

TEST_CASE("reductions match loops in double") {
  const index_t d0 = 5, d1 = 37, d2 = 41;
  Tensor<float, DynShape<3>> x(d0, d1, d2);
  fill_random(x, -10.f, 10.f, 11);
  for (int axis = 0; axis < 3; ++axis) {
    const std::array<index_t, 3> e{d0, d1, d2};
    std::array<index_t, 3> oe = e;
    oe[static_cast<std::size_t>(axis)] = 1;
    std::vector<double> s(static_cast<std::size_t>(oe[0] * oe[1] * oe[2]), 0.0), sa(s.size(), 0.0),
        mx(s.size(), -1e300);
    std::vector<index_t> am(s.size(), -1);
    for (index_t i = 0; i < d0; ++i)
      for (index_t j = 0; j < d1; ++j)
        for (index_t k = 0; k < d2; ++k) {
          std::array<index_t, 3> o{i, j, k};
          const index_t pos = o[static_cast<std::size_t>(axis)];
          o[static_cast<std::size_t>(axis)] = 0;
          const auto q = static_cast<std::size_t>((o[0] * oe[1] + o[1]) * oe[2] + o[2]);
          const double v = x(i, j, k);
          s[q] += v;
          sa[q] += std::fabs(v);
          if (v > mx[q]) mx[q] = v, am[q] = pos;
        }
    const index_t n = e[static_cast<std::size_t>(axis)];
    for (int backend = 0; backend < 2; ++backend) {
      auto run = [&](auto&& expr) {
        return backend ? materialize(expr, cpu{}) : materialize(expr, cpu_scalar{});
      };
      auto rs = run(sum(x, axis));
      auto rm = run(mean(x, dyn_axis(axis)));
      auto rx = run(max(x, dyn_axis(axis)));
      auto ra = run(argmax(x, axis));
      static_assert(std::is_same_v<decltype(ra)::value_type, std::int32_t>);
      REQUIRE(rs.shape().extents() == oe);
      for (std::size_t q = 0; q < s.size(); ++q) {
        const auto qi = static_cast<index_t>(q);
        CHECK(std::fabs(rs.data()[qi] - s[q]) <= 1e-6 * static_cast<double>(n) * sa[q] + 1e-6);
        CHECK(std::fabs(rm.data()[qi] - s[q] / static_cast<double>(n)) <= 1e-6 * sa[q] + 1e-6);
        CHECK(rx.data()[qi] == static_cast<float>(mx[q]));
        CHECK(ra.data()[qi] == am[q]);
      }
    }
  }
  // Static axes, negative axes, dropping the axis.
  auto s_static = materialize(sum(x, axis<-1>, keepdims<false>));
  static_assert(decltype(s_static)::rank == 2);
  auto s_dyn = materialize(sum(x, dyn_axis(2)));
  for (index_t i = 0; i < d0; ++i)
    for (index_t j = 0; j < d1; ++j) CHECK(s_static(i, j) == s_dyn(i, j, 0));
  // A full reduction of a vector to a rank-0 tensor.
  Tensor<float, Shape<4>> v;
  v(0) = 1.f, v(1) = 2.f, v(2) = 3.f, v(3) = 4.5f;
  auto total = materialize(sum(v, axis<0>, keepdims<false>));
  static_assert(decltype(total)::rank == 0);
  CHECK(*total.data() == 10.5f);
}

TEST_CASE("max and argmax: NaN and ties as numpy") {
  Tensor<float, Shape<3, 5>> x;
  const float rows[3][5] = {{1, 3, 3, 2, 0}, {1, qnan, 7, qnan, 2}, {-inf, -inf, -inf, -inf, -inf}};
  for (int i = 0; i < 3; ++i)
    for (int j = 0; j < 5; ++j) x(i, j) = rows[i][j];
  for (int backend = 0; backend < 2; ++backend) {
    auto mx =
        backend ? materialize(max(x, axis<1>), cpu{}) : materialize(max(x, axis<1>), cpu_scalar{});
    auto am = backend ? materialize(argmax(x, axis<1>), cpu{})
                      : materialize(argmax(x, axis<1>), cpu_scalar{});
    CHECK(mx(0, 0) == 3.f);
    CHECK(std::isnan(mx(1, 0)));
    CHECK(mx(2, 0) == -inf);
    CHECK(am(0, 0) == 1);  // first of the tied maxima
    CHECK(am(1, 0) == 1);  // first NaN
    CHECK(am(2, 0) == 0);
  }
}

TEST_CASE("softmax as an expression with a keepdims reduction") {
  const index_t r = 7, c = 1000;
  Tensor<float, DynShape<2>> x(r, c);
  fill_random(x, -20.f, 20.f, 5);
  auto shifted = exp(x - max(x, axis<1>));
  auto p = materialize(shifted / sum(shifted, axis<1>));
  for (index_t i = 0; i < r; ++i) {
    double m = -1e300, z = 0;
    for (index_t j = 0; j < c; ++j) m = std::max(m, double(x(i, j)));
    for (index_t j = 0; j < c; ++j) z += std::exp(double(x(i, j)) - m);
    for (index_t j = 0; j < c; ++j) {
      const double want = std::exp(double(x(i, j)) - m) / z;
      REQUIRE(std::fabs(p(i, j) - want) <= 1e-5 * want + 1e-12);
    }
  }
}

TEST_CASE("eval may write over one of its leaves and into views") {
  Tensor<float, DynShape<2>> x(9, 13);
  fill_random(x, -1.f, 1.f, 9);
  auto before = x.clone();
  eval(x, x * 2.f + 1.f);
  for (index_t i = 0; i < x.size(); ++i) CHECK(x.data()[i] == before.data()[i] * 2.f + 1.f);
  // Scalar broadcast into a slice.
  eval(x.slice(1, 2, 5), 0.5f);
  CHECK(x(3, 2) == 0.5f);
  CHECK(x(3, 5) == before(3, 5) * 2.f + 1.f);
  // f16 and bf16 sources are read in f32.
  Tensor<f16, Shape<4>> h;
  Tensor<bf16, Shape<4>> b;
  for (int i = 0; i < 4; ++i) h(i) = from_f32<f16>(0.5f * i), b(i) = from_f32<bf16>(-1.5f * i);
  auto s = materialize(h + b);
  for (int i = 0; i < 4; ++i) CHECK(s(i) == -1.f * static_cast<float>(i));
}
