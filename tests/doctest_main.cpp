// doctest's main, plus run-time skips (tests/skip.hpp): a run in which a case skipped and none
// failed exits 77, which ctest reports as "Skipped" where the entry has SKIP_RETURN_CODE 77.
#define DOCTEST_CONFIG_IMPLEMENT
#include <doctest/doctest.h>

#include <cstdio>

#include "skip.hpp"

// ctest's entry for the cases outside the needs_* suites has no SKIP_RETURN_CODE, so a case that
// skips without being in such a suite fails there: tag it (tests/skip.hpp).
int main(int argc, char** argv) {
  doctest::Context context(argc, argv);
  const int rc = context.run();
  if (context.shouldExit() || rc != 0) return rc;
  const auto& why = tessel_test::skipped();
  if (why.empty()) return 0;
  std::printf("[tessel] %zu check(s) skipped, exit code 77 (ctest: Skipped):\n", why.size());
  for (const auto& w : why) std::printf("  %s\n", w.c_str());
  return 77;
}
