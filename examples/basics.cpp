// The getting-started tour (docs/getting-started.md) as a program: tensors, views,
// fused expressions, matmul, norms.
#include <iostream>
#include <tessel/tessel.hpp>

using namespace tessel;

int main() {
  // Tensors and views.
  Tensor<float, Shape<4, 6>> a;
  for (index_t i = 0; i < 4; ++i)
    for (index_t j = 0; j < 6; ++j) a(i, j) = static_cast<float>(i) - 0.5f * static_cast<float>(j);
  std::cout << "a = " << a << "\n";
  std::cout << "a.transpose().slice(0, 1, 3) = " << a.transpose().slice(0, 1, 3) << "\n";

  // A fused expression with broadcasting, stored as bf16.
  Tensor<float, Shape<6>> bias;
  for (index_t j = 0; j < 6; ++j) bias(j) = 0.1f * static_cast<float>(j);
  Tensor<bf16, Shape<4, 6>> y;
  eval(y, silu(a) * a + bias);
  std::cout << "silu(a) * a + bias (bf16) = " << y << "\n";

  // Softmax written as an expression, against ops/softmax.
  auto e = materialize(exp(a - max(a, axis<1>)));
  auto p = materialize(e / sum(e, axis<1>));
  auto q = softmax(a);
  float worst = 0;
  for (index_t i = 0; i < 4; ++i)
    for (index_t j = 0; j < 6; ++j) worst = std::max(worst, std::abs(p(i, j) - q(i, j)));
  std::cout << "softmax by expression vs ops::softmax: max |diff| = " << worst << "\n";
  std::cout << "argmax along rows = " << materialize(argmax(a, axis<1>)) << "\n";

  // x · Wᵀ with an f16 weight, then RMSNorm.
  Tensor<f16, Shape<3, 6>> w;
  for (index_t n = 0; n < 3; ++n)
    for (index_t k = 0; k < 6; ++k) w(n, k) = from_f32<f16>(n == k ? 1.0f : 0.25f);
  auto h = matmul(a, w.transpose());
  std::cout << "a · wᵀ = " << h << "\n";
  Tensor<float, Shape<3>> g;
  g.fill(1.0f);
  std::cout << "rms_norm(a · wᵀ) = " << rms_norm(h, g, 1e-5f) << "\n";

  // A run-time mismatch is an exception that names both shapes.
  Tensor<float, DynShape<2>> u(2, 3), v(4, 5);
  try {
    eval(u, u + v);
  } catch (const shape_error& err) {
    std::cout << "shape_error: " << err.what() << "\n";
  }
  return 0;
}
