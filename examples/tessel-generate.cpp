// tessel-generate: text from a Llama model (GGUF or llama2.c .bin), as llama2.c's `run` does,
// or from a GGUF `mamba` / `mamba2` model (its GPT-NeoX BPE tokenizer read from tokenizer.ggml.*)
// or a GGUF `gpt2` model (GPT-2's BPE from tokenizer.ggml.*).
//
//   tessel-generate --model stories260K.bin --tokenizer tok512.bin --prompt "Once upon a time"
//   tessel-generate --model stories260K-f32.gguf -n 128 --temp 0.8 --top-p 0.9 --seed 7
//
// Every model is loaded with nn::any_weight: each matrix keeps the file's own format (F32, F16,
// BF16, Q8_0 ... Q6_K) and is a view into the memory-mapped file, nothing dequantized or
// copied; the kernels are those the benchmarks measure. The KV cache holds --ctx positions:
// the file's context length, capped at 4096 by default.
//
// stdout: the prompt followed by the generated text, nothing else. stderr: prefill and decode
// tokens per second, and with --ids the prompt's and the generated token ids (a line each).
// BOS: a llama2.c checkpoint's prompt starts with BOS; a GGUF file's does as its
// tokenizer.ggml.add_bos_token says, else as its tokenizer family does (io::gguf_add_bos:
// SentencePiece Llamas yes; the byte-level BPE of GPT-2 and Mamba no, as Hugging Face encodes).
#include <CLI/CLI.hpp>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <initializer_list>
#include <iostream>
#include <optional>
#include <string>

#include "tessel/backend/thread_pool.hpp"
#include "tessel/generate/generate.hpp"
#include "tessel/io/load/load_gpt2.hpp"
#include "tessel/io/load/load_llama.hpp"
#include "tessel/io/load/load_mamba.hpp"
#include "tessel/io/load/load_mamba2.hpp"

