// Quantized weights end to end: nn::Linear on the quantized kernels (against dequantize + f32
// within the bound of 8-bit activation quantization), nn::any_weight (a format per tensor, as
// GGUF files mix them), tessel's GGUF writer mixing formats as GGUF quantizers do, and the real
// stories260K checkpoint decoding from Q8_0 / Q4_0 / Q4_K_M weights without dequantizing.
#include <doctest/doctest.h>

#include "skip.hpp"

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <random>
#include <string>
#include <vector>

#include "tessel/generate/generate.hpp"
#include "tessel/io/load/load_llama.hpp"
#include "tessel/io/load/write_llama.hpp"
#include "tessel/nn/linear.hpp"

using namespace tessel;

namespace {

std::vector<float> randn(std::size_t n, unsigned seed) {
  std::mt19937 g(seed);
  std::normal_distribution<float> d(0.f, 1.f);
  std::vector<float> v(n);
  for (auto& x : v) x = d(g);
  return v;
}

// Worst-case error of one activation element quantized to 8 bits: half a step of amax/127,
// plus the f16 rounding of the scale (2^-11 relative, times at most 127 steps).
double act_error_bound(const float* x, index_t n) {
  float amax = 0;
  for (index_t k = 0; k < n; ++k) amax = std::max(amax, std::fabs(x[k]));
  return amax * (0.5 / 127 + 1.0 / 2048) * 1.001;
}

// Linear<dyn, dyn, F>: y = x Wᵀ + beta · y with row strides, against the dequantized weights
// in f64. With fewer than qgemm_min_m rows the activations are quantized to 8 bits per block of
// the activation format: the bound sums |w| times that rounding per block.
template <class F>
void check_linear(index_t M, index_t N, index_t K, float beta, unsigned seed) {
  CAPTURE(F::name);
  CAPTURE(M);
  CAPTURE(beta);
  const index_t ldx = K + 5, ldy = N + 3;
  const auto wf = randn(std::size_t(N * K), seed);
  const auto x = randn(std::size_t(M * ldx), seed + 1);
  const auto y0 = randn(std::size_t(M * ldy), seed + 2);
  nn::Linear<dyn, dyn, F> lin(K, N);
  for (index_t n = 0; n < N; ++n)
    F::quantize_row(wf.data() + n * K, lin.weight.data() + n * (K / F::block_elems), K);
  std::vector<float> wd(std::size_t(N * K));
  for (index_t n = 0; n < N; ++n)
    F::dequantize_row(lin.weight.data() + n * (K / F::block_elems), wd.data() + n * K, K);
  auto y = y0;
  const auto xv = nn::row_view(x.data(), M, K, ldx);  // rows ldx apart, as a KV cache's
  lin.forward(default_backend{}, xv, nn::row_view(y.data(), M, N, ldy), beta);
  using A = typename F::vec_dot_type;
  // GEMV quantizes x to F's vec_dot_type; the integer GEMM (qgemm_vnni.hpp) to q8_0 blocks.
  const bool gemm_int = M >= qgemm_min_m && qgemm_quantizes_activations<cpu, F>();
  const bool qact = M < qgemm_min_m || gemm_int;
  const index_t ab = gemm_int ? 32 : M < qgemm_min_m ? block_elems_v<A> : K;
  for (index_t m = 0; m < M; ++m) {
    for (index_t n = 0; n < N; ++n) {
      double ref = beta * double(y0[std::size_t(m * ldy + n)]), norm = std::fabs(ref), bound = 0;
      for (index_t k = 0; k < K; ++k) {
        const double p = double(wd[std::size_t(n * K + k)]) * x[std::size_t(m * ldx + k)];
        ref += p;
        norm += std::fabs(p);
      }
      if (qact)
        for (index_t b = 0; b < K / ab; ++b) {
          double wsum = 0;
          for (index_t k = b * ab; k < (b + 1) * ab; ++k)
            wsum += std::fabs(wd[std::size_t(n * K + k)]);
          bound += wsum * act_error_bound(x.data() + m * ldx + b * ab, ab);
        }
      CHECK(std::fabs(y[std::size_t(m * ldy + n)] - ref) <= bound + 2e-5 * norm);
    }
    // The padding between rows is never written.
    for (index_t n = N; n < ldy; ++n)
      CHECK(y[std::size_t(m * ldy + n)] == y0[std::size_t(m * ldy + n)]);
  }

  // any_weight holding the same blocks runs the same kernels: identical results.
  nn::Linear<dyn, dyn, nn::any_weight> any(K, N);
  any.weight.assign(lin.weight.data());
  CHECK(any.weight.kind() == nn::weight_kind_of<F>());
  auto ya = y0;
  any.forward(default_backend{}, xv, nn::row_view(ya.data(), M, N, ldy), beta);
  CHECK(ya == y);
}

}  // namespace

