// The twin of tests/compile_fail/typed_layer_static_width.cpp with matching widths: it must
// compile (so the failing twin fails for its shapes, not for its includes).
#include <tessel/nn/linear.hpp>

int main() {
  using namespace tessel;
  nn::Linear<64, 128> a;
  nn::Linear<128, 32> b;
  float x[64] = {}, h[128] = {}, y[32] = {};
  const auto hv = nn::row_view<128>(h, 1);
  a.forward(cpu_scalar{}, nn::row_view<64, const float>(x, 1), hv);
  b.forward(cpu_scalar{}, hv, nn::row_view<32>(y, 1));
}
