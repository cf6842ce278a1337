// Two static shapes that cannot broadcast must not compile.
// expect: elementwise operation on static shapes that cannot broadcast
#include <tessel/expr/expr.hpp>

int main() {
  tessel::Tensor<float, tessel::Shape<2, 3>> a;
  tessel::Tensor<float, tessel::Shape<4>> b;
  auto e = a + b;
  (void)e;
}
