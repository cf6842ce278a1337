# The two commands of the README: `make demo` and `make test`.
# Each installs the Debian packages it needs (as root), configures CMake into build/ and builds.

BUILD ?= build
JOBS ?= $(shell nproc)
CMAKE_FLAGS ?=
DEBS := cmake make g++ python3 libeigen3-dev libxsimd-dev doctest-dev libbenchmark-dev \
        libopenblas-dev nlohmann-json3-dev libstb-dev libcli11-dev

.PHONY: all deps configure build test demo bench clean single-include format

all: build

deps:
	@tools/install-deps.sh $(DEBS)

configure: deps
	@cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=Release $(CMAKE_FLAGS) >/dev/null

build: configure
	@cmake --build $(BUILD) -j$(JOBS)

test: configure
	@cmake --build $(BUILD) -j$(JOBS)
	@cd $(BUILD) && ctest --output-on-failure -j$(JOBS)

demo: build
	@tools/demo.sh $(BUILD)

bench: build
	@$(BUILD)/bin/tessel-bench

single-include:
	@python3 tools/amalgamate.py --output single_include/tessel.hpp
	@python3 tools/amalgamate.py --core --output single_include/tessel_core.hpp

format:
	@clang-format -i $$(git ls-files '*.hpp' '*.cpp' '*.cuh' '*.cu')

clean:
	@rm -rf $(BUILD)
