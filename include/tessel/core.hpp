#pragma once
// core/: number types, shapes, tensors, views, errors, memory spaces.
#include "core/error.hpp"
#include "core/memory.hpp"
#include "core/numeric.hpp"
#include "core/shape.hpp"
#include "core/tensor.hpp"
