// An expression over a temporary Tensor would dangle: rejected.
// expect: cannot hold a temporary Tensor
#include <tessel/expr/expr.hpp>

int main() {
  tessel::Tensor<float, tessel::Shape<2>> a;
  auto e = a + tessel::Tensor<float, tessel::Shape<2>>{};
  (void)e;
}
