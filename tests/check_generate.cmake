# Runs tessel-generate on a GGUF file and checks what it prints (a CTest, cmake -P):
#   cmake -DEXE=tessel-generate -DMODEL=file.gguf -DPROMPT="Hello world" -DPROMPT_IDS="15496 995"
#         -DN=16 [-DEXPECTED_IDS_FILE=file.gguf.ids] -P check_generate.cmake
# stdout must start with the prompt; with --ids, stderr's last two lines are the prompt's ids
# (which must equal PROMPT_IDS: the BOS rule shows here) and the N generated ids (equal to the
# file's contents when EXPECTED_IDS_FILE is given).
foreach(v EXE MODEL PROMPT PROMPT_IDS N)
  if(NOT DEFINED ${v})
    message(FATAL_ERROR "check_generate.cmake: -D${v}=... is required")
  endif()
endforeach()

execute_process(
  COMMAND "${EXE}" --model "${MODEL}" --prompt "${PROMPT}" -n ${N} --ids
  OUTPUT_VARIABLE out ERROR_VARIABLE err RESULT_VARIABLE rc)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "tessel-generate exited with ${rc}\nstdout: ${out}\nstderr: ${err}")
endif()

string(LENGTH "${PROMPT}" plen)
string(SUBSTRING "${out}" 0 ${plen} head)
if(NOT head STREQUAL PROMPT)
  message(FATAL_ERROR "stdout does not start with the prompt '${PROMPT}':\n${out}")
endif()

# stderr: "prefill: ...", then the prompt's ids, then the generated ids.
string(REGEX REPLACE "\n$" "" err_trimmed "${err}")
string(REPLACE "\n" ";" lines "${err_trimmed}")
list(LENGTH lines nlines)
if(nlines LESS 3)
  message(FATAL_ERROR "stderr has ${nlines} lines, expected the speed line and two id lines:\n${err}")
endif()
math(EXPR i_prompt "${nlines} - 2")
math(EXPR i_gen "${nlines} - 1")
list(GET lines ${i_prompt} got_prompt)
list(GET lines ${i_gen} got_gen)
if(NOT got_prompt STREQUAL PROMPT_IDS)
  message(FATAL_ERROR "prompt ids are '${got_prompt}', expected '${PROMPT_IDS}'\nstderr:\n${err}")
endif()
string(REPLACE " " ";" gen_list "${got_gen}")
list(LENGTH gen_list ngen)
if(NOT ngen EQUAL N)
  message(FATAL_ERROR "${ngen} generated ids ('${got_gen}'), expected ${N}\nstderr:\n${err}")
endif()
foreach(id IN LISTS gen_list)
  if(NOT id MATCHES "^[0-9]+$")
    message(FATAL_ERROR "generated id '${id}' is not a number\nstderr:\n${err}")
  endif()
endforeach()
if(DEFINED EXPECTED_IDS_FILE)
  file(READ "${EXPECTED_IDS_FILE}" want)
  string(STRIP "${want}" want)
  if(NOT got_gen STREQUAL want)
    message(FATAL_ERROR "generated ids '${got_gen}', expected '${want}' (${EXPECTED_IDS_FILE})")
  endif()
endif()
message(STATUS "tessel-generate: prompt ids '${got_prompt}', ${ngen} generated ids as expected")
