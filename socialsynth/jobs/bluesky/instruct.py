"""Instruction-tuning examples from the per-cluster chain files of `cluster_users.py` (BluePrint `instruct_dataset`).

Per cluster file: sample at most `max_chains` chains, group them by the user who wrote the last message, and turn
each chain into one example of a task chosen at equal weights among the tasks that apply to it:

- needle: the user's last 20 chains (up to this one) x their last 5 messages form the context; "what was the n-th
  message?" and the answer is that message;
- keyword: 1-5 distinct words longer than 4 characters from the user's post -> write a post using them;
- completion: a post of at least 10 words split at a random word boundary -> continue it.

With `llm_fraction` > 0 that share of chains instead gets a summarise (the conversation) or paraphrase (the last
post) task whose answer an LLM writes. An example is a list of messages: `system` (the instruction), optionally
`context` (a JSON list of `{user_id, text}`), and `assistant`, always a JSON string `{"text": ...}` (the seed's
keyword task wrote raw text). Dolly-15k mixing from the seed is not done (no network).
"""

from __future__ import annotations

import json
import logging
import random
import re
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from socialsynth.core.errors import InputError
from socialsynth.core.io import atomic_write_json, atomic_write_text

log = logging.getLogger(__name__)

TASKS = ("needle", "keyword", "completion")
LLM_TASKS = ("summarize", "paraphrase")
NEEDLE_CHAINS = 20
NEEDLE_MESSAGES = 5
MIN_COMPLETION_WORDS = 10
COMPLETION_MARKER = "The post begins:\n"
_WORD = re.compile(r"[A-Za-z][A-Za-z'\-]*[A-Za-z]")