TEST_CASE("Linear with a block format runs the quantized kernels (strides, beta)") {
  for (int threads : {1, 2}) {
    set_num_threads(threads);
    for (index_t M : {1, 3, 20})
      for (float beta : {0.0f, 1.0f}) {
        check_linear<q8_0>(M, 67, 96, beta, 1);
        check_linear<q4_0>(M, 33, 64, beta, 2);
        check_linear<q4_k>(M, 19, 256, beta, 3);
        check_linear<q6_k>(M, 5, 512, beta, 4);
      }
  }
  set_num_threads(0);
}

TEST_CASE("any_weight: dense formats equal the typed Linear; bad input is refused") {
  const index_t K = 40, N = 9, M = 3;
  const auto wf = randn(std::size_t(N * K), 5);
  const auto x = randn(std::size_t(M * K), 6);
  nn::Linear<dyn, dyn, f16> typed(K, N);
  for (index_t i = 0; i < N * K; ++i) typed.weight.data()[i] = from_f32<f16>(wf[std::size_t(i)]);
  nn::Linear<dyn, dyn, nn::any_weight> any(K, N);
  std::vector<float> out(std::size_t(M * N));
  const auto xv = nn::row_view(x.data(), M, K);
  CHECK_THROWS_AS(any.forward(default_backend{}, xv, nn::row_view(out.data(), M, N)), value_error);
  any.weight.assign(typed.weight.data());
  CHECK(any.weight.kind() == nn::weight_kind::f16);
  CHECK(any.weight.bytes() == std::size_t(N * K * 2));
  std::vector<float> a(std::size_t(M * N)), b(a.size());
  typed.forward(default_backend{}, xv, nn::row_view(a.data(), M, N));
  any.forward(default_backend{}, xv, nn::row_view(b.data(), M, N));
  CHECK(a == b);
  CHECK_THROWS_AS(any.weight.data<q8_0>(), value_error);
  // Rows of 40 do not hold whole q8_0 blocks.
  std::vector<q8_0> blocks(std::size_t(N * 2));
  CHECK_THROWS_AS(any.weight.assign(blocks.data()), shape_error);

  // Embedding rows of any format widen as the typed table does.
  nn::Embedding<dyn, dyn, nn::any_weight> emb(N, K);
  emb.weight.assign(typed.weight.data());
  std::vector<float> row(static_cast<std::size_t>(K));
  const std::vector<int> ids = {4};
  emb.forward(default_backend{}, std::span<const int>(ids), nn::row_view(row.data(), 1, K));
  for (index_t k = 0; k < K; ++k)
    CHECK(row[std::size_t(k)] == to_f32(typed.weight.data()[4 * K + k]));
}

TEST_CASE("gguf_weight: quantized where rows hold whole blocks, else F16 / F32") {
  const auto x = randn(172 * 64, 7);
  CHECK(io::gguf_weight(x, {172, 64}, io::ggml_type::Q8_0).type == io::ggml_type::Q8_0);
  CHECK(io::gguf_weight(x, {64, 172}, io::ggml_type::Q8_0).type == io::ggml_type::F16);
  CHECK(io::gguf_weight(x, {43, 256}, io::ggml_type::Q4_K).type == io::ggml_type::Q4_K);
  CHECK(io::gguf_weight(x, {172, 64}, io::ggml_type::Q4_K).type == io::ggml_type::F16);
  CHECK(io::gguf_weight(std::span(x).first(64), {64}, io::ggml_type::Q8_0).type ==
        io::ggml_type::F32);
  const auto q = io::gguf_weight(x, {172, 64}, io::ggml_type::Q4_0);
  CHECK(q.bytes.size() == std::size_t(172 * 2 * 18));
  CHECK_THROWS_AS(io::gguf_weight(x, {10, 10}, io::ggml_type::Q8_0), shape_error);
  CHECK_THROWS_AS(io::gguf_weight(x, {172, 64}, io::ggml_type::IQ4_NL), value_error);
}

