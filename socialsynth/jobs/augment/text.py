"""Text side of rare-class augmentation (seed 003): the few-shot prompt, the label definition, parsing a model's
list answer into items, and the per-item filters (length, lexical, exact/near duplicates, label fidelity)."""

from __future__ import annotations

import random
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import yaml

from socialsynth.core.config import ConfigError, check_min, check_range, flag
from socialsynth.core.errors import InputError
from socialsynth.core.io import read_text_file
from socialsynth.prompts import Template
from socialsynth.text.quality import REFUSAL, is_degenerate

# ------------------------------------------------------------------------------------------- parsing

_RESPONSE = re.compile(r"^.*?#*\s*Response\s*:\s*", re.IGNORECASE | re.DOTALL)
_NUMBERED = re.compile(r"^\s*(?:\(?\d{1,3}[.):\]]|[-*•●▪]|\[\d{1,3}\])\s+(.*)$")
_PREAMBLE = re.compile(
    r"^\s*(?:.*:\s*|(?:sure|okay|ok|certainly|of course|absolutely|here(?:'s| is| are))\b.{0,80}"
    r"\b(?:comments?|examples?|posts?|tweets?|list|messages?|replies)\b.{0,40})$",
    re.IGNORECASE,
)
_NOTE = re.compile(r"^\s*\(?(?:note|disclaimer|please note|remember)\b", re.IGNORECASE)
_HASHTAG = re.compile(r"(?<![\w&])#\w+")
_OPEN, _CLOSE = "\"“'‘", "\"”'’"
_SEPARATOR = re.compile(r"[\"”]\s*[,;]?\s*[\"“]")


@dataclass
class ParsedList:
    items: list[str]
    refusal: bool = False
    notes: list[str] = field(default_factory=list)  # what was cut: "response_prefix", "preamble", "note", "hashtags"


def remove_hashtags(text: str) -> str:
    """Drop #hashtags (the seed did) and tidy the spaces they leave."""
    out = _HASHTAG.sub("", text)
    return re.sub(r"[ \t]{2,}", " ", out).strip()


def _unquote(text: str) -> str:
    """Strip one pair of wrapping quotes (inner quotes stay)."""
    text = text.strip()
    if len(text) >= 2 and text[0] in _OPEN and text[-1] in _CLOSE:
        if text[0] in "'‘" and text.count("'") + text.count("’") > 2:
            return text  # apostrophes inside a single-quoted line: leave it alone
        return text[1:-1].strip()
    return text


def parse_list(text: str) -> ParsedList:
    """Split a model answer into the items of its list.

    Handles numbered (`1.`, `1)`, `(1)`) and bulleted lines (continuation lines join their item), one quoted
    item per line (inner quotes kept), several quoted items on one line (`"a", "b"`), and plain lines with no
    quotes. Text up to "Response:" (the seed's format), preamble lines ("Here are 5 comments:") and trailing
    notes are cut; hashtags are removed. A refusal gives no items and `refusal=True`.
    """
    notes: list[str] = []
    text = _cut_response_prefix(text or "", notes)
    if REFUSAL.search(text):
        return ParsedList([], True, notes)
    lines = [ln.rstrip() for ln in text.replace("\r", "").split("\n")]
    lines = [ln for ln in lines if ln.strip()]
    numbered = [bool(_NUMBERED.match(ln)) for ln in lines]
    if sum(numbered) >= 1:
        items = _numbered_items(lines, numbered, notes)
    else:
        items = _plain_items(lines, notes)
    return ParsedList(_clean_items(items, notes), False, notes)


_QUOTED = re.compile(r'"([^"]*)"')


def parse_quoted(text: str) -> ParsedList:
    """The seed's parser: the text after "Response:" with hashtags removed, and every straight double-quoted span
    in it is one item (unquoted lines are not items). A refusal gives no items and `refusal=True`."""
    notes: list[str] = []
    text = _cut_response_prefix(text or "", notes)
    if REFUSAL.search(text) and not _QUOTED.search(text):
        return ParsedList([], True, notes)
    no_tags = remove_hashtags(text)
    if no_tags != text.strip():
        notes.append("hashtags")
    items = [" ".join(m.split()) for m in _QUOTED.findall(no_tags)]
    return ParsedList([m for m in items if m], False, notes)


def _cut_response_prefix(text: str, notes: list[str]) -> str:
    """Drop everything up to "Response:" (the seed's answer format)."""
    m = _RESPONSE.match(text)
    if m and "response" in text[: m.end()].lower():
        notes.append("response_prefix")
        return text[m.end() :]
    return text


