"""Lexical clean-up and quality flags for generated text (rewrites, rephrasings, augmentations).

Small instruction models wrap answers in preambles ("Sure! Here is the rewritten comment:"), echo the
instructions after the answer, refuse, or loop. We cut what is clearly wrapping and flag the rest; a
record is never dropped silently, so a researcher can see and count every failure.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

_WHAT = r"(?:rewrit\w*|rephras\w*|revis\w*|edited|version|comment|post|text|response|reply)"
PREAMBLE = re.compile(
    r"^\s*(?:(?:sure|okay|ok|certainly|of course|absolutely)[!,.]?\s*)?"
    rf"(?:here(?:'s| is| are)\b[^\n:]{{0,60}}\b{_WHAT}\b[^\n:]{{0,30}}:|"
    r"[\"'*]{0,2}(?:the\s+)?(?:rewritten|rephrased|revised|changed|new|modified)\s+(?:comment|post|text|version|story)"
    r"[\"'*]{0,2}\s*:[\"'*]{0,2}|"  # also the seed's label `"Changed Post":` (quoted or **bold**)
    r"rewrite\b[^\n:]{0,60}:|comment\s*:)\s*",
    re.IGNORECASE,
)
TRAILING_NOTE = re.compile(
    r"(?:\n\s*\(?(?:note|explanation|changes made)\s*[:\-]"  # "Note: ...", "(Explanation - ..."
    r"|\n\s*\n\s*i (?:changed|made|rewrote|kept|replaced|removed|added|used)\b"  # a paragraph about the edit
    r"(?=[^\n]*\b(?:tone|style|slang|formal\w*|casual\w*|wording|language|comment|text|original)\b))"
    r"[^\n]*(?:\n.*)*\Z",
    re.IGNORECASE,
)
REFUSAL = re.compile(
    r"\b(?:i(?:'m| am) sorry,? but i (?:can(?:no|')t|won't|will not|am unable|'m unable|am not able)|"
    r"i(?:'m| am) (?:unable|not able) to (?:help|assist|rewrite|do|comply|provide|fulfil)|"
    r"i can(?:no|')t (?:help|assist|rewrite|comply|provide|fulfil)|"
    r"as an ai\b|as a language model\b|"
    r"i (?:cannot|can't|can’t|cant|won't|will not) (?:rewrite|create|generate|write|produce|make))",
    re.IGNORECASE,
)
ECHO_MARKERS = (
    "rating definitions",
    "rewritten comment:",
    "post title:",
    "return only the rewritten",
    "rewrite the comment",
)
QUOTES = "\"'“”‘’"


@dataclass
class Cleaned:
    text: str
    notes: list[str] = field(default_factory=list)  # what was cut: "preamble", "echo", "trailing_note", "quotes"


def clean_generation(text: str, echo_markers: tuple[str, ...] = ECHO_MARKERS) -> Cleaned:
    """Strip preambles, wrapping quotes, instruction echoes and trailing notes from a model answer."""
    notes = []
    out = text.strip()
    m = PREAMBLE.match(out)
    if m:
        out = out[m.end() :].lstrip()  # an answer that is only a preamble becomes empty (and is flagged so)
        notes.append("preamble")
    lowered = out.lower()
    cut = min((i for i in (lowered.find(mk) for mk in echo_markers) if i > 0), default=-1)
    if cut > 0:
        out = out[:cut].rstrip()
        notes.append("echo")
    m = TRAILING_NOTE.search(out)
    if m and m.start() > 0:
        out = out[: m.start()].rstrip()
        notes.append("trailing_note")
    if len(out) >= 2 and out[0] in QUOTES and out[-1] in QUOTES and not any(q in out[1:-1] for q in QUOTES[:1]):
        out = out[1:-1].strip()
        notes.append("quotes")
    return Cleaned(out, notes)


def _normalise(text: str) -> str:
    return " ".join(re.sub(r"[^\w\s]", "", text.lower()).split())


def is_degenerate(text: str) -> bool:
    """Loops and stretched characters: "NOOOOOOO…", the same word or line over and over."""
    if re.search(r"(.)\1{9,}", text):
        return True
    words = text.lower().split()
    if len(words) >= 12:
        distinct = len(set(words)) / len(words)
        if distinct < 0.25:
            return True
    lines = [ln.strip().lower() for ln in text.splitlines() if ln.strip()]
    return len(lines) >= 3 and len(set(lines)) <= len(lines) // 2


def lexical_flags(text: str, original: str) -> dict[str, bool]:
    """Lexical failure flags of one generation (True means the problem is present)."""
    return {
        "empty": not text.strip(),
        "refusal": bool(REFUSAL.search(text)),
        "unchanged": _normalise(text) == _normalise(original),
        "degenerate": is_degenerate(text),
        "instruction_echo": any(mk in text.lower() for mk in ECHO_MARKERS),
    }
