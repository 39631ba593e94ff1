"""Persona per user from name + retrieved history through any backend; then the Alpaca records (alpaca/*.jsonl).

extract-personas: interests, language style, emotional tone, personality, values, one persona per user of
cases.jsonl; then every case as Alpaca records in three variants.

Seed 004 (SocialAlign extract_user_persona.py) asked GPT-4 for a numbered five-aspect persona (items of at most 20
characters, no Markdown, no stance on the news). Here any socialsynth backend answers (`-m embedded` by default;
`--backend openai --api-base URL -m gpt-4o` for an OpenAI-compatible endpoint as in the seed), with the YAML prompt
response_persona_{en,zh} picked by the language of the user's cases (`--persona-template` overrides).

A user's prompt shows their name and up to `--persona-posts` (default 5, as the seed) of the history posts that
build-dataset retrieved for their cases: best-ranked first across the cases, without repeats. The answer is parsed
as a numbered list (`1. ...`, `1、...`, `(1) ...`; bullets when there are no numbers; Markdown stripped; at most
five items). Items that only copy the prompt (small models repeat the rubric's examples) go to `echoed`, not
into the persona. What cannot be parsed is kept in `raw` with status "unparsed" (or "echo" when every item was
an echo, "empty" for no answer) and counted, never fatal. When the backend runs the model in this process, a prompt
past its context (minus --max-new-tokens) has its longest history posts cut to fit (counted); a user whose prompt
cannot fit even without posts gets status "too_long" (counted, no persona). cases.jsonl is checked line by line
before any model loads (types, splits, languages; a repeated case id is refused with the ids named).

Output in `-o` (default output/responses): personas.jsonl, one line per user: {"user_id", "persona": [str, ...],
"echoed", "raw", "status", "language", "n_history_posts", "finish_reason", provenance: "backend", "model", "template",
"params", "seed"} written as it goes and keyed by user_id (a killed run resumes with the users still missing;
delete the file to redo every persona); personas.meta.json; and alpaca/{full,without_persona,without_history}.jsonl
(records.py schema) rebuilt from cases + personas on every run (fast; atomic replace). `--no-personas` skips the
model: the Alpaca files are still written, but without a persona section, so only without_persona is meaningful.
"""

from __future__ import annotations

import logging
import re
import time
from collections import Counter, defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from socialsynth.core.errors import InputError
from socialsynth.core.io import JsonlWriter, atomic_write_json, iter_jsonl
from socialsynth.core.provenance import command_line
from socialsynth.core.run import JobRun
from socialsynth.core.runner import GracefulStop, run_chunks
from socialsynth.jobs.response.alpaca import load_persona_template, write_alpaca
from socialsynth.jobs.response.config import PersonaConfig
from socialsynth.jobs.response.context import backend_context, cap_texts, chat_token_counter, prompt_budget
from socialsynth.jobs.response.dataset import CASES_NAME, LANGUAGES, SPLITS
from socialsynth.jobs.response.records import RepeatedIds, is_id
from socialsynth.llm import Backend
from socialsynth.prompts import Template

log = logging.getLogger(__name__)
PERSONAS_NAME = "personas.jsonl"
PERSONAS_META = "personas.meta.json"
ALPACA_DIR = "alpaca"
MAX_ITEMS = 5
MAX_ITEM_CHARS = 120  # a longer item is cut at a word boundary (the 135M model rambles)
TOO_LONG = "too_long"  # the status of a user whose prompt cannot fit the model's context
CASE_FIELDS = ("id", "topic_id", "user_id", "news", "topic", "response", "split", "language")


# -- parsing ---------------------------------------------------------------------------------------------------

_NUMBERED = re.compile(r"^\s*(?:[(（]\s*(\d{1,2})\s*[)）]|(\d{1,2})\s*[.．、:：)）])\s*(.*)$")
_BULLET = re.compile(r"^\s*[-*•·]\s+(.*)$")
_MARKDOWN = re.compile(r"\*\*|__|`|^#+\s*")


def _clean_item(text: str) -> str:
    text = _MARKDOWN.sub("", text).strip().strip("*_").strip()
    if len(text) > MAX_ITEM_CHARS:
        cut = text[:MAX_ITEM_CHARS]
        text = (cut.rsplit(" ", 1)[0] if " " in cut else cut).rstrip(" ,;，；") + "…"
    return text


