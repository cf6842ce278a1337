#pragma once
// Test cases that need what a machine may lack (../shared/models, an instruction set, a GPU)
// belong to a doctest test suite named needs_<what>:
//
//   TEST_CASE("stories260K decodes" * doctest::test_suite("needs_models")) {
//     if (!tessel_test::have(path, "the stories260K checkpoint")) return;
//
// and call skip() (or have()) when it is missing. tests/CMakeLists.txt registers a binary with
// such suites twice: the cases outside them, and each needs_* suite alone; doctest_main.cpp then
// exits 77 from a run in which a case skipped and none failed, which ctest reports as "Skipped"
// (SKIP_RETURN_CODE) instead of counting a check that never ran as passed.

#include <doctest/doctest.h>

#include <cstdlib>
#include <filesystem>
#include <string>
#include <vector>

namespace tessel_test {

/// The reasons skip() recorded in this run.
inline std::vector<std::string>& skipped() {
  static std::vector<std::string> reasons;
  return reasons;
}

/// Records that the running case cannot check what it is for on this machine; return after.
inline void skip(const std::string& why) {
  skipped().push_back(why);
  MESSAGE("skipped: " << why);
}

/// The folder of real checkpoints: $TESSEL_MODELS_DIR where set (an empty or missing folder
/// makes the needs_models cases skip), else the one CMake configured (../shared/models).
inline const std::string& models_dir() {
  static const std::string dir = [] {
    const char* e = std::getenv("TESSEL_MODELS_DIR");
    return std::string(e && *e ? e : TESSEL_MODELS_DIR);
  }();
  return dir;
}

/// True when `path` exists; otherwise records a skip naming it.
inline bool have(const std::string& path, const std::string& what) {
  if (std::filesystem::exists(path)) return true;
  skip(what + ": " + path + " is absent (see the models README)");
  return false;
}

}  // namespace tessel_test