def _numbered_items(lines: list[str], numbered: list[bool], notes: list[str]) -> list[str]:
    """Items of a numbered or bulleted list; continuation lines join their item, notes end it."""
    first = numbered.index(True)
    if first:
        notes.append("preamble")
    items: list[str] = []
    current: list[str] | None = None
    for ln, is_item in zip(lines[first:], numbered[first:], strict=True):
        if is_item:
            if current is not None:
                items.append(" ".join(current))
            current = [_NUMBERED.match(ln).group(1).strip()]
        elif _NOTE.match(ln) or _PREAMBLE.match(ln) and ln.rstrip().endswith(":"):
            if current is not None:
                items.append(" ".join(current))
            current = None
            notes.append("note")
        elif current is not None:
            current.append(ln.strip())
    if current is not None:
        items.append(" ".join(current))
    return [_unquote(item) for item in items]


def _plain_items(lines: list[str], notes: list[str]) -> list[str]:
    """Items of an unnumbered answer: one (quoted or plain) item per line, or several quoted ones on a line."""
    if len(lines) > 1 and _PREAMBLE.match(lines[0]) and lines[0].lstrip()[:1] not in _OPEN:
        lines = lines[1:]
        notes.append("preamble")
    items: list[str] = []
    for ln in lines:
        if _NOTE.match(ln):
            notes.append("note")
            continue
        stripped = ln.strip()
        if stripped[:1] in _OPEN[:2] and stripped[-1:] in _CLOSE[:2] and len(stripped) >= 2:
            items.extend(part.strip() for part in _SEPARATOR.split(stripped[1:-1]))  # "a", "b" on one line
        else:
            items.append(_unquote(stripped))
    return items


def _clean_items(items: list[str], notes: list[str]) -> list[str]:
    """Remove hashtags and wrapping quotes; drop items left empty."""
    cleaned = []
    for item in items:
        no_tags = remove_hashtags(item)
        if no_tags != item.strip() and "hashtags" not in notes:
            notes.append("hashtags")
        no_tags = _unquote(no_tags)
        if no_tags:
            cleaned.append(no_tags)
    return cleaned


# ------------------------------------------------------------------------------------------- prompts


YAML_SUFFIXES = (".yaml", ".yml")


def load_definition(definition: str | None, definition_file: Path | None, label_name: str) -> str:
    """`--definition TEXT`, or `--definition-file F`: a YAML file (.yaml/.yml) of name -> text, or a plain-text file
    (any other file that is not a YAML mapping). Problems are one InputError naming the file and the flag."""
    if definition:
        return " ".join(definition.split())
    if definition_file is None:
        raise InputError("give --definition TEXT or --definition-file FILE (e.g. data/label_definitions.yaml)",
                         field="--definition")
    path = Path(definition_file)
    raw = read_text_file(path, "the definition file", field="--definition-file")
    table = _definition_table(raw, path)
    if table is not None:
        if label_name not in table:
            raise InputError(f"no definition for {label_name!r} (have: {', '.join(table)}): pick one with "
                             "--label-name, or give --definition TEXT", path=path, field="--definition")
        value = table[label_name]
        if not isinstance(value, (str, int, float)) or isinstance(value, bool) or not str(value).strip():
            raise InputError(f"the definition of {label_name!r} must be text, got {value!r}", path=path,
                             field="--definition-file")
        return " ".join(str(value).split())
    text = " ".join(raw.split())
    if not text:
        raise InputError("the definition file is empty", path=path, field="--definition-file")
    return text


def _definition_table(raw: str, path: Path) -> dict | None:
    """The name -> definition mapping of a YAML definitions file, or None for a plain-text definition. A .yaml/.yml
    file must be a valid YAML mapping (a broken one is never read as plain text)."""
    strict = path.suffix.lower() in YAML_SUFFIXES
    try:
        data = yaml.safe_load(raw)
    except yaml.YAMLError as e:
        if not strict:
            return None
        mark = getattr(e, "problem_mark", None)
        raise InputError(f"not valid YAML: {getattr(e, 'problem', None) or e}", path=path,
                         line=mark.line + 1 if mark is not None else None, field="--definition-file") from None
    if isinstance(data, dict):
        return {str(k): v for k, v in data.items()}
    if strict:
        raise InputError("a definitions file must map label names to definitions (name: text)", path=path,
                         field="--definition-file")
    return None


