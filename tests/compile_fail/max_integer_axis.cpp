// max(x, 1) could mean a reduction or an elementwise maximum: rejected with a hint.
// expect: with an integer n is ambiguous
#include <tessel/expr/expr.hpp>

int main() {
  tessel::Tensor<float, tessel::Shape<2, 3>> a;
  tessel::max(a, 1);
}