namespace {

const std::string stories = tessel_test::models_dir() + "/stories260K";
const std::string readme_text =
    "Once upon a time, there was a little girl named Lily. She loved to play outside in the "
    "park. One day, she saw a big, red ball.";

bool have_models() {
  return tessel_test::have(stories + "/stories260K.bin", "the stories260K checkpoint");
}

tessel::SentencePieceTokenizer tok512() {
  tessel::sentencepiece_options o;
  o.remove_extra_whitespaces = true;
  return tessel::load_llama2c_tokenizer(stories + "/tok512.bin", 512, o);
}

std::vector<token_id> golden_ids() {
  std::ifstream f(std::string(TESSEL_TEST_DATA_DIR) + "/llama/stories260K_greedy_ids.txt");
  REQUIRE(f);
  std::vector<token_id> ids;
  for (int v; f >> v;) ids.push_back(v);
  return ids;
}

template <class Model>
std::vector<token_id> greedy_from_bos(const Model& m, int n) {
  const token_id bos = 1;
  GenerateOptions opt;
  opt.max_tokens = n;
  opt.stop_at_bos = opt.stop_at_eos = false;
  return generate_ids(m, std::span(&bos, 1), opt, 1, 2, [](token_id) {}).tokens;
}

// The golden checks run on the scalar reference and on the build's SIMD backend, with the same
// tolerances.
#define TESSEL_BACKENDS tessel::cpu_scalar, tessel::default_backend

template <class W, class B>
using RunTime = models::Llama<models::LlamaConfig, W, B>;
template <class B>
using AnyLlama = RunTime<nn::any_weight, B>;

// Every matrix of m holds the format its tensor has in the file: nothing was converted.
template <class M>
void check_formats_kept(M& m, const io::GGUFFile& f) {
  int matrices = 0;
  m.visit([&](const std::string& name, auto& t) {
    if constexpr (nn::is_any_matrix_v<std::remove_cvref_t<decltype(t)>>) {
      CAPTURE(name);
      const io::GGUFTensor* src = f.find_tensor(name);
      if (!src) src = &f.tensor("token_embd.weight");  // tied classifier
      CHECK(io::weight_kind_of(src->type) == t.kind());
      CHECK(std::memcmp(t.raw(), src->data, t.bytes()) == 0);
      ++matrices;
    }
  });
  CHECK(matrices == 2 + 7 * m.config().layers);
}

}  // namespace

TEST_CASE_TEMPLATE("stories260K in Q8_0 written by tessel: greedy decoding agrees with f32" *
                       doctest::test_suite("needs_models"),
                   B, TESSEL_BACKENDS) {
  if (!have_models()) return;
  auto f32 = io::load_llama2c<RunTime<float, B>>(stories + "/stories260K.bin");
  const std::string path =
      (std::filesystem::temp_directory_path() / "tessel_test_stories260K_q8_0.gguf").string();
  io::write_gguf_llama(f32, path, io::ggml_type::Q8_0);
  const auto f = io::GGUFFile::open(path);
  // Q8_0 wherever the rows hold whole blocks of 32; ffn_down's rows of 172 stay F16.
  CHECK(f.tensor("token_embd.weight").type == io::ggml_type::Q8_0);
  CHECK(f.tensor("output.weight").type == io::ggml_type::Q8_0);
  CHECK(f.tensor("blk.0.attn_q.weight").type == io::ggml_type::Q8_0);
  CHECK(f.tensor("blk.4.ffn_gate.weight").type == io::ggml_type::Q8_0);
  CHECK(f.tensor("blk.2.ffn_down.weight").type == io::ggml_type::F16);
  CHECK(f.tensor("blk.0.attn_norm.weight").type == io::ggml_type::F32);

  auto q = io::load_gguf<RunTime<nn::any_weight, B>>(path);
  CHECK(q.config().max_seq == 512);
  check_formats_kept(q, f);
  CHECK(q.blk[1].ffn.ffn_down.weight.kind() == nn::weight_kind::f16);
  CHECK(q.blk[1].attn.attn_v.weight.kind() == nn::weight_kind::q8_0);

  const auto golden = golden_ids();  // llama2.c's ids for the f32 checkpoint
  const auto ids = greedy_from_bos(q, 256);
  std::size_t first_diff = 0;
  while (first_diff < ids.size() && first_diff < golden.size() &&
         ids[first_diff] == golden[first_diff])
    ++first_diff;
  const auto tok = tok512();
  const std::string text = tok.decode(ids), ref = tok.decode(golden);
  std::size_t first_char = 0;
  while (first_char < text.size() && first_char < ref.size() && text[first_char] == ref[first_char])
    ++first_char;
  MESSAGE("Q8_0 stories260K: the first " << first_diff << " of " << golden.size()
                                         << " greedy tokens equal f32's; the text differs from "
                                            "character "
                                         << first_char << ": \"" << text.substr(0, 160) << "\"");
  REQUIRE(ids.size() >= 32);
  CHECK(std::vector<token_id>(ids.begin(), ids.begin() + 32) ==
        std::vector<token_id>(golden.begin(), golden.begin() + 32));
  std::filesystem::remove(path);
}