def build_chat(
    template: Template,
    label_name: str,
    definition: str,
    examples: Sequence[str],
    per_call: int,
    min_words: int,
    max_words: int,
    group: str | None = None,
    word_limits: Sequence[int] | None = None,
) -> list[dict]:
    """One few-shot request: the definition, the real examples (one quoted line each) and how many to write.

    ``group`` (the identity-group variant) fills the template's ``{group}`` (the name) or ``{aimed_at}`` (" aimed
    at <group>", empty without a group); a template with neither gets one sentence asking for comments aimed at
    the group. ``word_limits`` cut each example to that many words
    (default: ``max_words``), which is how a prompt is made to fit ``--max-input-tokens``."""

    def one_line(text: str, limit: int) -> str:  # long real posts are cut (the seed truncated its input to 512)
        words = text.split()
        return " ".join(words[:limit]).replace('"', "'") + (" ..." if len(words) > limit else "")

    limits = list(word_limits) if word_limits is not None else [max_words] * len(examples)
    shown = "\n".join(f'"{one_line(ex, lim)}"' for ex, lim in zip(examples, limits, strict=True))
    fields = dict(
        label_name=label_name,
        definition=definition,
        n_examples=len(examples),
        examples=shown,
        per_call=per_call,
        min_words=min_words,
        max_words=max_words,
        group=group or "",
        aimed_at=f" aimed at {group}" if group else "",
    )
    user = template.user.format(**fields)
    if group and "{group}" not in template.user and "{aimed_at}" not in template.user:
        user += f"\nEvery comment you write must be aimed at {group}."
    chat = [{"role": "user", "content": user}]
    if template.system:
        chat.insert(0, {"role": "system", "content": template.system.format(**fields)})
    return chat


def raw_prompt(chat: Sequence[dict]) -> str:
    """The seed's plain prompt for a chat: ``### Instruction: <the turns' text>`` then ``### Response:`` on the
    next line, for models used without a chat template (``--prompt-format raw``)."""
    body = "\n\n".join(str(m["content"]) for m in chat)
    return f"### Instruction: {body}\n### Response:"


_NEXT_SECTION = re.compile(r"###\s")


def cut_at_next_section(text: str) -> tuple[str, bool]:
    """The answer up to the next ``### `` heading (a raw-format model goes on with another "### Instruction:"
    turn; the seed's parser stopped there too), and whether anything was cut."""
    m = _NEXT_SECTION.search(text or "")
    return (text[: m.start()], True) if m else (text or "", False)


# The 14 identity groups the seed's variant targeted (one request each), in its order.
CAPSTONE_GROUPS = (
    "Muslims", "Jews", "Sikhs", "Buddhists", "Transgender individuals", "Non-binary individuals", "Women",
    "LGBTQ+ individuals", "Persons with disabilities", "Refugees", "Indigenous Peoples", "Black/African American",
    "Latinx", "Asian Americans/Pacific Islanders",
)  # fmt: skip


def parse_groups(spec: str | None) -> list[str]:
    """``--target-groups``: "capstone" (the seed's 14), a .txt file (one group a line, # comments), or a
    comma-separated list. InputError when no group is left, or a group is given twice."""
    if spec is None:
        return []
    text = str(spec).strip()
    if text.lower() == "capstone":
        return list(CAPSTONE_GROUPS)
    path = Path(text).expanduser()
    if text.lower().endswith(".txt") or path.is_file():
        raw = read_text_file(path, "the groups file", field="--target-groups")
        groups = [ln.strip() for ln in raw.splitlines() if ln.strip() and not ln.lstrip().startswith("#")]
        where = str(path)
    else:
        groups = [g.strip() for g in text.split(",") if g.strip()]
        where = repr(text)
    if not groups:
        raise InputError(f"no group in {where}: give 'capstone', a comma-separated list or a .txt file",
                         field="--target-groups")
    repeated = sorted({g for g in groups if groups.count(g) > 1})
    if repeated:
        raise InputError(f"group {', '.join(repeated)} is given more than once", field="--target-groups")
    return groups


