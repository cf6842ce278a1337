#pragma once
// any_weight: a weight format chosen per tensor at run time, as GGUF files mix them (a Q8_0
// file keeps ffn_down in F16 when its rows do not hold whole blocks; Q4_K_M mixes Q4_K, Q6_K,
// Q5_0 and Q8_0). Layers take it where they take a format:
//
//   models::Llama<models::LlamaConfig, nn::any_weight> m = io::load_gguf_llama<nn::any_weight>(p);
//
// A matrix of such a layer is an AnyMatrix<Rows, Cols>: the tensor's bytes verbatim in the
// format the file gave (weight_kind), never dequantized. Its matmul dispatches once per call to
// the dense gemm (f32 / f16 / bf16) or to the quantized kernels (qgemv / qgemm); rows of a table
// (embeddings) are widened one at a time.
//
// The bytes are either a view (assign_view: the loaders point into the memory-mapped file and
// keep the mapping alive through a shared owner, so nothing is copied and a loaded model
// outlives the file object) or an owned copy (assign). They are never written after either
// call, so copies of an AnyMatrix share them.

#include <cstdint>
#include <cstring>
#include <memory>
#include <string>

#include "common.hpp"
#include "tessel/core/memory.hpp"
#include "tessel/quant/format_list.hpp"
#include "tessel/quant/kernels/qgemm.hpp"

namespace tessel::nn {

// any_weight itself (the tag: each matrix takes the format of the tensor it is loaded from) is
// declared in common.hpp, where WeightFormat admits it.

/// The formats an AnyMatrix can hold: those of gguf_weight_formats (quant/format_list.hpp),
/// valued by their GGUF type id. The names are for callers; a format added to the list works
/// through with_weight_kind / weight_kind_of before it has one.
enum class weight_kind : std::uint8_t {
  f32 = std::uint8_t(io::ggml_type::F32),
  f16 = std::uint8_t(io::ggml_type::F16),
  bf16 = std::uint8_t(io::ggml_type::BF16),
  q8_0 = std::uint8_t(io::ggml_type::Q8_0),
  q4_0 = std::uint8_t(io::ggml_type::Q4_0),
  q4_1 = std::uint8_t(io::ggml_type::Q4_1),
  q5_0 = std::uint8_t(io::ggml_type::Q5_0),
  q5_1 = std::uint8_t(io::ggml_type::Q5_1),
  q2_k = std::uint8_t(io::ggml_type::Q2_K),
  q3_k = std::uint8_t(io::ggml_type::Q3_K),
  q4_k = std::uint8_t(io::ggml_type::Q4_K),
  q5_k = std::uint8_t(io::ggml_type::Q5_K),
  q6_k = std::uint8_t(io::ggml_type::Q6_K),
};

using tessel::type_tag;

/// Calls fn(type_tag<T>{}) with the C++ format T of k.
template <class Fn>
decltype(auto) with_weight_kind(weight_kind k, Fn&& fn) {
  const auto t = static_cast<io::ggml_type>(k);
  if (!is_listed<gguf_weight_formats>(t))
    throw value_error("tessel::nn: unknown weight_kind " + std::to_string(int(k)));
  return with_gguf_format<gguf_weight_formats>(t, fn);
}

/// The weight_kind of C++ format T.
template <class T>
constexpr weight_kind weight_kind_of() noexcept {
  static_assert(is_listed<gguf_weight_formats>(gguf_type_v<T>),
                "tessel::nn: T is not a weight format of quant/format_list.hpp");
  return static_cast<weight_kind>(gguf_type_v<T>);
}

inline std::string name(weight_kind k) {
  return format_name(static_cast<io::ggml_type>(k));
}

/// A [Rows, Cols] weight matrix in a run-time format (Rows / Cols static or dyn).
template <index_t Rows, index_t Cols>
class AnyMatrix {
 public:
  AnyMatrix() requires(Rows != dyn && Cols != dyn) : rows_(Rows), cols_(Cols) {}
  explicit AnyMatrix(const Shape<Rows, Cols>& s) : rows_(s.extent(0)), cols_(s.extent(1)) {}

  index_t extent(int i) const noexcept { return i == 0 ? rows_ : cols_; }
  index_t rows() const noexcept { return rows_; }
  index_t cols() const noexcept { return cols_; }
  index_t size() const noexcept { return rows_ * cols_; }
  weight_kind kind() const noexcept { return kind_; }
  bool empty() const noexcept { return !data_; }
  /// True when the bytes are a view of memory owned elsewhere (a mapped file), false when this
  /// matrix holds its own copy (or nothing).
  bool is_view() const noexcept { return data_ && !owned_; }
  /// Bytes of the stored matrix.
  std::size_t bytes() const { return bytes_for(kind_); }
  std::size_t bytes_for(weight_kind k) const {
    return with_weight_kind(k, [&]<class T>(type_tag<T>) {
      return std::size_t(rows_ * (cols_ / block_elems_v<T>)) * sizeof(T);
    });
  }
  const std::byte* raw() const noexcept { return data_; }

  /// The alignment the kernels need for format k (that of its element or block struct).
  static std::size_t alignment_of(weight_kind k) {
    return with_weight_kind(k, []<class T>(type_tag<T>) { return alignof(T); });
  }