def parse_persona(raw: str) -> list[str]:
    """The items of a numbered (or, failing that, bulleted) answer, in order, at most five, Markdown stripped.

    A line that continues a label-only item ("2. Language style:" followed by "casual, short") is joined to it.
    Returns [] when nothing parses."""
    lines = [line for line in (raw or "").replace("\r", "").split("\n") if line.strip()]
    for pattern in (_NUMBERED, _BULLET):
        items: list[str] = []
        for line in lines:
            m = pattern.match(_MARKDOWN.sub("", line.strip()) if pattern is _NUMBERED else line)
            if m:
                text = (m.group(m.lastindex) or "").strip()
                items.append(text)
            elif items and items[-1].rstrip().endswith((":", "：")):
                items[-1] = f"{items[-1].rstrip()} {line.strip()}"
        items = [c for c in (_clean_item(i) for i in items) if c and not c.endswith((":", "："))]
        seen: list[str] = []
        for item in items:
            if item not in seen:
                seen.append(item)
        if seen:
            return seen[:MAX_ITEMS]
    return []


_NON_WORD = re.compile(r"[\W_]+")


def _normalise(text: str) -> str:
    return _NON_WORD.sub(" ", text.lower()).strip()


def split_echoes(items: Sequence[str], prompt: str) -> tuple[list[str], list[str]]:
    """(kept, echoed): an item whose content (the part after its label) is copied from the prompt, such as the
    rubric's own examples that small models repeat, says nothing about the user and is set aside."""
    haystack = _normalise(prompt)
    kept, echoed = [], []
    for item in items:
        value = _normalise(re.split(r"[:：]", item, maxsplit=1)[-1])
        (echoed if len(value) >= 3 and value in haystack else kept).append(item)
    return kept, echoed


# -- prompts ---------------------------------------------------------------------------------------------------


def persona_history(cases: Sequence[Mapping], limit: int) -> list[str]:
    """A user's posts for the persona prompt: rank 1 of every case, then rank 2, ..., without repeats."""
    out: list[str] = []
    depth = max((len(c.get("history") or []) for c in cases), default=0)
    for rank in range(depth):
        for case in cases:
            history = case.get("history") or []
            if rank < len(history) and history[rank] not in out:
                out.append(history[rank])
                if len(out) >= limit:
                    return out
    return out


def persona_chat(template: Template, username: str, history: Sequence[str]) -> list[dict[str, str]]:
    numbered = "\n".join(f"{i}. {text}" for i, text in enumerate(history, 1))
    fields = {"username": username, "history": numbered}
    chat = [{"role": "system", "content": template.system.format(**fields)}] if template.system else []
    return chat + [{"role": "user", "content": template.user.format(**fields)}]


@dataclass
class UserItem:
    user_id: str
    name: str
    language: str
    history: list[str]


def users_from_cases(cases: Sequence[Mapping], posts_per_user: int) -> list[UserItem]:
    by_user: dict[str, list[Mapping]] = defaultdict(list)
    for case in cases:
        by_user[case["user_id"]].append(case)
    users = []
    for uid, user_cases in by_user.items():
        language = Counter(c["language"] for c in user_cases).most_common(1)[0][0]
        name = user_cases[0].get("user_name") or uid
        users.append(UserItem(uid, name, language, persona_history(user_cases, posts_per_user)))
    return users


def check_case(rec: dict, path: Path, line: int) -> dict:
    """One cases.jsonl record with its types checked (ids become text); InputError naming the line and field."""

    def bad(field: str, message: str):
        return InputError(message, path=path, line=line, field=field)

    for key in CASE_FIELDS:
        if key not in rec:
            raise bad(key, "case lacks a field (rebuild with build-dataset)")
    for key in ("id", "topic_id", "user_id"):
        if not is_id(rec[key]):
            raise bad(key, f"expected a non-empty id (text or number), got {rec[key]!r:.60}")
        rec[key] = str(rec[key])
    for key in ("news", "topic", "response"):
        if not isinstance(rec[key], str) or not rec[key].strip():
            raise bad(key, f"expected non-empty text, got {rec[key]!r:.60}")
    if rec["split"] not in SPLITS:
        raise bad("split", f"expected one of {', '.join(SPLITS)}, got {rec['split']!r:.60}")
    if rec["language"] not in LANGUAGES:
        raise bad("language", f"expected one of {', '.join(LANGUAGES)}, got {rec['language']!r:.60}")
    history = rec.get("history") or []
    if not isinstance(history, list) or not all(isinstance(h, str) for h in history):
        raise bad("history", "expected a list of texts")
    profile = rec.get("profile") or {}
    if not isinstance(profile, dict) or not all(isinstance(v, (str, int, float)) for v in profile.values()):
        raise bad("profile", "expected an object of texts")
    if rec.get("user_name") is not None and not isinstance(rec["user_name"], (str, int)):
        raise bad("user_name", f"expected text, got {rec['user_name']!r:.60}")
    return rec