namespace {

/// Default KV cache length when --ctx is not given: long-context files (32k, 128k) would
/// otherwise allocate gigabytes of cache for a short run.
constexpr long long default_ctx_cap = 4096;

/// The context length to run with: --ctx (0: the file's, capped) checked against the file's.
long long choose_ctx(long long ctx, long long file_ctx) {
  if (ctx < 0) throw tessel::value_error("--ctx " + std::to_string(ctx) + " is negative");
  if (ctx > file_ctx)
    throw tessel::value_error("--ctx " + std::to_string(ctx) +
                              " exceeds the model's context length " + std::to_string(file_ctx));
  if (ctx > 0) return ctx;
  if (file_ctx > default_ctx_cap) {
    std::fprintf(stderr,
                 "tessel-generate: context %lld (the file's is %lld); --ctx sets a longer one\n",
                 default_ctx_cap, file_ctx);
    return default_ctx_cap;
  }
  return file_ctx;
}

/// VmRSS, VmHWM, RssAnon and RssFile of this process, and how much of the mapped files and of
/// the anonymous memory huge pages map (FilePmdMapped, AnonHugePages), in MiB (Linux).
std::string memory_line() {
  std::string line, out;
  const auto scan = [&](const char* file, std::initializer_list<const char*> keys) {
    std::ifstream in(file);
    while (std::getline(in, line))
      for (const char* key : keys)
        if (line.rfind(key, 0) == 0) {
          const std::string k(key);
          const double kib = std::stod(line.substr(k.size()));
          char buf[80];
          std::snprintf(buf, sizeof buf, "%s%s %.0f MiB", out.empty() ? "" : ", ",
                        k.substr(0, k.size() - 1).c_str(), kib / 1024.0);
          out += buf;
        }
  };
  scan("/proc/self/status", {"VmRSS:", "VmHWM:", "RssAnon:", "RssFile:"});
  scan("/proc/self/smaps_rollup", {"FilePmdMapped:", "AnonHugePages:"});
  return out;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"Generate text with a Llama model (GGUF or llama2.c checkpoint)"};
  std::string model_path, tokenizer_path, prompt;
  int n = 256, threads = 0, top_k = 0;
  long long ctx = 0;
  float temp = 0.0f, top_p = 1.0f, min_p = 0.0f, penalty = 1.0f;
  unsigned long long seed = 0;
  bool ids = false, extra_ws = true, stats = false, copy_weights = false;
  app.add_option("--model", model_path, "GGUF or llama2.c .bin file")->required();
  app.add_option("--tokenizer", tokenizer_path, "llama2.c tokenizer.bin (for a .bin model)");
  app.add_option("--prompt", prompt, "text (after BOS where the model wants one; default: none)");
  app.add_option("-n", n, "tokens to generate (default 256; stops at the context's end)")
      ->check(CLI::Range(0, 1 << 30));
  app.add_option("--temp", temp, "temperature; 0 is greedy (default 0)")
      ->check(CLI::Range(0.0f, 100.0f));
  app.add_option("--top-p", top_p, "nucleus sampling mass (default 1: off)")
      ->check(CLI::Range(0.0f, 1.0f));
  app.add_option("--top-k", top_k, "keep the k most likely tokens (default 0: off)")
      ->check(CLI::NonNegativeNumber);
  app.add_option("--min-p", min_p, "drop tokens below min-p x the top probability (default 0)")
      ->check(CLI::Range(0.0f, 1.0f));
  app.add_option("--repeat-penalty", penalty, "repetition penalty (default 1: off)")
      ->check(CLI::Range(0.0f, 100.0f));
  app.add_option("--seed", seed, "random seed (default 0)");
  app.add_option("--threads", threads,
                 "threads (default 0: TESSEL_NUM_THREADS, else all hardware threads)")
      ->check(CLI::Range(0, 4096));
  app.add_option("--ctx", ctx,
                 "context length, at most the file's (default: the file's, capped at 4096)")
      ->check(CLI::Range(0LL, 1LL << 31));
  app.add_option("--tok-remove-extra-ws", extra_ws,
                 "tokenizer.bin normalizer: collapse runs of spaces (default true, tok512)");
  app.add_flag("--ids", ids, "print the prompt's and the generated token ids to stderr");
  app.add_flag("--stats", stats,
               "print the load time, the resident memory (after loading and at the end) and the "
               "weight bytes mapped from the file or copied, to stderr");
  app.add_flag("--copy-weights", copy_weights,
               "copy the weights out of the mapped file into huge-page memory of the process's "
               "own: the file's size again in anonymous memory, for fewer TLB misses where the "
               "page cache does not hold the file in huge pages");
  CLI11_PARSE(app, argc, argv);

