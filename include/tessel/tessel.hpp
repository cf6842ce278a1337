#pragma once
// tessel: compile-time typed tensors, number and quantization formats, layer templates.
// Include this one header (or single_include/tessel.hpp) to get the whole library.
#include "core.hpp"
#include "backend/tags.hpp"
