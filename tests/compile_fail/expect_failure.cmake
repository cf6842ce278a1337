# Passes only when SRC fails to compile and the compiler's output contains the text of the
# `// expect: <text>` line in SRC (alternatives for other compilers' wording separated by
# " || ": any one of them). Run as:
#   cmake -DCXX=<compiler> -DSRC=<file.cpp> -DINC=<include dir> -DEIGEN=<eigen dir>
#         -P expect_failure.cmake
foreach(var CXX SRC INC)
  if(NOT DEFINED ${var})
    message(FATAL_ERROR "expect_failure.cmake: -D${var}=... is required")
  endif()
endforeach()

file(STRINGS "${SRC}" _expect_lines REGEX "^[ \t]*//[ \t]*expect:")
if(NOT _expect_lines)
  message(FATAL_ERROR "${SRC}: no `// expect: <text>` line says which error to expect")
endif()
list(GET _expect_lines 0 _line)
string(REGEX REPLACE "^[ \t]*//[ \t]*expect:[ \t]*" "" _expected "${_line}")
string(STRIP "${_expected}" _expected)
if(_expected STREQUAL "")
  message(FATAL_ERROR "${SRC}: the `// expect:` line is empty")
endif()

set(_includes -I "${INC}")
if(DEFINED EIGEN AND NOT EIGEN STREQUAL "")
  list(APPEND _includes -I "${EIGEN}")
endif()
execute_process(
  COMMAND "${CXX}" -std=c++20 -fsyntax-only ${_includes} "${SRC}"
  RESULT_VARIABLE _rc
  OUTPUT_VARIABLE _out
  ERROR_VARIABLE _out)

if(_rc EQUAL 0)
  message(FATAL_ERROR "${SRC} compiled, but it must fail with: ${_expected}")
endif()
string(REPLACE " || " ";" _alternatives "${_expected}")
set(_pos -1)
foreach(_alt IN LISTS _alternatives)
  string(FIND "${_out}" "${_alt}" _at)
  if(NOT _at EQUAL -1)
    set(_pos ${_at})
  endif()
endforeach()
if(_pos EQUAL -1)
  message(FATAL_ERROR "${SRC} failed to compile, but without the expected text \"${_expected}\". "
                      "Compiler output:\n${_out}")
endif()
message(STATUS "${SRC}: rejected as expected (\"${_expected}\")")