  /// Holds a copy of rows × cols elements of format k (blocks verbatim) in memory of its own
  /// (host_space: 64-byte aligned, 2 MiB aligned and advised to huge pages from 4 MiB). Rows
  /// must hold whole blocks, and, for a block format, whole blocks of its 8-bit activation
  /// format.
  void assign(weight_kind k, const void* data) {
    check_rows(k);
    const std::size_t n = bytes_for(k);
    std::shared_ptr<std::byte> buf(static_cast<std::byte*>(host_space::allocate(n)), release{});
    if (n) std::memcpy(buf.get(), data, n);
    data_ = buf.get();
    owner_ = std::move(buf);
    owned_ = true;
    kind_ = k;
  }

  /// Views rows × cols elements of format k at `data`, which `owner` keeps alive (and
  /// unchanged) for as long as any copy of this matrix lives (a null owner: the caller does):
  /// no bytes are copied. `data` must be aligned for k (alignment_of(k)); rows as for assign.
  void assign_view(weight_kind k, const void* data, std::shared_ptr<const void> owner) {
    check_rows(k);
    if (reinterpret_cast<std::uintptr_t>(data) % alignment_of(k) != 0)
      throw value_error("tessel::nn::AnyMatrix: " + name(k) + " data at " +
                        std::to_string(reinterpret_cast<std::uintptr_t>(data)) +
                        " is not aligned to " + std::to_string(alignment_of(k)) + " bytes");
    data_ = static_cast<const std::byte*>(data);
    owner_ = std::move(owner);
    owned_ = false;
    kind_ = k;
  }

  /// Replaces a view by a copy of its bytes in memory of its own (see assign): for memory that
  /// pays for it (huge pages), or to drop the file the view keeps mapped.
  void make_owned() {
    if (is_view()) assign(kind_, data_);  // the view's owner is released after the copy
  }
  template <class T>
  void assign(const T* data) {
    assign(weight_kind_of<T>(), data);
  }

  /// The stored elements as format T (which must be kind()).
  template <class T>
  const T* data() const {
    if (weight_kind_of<T>() != kind_)
      throw value_error("tessel::nn::AnyMatrix: holds " + name(kind_) + ", not " +
                        name(weight_kind_of<T>()));
    return reinterpret_cast<const T*>(data_);
  }

  /// Row r widened to f32 (cols floats).
  void row_f32(index_t r, float* out) const {
    check_loaded();
    with_weight_kind(kind_, [&]<class T>(type_tag<T>) {
      const T* p = reinterpret_cast<const T*>(data_) + r * (cols_ / block_elems_v<T>);
      detail::weight_row_f32(p, out, cols_);
    });
  }

  /// y[M, rows] = x[M, cols] · thisᵀ + beta · y, row strides ldx and ldy.
  template <class Backend = default_backend>
  void matmul(const float* x, index_t ldx, index_t M, float* y, index_t ldy, float beta) const {
    check_loaded();
    with_weight_kind(kind_, [&]<class T>(type_tag<T>) {
      const T* w = reinterpret_cast<const T*>(data_);
      if constexpr (is_dense_weight_v<T>) {
        gemm<Backend>(M, rows_, cols_, x, ldx, w, cols_, true, y, ldy, beta);
      } else {
        qgemm<Backend>(M, rows_, cols_, x, ldx, w, y, ldy, beta);
      }
    });
  }

 private:
  struct release {
    void operator()(std::byte* p) const noexcept { host_space::deallocate(p); }
  };
  void check_rows(weight_kind k) const {
    with_weight_kind(k, [&]<class T>(type_tag<T>) {
      if constexpr (!is_dense_weight_v<T>) {
        if (cols_ % T::block_elems != 0 || cols_ % block_elems_v<qdetail::act_t<T>> != 0)
          throw shape_error("tessel::nn::AnyMatrix: rows of " + std::to_string(cols_) +
                            " do not hold whole " + std::string(T::name) + " blocks");
      }
    });
  }
  void check_loaded() const {
    if (!data_ && size() > 0)
      throw value_error("tessel::nn::AnyMatrix: a " + std::to_string(rows_) + " x " +
                        std::to_string(cols_) + " matrix was used before any weights were loaded");
  }

  index_t rows_ = 0, cols_ = 0;
  weight_kind kind_ = weight_kind::f32;
  const std::byte* data_ = nullptr;
  std::shared_ptr<const void> owner_;  // the copy (owned_) or the mapping that holds data_
  bool owned_ = false;
};

template <class T>
inline constexpr bool is_any_matrix_v = false;
template <index_t R, index_t C>
inline constexpr bool is_any_matrix_v<AnyMatrix<R, C>> = true;

/// The storage of a [Rows, Cols] matrix of format W.
template <class W, index_t Rows, index_t Cols>
struct matrix_storage {
  using type = Tensor<W, Shape<Rows, Cols>>;
};
template <index_t Rows, index_t Cols>
struct matrix_storage<any_weight, Rows, Cols> {
  using type = AnyMatrix<Rows, Cols>;
};
template <class W, index_t Rows, index_t Cols>
using matrix_storage_t = typename matrix_storage<W, Rows, Cols>::type;

}  // namespace tessel::nn
