// jamba_hybrid: a Jamba-style model declared at compile time from tessel's layer templates
// (Mamba mixers with one attention layer in four, each followed by a gated MLP), random
// weights, greedy decoding of a few tokens. Shows the composition; tests/test_mamba.cpp checks
// the same template against PyTorch (tools/golden/hybrid_golden.py).
//
//   jamba_hybrid [tokens]      prints the layer layout and the generated ids
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <vector>

#include "tessel/models/hybrid.hpp"

struct SmallJamba {
  static constexpr int dim = 256, layers = 8, vocab = 1000, max_seq = 512,  // model
      d_inner = 512, d_state = 16, d_conv = 4, dt_rank = 16,                // Mamba layers
      heads = 8, kv_heads = 2,                                              // attention layers
      hidden = 688, attn_period = 4, attn_offset = 2;                       // MLP, layout
};

int main(int argc, char** argv) {
  using Model = tessel::models::Hybrid<SmallJamba>;
  const int n = argc > 1 ? std::atoi(argv[1]) : 32;
  Model m;
  std::mt19937 g(1);
  std::normal_distribution<float> nd(0.f, 1.f);
  m.visit([&](const std::string& name, auto& t) {
    const tessel::index_t cols = t.shape().extents().back();
    for (tessel::index_t i = 0; i < t.size(); ++i) {
      float v = nd(g) / std::sqrt(float(cols));
      if (name.ends_with("norm.weight")) v = 1.0f;
      if (name.ends_with(".ssm_a")) v = -float(1 + i % cols);  // A = −exp(A_log), A_log = log n
      if (name.ends_with(".ssm_dt.bias")) v = -4.0f;
      if (name.ends_with(".ssm_d")) v = 1.0f;
      t.data()[i] = v;
    }
  });
  for (tessel::index_t l = 0; l < SmallJamba::layers; ++l)
    std::printf("layer %ld: %s + gated MLP\n", long(l),
                Model::is_attention(l) ? "attention" : "mamba");
  auto seq = m.new_state();  // the KV cache and Mamba states of one sequence
  std::vector<int> ids{1};
  for (int i = 0; i < n && tessel::index_t(ids.size()) < seq.max_seq(); ++i) {
    const auto logits = ids.size() == 1 ? m.forward(seq, std::span<const int>(ids), 0)
                                        : m.forward(seq, std::span<const int>(&ids.back(), 1),
                                                    tessel::index_t(ids.size()) - 1);
    int best = 0;
    for (int v = 1; v < SmallJamba::vocab; ++v)
      if (logits[std::size_t(v)] > logits[std::size_t(best)]) best = v;
    ids.push_back(best);
  }
  std::printf("ids:");
  for (int id : ids) std::printf(" %d", id);
  std::printf("\n");
  return 0;
}
