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

#include "tessel/core/error.hpp"
#include "tessel/core/shape.hpp"
#include "tessel/nn/common.hpp"

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
