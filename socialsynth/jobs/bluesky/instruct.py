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
keyword task wrote raw text).

Dolly-15k (``--dolly-path``, a local JSONL of databricks-dolly-15k): as BluePrint, each cluster file gets
``int(n * f / (1 - f))`` Dolly records sampled without replacement (n = its examples, f = ``--dolly-fraction``,
0.2 by default), so they are a share f of the file, as ``[system: instruction, context: context (when not empty),
assistant: {"text": response}]``, and the file's lines are then shuffled (seeded). Without ``--dolly-path``
nothing is mixed. ``--output-names seed`` names the files ``cluster_<id>.jsonl`` as the seed did.

Bad input: a cluster file line that is not UTF-8 JSON or not an array stops the job with one line naming the file
and line; chains without text or author, repeated chains, LLM prompts longer than the model's context and empty or
refused LLM answers are counted by reason (the summary and the record's ``skipped``).
"""

from __future__ import annotations

import codecs
import json
import logging
import random
import re
import time
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from socialsynth.core.errors import InputError
from socialsynth.core.io import JsonlWriter, atomic_write_text
from socialsynth.core.run import JobRun
from socialsynth.core.runner import GracefulStop, run_chunks
from socialsynth.jobs.bluesky.config import InstructConfig

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
    n_duplicate_chains: int = 0  # lines repeating an earlier chain exactly (a doubled file): one example each


def _is_action(row: list) -> bool:
    return len(row) == 2 and isinstance(row[1], dict) and "actions" in row[1]


def _json_line(raw: bytes, path: Path, line_no: int) -> Any:
    """One line of a cluster file as JSON; InputError naming the file and line for bytes that are not UTF-8 JSON."""
    if line_no == 1 and raw.startswith(codecs.BOM_UTF8):
        raw = raw[len(codecs.BOM_UTF8) :]
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise InputError(f"not valid UTF-8 (byte {e.start + 1}): a damaged cluster file?", path=path,
                         line=line_no) from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise InputError(f"not valid JSON ({e.msg})", path=path, line=line_no) from None
    except RecursionError:
        raise InputError("not valid JSON (nested too deeply)", path=path, line=line_no) from None


def read_cluster_file(path: Path) -> ClusterFile:
    """Chains of one `cluster_<id>.jsonl`; action lines, chains without text and repeated chains are counted and
    skipped. A line that is not UTF-8 JSON or not a JSON array raises InputError naming the file and line."""
    out = ClusterFile()
    seen: set[str] = set()
    try:
        handle = open(path, "rb")
    except OSError as e:
        raise InputError(f"cannot read the cluster file: {e.strerror or e}", path=path) from None
    with handle:
        for line_no, raw in enumerate(handle, 1):
            if not raw.strip():
                continue
            row = _json_line(raw, path, line_no)
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
            key = json.dumps(row, sort_keys=True, ensure_ascii=False)
            if key in seen:
                out.n_duplicate_chains += 1
                continue
            seen.add(key)
            out.chains.append(Chain(len(out.chains) + out.n_bad_chains + out.n_duplicate_chains, messages))
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


_UNSAFE_ID = re.compile(r"[/\\:\x00-\x1f]|\.\.")


def safe_cluster_id(cid: str) -> bool:
    """Whether a cluster id (from a file name) can name an output file in the output folder: not empty, not
    starting with a dot, without ``..``, a path separator, ``:`` (task ids use it) or a control character."""
    return bool(cid) and not cid.startswith(".") and not _UNSAFE_ID.search(cid) and len(cid) <= 200


def output_file(output_dir: Path, cid: str, names: str = "ours") -> Path:
    """``<output-dir>/instruct_cluster_<cid>.jsonl`` (``names="seed"``: ``cluster_<cid>.jsonl``, the seed's name);
    refuses a name that would leave the output folder."""
    path = Path(output_dir) / (f"cluster_{cid}.jsonl" if names == "seed" else f"instruct_cluster_{cid}.jsonl")
    if not safe_cluster_id(cid) or path.parent != Path(output_dir):
        raise InputError(f"cluster id {cid!r} cannot name an output file", path=output_dir)
    return path


def cluster_files(input_dir: Path) -> list[tuple[str, Path]]:
    if not input_dir.is_dir():
        raise InputError(
            "not a folder (expected the processed_<k>_clusters/ output of cluster_users.py)", path=input_dir
        )
    found = []
    for p in input_dir.glob("cluster_*.jsonl"):
        cid = p.stem[len("cluster_") :]
        if not p.is_file():
            raise InputError("named like a cluster file but not a file; move it out of the folder", path=p)
        if not safe_cluster_id(cid):
            raise InputError(f"cluster id {cid!r} cannot name an output file (a leading dot, '..', ':' or a control "
                             "character); rename the file", path=p)
        found.append((cid, p))
    if not found:
        raise InputError("no cluster_<id>.jsonl files", path=input_dir)
    return sorted(found, key=lambda t: (not t[0].isdigit(), int(t[0]) if t[0].isdigit() else 0, t[0]))


# ------------------------------------------------------------------------------------------- Dolly-15k


def _dolly_record(raw: bytes, path: Path, line_no: int) -> dict[str, str] | None:
    """One Dolly line -> {instruction, context, response}, or None when the instruction or response is empty."""
    try:
        row = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as e:
        raise InputError(f"not a JSON line ({str(e).splitlines()[0][:80]})", path=path, line=line_no) from None
    if not isinstance(row, dict):
        raise InputError("expected a JSON object with instruction, context and response", path=path, line=line_no)
    for name in DOLLY_FIELDS:
        value = row.get(name, "" if name == "context" else None)
        if not isinstance(value, str):
            raise InputError(f"missing or not text (a databricks-dolly-15k record has {', '.join(DOLLY_FIELDS)})",
                             path=path, line=line_no, field=name)
    if not row["instruction"].strip() or not row["response"].strip():
        return None
    return {name: row.get(name, "") for name in DOLLY_FIELDS}


def load_dolly(path: Path) -> tuple[list[dict[str, str]], int]:
    """(records, lines skipped because the instruction or response is empty); blank lines are ignored."""
    records, skipped = [], 0
    with open(path, "rb") as handle:
        for line_no, raw in enumerate(handle, 1):
            if not raw.strip():
                continue
            record = _dolly_record(raw, path, line_no)
            if record is None:
                skipped += 1
            else:
                records.append(record)
    if not records:
        raise InputError("no usable Dolly record (each needs a non-empty instruction and response)", path=path)
    return records, skipped


def dolly_messages(record: dict[str, str]) -> list[dict[str, str]]:
    """A Dolly record as an example, in the seed's layout."""
    msgs = [{"role": "system", "content": record["instruction"]}]
    if record.get("context"):
        msgs.append({"role": "context", "content": record["context"]})
    msgs.append(_answer(record["response"]))
    return msgs


def mix_dolly(lines: list[str], dolly: Sequence[dict[str, str]], fraction: float,
              rng: random.Random) -> tuple[list[str], int]:
    """The cluster's example lines plus its share of Dolly lines, shuffled as the seed shuffled them."""
    n = min(int(len(lines) * fraction / (1 - fraction)), len(dolly))
    if n <= 0:
        return lines, 0
    mixed = lines + [json.dumps(dolly_messages(r), ensure_ascii=False) for r in rng.sample(list(dolly), n)]
    rng.shuffle(mixed)
    return mixed, n


# ------------------------------------------------------------------------------------------- the job

ANSWERS_FILE = "instruct_llm_answers.jsonl"
TOO_LONG = "too_long"  # finish_reason of a request not sent: its prompt does not fit the model's context
STATIC_META = {
    "assistant_format": 'JSON string {"text": ...} for every task',
}
DOLLY_FIELDS = ("instruction", "context", "response")


@dataclass
class LLMTask:
    """One summarise/paraphrase request: ``id`` (``<cluster>:<chain index>:<task>``) is stable across runs."""

    id: str
    cluster: str
    task: str
    chain: Chain
    example: int  # index of the example it answers in the cluster's example list


class _LLM:
    """The backend, loaded on first use, and the answers written so far (read back from the answers file)."""

    def __init__(self, backend, params, backend_factory, run: JobRun, answers: dict[str, dict[str, Any]]) -> None:
        self.backend = backend
        self.params = params
        self.factory = backend_factory
        self.run = run
        self.answers = answers
        self.failed: set[str] = set()  # ids of requests the engine refused in this run (not written)

    def ready(self) -> None:
        """Load the backend if it is not loaded yet (before any progress bar: a model that cannot be loaded is one
        line of error)."""
        if self.backend is None:
            self.backend = self.factory()

    def answer(self, tasks: Sequence[LLMTask]) -> list[dict[str, Any]]:
        """Generate one chunk; return the records to write (a request the server refused is left for a rerun).

        A prompt that with --max-new-tokens does not fit the model's context is not sent (a 2 MB post would make
        the engine allocate for all of it): its record says ``too_long`` and its example is counted as skipped."""
        self.ready()
        chats = [llm_prompt(t.task, t.chain)[1] for t in tasks]
        records = []
        fits = []
        for t, chat in zip(tasks, chats, strict=True):
            why = self._too_long(chat)
            if why:
                records.append(self._record(t, "", TOO_LONG, error=why))
            else:
                fits.append((t, chat))
        if not fits:
            return records
        t0 = time.perf_counter()
        outs = self.backend.generate([c for _, c in fits], self.params, keys=[t.id for t, _ in fits])
        self._count([t for t, _ in fits], outs, time.perf_counter() - t0)
        for (t, _), out in zip(fits, outs, strict=True):
            if out.finish_reason == "error":  # neither written nor used: a rerun asks again
                self.failed.add(t.id)
            else:
                records.append(self._record(t, out.text.strip(), out.finish_reason))
        return records

    def _record(self, t: LLMTask, text: str, finish_reason: str, **extra: Any) -> dict[str, Any]:
        record = {"id": t.id, "cluster": t.cluster, "task": t.task, "chain": t.chain.index, "text": text,
                  "finish_reason": finish_reason, **extra}
        self.answers[t.id] = record
        return record

    def _too_long(self, chat: list[dict[str, str]]) -> str:
        """Why a prompt does not fit the model's context with --max-new-tokens ("" when it fits or none is known)."""
        limit = self.backend.context_length() if hasattr(self.backend, "context_length") else None
        if not limit:
            return ""
        n = self.backend.token_count(chat) if hasattr(self.backend, "token_count") else None
        new = self.params.max_new_tokens
        if n is None or n + new <= limit:
            return ""
        return f"prompt of {n} tokens + --max-new-tokens {new} is more than the model's context ({limit} tokens)"

    def _count(self, tasks: Sequence[LLMTask], outs: Sequence[Any], seconds: float) -> None:
        """Tokens in and out per stage (the task: summarize, paraphrase); the chunk's time is shared by count."""
        model = _model_name(self.backend)
        for stage in sorted({t.task for t in tasks}):
            mine = [o for t, o in zip(tasks, outs, strict=True) if t.task == stage]
            self.run.count_tokens(model, stage, sum(o.n_prompt_tokens for o in mine),
                                  sum(o.n_new_tokens for o in mine), seconds * len(mine) / len(tasks))


def _model_name(backend: Any) -> str:
    try:
        info = backend.describe()
    except Exception:  # a backend that cannot describe itself is still counted
        return type(backend).__name__
    return str(info.get("model") or type(backend).__name__)


def _read_answers(path: Path) -> dict[str, dict[str, Any]]:
    """Answers already written by earlier runs, by id (the writer has repaired a torn last line and refused a broken
    one elsewhere). A record that is not an answer (no id, a text that is not a string) is refused naming its line:
    its id would count as answered and its example would be lost or wrong."""
    if not path.exists():
        return {}
    answers: dict[str, dict[str, Any]] = {}
    with open(path, "rb") as handle:
        for line_no, raw in enumerate(handle, 1):
            if not raw.strip():
                continue
            record = json.loads(raw.decode("utf-8"))
            for name, kinds in (("id", (str, int)), ("text", (str,))):
                value = record.get(name) if isinstance(record, dict) else None
                if not isinstance(value, kinds) or isinstance(value, bool):
                    raise InputError(f"not an answer record of this job ({name} is {type(value).__name__}); delete "
                                     "the file or pass --overwrite to start over", path=path, line=line_no, field=name)
            answers.setdefault(str(record["id"]), record)
    return answers


def llm_tasks(cid: str, examples: list[tuple[str, Chain | None, list[dict[str, str]]]]) -> list[LLMTask]:
    """The LLM requests of one cluster's examples, in example order."""
    return [
        LLMTask(f"{cid}:{chain.index}:{task}", cid, task, chain, i)
        for i, (task, chain, _) in enumerate(examples)
        if chain is not None
    ]


def _cluster_info(path: Path, cluster: ClusterFile, max_chains: int, n_lines: int, counts: Counter) -> dict:
    return {
        "file": str(path),
        "chains": len(cluster.chains),
        "sampled": min(len(cluster.chains), max_chains),
        "skipped_action_lines": cluster.n_actions,
        "skipped_bad_chains": cluster.n_bad_chains,
        "skipped_duplicate_chains": cluster.n_duplicate_chains,
        "examples": n_lines,
        "tasks": dict(sorted(counts.items())),
    }


def build_cluster_file(cfg: InstructConfig, cid: str, path: Path, llm: _LLM, writer: JsonlWriter,
                       stop: GracefulStop, dolly: Sequence[dict[str, str]] = ()) -> tuple[dict[str, Any], Counter]:
    """One cluster: build its examples, answer its LLM tasks not answered yet (in chunks), write its file."""
    cluster = read_cluster_file(path)
    rng = random.Random(f"{cfg.seed}:{cid}")
    examples, counts = build_cluster(cluster, rng, cfg.max_chains, cfg.llm_fraction)
    tasks = llm_tasks(cid, examples)
    todo = [t for t in tasks if t.id not in writer]
    if todo:
        llm.ready()
        run_chunks(todo, llm.answer, writer, cfg.batch_size, stop, desc="requests",
                   resume_hint="rerun the same command to resume: answers already written are kept")
    failed: Counter = Counter()
    too_long: Counter = Counter()
    refused: Counter = Counter()
    for t in tasks:
        answer = llm.answers.get(t.id, {})
        if answer.get("text"):
            examples[t.example][2].append(_answer(answer["text"]))
            counts[t.task] += 1
        elif t.id in llm.failed:
            refused[t.task] += 1
        elif answer.get("finish_reason") == TOO_LONG:
            too_long[t.task] += 1
        else:
            failed[t.task] += 1
    lines = [json.dumps(msgs, ensure_ascii=False) for _, _, msgs in examples if msgs[-1]["role"] == "assistant"]
    lines, n_dolly = mix_dolly(lines, dolly, cfg.dolly_fraction, rng) if dolly else (lines, 0)
    atomic_write_text(output_file(cfg.output_dir, cid, cfg.output_names), "".join(x + "\n" for x in lines))
    info = _cluster_info(path, cluster, cfg.max_chains, len(lines), counts)
    if n_dolly:
        counts["dolly"] += n_dolly
        info["tasks"] = dict(sorted(counts.items()))
    if failed:
        info["llm_empty_skipped"] = dict(failed)
    if too_long:
        info["llm_too_long_skipped"] = dict(too_long)
    if refused:
        info["llm_failed"] = dict(refused)
    log.info("cluster %s: %d examples %s", cid, len(lines), dict(counts))
    return info, counts


# (reason shown and recorded, key of a cluster's info): what is left out, beside the action lines (not chains)
SKIP_REASONS = (
    ("chain without text or author", "skipped_bad_chains"),
    ("duplicate chain", "skipped_duplicate_chains"),
    ("LLM prompt longer than the model's context", "llm_too_long_skipped"),
    ("empty LLM answer", "llm_empty_skipped"),
    ("LLM request failed (a rerun asks again)", "llm_failed"),
)


def _skips(info: dict[str, Any]) -> dict[str, int]:
    out = {}
    for reason, key in SKIP_REASONS:
        value = info.get(key) or 0
        n = sum(value.values()) if isinstance(value, dict) else int(value)
        if n:
            out[reason] = n
    return out


def skipped_totals(clusters: dict[str, dict[str, Any]]) -> dict[str, int]:
    """Chains and LLM examples left out over every cluster, by reason (the record's ``skipped``)."""
    totals: Counter = Counter()
    for info in clusters.values():
        totals.update(_skips(info))
    return dict(totals)


def check_some_chains(clusters: dict[str, dict[str, Any]], input_dir: Path) -> None:
    """InputError when no cluster file holds a single usable chain (empty files, or only actions)."""
    if any(info["chains"] for info in clusters.values()):
        return
    skipped = sum(info["skipped_bad_chains"] for info in clusters.values())
    actions = sum(info["skipped_action_lines"] for info in clusters.values())
    raise InputError(f"no usable chain in {len(clusters)} cluster file(s) ({actions} action lines, {skipped} chains "
                     "without text or author): nothing to build examples from", path=input_dir)


def _dolly_for(cfg: InstructConfig, run: JobRun) -> list[dict[str, str]]:
    """The Dolly records to mix in (none without --dolly-path), noted in the run record."""
    if cfg.dolly_path is None:
        run.meta["dolly_mixing"] = "not done (no --dolly-path)"
        return []
    records, skipped = load_dolly(cfg.dolly_path)
    run.meta["dolly_mixing"] = {"path": str(cfg.dolly_path), "records": len(records), "fraction": cfg.dolly_fraction,
                                "skipped_empty": skipped}
    log.info("Dolly: %d records from %s (%d empty skipped)", len(records), cfg.dolly_path, skipped)
    return records


def run_instruct_job(cfg: InstructConfig, backend=None, params=None, backend_factory=None) -> dict[str, Any]:
    """Write `instruct_cluster_<id>.jsonl` per cluster and the run record `instruct.meta.json`; return the record.

    LLM answers go to `instruct_llm_answers.jsonl` chunk by chunk (keyed by task id), so a stopped run resumes
    where it stopped. The backend (``backend_factory``, default: the config's model flags) is loaded only when some
    chain needs an answer that is not written yet.
    """
    files = cluster_files(cfg.input_dir)
    params = params if params is not None else cfg.sampling.params()
    backend_factory = backend_factory or cfg.model.spec(seed=cfg.seed).load
    cfg.output_dir.mkdir(parents=True, exist_ok=True)
    with JobRun("instruct", cfg.record_file, cfg, outputs=[cfg.output_dir / ANSWERS_FILE]) as run, \
            GracefulStop() as stop:
        run.meta.update(input_dir=str(cfg.input_dir), max_chains=cfg.max_chains, seed=cfg.seed,
                        llm_fraction=cfg.llm_fraction, **STATIC_META, clusters={}, totals={})
        dolly = _dolly_for(cfg, run)
        with JsonlWriter(cfg.output_dir / ANSWERS_FILE) as writer:
            llm = _LLM(backend, params, backend_factory, run, _read_answers(writer.path))
            totals: Counter = Counter()
            for cid, path in files:
                info, counts = build_cluster_file(cfg, cid, path, llm, writer, stop, dolly)
                run.meta["clusters"][cid] = info
                totals.update(counts)
                run.save()
        check_some_chains(run.meta["clusters"], cfg.input_dir)
        run.meta["totals"] = dict(sorted(totals.items()))
        run.meta["skipped"] = skipped_totals(run.meta["clusters"])
        run.meta["n_written"] = sum(info["examples"] for info in run.meta["clusters"].values())
        run.meta["llm_answers"] = str(writer.path) if writer.done else None
        run.note_items(run.meta["n_written"])
        run.mark_complete(not llm.failed)  # a refused request is asked again by a rerun
    return run.meta


def format_summary(meta: dict[str, Any], output_dir: Path, record: Path) -> str:
    """What the script prints: examples per cluster and task, totals, tokens per model and stage, where it went."""
    lines = []
    for cid, info in meta["clusters"].items():
        tasks = ", ".join(f"{task} {n}" for task, n in info["tasks"].items())
        line = f"cluster {cid}: {info['examples']} examples from {info['sampled']} chains ({tasks})"
        skipped = _skips(info)
        if skipped:
            line += "; skipped: " + ", ".join(f"{reason} {n}" for reason, n in skipped.items())
        lines.append(line)
    totals = ", ".join(f"{task} {n}" for task, n in meta["totals"].items())
    lines.append(f"total: {meta.get('n_written', 0)} examples ({totals})")
    dolly = meta.get("dolly_mixing")
    if isinstance(dolly, dict):
        lines.append(f"dolly: {meta['totals'].get('dolly', 0)} mixed in from {dolly['records']} records of "
                     f"{dolly['path']} (fraction {dolly['fraction']}; skipped: empty instruction or response "
                     f"{dolly['skipped_empty']})")
    for model, stages in meta.get("tokens", {}).items():
        for stage, t in stages.items():
            lines.append(f"tokens ({model}, {stage}): {t['in']} in, {t['out']} out")
    lines.append(f"output: {output_dir}")
    lines.append(f"run record: {record}")
    return "\n".join(lines)
