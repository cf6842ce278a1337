#pragma once
// KVCache<MaxSeq, KvDim>: the keys and values of every layer (f32, [layers, rows, KvDim] each)
// for positions [0, max_seq). Rows are allocated as positions are used: reserve(n) makes room
// for positions [0, n), doubling the rows (up to max_seq) and keeping those written, so a
// sequence pays for the context it uses, not the one it may reach; decoding then writes in
// place. MaxSeq and KvDim, when static, are checked against the run-time values.

#include <algorithm>
#include <vector>

#include "common.hpp"

namespace tessel::nn {

template <index_t MaxSeq = dyn, index_t KvDim = dyn>
class KVCache {
 public:
  /// Room for max_seq positions; rows for the first `rows` of them are allocated now
  /// (-1: all of them, nothing to reserve later), the rest by reserve().
  KVCache(index_t layers, index_t max_seq, index_t kv_dim, index_t rows = -1)
      : layers_(layers), max_seq_(max_seq), kv_dim_(kv_dim) {
    if (layers < 0 || max_seq < 0 || kv_dim < 0)
      throw value_error("tessel::nn::KVCache: negative extent (layers " + std::to_string(layers) +
                        ", max_seq " + std::to_string(max_seq) + ", kv_dim " +
                        std::to_string(kv_dim) + ")");
    if ((MaxSeq != dyn && max_seq != MaxSeq) || (KvDim != dyn && kv_dim != KvDim))
      throw shape_error("tessel::nn::KVCache: max_seq " + std::to_string(max_seq) + ", kv_dim " +
                        std::to_string(kv_dim) + " differ from the static extents");
    resize_rows(rows < 0 ? max_seq : std::min(rows, max_seq));
  }

  index_t layers() const noexcept { return layers_; }
  index_t max_seq() const noexcept { return MaxSeq != dyn ? MaxSeq : max_seq_; }
  index_t kv_dim() const noexcept { return KvDim != dyn ? KvDim : kv_dim_; }
  /// Positions that have rows now: [0, capacity()).
  index_t capacity() const noexcept { return rows_; }

  /// Rows for positions [0, n): at least doubles the rows when it grows (copies stay amortized
  /// O(1) per position). Invalidates the pointers keys() and values() returned.
  void reserve(index_t n) {
    if (n <= rows_) return;
    if (n > max_seq())
      throw value_error("tessel::nn::KVCache: " + std::to_string(n) +
                        " positions exceed the cache's " + std::to_string(max_seq()));
    resize_rows(std::min(max_seq(), std::max({n, 2 * rows_, index_t(16)})));
  }

  /// Row 0 of a layer's keys / values; row p (p < capacity()) is at + p * kv_dim().
  float* keys(index_t layer) noexcept { return k_.data() + layer * rows_ * kv_dim(); }
  float* values(index_t layer) noexcept { return v_.data() + layer * rows_ * kv_dim(); }
  const float* keys(index_t layer) const noexcept { return k_.data() + layer * rows_ * kv_dim(); }
  const float* values(index_t layer) const noexcept { return v_.data() + layer * rows_ * kv_dim(); }

  /// A layer's key / value rows [capacity(), KvDim], as Attention::forward takes them.
  RowView<KvDim> keys_view(index_t layer) noexcept {
    return {keys(layer), Shape<dyn, KvDim>(rows_, kv_dim())};
  }
  RowView<KvDim> values_view(index_t layer) noexcept {
    return {values(layer), Shape<dyn, KvDim>(rows_, kv_dim())};
  }

  /// Bytes allocated (keys and values).
  std::size_t bytes() const noexcept { return (k_.size() + v_.size()) * sizeof(float); }

 private:
  void resize_rows(index_t rows) {
    const index_t kvd = kv_dim(), keep = std::min(rows, rows_);
    const auto grown = [&](const std::vector<float>& old) {
      std::vector<float> t(static_cast<std::size_t>(layers_ * rows * kvd));
      for (index_t l = 0; l < layers_; ++l)
        std::copy(old.begin() + l * rows_ * kvd, old.begin() + (l * rows_ + keep) * kvd,
                  t.begin() + l * rows * kvd);
      return t;
    };
    k_ = grown(k_);
    v_ = grown(v_);
    rows_ = rows;
  }

  index_t layers_, max_seq_, kv_dim_, rows_ = 0;
  std::vector<float> k_, v_;
};

}  // namespace tessel::nn
