#!/usr/bin/env python
"""PAC-LoRA vs plain LoRA vs zero-shot on real replies (not CI): RumourEval 2017 (SemEval-2017 Task 8), source
tweets as the news, direct replies as the responses, the official test threads held out.

    OMP_NUM_THREADS=1 HF_HUB_OFFLINE=1 .venv/bin/python bench/responses_rumoureval.py      # ~10 min, 2 quiet cores
    .venv/bin/python bench/responses_rumoureval.py --restart                            # start afresh

Data: `../shared/data/real/rumoureval2017_twitter_replies/posts.csv` (`--data`; read in place, never copied into
the repo). It is converted into predict_responses.py's input schema in `--out` (default output/bench_responses,
git-ignored) under input/:

  * topics.jsonl: one topic per source tweet (depth 0): topic_id = thread_id, news = the source text, topic = its
    first hashtag (else its first six words), language en, split = `test` for the official test threads, `train`
    for traindev;
  * responses.jsonl: the *direct* replies only (depth 1; deeper replies answer another reply, not the news). The
    leading @mentions that Twitter puts in front of a reply (the handle of the author replied to, which no prompt
    contains) are stripped unless `--keep-mentions`; a reply left empty is dropped (counted);
  * users.jsonl: the data has no author ids and no timelines, so every reply gets its own pseudo-user (user_id =
    the reply's post_id) with an empty history and one constant name (`--user-name`).

Sizes are capped so the run fits in about 20 minutes on 2 CPU cores with the embedded model (SmolLM2-135M):
`--max-train-cases` traindev replies (a seeded sample over all threads), `--max-test-topics` official test threads
(seeded) and at most `--max-test-cases` of their replies, taken round-robin over the threads so each topic keeps a
sentiment distribution for the macro metrics.

Stages: real subprocess calls of predict_responses.py, so this exercises the CLI: build-dataset --min-history 0
(a pseudo-user has no history), extract-personas --no-personas (no history, so no persona to extract), train
PAC-LoRA and plain LoRA on the `without_persona` variant (the only meaningful one without personas), infer with
each adapter and zero-shot (same variant, same seed sampling: T 0.7, top-p 0.9, top-k 20, repetition penalty 1.2),
evaluate. Rerunning skips the finished stages (a settings file in --out refuses to mix runs with other settings;
--restart wipes the folder). Seconds per stage, sizes, settings and the table go to bench/results.json under
"responses".

What the comparison measures: without history, profile or persona the prompt's user span is only the intro's
username, the same constant for every case, so PAC-LoRA's user-side (B) router gets one identical input for all
rows: its B gates are one learned mixture shared by every case, i.e. no per-user routing (a truly empty user span
would give uniform gates; either way nothing about the user reaches the router). The comparison therefore measures
the news-side (A) routing plus the extra capacity of the experts against a single LoRA of the same rank, not the
persona conditioning the method is about. The steps, learning rate and sizes make a smoke-scale study: differences
within the bootstrap intervals are noise.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import os
import random
import re
import shutil
import subprocess
import sys
import time
from collections import Counter, defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from results import update_results  # noqa: E402

DATA_NAME = "rumoureval2017_twitter_replies"
DEFAULT_DATA = ROOT.parent / "shared" / "data" / "real" / DATA_NAME
VARIANT = "without_persona"
METHODS = ("pac-lora", "lora", "zero-shot")
SETTINGS_FILE = "bench_settings.json"
STAGES_FILE = "bench_stages.json"

_LEADING_MENTIONS = re.compile(r"^(?:\s*\.?@\w+[\s:,]*)+")
_HASHTAG = re.compile(r"#(\w+)")
_URL = re.compile(r"https?://\S+")
_MENTION = re.compile(r"@\w+")


# ---------------------------------------------------------------------------------------------- conversion


def posts_file(data: Path) -> Path:
    """posts.csv from --data: the file itself, the data set's folder, or the folder of real data sets."""
    for candidate in (data, data / "posts.csv", data / DATA_NAME / "posts.csv"):
        if candidate.is_file():
            return candidate
    sys.exit(f"no posts.csv at {data} (give --data the {DATA_NAME} folder)")


def topic_title(text: str) -> str:
    """The first hashtag, else the first six words (links and @mentions left out)."""
    tag = _HASHTAG.search(text)
    if tag:
        return tag.group(1)
    words = _MENTION.sub(" ", _URL.sub(" ", text)).split()
    return " ".join(words[:6]) or "news"


def clean_reply(text: str, keep_mentions: bool) -> str:
    text = " ".join(text.split())
    return text if keep_mentions else _LEADING_MENTIONS.sub("", text).strip()