def pick_examples(n_real: int, k: int, seed: int, request: int) -> list[int]:
    """The real examples of request `request`: like the seed, rows are used in groups (pairs for k=2), walking a
    seeded shuffle of the target rows, so every real example is shown before any is shown twice."""
    groups_per_pass = max(1, n_real // k)
    pass_no, slot = divmod(request, groups_per_pass)
    order = list(range(n_real))
    random.Random(f"{seed}:pass{pass_no}").shuffle(order)
    return sorted(order[slot * k : slot * k + k])


# ------------------------------------------------------------------------------------------- filters


def normalise(text: str) -> str:
    return " ".join(re.sub(r"[^\w\s]", " ", text.lower()).split())


@dataclass
class TextFilters:
    """Filters (flag, never drop): length, near duplicates, label fidelity."""

    min_words: int = flag(5, "flag shorter items (the seed asked for 20-100 words, too long for tweets)")
    max_words: int = flag(100, "flag longer items")
    # cosine; 0 or an embedder of None turns the near-duplicate check off
    near_dup: float = flag(
        0.95, "flag items whose embedding cosine to a real row or an earlier item is >= this (0 = off)"
    )
    fidelity_threshold: float = flag(
        0.5, "with --fidelity-model: flag items whose probability of the target label is below this"
    )

    def __post_init__(self) -> None:
        check_min(self, "min_words", 0)
        check_min(self, "max_words", 1)
        if self.max_words < self.min_words:
            raise ConfigError("max_words", f"must not be below --min-words ({self.min_words}), got {self.max_words}")
        check_range(self, "near_dup", 0, 1)
        check_range(self, "fidelity_threshold", 0, 1)


class DuplicateIndex:
    """Exact (normalised text) and near (embedding cosine) duplicates against the real rows and earlier items."""

    def __init__(self, real_texts: Sequence[str], embedder=None, threshold: float = 0.95):
        self.embedder = embedder if threshold and threshold > 0 else None
        self.threshold = threshold
        self.real_exact = {normalise(t) for t in real_texts}
        self.seen: set[str] = set()
        dim = 0
        self.real_vectors = np.zeros((0, 0), dtype=np.float32)
        if self.embedder is not None:
            self.real_vectors = self.embedder.encode(list(real_texts)).astype(np.float32)
            dim = self.real_vectors.shape[1] if self.real_vectors.size else 0
        self.seen_vectors = np.zeros((0, dim), dtype=np.float32)

    def add(self, texts: Sequence[str]) -> None:
        """Remember items already written (a resumed run) without flagging them."""
        self.check(texts)

    def check(self, texts: Sequence[str]) -> list[dict]:
        """Flags and similarities of each text, in order; each text is then remembered for the next ones."""
        out = []
        vectors = self.embedder.encode(list(texts)).astype(np.float32) if self.embedder is not None and texts else None
        for i, text in enumerate(texts):
            key = normalise(text)
            info = {
                "duplicate": bool(key) and key in self.seen,
                "copies_real": bool(key) and key in self.real_exact,
                "near_duplicate": False,
                "near_real": False,
                "max_sim_generated": None,
                "max_sim_real": None,
            }
            if vectors is not None:
                v = vectors[i]
                if len(self.real_vectors):
                    info["max_sim_real"] = round(float((self.real_vectors @ v).max()), 4)
                    info["near_real"] = info["max_sim_real"] >= self.threshold
                if len(self.seen_vectors):
                    info["max_sim_generated"] = round(float((self.seen_vectors @ v).max()), 4)
                    info["near_duplicate"] = info["max_sim_generated"] >= self.threshold
                self.seen_vectors = np.vstack([self.seen_vectors.reshape(-1, len(v)), v[None, :]])
            self.seen.add(key)
            out.append(info)
        return out


class FidelityGate:
    """A classifier saved by train_classifier.py: its probability of the target label; flag below a threshold."""

    def __init__(self, model_dir: Path, target: str, threshold: float = 0.5, device: str = "auto"):
        from socialsynth.classify.registry import load_classifier

        self.model = load_classifier(model_dir, device=device)
        self.model_dir = str(model_dir)
        self.threshold = threshold
        names = list(self.model.labels.names)
        task = self.model.task
        if task not in ("binary", "multiclass") or target not in names:
            raise InputError(
                f"the fidelity model predicts {task} labels {names}, not the target label {target!r}",
                path=model_dir,
            )
        self.task, self.column = task, names.index(target)

    def scores(self, texts: Sequence[str]) -> list[float]:
        if not texts:
            return []
        s = np.asarray(self.model.predict_scores(list(texts)))
        if self.task == "binary":
            s = s.reshape(-1) if self.column == 1 else 1.0 - s.reshape(-1)
        else:
            s = s[:, self.column]
        return [round(float(x), 4) for x in s]


def item_flags(text: str, settings: TextFilters) -> dict:
    n_words = len(text.split())
    lowered = text.lower()
    return {
        "too_short": n_words < settings.min_words,
        "too_long": n_words > settings.max_words,
        "refusal": bool(REFUSAL.search(text)),
        "degenerate": is_degenerate(text),
        "instruction_echo": any(m in lowered for m in ("definition:", "real examples of", "new, different")),
    }
