#pragma once
// The plumbing every decoder shares (Llama, GPT-2, Mamba, Mamba-2, the hybrid): a model is its
// weights, immutable and shared; a State made from it holds what one sequence changes (KV cache,
// recurrent state, scratch, logits).
//
//   const auto model = io::load_gguf_llama<nn::any_weight>(path);
//   auto seq = model.new_state({.max_seq = 2048});    // one per sequence; many share the model
//   std::span<const float> logits = model.forward(seq, prompt_ids, 0);  // prefill
//   logits = model.forward(seq, std::span(&next, 1), n);                // one decode step
//
// decode_chunks() is the prompt loop written once: it checks the positions against the state's
// context and runs the prompt in chunks of the state's max_batch rows; decoder_head() computes the
// logits of the last row (or of every row) after the final norm.

#include <algorithm>
#include <concepts>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "tessel/core/error.hpp"
#include "tessel/core/shape.hpp"
#include "tessel/nn/common.hpp"
#include "tessel/nn/kv_cache.hpp"

namespace tessel::models {

/// What a state is sized for. Memory follows use: a KV cache grows as positions are written,
/// up to max_seq.
struct StateOptions {
  /// Positions the state may hold; 0: the model's context length.
  index_t max_seq = 0;
  /// Rows per prefill chunk (scratch grows with it).
  index_t max_batch = 64;
};

/// A model that decodes through states made from it (generate() and the servers take these).
template <class M>
concept Decoder = requires(const M& m, typename M::State& s, std::span<const std::int32_t> ids,
                           index_t p) {
  { m.new_state() } -> std::same_as<typename M::State>;
  { m.new_state(StateOptions{}) } -> std::same_as<typename M::State>;
  { m.forward(s, ids, p) } -> std::convertible_to<std::span<const float>>;
  { m.vocab() } -> std::convertible_to<index_t>;
  { s.max_seq() } -> std::convertible_to<index_t>;
};

/// The context of a new state: the request, or the model's, never more than the model's.
inline index_t state_context(const char* who, index_t model_max_seq, index_t requested) {
  if (requested < 0)
    throw value_error(std::string(who) + ": a state's context of " + std::to_string(requested) +
                      " positions is negative");
  if (requested > model_max_seq)
    throw value_error(std::string(who) + ": a state's context of " + std::to_string(requested) +
                      " positions exceeds the model's " + std::to_string(model_max_seq));
  return requested > 0 ? requested : model_max_seq;
}

/// The most rows a state's prefill chunk may hold. Scratch grows with the chunk (a 7B Llama's
/// MLP alone takes 2 · rows · hidden floats), and past a few thousand rows a larger chunk runs
/// no faster: a request beyond this is refused instead of ending in bad_alloc.
inline constexpr index_t max_state_batch = 8192;

/// The prefill chunk of a new state: the request, at most the state's context.
inline index_t state_batch(const char* who, index_t requested, index_t max_seq) {
  if (requested < 1 || requested > max_state_batch)
    throw value_error(std::string(who) + ": StateOptions::max_batch of " +
                      std::to_string(requested) + " rows is outside [1, " +
                      std::to_string(max_state_batch) + "]");
  return std::max<index_t>(1, std::min(requested, max_seq));
}

/// Runs tokens [pos, pos + n) as chunks of at most max_batch rows:
/// chunk(tokens_of_chunk, pos_of_chunk, all_logits_of_chunk_or_null, is_last_chunk).
/// Positions must lie inside [0, max_seq).
template <class Id, class Chunk>
void decode_chunks(const char* who, std::span<const Id> tokens, index_t pos, index_t max_seq,
                   index_t max_batch, index_t vocab, float* all_logits, Chunk&& chunk) {
  const index_t n = static_cast<index_t>(tokens.size());
  if (n == 0) throw value_error(std::string(who) + ": forward needs at least one token");
  if (pos < 0 || pos > max_seq - n)
    throw value_error(std::string(who) + ": positions " + std::to_string(pos) + " to " +
                      std::to_string(pos + n) + " exceed the context of " +
                      std::to_string(max_seq) + " tokens");
  const index_t B = std::max<index_t>(1, max_batch);
  for (index_t c = 0; c < n; c += B) {
    const index_t m = std::min(B, n - c);
    chunk(tokens.subspan(std::size_t(c), std::size_t(m)), pos + c,
          all_logits ? all_logits + c * vocab : nullptr, c + m == n);
  }
}

/// What the state of a decoder with a KV cache (Llama, GPT-2) holds: the cache, which grows
/// with the positions written, the hidden rows (x, xb: [max_batch, dim]) and scratch of one
/// prefill chunk, and the logits of the last position. A model's State derives from it, adds
/// its own tables (Llama: RoPE) and names the model a friend.
template <index_t KvDim>
class KVDecoderState {
 public:
  /// Positions this state may hold.
  index_t max_seq() const noexcept { return cache_.max_seq(); }
  /// Rows per prefill chunk.
  index_t max_batch() const noexcept { return max_batch_; }
  const nn::KVCache<dyn, KvDim>& cache() const noexcept { return cache_; }
  /// Bytes allocated: the cache, the hidden rows, the scratch and the logits.
  std::size_t bytes() const noexcept {
    return cache_.bytes() +
           (x_.size() + xb_.size() + work_.size() + logits_.size()) * sizeof(float);
  }

 protected:
  KVDecoderState(index_t layers, index_t max_seq, index_t kv_dim, index_t dim, index_t vocab,
                 index_t max_batch)
      : cache_(layers, max_seq, kv_dim, 0), max_batch_(max_batch) {
    x_.resize(std::size_t(max_batch * dim));
    xb_.resize(x_.size());
    logits_.resize(std::size_t(vocab));
  }

  /// Cache rows for positions [0, n), the scratch regrown to work(rows) floats for the new
  /// number of rows; false when the rows were there already.
  template <class Work>
  bool grow(index_t n, Work&& work) {
    if (n <= cache_.capacity()) return false;
    cache_.reserve(n);
    work_.resize(std::size_t(work(cache_.capacity())));
    return true;
  }

  nn::KVCache<dyn, KvDim> cache_;
  index_t max_batch_;
  std::vector<float> x_, xb_, work_, logits_;
};

/// After the last block: logits of every row into all_logits ([M, vocab]) when given, and of
/// the last row into logits when this is the last chunk. x: [M, D] hidden rows; xb: [M, D]
/// scratch rows; norm.forward(b, x, y) and head.forward(b, x, logits) take RowViews.
template <class Backend, class Norm, class Head, index_t D>
void decoder_head(Backend b, const Norm& norm, const Head& head, nn::RowView<D> x,
                  nn::RowView<D> xb, index_t vocab, float* all_logits, bool last, float* logits) {
  constexpr index_t V = Head::static_out;
  const index_t M = x.extent(0);
  if (all_logits) {
    norm.forward(b, x, xb);
    head.forward(b, xb, nn::row_view<V>(all_logits, M, vocab));
    if (last) std::copy(all_logits + (M - 1) * vocab, all_logits + M * vocab, logits);
  } else if (last) {
    const auto x1 = nn::row_range(x, M - 1, M), xb1 = nn::row_range(xb, 0, 1);
    norm.forward(b, x1, xb1);
    head.forward(b, xb1, nn::row_view<V>(logits, 1, vocab));
  }
}

}  // namespace tessel::models
