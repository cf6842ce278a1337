#pragma once
// KVCache<MaxSeq, KvDim>: the keys and values of every layer for positions [0, MaxSeq),
// preallocated once (f32, [layers, MaxSeq, KvDim] each), so decoding writes in place.

#include "common.hpp"

namespace tessel::nn {

template <index_t MaxSeq, index_t KvDim>
class KVCache {
 public:
  using shape_type = Shape<dyn, MaxSeq, KvDim>;

  KVCache(index_t layers, index_t max_seq, index_t kv_dim)
      : k_(shape_type(layers, max_seq, kv_dim)), v_(shape_type(layers, max_seq, kv_dim)) {}

  index_t layers() const noexcept { return k_.extent(0); }
  index_t max_seq() const noexcept { return k_.extent(1); }
  index_t kv_dim() const noexcept { return k_.extent(2); }

  /// Row 0 of a layer's keys / values; row p is at + p * kv_dim().
  float* keys(index_t layer) noexcept { return k_.data() + layer * max_seq() * kv_dim(); }
  float* values(index_t layer) noexcept { return v_.data() + layer * max_seq() * kv_dim(); }
  const float* keys(index_t layer) const noexcept {
    return k_.data() + layer * max_seq() * kv_dim();
  }
  const float* values(index_t layer) const noexcept {
    return v_.data() + layer * max_seq() * kv_dim();
  }

  std::size_t bytes() const noexcept { return k_.bytes() + v_.bytes(); }

 private:
  Tensor<float, shape_type> k_, v_;
};

}  // namespace tessel::nn
