// A static reduction axis outside the rank must not compile.
// expect: reduction axis out of range
#include <tessel/expr/expr.hpp>

int main() {
  tessel::Tensor<float, tessel::Shape<2, 3>> a;
  auto e = tessel::sum(a, tessel::axis<2>);
  (void)e;
}