TEST_CASE_TEMPLATE("stories260K GGUF files from llama.cpp load as any_weight without dequantizing" *
                       doctest::test_suite("needs_models"),
                   B, TESSEL_BACKENDS) {
  if (!have_models()) return;
  const auto tok = tok512();
  const std::string first = readme_text.substr(0, readme_text.find('.') + 1);
  const std::string g = stories + "/gguf/stories260K-";
  for (const char* q : {"Q8_0-mixed", "Q4_0-mixed", "Q4_K_M", "F16"}) {
    CAPTURE(q);
    const auto f = io::GGUFFile::open(g + q + ".gguf");
    auto m = io::load_gguf<AnyLlama<B>>(f);
    check_formats_kept(m, f);
    const std::string text = tok.decode(greedy_from_bos(m, 40));
    CHECK(text.substr(0, first.size()) == first);
  }
  // The F16 file gives llama2.c's ids exactly as the f32 model does.
  auto f16 = io::load_gguf<RunTime<nn::any_weight, B>>(g + "F16.gguf");
  CHECK(f16.blk[0].attn.attn_q.weight.kind() == nn::weight_kind::f16);
  const auto golden = golden_ids();
  CHECK(greedy_from_bos(f16, 120) == std::vector<token_id>(golden.begin(), golden.begin() + 120));
}

TEST_CASE_TEMPLATE("stories260K: a 100-token prompt (SGEMM attention) equals 100 single steps" *
                       doctest::test_suite("needs_models"),
                   B, TESSEL_BACKENDS) {
  if (!have_models()) return;
  auto m = io::load_llama2c<RunTime<float, B>>(stories + "/stories260K.bin");
  const auto golden = golden_ids();
  std::vector<token_id> ids = {1};
  ids.insert(ids.end(), golden.begin(), golden.begin() + 99);
  const index_t n = 100, V = m.vocab();
  auto st = m.new_state();
  REQUIRE(st.max_batch() >= 64);  // chunks of 64 and 36 rows: both past gemm_rows
  std::vector<float> prompt(std::size_t(n * V)), steps(prompt.size());
  m.forward(st, std::span<const token_id>(ids), 0, prompt.data());
  for (index_t t = 0; t < n; ++t) {
    const auto l = m.forward(st, std::span<const token_id>(&ids[std::size_t(t)], 1), t);
    std::copy(l.begin(), l.end(), steps.begin() + t * V);
  }
  double worst = 0, scale = 0;
  for (float v : steps) scale = std::max(scale, double(std::fabs(v)));
  for (std::size_t i = 0; i < steps.size(); ++i)
    worst = std::max(worst, std::fabs(double(prompt[i]) - steps[i]));
  MESSAGE("prompt vs steps: worst |difference| " << worst << " (logits up to " << scale << ")");
  CHECK(worst <= 1e-4 * scale);  // f32 summation order only
  // Every row's argmax is llama2.c's next token.
  for (index_t t = 0; t < n; ++t) {
    const float* row = prompt.data() + t * V;
    CHECK(std::max_element(row, row + V) - row == golden[std::size_t(t)]);
  }
}

TEST_CASE_TEMPLATE(
    "stories260K in f32 written by tessel's GGUF writer reproduces llama2.c for 256 tokens" *
        doctest::test_suite("needs_models"),
    B, TESSEL_BACKENDS) {
  if (!have_models()) return;
  auto f32 = io::load_llama2c<RunTime<float, B>>(stories + "/stories260K.bin");
  const std::string path =
      (std::filesystem::temp_directory_path() / "tessel_test_stories260K_f32.gguf").string();
  io::write_gguf_llama(f32, path, io::ggml_type::F32);
  const auto f = io::GGUFFile::open(path);
  CHECK(f.tensor("blk.2.ffn_down.weight").type == io::ggml_type::F32);
  CHECK(f.tensor("token_embd.weight").type == io::ggml_type::F32);
  auto g = io::load_gguf<RunTime<float, B>>(path);
  const auto golden = golden_ids();  // the committed ids of an independent PyTorch run
  REQUIRE(golden.size() >= 256);
  const auto ids = greedy_from_bos(g, 256);
  CHECK(std::vector<token_id>(ids.begin(), ids.end()) ==
        std::vector<token_id>(golden.begin(), golden.begin() + static_cast<long>(ids.size())));
  CHECK(ids.size() == 256);
  std::filesystem::remove(path);
}