def ordinal(n: int) -> str:
    """1st, 2nd, 3rd, 4th, 11th, 12th, 13th, 21st, 22nd, 101st, 111th."""
    if 10 <= n % 100 <= 20:
        suffix = "th"
    else:
        suffix = {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


@dataclass
class Chain:
    index: int  # position in the file among chains
    messages: list[dict[str, Any]]  # {user_id, text, unix_epoch}, messages with text only

    @property
    def user(self) -> str:
        return str(self.messages[-1].get("user_id", ""))

    @property
    def time(self) -> float:
        try:
            return float(self.messages[-1].get("unix_epoch") or 0)
        except (TypeError, ValueError):
            return 0.0


@dataclass
class ClusterFile:
    chains: list[Chain] = field(default_factory=list)
    n_actions: int = 0
    n_bad_chains: int = 0  # chains with no message that has text, or elements that are not objects


def _is_action(row: list) -> bool:
    return len(row) == 2 and isinstance(row[1], dict) and "actions" in row[1]


def read_cluster_file(path: Path) -> ClusterFile:
    """Chains of one `cluster_<id>.jsonl`; action lines are counted and skipped. A line that is not a JSON array
    raises InputError naming the file and line."""
    out = ClusterFile()
    with open(path, encoding="utf-8") as f:
        for line_no, raw in enumerate(f, 1):
            if not raw.strip():
                continue
            try:
                row = json.loads(raw)
            except json.JSONDecodeError as e:
                raise InputError(f"not valid JSON ({e.msg})", path=path, line=line_no) from None
            if not isinstance(row, list):
                raise InputError(f"expected a JSON array, got {type(row).__name__}", path=path, line=line_no)
            if _is_action(row):
                out.n_actions += 1
                continue
            if not all(isinstance(m, dict) for m in row):
                out.n_bad_chains += 1
                continue
            messages = [m for m in row if isinstance(m.get("text"), str) and m["text"].strip()]
            if not messages or not messages[-1].get("user_id"):
                out.n_bad_chains += 1
                continue
            out.chains.append(Chain(len(out.chains) + out.n_bad_chains, messages))
    return out


def _msg(m: dict[str, Any]) -> dict[str, str]:
    return {"user_id": str(m.get("user_id", "")), "text": m["text"]}


def _context(messages: list[dict[str, Any]]) -> dict[str, str]:
    return {"role": "context", "content": json.dumps([_msg(m) for m in messages], ensure_ascii=False)}


def _answer(text: str) -> dict[str, str]:
    return {"role": "assistant", "content": json.dumps({"text": text}, ensure_ascii=False)}


def keyword_candidates(text: str) -> list[str]:
    """Distinct words longer than 4 characters, in order of first appearance."""
    seen: dict[str, None] = {}
    for w in _WORD.findall(text):
        if len(w) > 4 and w.lower() not in {k.lower() for k in seen}:
            seen[w] = None
    return list(seen)


def _word_starts(text: str) -> list[int]:
    return [m.start() for m in re.finditer(r"\S+", text)]


def needle_example(history: list[Chain], rng: random.Random) -> list[dict[str, str]]:
    messages = [m for chain in history[-NEEDLE_CHAINS:] for m in chain.messages[-NEEDLE_MESSAGES:]]
    n = rng.randint(1, len(messages))
    system = (
        f"The context lists {len(messages)} messages from a user's recent conversations, oldest first. "
        f"What was the {ordinal(n)} message? Answer with its text."
    )
    return [{"role": "system", "content": system}, _context(messages), _answer(messages[n - 1]["text"])]


def keyword_example(chain: Chain, rng: random.Random) -> list[dict[str, str]]:
    post = chain.messages[-1]["text"]
    words = keyword_candidates(post)
    k = rng.randint(1, min(5, len(words)))
    chosen = rng.sample(words, k)
    system = "Write a social media post that uses these words: " + ", ".join(chosen) + "."
    if len(chain.messages) > 1:
        system += " It replies to the conversation in the context."
    msgs = [{"role": "system", "content": system}]
    if len(chain.messages) > 1:
        msgs.append(_context(chain.messages[:-1]))
    return msgs + [_answer(post)]


def completion_example(chain: Chain, rng: random.Random) -> list[dict[str, str]]:
    post = chain.messages[-1]["text"]
    starts = _word_starts(post)
    cut = starts[rng.randint(1, len(starts) - 1)]
    system = "Complete the following social media post. Answer with the rest of the post only.\n"
    msgs = [{"role": "system", "content": system + COMPLETION_MARKER + post[:cut]}]
    if len(chain.messages) > 1:
        msgs.append(_context(chain.messages[:-1]))
    return msgs + [_answer(post[cut:])]


def applicable_tasks(chain: Chain) -> list[str]:
    post = chain.messages[-1]["text"]
    tasks = ["needle"]
    if keyword_candidates(post):
        tasks.append("keyword")
    if len(_word_starts(post)) >= MIN_COMPLETION_WORDS:
        tasks.append("completion")
    return tasks


def llm_prompt(task: str, chain: Chain) -> tuple[str, list[dict[str, str]]]:
    """(instruction of the example, chat for the LLM)."""
    if task == "summarize":
        system = "Summarize the conversation in the context in one or two sentences."
        convo = "\n".join(f"{m.get('user_id', '')}: {m['text']}" for m in chain.messages)
        prompt = f"{system}\n\nConversation:\n{convo}\n\nSummary:"
    else:
        system = "Paraphrase the last post of the conversation in the context, keeping its meaning and tone."
        prompt = (
            "Paraphrase this social media post, keeping its meaning and tone. Answer with the paraphrase only.\n\n"
            f"Post: {chain.messages[-1]['text']}\n\nParaphrase:"
        )
    return system, [{"role": "user", "content": prompt}]


@dataclass
class InstructConfig:
    input_dir: Path
    output_dir: Path
    max_chains: int = 10000
    seed: int = 42
    llm_fraction: float = 0.0


def build_cluster(
    cluster: ClusterFile, rng: random.Random, max_chains: int, llm_fraction: float = 0.0
) -> tuple[list[tuple[str, Chain | None, list[dict[str, str]]]], Counter]:
    """Examples of one cluster in file order of their chain: (task, chain for LLM tasks, messages). LLM examples
    come with messages [system, context] only; the caller adds the assistant answer."""
    chains = cluster.chains
    if len(chains) > max_chains:
        chains = sorted(rng.sample(chains, max_chains), key=lambda c: c.index)
    by_user: dict[str, list[Chain]] = defaultdict(list)
    for c in chains:
        by_user[c.user].append(c)
    history_pos: dict[int, tuple[str, int]] = {}
    for user, cs in by_user.items():
        cs.sort(key=lambda c: (c.time, c.index))
        for i, c in enumerate(cs):
            history_pos[c.index] = (user, i)
    examples: list[tuple[str, Chain | None, list[dict[str, str]]]] = []
    counts: Counter = Counter()
    for c in chains:
        if llm_fraction > 0 and rng.random() < llm_fraction:
            task = rng.choice(LLM_TASKS)
            system, _ = llm_prompt(task, c)
            examples.append((task, c, [{"role": "system", "content": system}, _context(c.messages)]))
            continue
        task = rng.choice(applicable_tasks(c))
        if task == "needle":
            user, i = history_pos[c.index]
            msgs = needle_example(by_user[user][: i + 1], rng)
        elif task == "keyword":
            msgs = keyword_example(c, rng)
        else:
            msgs = completion_example(c, rng)
        examples.append((task, None, msgs))
        counts[task] += 1
    return examples, counts


def cluster_files(input_dir: Path) -> list[tuple[str, Path]]:
    if not input_dir.is_dir():
        raise InputError(
            "not a folder (expected the processed_<k>_clusters/ output of cluster_users.py)", path=input_dir
        )
    found = []
    for p in input_dir.glob("cluster_*.jsonl"):
        cid = p.stem[len("cluster_") :]
        found.append((cid, p))
    if not found:
        raise InputError("no cluster_<id>.jsonl files", path=input_dir)
    return sorted(found, key=lambda t: (not t[0].isdigit(), int(t[0]) if t[0].isdigit() else 0, t[0]))


def run_instruct_job(cfg: InstructConfig, backend=None, params=None, backend_factory=None) -> dict[str, Any]:
    """Write `instruct_cluster_<id>.jsonl` per cluster and `instruct_meta.json`; return the meta. The backend is
    loaded (via `backend_factory`) only when some chain gets an LLM task."""
    files = cluster_files(cfg.input_dir)
    if not 0.0 <= cfg.llm_fraction <= 1.0:
        raise InputError("must be between 0 and 1", field="--llm-fraction")
    if cfg.max_chains < 1:
        raise InputError("must be at least 1", field="--max-chains")
    cfg.output_dir.mkdir(parents=True, exist_ok=True)
    meta: dict[str, Any] = {
        "input_dir": str(cfg.input_dir),
        "max_chains": cfg.max_chains,
        "seed": cfg.seed,
        "llm_fraction": cfg.llm_fraction,
        "assistant_format": 'JSON string {"text": ...} for every task',
        "dolly_mixing": "not done (no network)",
        "clusters": {},
        "totals": {},
    }
    totals: Counter = Counter()
    for cid, path in files:
        cluster = read_cluster_file(path)
        rng = random.Random(f"{cfg.seed}:{cid}")
        examples, counts = build_cluster(cluster, rng, cfg.max_chains, cfg.llm_fraction)
        pending = [(i, task, chain) for i, (task, chain, _) in enumerate(examples) if chain is not None]
        failed = Counter()
        if pending:
            if backend is None:
                backend = backend_factory()
            chats = [llm_prompt(task, chain)[1] for _, task, chain in pending]
            keys = [f"{cid}:{chain.index}:{task}" for _, task, chain in pending]
            outs = backend.generate(chats, params, keys=keys)
            for (i, task, _), out in zip(pending, outs):
                text = out.text.strip()
                if text:
                    examples[i][2].append(_answer(text))
                    counts[task] += 1
                else:
                    failed[task] += 1
        lines = [json.dumps(msgs, ensure_ascii=False) for _, _, msgs in examples if msgs[-1]["role"] == "assistant"]
        atomic_write_text(cfg.output_dir / f"instruct_cluster_{cid}.jsonl", "".join(x + "\n" for x in lines))
        info = {
            "file": str(path),
            "chains": len(cluster.chains),
            "sampled": min(len(cluster.chains), cfg.max_chains),
            "skipped_action_lines": cluster.n_actions,
            "skipped_bad_chains": cluster.n_bad_chains,
            "examples": len(lines),
            "tasks": dict(sorted(counts.items())),
        }
        if failed:
            info["llm_empty_skipped"] = dict(failed)
        meta["clusters"][cid] = info
        totals.update(counts)
        log.info("cluster %s: %d examples %s", cid, len(lines), dict(counts))
    meta["totals"] = dict(sorted(totals.items()))
    atomic_write_json(cfg.output_dir / "instruct_meta.json", meta)
    return meta