  using clock = std::chrono::steady_clock;
  const auto t_start = clock::now();
  try {
    if (threads > 0) tessel::set_num_threads(threads);
    // The file objects; the model's weights view their mappings unless --copy-weights.
    std::optional<tessel::io::GGUFFile> gguf;
    std::optional<tessel::io::Llama2cFile> bin;
    const auto run = [&](auto& model, const auto& tok, bool add_bos, long long state_ctx) {
      if (copy_weights) {
        tessel::io::own_weights(model);
        gguf.reset(), bin.reset();  // unmaps the file: its pages leave the resident set
      }
      if (stats) {
        const auto w = tessel::io::weight_bytes(model);
        std::fprintf(stderr,
                     "load: %.3f s; weights: %.1f MiB mapped (%lld matrices), %.1f MiB copied "
                     "(%lld); %s; threads %d\n",
                     std::chrono::duration<double>(clock::now() - t_start).count(),
                     double(w.mapped) / (1 << 20), static_cast<long long>(w.mapped_matrices),
                     double(w.copied) / (1 << 20), static_cast<long long>(w.copied_matrices),
                     memory_line().c_str(), tessel::num_threads());
      }
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
      // One sequence: its KV cache grows with the positions used, up to state_ctx.
      auto state = model.new_state({.max_seq = state_ctx});
      const auto r = tessel::generate(model, state, tok, prompt, opt, [](std::string_view text) {
        std::fwrite(text.data(), 1, text.size(), stdout);
        std::fflush(stdout);
      });
      std::fputc('\n', stdout);
      std::fprintf(stderr, "prefill: %zu tokens, %.1f tok/s; decode: %d tokens, %.1f tok/s\n",
                   r.prompt.size(), r.prefill_tokens_per_second(), r.decode_steps,
                   r.decode_tokens_per_second());
      if (stats) std::fprintf(stderr, "memory at the end: %s\n", memory_line().c_str());
      if (ids) {
        std::string a, b;
        for (auto t : r.prompt) a += (a.empty() ? "" : " ") + std::to_string(t);
        for (auto t : r.tokens) b += (b.empty() ? "" : " ") + std::to_string(t);
        std::fprintf(stderr, "%s\n%s\n", a.c_str(), b.c_str());
      }
    };
    namespace io = tessel::io;
    namespace models = tessel::models;
    using tessel::nn::any_weight;
    if (io::is_gguf_file(model_path)) {
      // One mapping serves the model (its weights view it) and the tokenizer.
      const auto& f = gguf.emplace(io::GGUFFile::open(model_path));
      const auto arch = f.get<std::string_view>("general.architecture");
      // GGUF `mamba` / `mamba2` (state-space models, byte-level BPE): no context length to set.
      if (arch == "mamba") {
        auto model = io::load_mamba_gguf<models::Mamba<models::MambaConfig, any_weight>>(f);
        run(model, io::load_gguf_bpe_tokenizer(f), io::gguf_add_bos(f), 0);
        return 0;
      }
      if (arch == "mamba2") {
        auto model = io::load_mamba2_gguf<models::Mamba2<models::Mamba2Config, any_weight>>(f);
        run(model, io::load_gguf_bpe_tokenizer(f), io::gguf_add_bos(f), 0);
        return 0;
      }
      // GGUF `gpt2`: learned positions, so the context is the file's (--ctx may not exceed it).
      if (arch == "gpt2") {
        const long long state_ctx = choose_ctx(ctx, io::gpt2_config(f).max_seq);
        auto model = io::load_gpt2<models::GPT2<models::GPT2Config, any_weight>>(f);
        run(model, io::load_gguf_gpt2_tokenizer(f), io::gguf_add_bos(f), state_ctx);
        return 0;
      }
      const long long state_ctx = choose_ctx(ctx, io::llama_config(f).max_seq);
      auto model = io::load_gguf<models::Llama<models::LlamaConfig, any_weight>>(f);
      if (!tokenizer_path.empty()) {
        tessel::sentencepiece_options o;
        o.remove_extra_whitespaces = extra_ws;
        run(model, tessel::load_llama2c_tokenizer(tokenizer_path, std::size_t(model.vocab()), o),
            io::gguf_add_bos(f), state_ctx);
      } else {
        run(model, io::load_gguf_tokenizer(f), io::gguf_add_bos(f), state_ctx);
      }
      return 0;
    }
    // llama2.c checkpoint: f32 weights, viewed in the mapped file like a GGUF's.
    const auto& f = bin.emplace(io::Llama2cFile::open(model_path));
    const long long state_ctx = choose_ctx(ctx, f.config().seq_len);
    auto model = io::load_llama2c<models::Llama<models::LlamaConfig, any_weight>>(f);
    if (tokenizer_path.empty())
      throw tessel::value_error("a llama2.c model needs --tokenizer FILE");
    tessel::sentencepiece_options o;
    o.remove_extra_whitespaces = extra_ws;
    run(model, tessel::load_llama2c_tokenizer(tokenizer_path, std::size_t(model.vocab()), o), true,
        state_ctx);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "tessel-generate: %s\n", e.what());
    return 1;
  }
  return 0;
}
