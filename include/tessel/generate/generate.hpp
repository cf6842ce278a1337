#pragma once
// The generation loop: encode the prompt (after BOS, as llama2.c does), prefill it in one
// forward pass, then sample and decode one token at a time until max_tokens, the end of the
// state's context, or a stop token (EOS, and BOS: llama2.c's models end a story by starting
// the next).
//
//   auto r = tessel::generate(model, tokenizer, "Once upon a time",
//                             {.max_tokens = 256, .sampling = {.temperature = 0}},
//                             [](std::string_view text) { std::cout << text << std::flush; });
//   r.tokens, r.prefill_seconds, r.decode_tokens_per_second(), ...
//
//   auto st = model.new_state({.max_seq = 1024});  // or a state of one's own: one per thread,
//   auto r2 = tessel::generate(model, st, tokenizer, prompt, opt, on_text);  // one shared model
//
// Model: any models::Decoder (models/decoder.hpp); the sequence starts at position 0 of the
// state, whatever it held. Tokenizer: encode / bos_id / eos_id, and whatever StreamDecoder
// needs (append_token_bytes, replacement). The callback gets whole UTF-8 text.

#include <algorithm>
#include <chrono>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "tessel/generate/sampler.hpp"
#include "tessel/io/tokenizers/tokenizer.hpp"
#include "tessel/models/decoder.hpp"

namespace tessel {

struct GenerateOptions {
  int max_tokens = 256;  // tokens generated after the prompt
  SamplerOptions sampling = {};
  bool add_bos = true;
  bool stop_at_bos = true;
  bool stop_at_eos = true;
  bool echo_prompt = false;  // the callback also gets the prompt's text, first
};

enum class StopReason { max_tokens, bos, eos, context_full };

struct GenerateResult {
  std::vector<token_id> prompt;  // as fed to the model (BOS included)
  std::vector<token_id> tokens;  // generated, stop token excluded
  std::string text;              // the generated tokens' text
  StopReason stop = StopReason::max_tokens;
  double prefill_seconds = 0, decode_seconds = 0;
  int decode_steps = 0;  // forward passes of one token

  double prefill_tokens_per_second() const {
    return prefill_seconds > 0 ? double(prompt.size()) / prefill_seconds : 0;
  }
  double decode_tokens_per_second() const {
    return decode_seconds > 0 ? decode_steps / decode_seconds : 0;
  }
};

/// Generates from already-encoded prompt ids (not empty) in state st; on_token(id) after each
/// token.
template <models::Decoder Model, class OnToken>
GenerateResult generate_ids(const Model& model, typename Model::State& st,
                            std::span<const token_id> prompt, const GenerateOptions& opt,
                            token_id bos, token_id eos, OnToken&& on_token) {
  using clock = std::chrono::steady_clock;
  if (prompt.empty()) throw value_error("tessel::generate: the prompt has no tokens");
  GenerateResult r;
  r.prompt.assign(prompt.begin(), prompt.end());
  const index_t n = static_cast<index_t>(prompt.size());
  Sampler sampler(model.vocab(), opt.sampling);
  std::vector<float> logits(static_cast<std::size_t>(model.vocab()));
  // At most the context's worth of tokens: max_tokens may be far larger than a state holds.
  const index_t room =
      std::max<index_t>(0, std::min<index_t>(std::max(opt.max_tokens, 0), st.max_seq() - n + 1));
  std::vector<token_id> history(prompt.begin(), prompt.end());
  history.reserve(prompt.size() + std::size_t(room));
  r.tokens.reserve(std::size_t(room));

  const auto t0 = clock::now();
  std::span<const float> out = model.forward(st, prompt, 0);
  const auto t1 = clock::now();
  r.prefill_seconds = std::chrono::duration<double>(t1 - t0).count();

  index_t pos = n;
  for (int i = 0; i < opt.max_tokens; ++i) {
    std::copy(out.begin(), out.end(), logits.begin());
    const token_id next = sampler.sample<token_id>(logits, history);
    if (opt.stop_at_bos && next == bos) {
      r.stop = StopReason::bos;
      break;
    }
    if (opt.stop_at_eos && next == eos) {
      r.stop = StopReason::eos;
      break;
    }
    r.tokens.push_back(next);
    history.push_back(next);
    on_token(next);
    if (i + 1 == opt.max_tokens) break;
    if (pos >= st.max_seq()) {
      r.stop = StopReason::context_full;
      break;
    }
    out = model.forward(st, std::span<const token_id>(&history.back(), 1), pos++);
    ++r.decode_steps;
  }
  r.decode_seconds = std::chrono::duration<double>(clock::now() - t1).count();
  return r;
}

/// The same in a new state with the model's default options.
template <models::Decoder Model, class OnToken>
GenerateResult generate_ids(const Model& model, std::span<const token_id> prompt,
                            const GenerateOptions& opt, token_id bos, token_id eos,
                            OnToken&& on_token) {
  typename Model::State st = model.new_state();
  return generate_ids(model, st, prompt, opt, bos, eos, std::forward<OnToken>(on_token));
}

/// Encodes prompt (after BOS), generates in state st, and streams the text to
/// on_text(std::string_view).
template <models::Decoder Model, class Tok, class OnText>
GenerateResult generate(const Model& model, typename Model::State& st, const Tok& tok,
                        std::string_view prompt, const GenerateOptions& opt, OnText&& on_text) {
  std::vector<token_id> ids = tok.encode(prompt, opt.add_bos && tok.bos_id() >= 0);
  if (ids.empty()) {
    if (tok.bos_id() < 0)
      throw value_error("tessel::generate: an empty prompt needs a tokenizer with BOS");
    ids.push_back(tok.bos_id());
  }
  StreamDecoder<Tok> dec(tok);
  if (opt.echo_prompt) {
    // BOS is a marker, not text (GPT-2 style vocabularies spell it "<|endoftext|>").
    std::string t;
    for (std::size_t i = 0; i < ids.size(); ++i)
      if (i > 0 || ids[i] != tok.bos_id()) t += dec.push(ids[i]);
    if (!t.empty()) on_text(std::string_view(t));
  }
  std::string text;
  GenerateResult r =
      generate_ids(model, st, ids, opt, tok.bos_id(), tok.eos_id(), [&](token_id id) {
        const std::string piece = dec.push(id);
        text += piece;
        if (!piece.empty()) on_text(std::string_view(piece));
      });
  const std::string rest = dec.flush();
  if (!rest.empty()) {
    text += rest;
    on_text(std::string_view(rest));
  }
  r.text = std::move(text);
  return r;
}

/// The same in a new state with the model's default options.
template <models::Decoder Model, class Tok, class OnText>
GenerateResult generate(const Model& model, const Tok& tok, std::string_view prompt,
                        const GenerateOptions& opt, OnText&& on_text) {
  typename Model::State st = model.new_state();
  return generate(model, st, tok, prompt, opt, std::forward<OnText>(on_text));
}

template <models::Decoder Model, class Tok>
GenerateResult generate(const Model& model, const Tok& tok, std::string_view prompt,
                        const GenerateOptions& opt = {}) {
  return generate(model, tok, prompt, opt, [](std::string_view) {});
}

}  // namespace tessel
