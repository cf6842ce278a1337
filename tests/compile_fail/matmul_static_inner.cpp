// Static matrices whose inner extents differ must not compile.
// expect: the columns of A must equal the rows of B
#include <tessel/ops/matmul.hpp>

int main() {
  tessel::Tensor<float, tessel::Shape<2, 3>> a;
  tessel::Tensor<float, tessel::Shape<4, 5>> b;
  auto c = tessel::matmul(a, b);
  (void)c;
}
