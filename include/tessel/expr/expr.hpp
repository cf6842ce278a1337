#pragma once
// tessel expressions: lazy elementwise maps with numpy broadcasting, axis reductions, and a
// fused evaluation that runs the whole tree in one pass with no temporaries.
//
//   #include <tessel/expr/expr.hpp>          // nodes, shapes, broadcasting (backend-free)
//   #include <tessel/backend/cpu/eval.hpp>   // eval / materialize on the CPU (includes this file)
//   #include <tessel/backend/cuda/eval.cuh>  // eval(tessel::cuda{}, ...) under nvcc
//
// Operands: Tensor / TensorView of any number element type (f32, f16, bf16, f8, i8, i32; read
// and computed in f32), numbers, and other expressions. Expressions hold tensors by pointer:
// the tensors must outlive the expression (a temporary Tensor operand is a compile error).
//
// Elementwise (numpy broadcasting; static shapes that cannot broadcast are a compile error, a
// dynamic mismatch throws shape_error naming the operation and both shapes):
//   a + b, a - b, a * b, a / b, -a, a < b, a <= b, a > b, a >= b, equal(a, b),
//   not_equal(a, b) (comparisons give 1 or 0), where(c, a, b) (a where c != 0),
//   min(a, b), max(a, b) (= minimum / maximum, NaN-propagating), pow(a, b),
//   exp log sqrt rsqrt abs tanh erf sigmoid silu gelu (erf form) gelu_tanh softplus relu.
// Reductions along one axis (kept with extent 1 unless keepdims<false> is passed):
//   sum(x, axis<1>), mean(x, axis<-1>), max(x, axis<1>), argmax(x, axis<1>),
//   sum(x, dyn_axis(i)) / sum(x, i) with a run-time axis (max needs axis<> or dyn_axis()).
//   max and argmax propagate NaN as numpy does; argmax gives the first index of the maximum
//   (materialize() makes it an int32 tensor).
//
// Evaluation (backend/cpu/eval.hpp):
//   eval(dst, e)              dst = e with the best CPU backend (tessel::cpu), threaded
//   eval(backend, dst, e)     backend: tessel::cpu_scalar (reference) or cpu_simd<Arch>
//   materialize(e)            a new Tensor<result, shape of e> (f32, i32 for argmax)
//   materialize<T>(e)         ... with element type T
// `dst` is a Tensor or TensorView; e's shape must broadcast to dst's shape. Values are
// converted to dst's element type at the store (f16 / bf16 / f8 round to nearest even).
// The tree is evaluated in one pass: each leaf element is read once per output element that
// uses it, nothing is materialized in between. A reduction inside a tree is computed first
// into a buffer of the reduced shape, then read as a leaf (so `exp(x - max(x, axis<1>))` reads
// x twice: once for the max, once for the difference). dst may be one of the leaves (the same
// view, not an overlapping shifted one).

#include "broadcast.hpp"
#include "elementwise.hpp"
#include "node.hpp"
#include "reduce.hpp"
#include "scalar_eval.hpp"