def round_robin(groups: dict[str, list], limit: int) -> list:
    """Items taken one per group in turn (groups in the given order) until `limit` or all are taken."""
    out, queues = [], [list(items) for items in groups.values()]
    while len(out) < limit and any(queues):
        for queue in queues:
            if queue and len(out) < limit:
                out.append(queue.pop(0))
    return out


def convert(args, folder: Path) -> dict:
    """posts.csv -> folder/{topics,users,responses}.jsonl; returns the counts."""
    with open(posts_file(args.data), newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    sources = {r["thread_id"]: r for r in rows if r["is_source"] == "1"}
    replies: dict[str, list[dict]] = defaultdict(list)
    dropped = Counter()
    for r in rows:
        if r["is_source"] == "1":
            continue
        if r["depth"] != "1":
            dropped["deeper reply (depth > 1)"] += 1
            continue
        if r["thread_id"] not in sources:
            dropped["thread without source tweet"] += 1
            continue
        text = clean_reply(r["text"], args.keep_mentions)
        if not text:
            dropped["empty after stripping @mentions"] += 1
            continue
        replies[r["thread_id"]].append({**r, "clean": text})
    rng = random.Random(args.seed)
    test_threads = sorted(t for t, s in sources.items() if s["split"] == "test" and replies.get(t))
    rng.shuffle(test_threads)
    test_threads = test_threads[: args.max_test_topics]
    per_thread = {}
    for tid in test_threads:
        items = sorted(replies[tid], key=lambda r: r["post_id"])
        rng.shuffle(items)
        per_thread[tid] = items
    test = round_robin(per_thread, args.max_test_cases)
    pool = sorted(
        (r for t, items in replies.items() if sources[t]["split"] == "traindev" for r in items),
        key=lambda r: r["post_id"],
    )
    train = rng.sample(pool, min(args.max_train_cases, len(pool)))
    chosen = sorted(train + test, key=lambda r: (r["thread_id"], r["created_utc"], r["post_id"]))
    used_threads = sorted({r["thread_id"] for r in chosen})
    topics = [
        {
            "topic_id": tid,
            "topic": topic_title(sources[tid]["text"]),
            "news": " ".join(sources[tid]["text"].split()),
            "language": "en",
            "split": "test" if sources[tid]["split"] == "test" else "train",
        }
        for tid in used_threads
    ]
    users = [{"user_id": r["post_id"], "name": args.user_name, "history": []} for r in chosen]
    responses = [
        {"topic_id": r["thread_id"], "user_id": r["post_id"], "id": r["post_id"], "text": r["clean"]} for r in chosen
    ]
    folder.mkdir(parents=True, exist_ok=True)
    for name, records in (("topics", topics), ("users", users), ("responses", responses)):
        text = "".join(json.dumps(rec, ensure_ascii=False) + "\n" for rec in records)
        (folder / f"{name}.jsonl").write_text(text, encoding="utf-8")
    stance = Counter(r["stance"] for r in test)
    return {
        "posts": len(rows),
        "direct_replies": sum(len(v) for v in replies.values()),
        "dropped": dict(dropped),
        "train_replies": len(train),
        "train_topics": len({r["thread_id"] for r in train}),
        "test_replies": len(test),
        "test_topics": len(test_threads),
        "test_stance": dict(stance),
    }


# ---------------------------------------------------------------------------------------------- stages


def settings_of(args) -> dict:
    keys = (
        "max_train_cases", "max_test_topics", "max_test_cases", "seed", "keep_mentions", "user_name", "model",
        "steps", "lr", "warmup", "train_batch_size", "grad_accum", "max_length", "rank", "experts",
        "max_new_tokens", "batch_size",
    )  # fmt: skip
    settings = {k: getattr(args, k) for k in keys}
    settings["data_sha256"] = hashlib.sha256(posts_file(args.data).read_bytes()).hexdigest()[:16]
    return settings


def run_stage(name: str, cmd: list[str], args, log_dir: Path) -> float:
    """Run one predict_responses.py stage, echo and log its output; exit on failure. Returns seconds."""
    env = {
        **os.environ,
        "OMP_NUM_THREADS": str(args.threads),
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "TOKENIZERS_PARALLELISM": "false",
    }
    full = [sys.executable, "predict_responses.py", *cmd]
    print(f"\n=== {name}: {' '.join(full[1:])}", flush=True)
    log_dir.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    with open(log_dir / f"{name}.log", "a", encoding="utf-8") as log:  # a resumed stage appends
        proc = subprocess.Popen(full, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        for line in proc.stdout:
            log.write(line)
            quiet = not line.strip() or line.startswith(("{'loss'", "{'train_runtime'")) or "%|" in line
            if not quiet:  # progress bars and per-step losses stay in the log
                print(line, end="", flush=True)
        proc.wait()
    seconds = time.perf_counter() - t0
    if proc.returncode != 0:
        sys.exit(f"{name} failed (exit {proc.returncode}); see {log_dir / (name + '.log')}")
    print(f"=== {name}: {seconds:.1f} s", flush=True)
    return seconds


def read_jsonl(path: Path) -> list[dict]:
    if not path.exists():
        return []
    with open(path, encoding="utf-8") as handle:
        return [json.loads(line) for line in handle if line.strip()]


def predictions_done(path: Path, n_test: int) -> bool:
    return len({r["id"] for r in read_jsonl(path)}) >= n_test


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", type=Path, default=DEFAULT_DATA, help="the data set folder (or its posts.csv)")
    p.add_argument("--out", type=Path, default=ROOT / "output" / "bench_responses", help="work folder (not in git)")
    p.add_argument("--results", type=Path, default=ROOT / "bench" / "results.json")
    p.add_argument("--restart", action="store_true", help="delete --out first")
    d = p.add_argument_group("data")
    d.add_argument("--max-train-cases", type=int, default=300, help="traindev direct replies (seeded sample)")
    d.add_argument("--max-test-topics", type=int, default=10, help="official test threads (seeded)")
    d.add_argument("--max-test-cases", type=int, default=120, help="their replies, round-robin over the threads")
    d.add_argument("--keep-mentions", action="store_true", help="keep the leading @mentions of replies")
    d.add_argument("--user-name", default="twitter_user", help="the one name every pseudo-user gets")
    d.add_argument("--seed", type=int, default=0)
    t = p.add_argument_group("training and inference")
    t.add_argument("-m", "--model", default="embedded")
    t.add_argument("--steps", type=int, default=100, help="optimizer steps per adapter")
    t.add_argument("--lr", type=float, default=3e-4)
    t.add_argument("--warmup", type=int, default=4, help="warmup steps")
    t.add_argument("--train-batch-size", type=int, default=1, help="sequences per optimizer step (x --grad-accum)")
    t.add_argument("--grad-accum", type=int, default=1)
    t.add_argument("--max-length", type=int, default=256, help="training tokens (prompt + answer)")
    t.add_argument("--rank", type=int, default=8)
    t.add_argument("--experts", type=int, default=3)
    t.add_argument("--max-new-tokens", type=int, default=40)
    t.add_argument("--batch-size", type=int, default=8, help="inference batch")
    t.add_argument(
        "--threads",
        type=int,
        default=int(os.environ.get("OMP_NUM_THREADS", "1")),
        help="OMP_NUM_THREADS of the stages (default: the environment's, else 1)",
    )
    t.add_argument("--bootstrap", type=int, default=2000, help="evaluate's bootstrap resamples")
    args = p.parse_args()

    out = args.out
    if args.restart and out.exists():
        shutil.rmtree(out)
    settings = settings_of(args)
    settings_path = out / SETTINGS_FILE
    if settings_path.exists():
        old = json.loads(settings_path.read_text())
        if old != settings:
            diff = sorted(k for k in set(old) | set(settings) if old.get(k) != settings.get(k))
            sys.exit(f"{out} holds a run with other settings ({', '.join(diff)}): pass --restart or another --out")
    out.mkdir(parents=True, exist_ok=True)
    settings_path.write_text(json.dumps(settings, indent=2))
    stages_path = out / STAGES_FILE
    stages = json.loads(stages_path.read_text()) if stages_path.exists() else {}
    logs = out / "logs"
    t_start = time.perf_counter()

    def stage(name: str, done: bool, cmd: list[str]) -> None:
        if done and name in stages:
            print(f"=== {name}: done before ({stages[name]['seconds']} s), skipped", flush=True)
            stages[name]["skipped"] = True
            return
        stages[name] = {"seconds": round(run_stage(name, cmd, args, logs), 1), "skipped": False}
        stages_path.write_text(json.dumps(stages, indent=2))

    # 1. conversion (deterministic; rewritten only when missing)
    t0 = time.perf_counter()
    input_dir = out / "input"
    counts_path = out / "bench_conversion.json"
    if counts_path.exists() and all((input_dir / f"{n}.jsonl").exists() for n in ("topics", "users", "responses")):
        conversion = json.loads(counts_path.read_text())
    else:
        conversion = convert(args, input_dir)
        counts_path.write_text(json.dumps(conversion, indent=2))
        stages["convert"] = {"seconds": round(time.perf_counter() - t0, 1), "skipped": False}
    print("conversion:", json.dumps(conversion), flush=True)

    o = ["-o", str(out)]
    stage(
        "build-dataset",
        (out / "cases.meta.json").exists(),
        ["build-dataset", "--input", str(input_dir), *o, "--min-history", "0"],
    )
    stage(
        "extract-personas",
        (out / "alpaca" / f"{VARIANT}.jsonl").exists(),
        ["extract-personas", *o, "--no-personas"],
    )
    cases_meta = json.loads((out / "cases.meta.json").read_text())["counts"]
    n_test = cases_meta["cases_by_split"].get("test", 0)
    train_args = [
        "--variant", VARIANT, "-m", args.model, "--max-steps", str(args.steps),
        "--batch-size", str(args.train_batch_size), "--grad-accum", str(args.grad_accum),
        "--lr", str(args.lr), "--warmup", str(args.warmup), "--max-length", str(args.max_length),
        "--rank", str(args.rank), "--experts", str(args.experts), "--save-steps", str(max(args.steps, 1)),
    ]  # fmt: skip
    for method in ("pac-lora", "lora"):
        stage(
            f"train {method}",
            (out / "adapters" / method).exists(),
            ["train", *o, "--method", method, "--name", method, *train_args],
        )
    infer_args = ["--max-new-tokens", str(args.max_new_tokens), "--batch-size", str(args.batch_size)]
    for method in ("pac-lora", "lora"):
        stage(
            f"infer {method}",
            predictions_done(out / "predictions" / f"{method}.jsonl", n_test),
            ["infer", *o, "--adapter", str(out / "adapters" / method), *infer_args],
        )
    stage(
        "infer zero-shot",
        predictions_done(out / "predictions" / "zero-shot.jsonl", n_test),
        ["infer", *o, "--zero-shot", "--variant", VARIANT, "--method-name", "zero-shot", "-m", args.model,
         *infer_args],
    )  # fmt: skip
    stages.pop("evaluate", None)
    stage("evaluate", False, ["evaluate", *o, "--bootstrap", str(args.bootstrap)])

    comparison = json.loads((out / "eval" / "comparison.json").read_text())
    table = (out / "eval" / "comparison.txt").read_text()
    training = {}
    for method in ("pac-lora", "lora"):
        info = json.loads((out / "adapters" / method / "training.json").read_text())
        losses = [e["loss"] for e in info["losses"]]
        training[method] = {
            "examples": info["examples"],
            "steps": info["steps"],
            "train_seconds": info["train_seconds"],
            "trainable_parameters": info["trainable_parameters"],
            "first_loss": losses[0] if losses else None,
            "final_loss": info["final_loss"],
            "mean_loss_last_10": round(sum(losses[-10:]) / len(losses[-10:]), 4) if losses else None,
            "truncated_prompts": info["data"].get("truncated"),
            "too_long": info["data"].get("too_long"),
        }
    finish = {}
    for method in METHODS:
        recs = read_jsonl(out / "predictions" / f"{method}.jsonl")
        finish[method] = dict(Counter(r.get("finish_reason") for r in recs))
    total = round(sum(s["seconds"] for s in stages.values()), 1)
    print("\n" + "=" * 100)
    print(
        f"RumourEval 2017, variant {VARIANT}: {conversion['train_replies']} train replies "
        f"({conversion['train_topics']} threads), {n_test} test cases ({conversion['test_topics']} test threads)"
    )
    print(
        f"train: {args.steps} steps, batch {args.train_batch_size} x grad-accum {args.grad_accum}, lr {args.lr}, "
        f"max-length {args.max_length}, "
        f"rank {args.rank}, experts {args.experts}; infer: {args.max_new_tokens} new tokens, "
        f"batch {args.batch_size}; OMP_NUM_THREADS={args.threads}"
    )
    for method, info in training.items():
        print(
            f"  {method}: {info['trainable_parameters']:,} trainable, loss {info['first_loss']} -> "
            f"{info['final_loss']} (mean of last 10: {info['mean_loss_last_10']}), {info['train_seconds']} s"
        )
    print("finish reasons: " + "; ".join(f"{m} {v}" for m, v in finish.items()))
    shown = [f"{k} {v['seconds']}{' (earlier run)' if v.get('skipped') else ''}" for k, v in stages.items()]
    print("seconds: " + ", ".join(shown) + f"; total {total}")
    print()
    print(table, end="")
    print(f"this invocation: {time.perf_counter() - t_start:.1f} s")

    metrics = {
        row["method"]: {
            "n": row["n"],
            "topics": row["topics"],
            **{k: v for k, v in row.items() if isinstance(v, dict)},
        }
        for row in comparison["methods"]
    }
    update_results(
        args.results,
        "responses",
        {
            "data": str(posts_file(args.data)),
            "variant": VARIANT,
            "settings": {**settings, "threads": args.threads},
            "conversion": conversion,
            "cases": cases_meta["cases_by_split"],
            "skipped_cases": cases_meta.get("skipped_cases", {}),
            "shared_cases": comparison["shared_cases"],
            "training": training,
            "finish_reasons": finish,
            "seconds": {k: v["seconds"] for k, v in stages.items()},
            "total_seconds": total,
            "metrics": metrics,
            "table": table,
        },
    )
    print(f"figures written to {args.results} under 'responses'")
    return 0


if __name__ == "__main__":
    sys.exit(main())
