// Uses the installed headers: a static-shape tensor, a view and a conversion.
#include <cstdio>
#include <tessel/tessel.hpp>

int main() {
  tessel::Tensor<float, tessel::Shape<2, 3>> t;
  for (tessel::index_t i = 0; i < 2; ++i)
    for (tessel::index_t j = 0; j < 3; ++j) t(i, j) = static_cast<float>(i * 3 + j);
  const auto tr = t.transpose();
  const float h = tessel::to_f32(tessel::from_f32<tessel::f16>(tr(2, 1)));
  std::printf("consumer: t^T(2,1) = %g\n", h);
  return h == 5.0f ? 0 : 1;
}
