#pragma once
// The one list of the number and block formats tessel stores in GGUF files. Everything that
// names a format by a run-time id follows from it: io::ggml_type_of<T>(), the weight kinds of
// nn::any_weight (nn::weight_kind, nn::with_weight_kind), io::weight_kind_of(ggml_type) and the
// loaders' conversion of a stored row to f32. Each entry is checked below against GGUF's table
// (block size in elements and bytes, name), so a struct that drifts from the file format does
// not compile.
//
// Adding a block format: its struct (quant/), one entry in gguf_formats, its kernels
// (quant/kernels/: qdot, qgemm) and its tests. Nothing else names the formats one by one.

#include <array>
#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>
#include <type_traits>

#include "ggml_blocks.hpp"
#include "kquants.hpp"
#include "tessel/core/error.hpp"
#include "tessel/core/numeric.hpp"
#include "tessel/core/tensor.hpp"

// ---- GGUF's table of tensor types ---------------------------------------------------------
// Part of the file format (io/formats/gguf.hpp reads and writes it); declared here so that the
// layers below io/ can name formats without including a file parser.

namespace tessel::io {

/// ggml tensor types, numbered as in the GGUF specification.
enum class ggml_type : std::uint32_t {
  F32 = 0,
  F16 = 1,
  Q4_0 = 2,
  Q4_1 = 3,
  Q5_0 = 6,
  Q5_1 = 7,
  Q8_0 = 8,
  Q8_1 = 9,
  Q2_K = 10,
  Q3_K = 11,
  Q4_K = 12,
  Q5_K = 13,
  Q6_K = 14,
  Q8_K = 15,
  IQ2_XXS = 16,
  IQ2_XS = 17,
  IQ3_XXS = 18,
  IQ1_S = 19,
  IQ4_NL = 20,
  IQ3_S = 21,
  IQ2_S = 22,
  IQ4_XS = 23,
  I8 = 24,
  I16 = 25,
  I32 = 26,
  I64 = 27,
  F64 = 28,
  IQ1_M = 29,
  BF16 = 30,
};

struct ggml_type_info {
  ggml_type type;
  const char* name;
  std::int64_t block_elems;  // elements per block (1 for plain numbers)
  std::int64_t block_bytes;  // bytes per block
  bool iq = false;           // an i-quant: readable as bytes; no tessel block type maps to it
};

/// The types GGUF files may hold (facts from the GGUF specification / ggml).
inline constexpr std::array<ggml_type_info, 29> ggml_types{{
    {ggml_type::F32, "F32", 1, 4},
    {ggml_type::F16, "F16", 1, 2},
    {ggml_type::Q4_0, "Q4_0", 32, 18},
    {ggml_type::Q4_1, "Q4_1", 32, 20},
    {ggml_type::Q5_0, "Q5_0", 32, 22},
    {ggml_type::Q5_1, "Q5_1", 32, 24},
    {ggml_type::Q8_0, "Q8_0", 32, 34},
    {ggml_type::Q8_1, "Q8_1", 32, 36},
    {ggml_type::Q2_K, "Q2_K", 256, 84},
    {ggml_type::Q3_K, "Q3_K", 256, 110},
    {ggml_type::Q4_K, "Q4_K", 256, 144},
    {ggml_type::Q5_K, "Q5_K", 256, 176},
    {ggml_type::Q6_K, "Q6_K", 256, 210},
    {ggml_type::Q8_K, "Q8_K", 256, 292},
    {ggml_type::IQ2_XXS, "IQ2_XXS", 256, 66, true},
    {ggml_type::IQ2_XS, "IQ2_XS", 256, 74, true},
    {ggml_type::IQ3_XXS, "IQ3_XXS", 256, 98, true},
    {ggml_type::IQ1_S, "IQ1_S", 256, 50, true},
    {ggml_type::IQ4_NL, "IQ4_NL", 32, 18, true},
    {ggml_type::IQ3_S, "IQ3_S", 256, 110, true},
    {ggml_type::IQ2_S, "IQ2_S", 256, 82, true},
    {ggml_type::IQ4_XS, "IQ4_XS", 256, 136, true},
    {ggml_type::I8, "I8", 1, 1},
    {ggml_type::I16, "I16", 1, 2},
    {ggml_type::I32, "I32", 1, 4},
    {ggml_type::I64, "I64", 1, 8},
    {ggml_type::F64, "F64", 1, 8},
    {ggml_type::IQ1_M, "IQ1_M", 256, 56, true},
    {ggml_type::BF16, "BF16", 1, 2},
}};

/// The table entry of `t`, or nullptr for a type tessel does not know.
constexpr const ggml_type_info* find_ggml_type(std::uint32_t t) noexcept {
  for (const auto& i : ggml_types)
    if (static_cast<std::uint32_t>(i.type) == t) return &i;
  return nullptr;
}

/// The index of `t` in ggml_types, or -1. Compile-time checks use it rather than
/// find_ggml_type: GCC 12 does not fold pointer comparisons under -fsanitize=undefined.
constexpr int ggml_type_index(std::uint32_t t) noexcept {
  for (std::size_t k = 0; k < ggml_types.size(); ++k)
    if (static_cast<std::uint32_t>(ggml_types[k].type) == t) return static_cast<int>(k);
  return -1;
}

}  // namespace tessel::io

