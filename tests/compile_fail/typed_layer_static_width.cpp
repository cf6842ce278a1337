// A layer's output wired into a layer whose static input width differs must not compile:
// Linear<64, 128> gives rows of 128, Linear<64, 32> takes rows of 64. The same wiring with
// matching widths is tests/compile_pass/typed_layer_wiring.cpp.
// expect: tessel::nn::RowView<64, const float> || to 'RowView<64L, const float>'
#include <tessel/nn/linear.hpp>

int main() {
  using namespace tessel;
  nn::Linear<64, 128> a;
  nn::Linear<64, 32> b;
  float x[64] = {}, h[128] = {}, y[32] = {};
  const auto hv = nn::row_view<128>(h, 1);
  a.forward(cpu_scalar{}, nn::row_view<64, const float>(x, 1), hv);
  b.forward(cpu_scalar{}, hv, nn::row_view<32>(y, 1));  // rows of 128 into Linear<64, ...>
}
