// tessel-generate: text from a Llama model (GGUF or llama2.c .bin), as llama2.c's `run` does,
// or from a GGUF `mamba` / `mamba2` model (its GPT-NeoX BPE tokenizer read from tokenizer.ggml.*)
// or a GGUF `gpt2` model (GPT-2's BPE from tokenizer.ggml.*).
//
//   tessel-generate --model stories260K.bin --tokenizer tok512.bin --prompt "Once upon a time"
//   tessel-generate --model stories260K-f32.gguf -n 128 --temp 0.8 --top-p 0.9 --seed 7
//
// stdout: the prompt followed by the generated text, nothing else. stderr: prefill and decode
// tokens per second, and with --ids the prompt's and the generated token ids (a line each).
// BOS: a llama2.c checkpoint's prompt starts with BOS; a GGUF file's does as its
// tokenizer.ggml.add_bos_token says, else as its tokenizer family does (io::gguf_add_bos:
// SentencePiece Llamas yes; the byte-level BPE of GPT-2 and Mamba no, as Hugging Face encodes).
#include <CLI/CLI.hpp>

#include <cstdio>
#include <iostream>
#include <string>

#include "tessel/backend/thread_pool.hpp"
#include "tessel/generate/generate.hpp"
#include "tessel/io/load_gpt2.hpp"
#include "tessel/io/load_llama.hpp"
#include "tessel/io/load_mamba.hpp"
#include "tessel/io/load_mamba2.hpp"

int main(int argc, char** argv) {
  CLI::App app{"Generate text with a Llama model (GGUF or llama2.c checkpoint)"};
  std::string model_path, tokenizer_path, prompt;
  int n = 256, threads = 1, top_k = 0;
  long long ctx = 0;
  float temp = 0.0f, top_p = 1.0f, min_p = 0.0f, penalty = 1.0f;
  unsigned long long seed = 0;
  bool ids = false, extra_ws = true;
  app.add_option("--model", model_path, "GGUF or llama2.c .bin file")->required();
  app.add_option("--tokenizer", tokenizer_path, "llama2.c tokenizer.bin (for a .bin model)");
  app.add_option("--prompt", prompt, "text (after BOS where the model wants one; default: none)");
  app.add_option("-n", n, "tokens to generate (default 256)");
  app.add_option("--temp", temp, "temperature; 0 is greedy (default 0)");
  app.add_option("--top-p", top_p, "nucleus sampling mass (default 1: off)");
  app.add_option("--top-k", top_k, "keep the k most likely tokens (default 0: off)");
  app.add_option("--min-p", min_p, "drop tokens below min-p x the top probability (default 0)");
  app.add_option("--repeat-penalty", penalty, "repetition penalty (default 1: off)");
  app.add_option("--seed", seed, "random seed (default 0)");
  app.add_option("--threads", threads, "threads (default 1; 0: all)");
  app.add_option("--ctx", ctx, "context length (default: the file's)");
  app.add_option("--tok-remove-extra-ws", extra_ws,
                 "tokenizer.bin normalizer: collapse runs of spaces (default true, tok512)");
  app.add_flag("--ids", ids, "print the prompt's and the generated token ids to stderr");
  CLI11_PARSE(app, argc, argv);

  try {
    tessel::set_num_threads(threads);
    const auto run = [&](auto& model, const auto& tok, bool add_bos) {
      tessel::GenerateOptions opt;
      opt.add_bos = add_bos;
      opt.max_tokens = n;
      opt.echo_prompt = true;
      opt.sampling.temperature = temp;
      opt.sampling.top_p = top_p;
      opt.sampling.top_k = top_k;
      opt.sampling.min_p = min_p;
      opt.sampling.repetition_penalty = penalty;
      opt.sampling.seed = seed;
      const auto r = tessel::generate(model, tok, prompt, opt, [](std::string_view text) {
        std::fwrite(text.data(), 1, text.size(), stdout);
        std::fflush(stdout);
      });
      std::fputc('\n', stdout);
      std::fprintf(stderr, "prefill: %zu tokens, %.1f tok/s; decode: %d tokens, %.1f tok/s\n",
                   r.prompt.size(), r.prefill_tokens_per_second(), r.decode_steps,
                   r.decode_tokens_per_second());
      if (ids) {
        std::string a, b;
        for (auto t : r.prompt) a += (a.empty() ? "" : " ") + std::to_string(t);
        for (auto t : r.tokens) b += (b.empty() ? "" : " ") + std::to_string(t);
        std::fprintf(stderr, "%s\n%s\n", a.c_str(), b.c_str());
      }
    };
    // GGUF `mamba` (state-space model, byte-level BPE vocabulary): no context length to set.
    if (tessel::io::is_gguf_file(model_path)) {
      const auto f = tessel::io::GGUFFile::open(model_path);
      if (f.get<std::string_view>("general.architecture") == "mamba") {
        auto model = tessel::io::load_gguf_mamba<float>(model_path);
        run(model, tessel::io::load_gguf_bpe_tokenizer(f), tessel::io::gguf_add_bos(f));
        return 0;
      }
      if (f.get<std::string_view>("general.architecture") == "mamba2") {
        auto model = tessel::io::load_gguf_mamba2<float>(model_path);
        run(model, tessel::io::load_gguf_bpe_tokenizer(f), tessel::io::gguf_add_bos(f));
        return 0;
      }
      // GGUF `gpt2`: learned positions, context fixed by the file; GPT-2's BPE in the file.
      if (f.get<std::string_view>("general.architecture") == "gpt2") {
        auto model = tessel::io::load_gpt2<tessel::models::GPT2<tessel::models::GPT2Config>>(f);
        run(model, tessel::io::load_gguf_gpt2_tokenizer(f), tessel::io::gguf_add_bos(f));
        return 0;
      }
    }
    tessel::io::LlamaLoadOptions lo;
    lo.max_seq = ctx;
    const bool gguf = tessel::io::is_gguf_file(model_path);
    auto model = tessel::io::load_llama_model<float>(model_path, lo);
    tessel::SentencePieceTokenizer tok = [&] {
      if (gguf && tokenizer_path.empty())
        return tessel::io::load_gguf_tokenizer(tessel::io::GGUFFile::open(model_path));
      if (tokenizer_path.empty())
        throw tessel::value_error("a llama2.c model needs --tokenizer FILE");
      tessel::sentencepiece_options o;
      o.remove_extra_whitespaces = extra_ws;
      return tessel::load_llama2c_tokenizer(tokenizer_path, std::size_t(model.vocab()), o);
    }();

    run(model, tok, !gguf || tessel::io::gguf_add_bos(tessel::io::GGUFFile::open(model_path)));
  } catch (const std::exception& e) {
    std::fprintf(stderr, "tessel-generate: %s\n", e.what());
    return 1;
  }
  return 0;
}