def load_cases(path: Path) -> list[dict]:
    """The cases of cases.jsonl, checked; a repeated case id is refused (it would double its Alpaca records)."""
    if not Path(path).exists():
        raise InputError("cases file not found (run build-dataset first, or give --cases)", path=path)
    cases, ids = [], RepeatedIds(path, "case id")
    for line, rec in iter_jsonl(path):
        rec = check_case(rec, path, line)
        if not ids.seen(rec["id"], line):
            cases.append(rec)
    ids.check("rebuild with build-dataset")
    if not cases:
        raise InputError("no cases", path=path)
    return cases


# -- the job ---------------------------------------------------------------------------------------------------


class PersonaJob:
    """Persona prompts for chunks of users, each cut to the model's context when the backend can count tokens."""

    def __init__(self, backend: Backend, cfg: PersonaConfig):
        self.backend, self.cfg = backend, cfg
        self.unparsed = 0
        self.count = chat_token_counter(backend)
        self.budget = prompt_budget(backend_context(backend), cfg.params.max_new_tokens)

    def template(self, language: str) -> Template:
        return load_persona_template(self.cfg.persona_template or f"response_persona_{language}")

    def fit(self, tpl: Template, user: UserItem) -> list[str] | None:
        """The user's history posts, the longest cut so that the prompt fits the context; None if it cannot."""
        if self.count is None or self.budget is None:
            return list(user.history)
        return cap_texts(user.history, lambda posts: self.count(persona_chat(tpl, user.name, posts)) <= self.budget)

    def too_long(self, user: UserItem, tpl: Template) -> dict:
        """The record of a user whose prompt cannot fit even without history (written, so that it is counted)."""
        return {"user_id": user.user_id, "persona": [], "echoed": [], "raw": "", "status": TOO_LONG,
                "language": user.language, "n_history_posts": len(user.history), "finish_reason": None,
                "model": self.backend.name, "template": f"{tpl.name}@{tpl.hash}", "params": self.cfg.params.to_dict(),
                "error": f"the persona prompt does not fit the model's context ({self.budget} prompt tokens)"}

    def process(self, users: Sequence[UserItem]) -> list[dict]:
        templates = [self.template(u.language) for u in users]
        fitted = [self.fit(t, u) for t, u in zip(templates, users, strict=True)]
        records = [self.too_long(u, t) for u, t, f in zip(users, templates, fitted, strict=True) if f is None]
        asked = [(u, t, f) for u, t, f in zip(users, templates, fitted, strict=True) if f is not None]
        chats = [persona_chat(t, u.name, f) for u, t, f in asked]
        completions = self.backend.generate(chats, self.cfg.params, keys=[u.user_id for u, _, _ in asked])
        describe = self.backend.describe()
        for (user, tpl, posts), chat, comp in zip(asked, chats, completions, strict=True):
            parsed = parse_persona(comp.text)
            items, echoed = split_echoes(parsed, "\n".join(turn["content"] for turn in chat))
            if items:
                status = "ok"
            elif echoed:
                status = "echo"
            else:
                status = "empty" if not comp.text.strip() else "unparsed"
            records.append(
                {
                    "user_id": user.user_id,
                    "persona": items,
                    "echoed": echoed,
                    "raw": comp.text,
                    "status": status,
                    "language": user.language,
                    "n_history_posts": len(user.history),
                    "history_cut": posts != user.history,
                    "finish_reason": comp.finish_reason,
                    "backend": describe.get("backend"),
                    "model": self.backend.name,
                    "template": f"{tpl.name}@{tpl.hash}",
                    "params": self.cfg.params.to_dict(),
                    "seed": comp.seed,
                }
            )
        return records


def read_personas(path: Path) -> dict[str, dict]:
    if not Path(path).exists():
        return {}
    return {str(rec["user_id"]): rec for _, rec in iter_jsonl(path)}


