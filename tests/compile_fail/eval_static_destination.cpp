// A static expression shape that does not fit a static destination must not compile.
// expect: does not fit the destination's static shape
#include <tessel/backend/cpu/eval.hpp>

int main() {
  tessel::Tensor<float, tessel::Shape<2, 3>> a;
  tessel::Tensor<float, tessel::Shape<3, 2>> d;
  tessel::eval(d, a * 2.f);
}