// ---- the list -----------------------------------------------------------------------------

namespace tessel {

template <class... Ts>
struct type_list {};

template <class T>
struct type_tag {
  using type = T;
};

/// What a stored format is to tessel's kernels.
enum class format_role {
  weight,      // a matrix in it runs through gemm (dense) or qgemm (blocks): nn::any_weight
  activation,  // only the other operand of a block dot product (q8_1, q8_k)
  data,  // plain integers and f64: GGUF holds them (token types), no kernel computes with them
};

/// C++ type T is stored in GGUF files as type Id.
template <class T, io::ggml_type Id, format_role Role = format_role::weight>
struct gguf_format {
  using type = T;
  static constexpr io::ggml_type id = Id;
  static constexpr format_role role = Role;
};

/// Every format tessel reads and writes in GGUF files.
using gguf_formats =
    type_list<gguf_format<float, io::ggml_type::F32>, gguf_format<f16, io::ggml_type::F16>,
              gguf_format<bf16, io::ggml_type::BF16>, gguf_format<q8_0, io::ggml_type::Q8_0>,
              gguf_format<q4_0, io::ggml_type::Q4_0>, gguf_format<q4_1, io::ggml_type::Q4_1>,
              gguf_format<q5_0, io::ggml_type::Q5_0>, gguf_format<q5_1, io::ggml_type::Q5_1>,
              gguf_format<q2_k, io::ggml_type::Q2_K>, gguf_format<q3_k, io::ggml_type::Q3_K>,
              gguf_format<q4_k, io::ggml_type::Q4_K>, gguf_format<q5_k, io::ggml_type::Q5_K>,
              gguf_format<q6_k, io::ggml_type::Q6_K>,
              gguf_format<q8_1, io::ggml_type::Q8_1, format_role::activation>,
              gguf_format<q8_k, io::ggml_type::Q8_K, format_role::activation>,
              gguf_format<std::int8_t, io::ggml_type::I8, format_role::data>,
              gguf_format<std::int16_t, io::ggml_type::I16, format_role::data>,
              gguf_format<std::int32_t, io::ggml_type::I32, format_role::data>,
              gguf_format<std::int64_t, io::ggml_type::I64, format_role::data>,
              gguf_format<double, io::ggml_type::F64, format_role::data>>;

// ---- what follows from it -----------------------------------------------------------------

namespace formats_detail {

template <class L, template <class> class Keep>
struct filter;
template <template <class> class Keep>
struct filter<type_list<>, Keep> {
  using type = type_list<>;
};
template <class E, class... Es, template <class> class Keep>
struct filter<type_list<E, Es...>, Keep> {
  using rest = typename filter<type_list<Es...>, Keep>::type;
  template <class... R>
  static auto prepend(type_list<R...>)
      -> std::conditional_t<Keep<E>::value, type_list<E, R...>, type_list<R...>>;
  using type = decltype(prepend(rest{}));
};

template <class E>
struct is_weight : std::bool_constant<E::role == format_role::weight> {};
// A format whose stored rows widen to f32: a number format or a block format.
template <class E>
struct widens : std::bool_constant<E::role != format_role::data> {};

// The entry of C++ type T (void when T is not listed).
template <class T, class L>
struct entry_of {
  using type = void;
};
template <class T, class E, class... Es>
struct entry_of<T, type_list<E, Es...>> {
  using type = std::conditional_t<std::is_same_v<T, typename E::type>, E,
                                  typename entry_of<T, type_list<Es...>>::type>;
};

constexpr char lower(char c) noexcept {
  return c >= 'A' && c <= 'Z' ? static_cast<char>(c - 'A' + 'a') : c;
}
constexpr bool same_name_ignoring_case(std::string_view a, std::string_view b) noexcept {
  if (a.size() != b.size()) return false;
  for (std::size_t i = 0; i < a.size(); ++i)
    if (lower(a[i]) != lower(b[i])) return false;
  return true;
}

// Each entry agrees with GGUF's table: a type the table knows (not an i-quant), the same block
// size in elements and in bytes, and for a block struct the same name and declared size.
template <class E>
constexpr bool matches_gguf() {
  using T = typename E::type;
  constexpr int k = io::ggml_type_index(static_cast<std::uint32_t>(E::id));
  static_assert(k >= 0, "tessel: a listed format must be a GGUF type");
  constexpr io::ggml_type_info g = io::ggml_types[std::size_t(k)];
  static_assert(!g.iq, "tessel: a listed format must not be an i-quant");
  static_assert(g.block_elems == block_elems_v<T>,
                "tessel: the block struct's block_elems differs from GGUF's table");
  static_assert(g.block_bytes == std::int64_t(sizeof(T)),
                "tessel: the block struct's size differs from GGUF's table");
  if constexpr (is_block_format_v<T>) {
    static_assert(T::block_bytes == sizeof(T), "tessel: block_bytes is not sizeof the block");
    static_assert(same_name_ignoring_case(T::name, g.name),
                  "tessel: the block struct's name differs from GGUF's");
  }
  return true;
}
template <class... E>
constexpr bool all_match_gguf(type_list<E...>) {
  return (matches_gguf<E>() && ...);
}

// Calls fn(type_tag<T>{}) for the entry of `id` among E, Es...; throws value_error for none.
template <class Fn, class E, class... Es>
decltype(auto) visit(io::ggml_type id, Fn& fn) {
  if (id == E::id) return fn(type_tag<typename E::type>{});
  if constexpr (sizeof...(Es) > 0) {
    return visit<Fn, Es...>(id, fn);
  } else {
    const auto* g = io::find_ggml_type(static_cast<std::uint32_t>(id));
    throw value_error(std::string("tessel: no format of this list is GGUF type ") +
                      (g ? g->name : std::to_string(static_cast<std::uint32_t>(id))));
  }
}
template <class Fn, class... E>
decltype(auto) visit_list(type_list<E...>, io::ggml_type id, Fn& fn) {
  return visit<Fn, E...>(id, fn);
}

template <class... E>
constexpr bool has_id(type_list<E...>, io::ggml_type id) noexcept {
  return ((E::id == id) || ...);
}

}  // namespace formats_detail

static_assert(formats_detail::all_match_gguf(gguf_formats{}));

/// The formats a weight matrix may be stored in (nn::any_weight), and the formats whose rows
/// widen to f32 (what a loader converts from).
using gguf_weight_formats =
    typename formats_detail::filter<gguf_formats, formats_detail::is_weight>::type;
using gguf_widening_formats =
    typename formats_detail::filter<gguf_formats, formats_detail::widens>::type;

/// Whether C++ type T is listed, and its GGUF type.
template <class T>
inline constexpr bool is_gguf_format_v =
    !std::is_void_v<typename formats_detail::entry_of<std::remove_const_t<T>, gguf_formats>::type>;
template <class T>
requires is_gguf_format_v<T>
inline constexpr io::ggml_type gguf_type_v =
    formats_detail::entry_of<std::remove_const_t<T>, gguf_formats>::type::id;

/// Whether a stored type is one of List's.
template <class List = gguf_formats>
constexpr bool is_listed(io::ggml_type t) noexcept {
  return formats_detail::has_id(List{}, t);
}

/// Calls fn(type_tag<T>{}) with the C++ format T of GGUF type t among List's; value_error when
/// List has none. fn's result for each T must be of one type.
template <class List = gguf_formats, class Fn>
decltype(auto) with_gguf_format(io::ggml_type t, Fn&& fn) {
  return formats_detail::visit_list(List{}, t, fn);
}

/// The lower-case name of a listed type ("f32", "q4_k"): GGUF's, as tessel spells formats.
inline std::string format_name(io::ggml_type t) {
  const auto* g = io::find_ggml_type(static_cast<std::uint32_t>(t));
  if (!g) return "ggml type " + std::to_string(static_cast<std::uint32_t>(t));
  std::string s = g->name;
  for (char& c : s) c = formats_detail::lower(c);
  return s;
}

/// n elements of a row stored as T (not necessarily aligned for T, as in a mapped file) widened
/// to f32. n must be a multiple of T's block.
template <class T>
void widen_row(const std::byte* src, float* out, index_t n) {
  static_assert(is_gguf_format_v<T>, "tessel::widen_row: not a listed format");
  if constexpr (std::is_same_v<T, float>) {
    std::memcpy(out, src, std::size_t(n) * sizeof(float));
  } else if constexpr (is_block_format_v<T>) {
    T b;
    for (index_t i = 0; i < n / T::block_elems; ++i) {
      std::memcpy(&b, src + i * index_t(sizeof(T)), sizeof(T));
      T::dequantize_row(&b, out + i * T::block_elems, T::block_elems);
    }
  } else {
    T v;
    for (index_t j = 0; j < n; ++j) {
      std::memcpy(&v, src + j * index_t(sizeof(T)), sizeof(T));
      out[j] = to_f32(v);
    }
  }
}

/// widen_row for a format chosen at run time: false when t is not a widening format.
inline bool widen_row(io::ggml_type t, const std::byte* src, float* out, index_t n) {
  if (!is_listed<gguf_widening_formats>(t)) return false;
  with_gguf_format<gguf_widening_formats>(t,
                                          [&]<class T>(type_tag<T>) { widen_row<T>(src, out, n); });
  return true;
}

}  // namespace tessel