def run_personas(cfg: PersonaConfig, backend: Backend | None = None) -> dict:
    """Extract the missing personas (unless no_personas), then write the Alpaca files; return the summary.

    `backend` replaces loading the model of `cfg.model` (tests pass a FakeBackend)."""
    t0 = time.perf_counter()
    out_dir = Path(cfg.output_dir)
    cases = load_cases(Path(cfg.cases) if cfg.cases else out_dir / CASES_NAME)
    users = users_from_cases(cases, cfg.persona_posts)
    out = out_dir / PERSONAS_NAME
    if cfg.no_personas:
        return write_outputs(cfg, cases, users, {}, 0, t0)
    with JobRun("response.personas", out_dir / PERSONAS_META, cfg, outputs=[out]) as run:
        run.meta["n_users"] = len(users)
        this_run = extract_personas(cfg, users, out, run, backend)
        summary = write_outputs(cfg, cases, users, read_personas(out), this_run, t0)
        run.meta["summary"] = summary
        run.meta["skipped"] = summary["skipped"]
    return summary


def extract_personas(cfg: PersonaConfig, users: Sequence[UserItem], out: Path, run: JobRun,
                     backend: Backend | None) -> int:
    """Write the personas still missing from `out` in chunks (resumable); return how many this run wrote."""
    with GracefulStop() as stop, JsonlWriter(out, key="user_id") as writer:
        todo = [u for u in users if u.user_id not in writer.done]
        log.info("personas: %d users to do (of %d)", len(todo), len(users))
        try:
            if not todo:
                return 0
            backend = backend or cfg.spec().load()
            run.meta["model"] = backend.describe()
            with run.track(backend, "persona"):
                counts = run_chunks(todo, PersonaJob(backend, cfg).process, writer, cfg.batch_size, stop,
                                    desc="personas", resume_hint=f"rerun the same command to resume: {command_line()}")
            run.note_items(counts.done)
            return counts.written
        finally:
            run.meta["n_written"] = len(writer.done)
            run.mark_complete(all(u.user_id in writer.done for u in users))


def write_outputs(cfg: PersonaConfig, cases: Sequence[Mapping], users: Sequence[UserItem],
                  records: Mapping[str, dict], this_run: int, t0: float) -> dict:
    """The Alpaca files (rebuilt from cases + personas on every run) and alpaca.meta.json; returns the summary."""
    out_dir = Path(cfg.output_dir)
    wanted = {u.user_id for u in users}
    records = {uid: rec for uid, rec in records.items() if uid in wanted}
    personas = {uid: rec.get("persona") or [] for uid, rec in records.items()}
    refs = {uid: f"{rec.get('model')}|{rec.get('template')}" for uid, rec in records.items()}
    alpaca = write_alpaca(cases, personas, out_dir / ALPACA_DIR, cfg.instruction_templates, refs)
    status = Counter(rec.get("status", "ok") for rec in records.values())
    skipped = {"persona prompt too long for the model's context": status[TOO_LONG]} if status[TOO_LONG] else {}
    summary = {
        "n_cases": len(cases),
        "n_users": len(users),
        "personas_this_run": this_run,
        "personas_total": len(records),
        "status": dict(status),
        "skipped": skipped,
        "history_cut": sum(1 for rec in records.values() if rec.get("history_cut")),
        "no_personas": cfg.no_personas,
        "personas": None if cfg.no_personas else str(out_dir / PERSONAS_NAME),
        "alpaca": alpaca,
        "seconds": round(time.perf_counter() - t0, 2),
    }
    if cfg.no_personas:
        summary["note"] = (
            "--no-personas: no persona was extracted; only alpaca/without_persona.jsonl is meaningful "
            "(full and without_history have no persona section)"
        )
    atomic_write_json(out_dir / ALPACA_DIR / "alpaca.meta.json", {"command": command_line(), **summary})
    return summary


def format_summary(s: dict) -> str:
    lines = [f"cases {s['n_cases']}, users {s['n_users']}"]
    if s["no_personas"]:
        lines.append(s["note"])
    else:
        status = ", ".join(f"{k} {v}" for k, v in sorted(s["status"].items())) or "none"
        lines.append(f"personas: {s['personas_total']} ({status}); {s['personas_this_run']} new this run")
        lines.append(f"personas: {s['personas']}")
        if s.get("history_cut"):
            lines.append(f"users whose history posts were cut to fit the model's context: {s['history_cut']}")
        for reason, n in (s.get("skipped") or {}).items():
            lines.append(f"skipped ({reason}): {n}")
    a = s["alpaca"]
    lines.append("alpaca: " + ", ".join(f"{k} {v}" for k, v in a["records"].items()) + f" -> {a['folder']}")
    if a["cases_without_persona"] and not s["no_personas"]:
        lines.append(f"cases whose user has no parsed persona (no persona section): {a['cases_without_persona']}")
    lines.append("instruction templates: " + ", ".join(f"{k} {v}" for k, v in a["templates"].items()))
    lines.append(f"time: {s['seconds']} s")
    return "\n".join(lines)
