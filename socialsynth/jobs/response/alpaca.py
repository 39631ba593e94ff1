"""Alpaca records (instruction, input "", output = the real response) for every case and variant, with the character
spans of the news and user fields (seed 004, SocialAlign organize_alphca_dataset.py).

The instruction templates are YAML (prompts/templates/response_instruction_{en,zh}.yaml; the case's language picks
one): named sections (intro, profile, history, persona, news, task), the list of sections each variant uses, and
item formats. Rendering substitutes the fields one by one and records where each inserted text starts and ends,
so `prompt_text(record)[start:end]` is exactly the inserted field: news spans cover the news text and the topic,
user spans the user name, profile, history posts and persona. Nothing is found by searching for marker strings,
so any language or wording of the template gives correct spans. Any number of history posts works (the seed
assumed five). The persona prompt templates are loaded and checked here too, so the config can check every template
before any model loads.
"""

from __future__ import annotations

import hashlib
import json
import string
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import yaml

from socialsynth.core.errors import InputError
from socialsynth.core.io import atomic_write_text, read_text_file
from socialsynth.jobs.response.records import SPAN_NEWS, SPAN_USER, VARIANTS
from socialsynth.prompts import TEMPLATES_DIR, Template, load_template

# which span each placeholder's text belongs to (None: in no span)
FIELD_SPANS = {
    "user_name": SPAN_USER,
    "profile": SPAN_USER,
    "history": SPAN_USER,
    "persona": SPAN_USER,
    "news": SPAN_NEWS,
    "topic": SPAN_NEWS,
    "n_history": None,
    "rules": None,
}
# a section is left out when this field of it is empty
OPTIONAL_FIELDS = {"profile": "profile", "history": "history", "persona": "persona"}


@dataclass(frozen=True)
class InstructionTemplate:
    name: str
    language: str
    system: str
    joiner: str
    sections: dict[str, str]
    variants: dict[str, list[str]]
    rules: dict[str, list[str]]
    history_item: str
    persona_item: str
    profile_item: str
    profile_separator: str
    profile_labels: dict[str, str]
    rule_item: str
    hash: str

    @property
    def ref(self) -> str:
        return f"{self.name}@{self.hash}"


def template_name(language: str) -> str:
    return f"response_instruction_{language}"


def _read_yaml_mapping(path: Path) -> tuple[dict, str]:
    """The mapping in a template file and its text; InputError naming the file for anything else."""
    text = read_text_file(path, "the template")
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise InputError(f"not valid YAML ({str(e).splitlines()[0]})", path=path) from e
    if not isinstance(data, dict):
        raise InputError("an instruction template must be a YAML mapping with 'sections' and 'variants'", path=path)
    return data, text


# each item format and the fields it is given (a placeholder outside them would fail while rendering)
ITEM_FIELDS = {"history_item": ("i", "text"), "persona_item": ("i", "text"), "profile_item": ("label", "value"),
               "rule_item": ("text",)}


def _check_template(tpl: InstructionTemplate, path: Path) -> None:
    """Every variant, section, placeholder and item format of a template is one that rendering knows."""
    for variant in VARIANTS:
        if variant not in tpl.variants:
            raise InputError(f"variant {variant!r} missing", path=path, field="variants")
        for section in tpl.variants[variant]:
            if section not in tpl.sections:
                raise InputError(f"variant {variant!r} uses unknown section {section!r}", path=path, field="variants")
    for section, fmt in tpl.sections.items():
        try:
            names = [name for _, name, _, _ in string.Formatter().parse(fmt)]
        except ValueError as e:  # a lone { or }
            raise InputError(f"section {section!r}: {e}", path=path) from None
        for name in names:
            if name is not None and name not in FIELD_SPANS:
                raise InputError(f"unknown placeholder {{{name}}} in section {section!r}", path=path)
    for item, fields in ITEM_FIELDS.items():
        try:
            getattr(tpl, item).format(**{f: "x" for f in fields})
        except (KeyError, IndexError, ValueError) as e:
            raise InputError(f"{item} may use {', '.join('{' + f + '}' for f in fields)} only ({e!r})", path=path,
                             field=item) from None


@cache
def load_instruction_template(name_or_path: str) -> InstructionTemplate:
    """An instruction template by name (prompts/templates/<name>.yaml) or path; checked for the keys it needs."""
    path = Path(name_or_path)
    if not (path.suffix in (".yaml", ".yml") and path.exists()):
        path = TEMPLATES_DIR / f"{name_or_path}.yaml"
    if not path.exists():
        raise InputError(f"unknown instruction template {name_or_path!r}", path=path)
    data, text = _read_yaml_mapping(path)
    try:
        sections = {k: str(v) for k, v in data["sections"].items()}
        variants = {k: list(v) for k, v in data["variants"].items()}
        rules = {k: [str(r) for r in v] for k, v in (data.get("rules") or {}).items()}
        tpl = InstructionTemplate(
            name=str(data.get("name") or path.stem),
            language=str(data.get("language", "")),
            system=str(data.get("system", "")).strip(),
            joiner=str(data.get("joiner", "\n")),
            sections=sections,
            variants=variants,
            rules=rules,
            history_item=str(data.get("history_item", "{i}. {text}")),
            persona_item=str(data.get("persona_item", "{i}. {text}")),
            profile_item=str(data.get("profile_item", "{label}: {value}")),
            profile_separator=str(data.get("profile_separator", "; ")),
            profile_labels={str(k): str(v) for k, v in (data.get("profile_labels") or {}).items()},
            rule_item=str(data.get("rule_item", "- {text}")),
            hash=hashlib.sha256(text.encode()).hexdigest()[:12],
        )
    except (KeyError, TypeError, AttributeError) as e:
        raise InputError(f"an instruction template needs 'sections' and 'variants' ({e})", path=path) from e
    _check_template(tpl, path)
    return tpl


def _numbered(fmt: str, items: Sequence[str]) -> str:
    return "\n".join(fmt.format(i=i, text=text) for i, text in enumerate(items, 1))


def field_values(tpl: InstructionTemplate, case: Mapping, persona: Sequence[str], variant: str) -> dict[str, str]:
    """The text each placeholder is replaced by, for one case and variant."""
    profile = case.get("profile") or {}
    profile_text = tpl.profile_separator.join(
        tpl.profile_item.format(label=tpl.profile_labels.get(k, k), value=v) for k, v in profile.items() if v
    )
    history = list(case.get("history") or [])
    return {
        "user_name": str(case.get("user_name") or case.get("user_id")),
        "profile": profile_text,
        "history": _numbered(tpl.history_item, history),
        "persona": _numbered(tpl.persona_item, persona),
        "news": str(case["news"]).strip(),
        "topic": str(case["topic"]),
        "n_history": str(len(history)),
        "rules": "\n".join(tpl.rule_item.format(text=r) for r in tpl.rules.get(variant, [])),
    }


def render(
    tpl: InstructionTemplate, case: Mapping, persona: Sequence[str], variant: str
) -> tuple[str, dict[str, list[list[int]]]]:
    """(instruction, spans): the variant's sections with the case's fields substituted, and for each span kind
    the [start, end) character offsets of the inserted texts, in order."""
    values = field_values(tpl, case, persona, variant)
    parts: list[str] = []
    spans: dict[str, list[list[int]]] = {SPAN_NEWS: [], SPAN_USER: []}
    pos = 0
    first = True
    for section in tpl.variants[variant]:
        optional = OPTIONAL_FIELDS.get(section)
        if optional and not values[optional]:
            continue
        if not first:
            parts.append(tpl.joiner)
            pos += len(tpl.joiner)
        first = False
        for literal, name, spec, conversion in string.Formatter().parse(tpl.sections[section]):
            parts.append(literal)
            pos += len(literal)
            if name is None:
                continue
            value = values[name]
            if conversion or spec:
                value = format(value, spec)
            kind = FIELD_SPANS[name]
            if kind is not None and value:
                spans[kind].append([pos, pos + len(value)])
            parts.append(value)
            pos += len(value)
    return "".join(parts), spans


def alpaca_record(
    tpl: InstructionTemplate, case: Mapping, persona: Sequence[str], variant: str, persona_ref: str | None = None
) -> dict:
    instruction, spans = render(tpl, case, persona, variant)
    return {
        "id": case["id"],
        "topic_id": case["topic_id"],
        "user_id": case["user_id"],
        "split": case["split"],
        "variant": variant,
        "language": case["language"],
        "system": tpl.system,
        "instruction": instruction,
        "input": "",
        "output": case["response"],
        "spans": spans,
        "template": tpl.ref,
        "persona_source": persona_ref if variant != "without_persona" else None,
    }


def write_alpaca(
    cases: Sequence[Mapping],
    personas: Mapping[str, Sequence[str]],
    out_dir: Path,
    templates: Mapping[str, str] | None = None,
    persona_refs: Mapping[str, str] | None = None,
) -> dict:
    """Write alpaca/<variant>.jsonl for every variant (each file replaced atomically); return counts.

    `templates` maps a language to a template name or path (default response_instruction_<lang>); `personas`
    maps user_id to the persona items (a user without one gets no persona section)."""
    templates = dict(templates or {})
    out_dir = Path(out_dir)
    counts: dict = {"records": {}, "cases_without_persona": 0, "templates": {}}
    missing = {c["id"] for c in cases if not personas.get(c["user_id"])}
    counts["cases_without_persona"] = len(missing)
    for variant in VARIANTS:
        lines = []
        for case in cases:
            lang = case["language"]
            tpl = load_instruction_template(templates.get(lang) or template_name(lang))
            counts["templates"][lang] = tpl.ref
            persona = personas.get(case["user_id"]) or []
            ref = (persona_refs or {}).get(case["user_id"])
            lines.append(json.dumps(alpaca_record(tpl, case, persona, variant, ref), ensure_ascii=False) + "\n")
        path = out_dir / f"{variant}.jsonl"
        atomic_write_text(path, "".join(lines))
        counts["records"][variant] = len(lines)
    counts["folder"] = str(out_dir)
    return counts


PERSONA_FIELDS = ("username", "history")  # what a persona template may use


def load_persona_template(name_or_path: str) -> Template:
    """A persona prompt template (name or YAML path), checked: its format strings use only {username} and
    {history}, so that a bad one stops before any model loads."""
    try:
        tpl = load_template(name_or_path)
    except UnicodeDecodeError as e:
        raise InputError(f"not UTF-8 text (byte {e.start + 1})", path=name_or_path) from None
    for part, text in (("system", tpl.system), ("user", tpl.user)):
        try:
            names = {name for _, name, _, _ in string.Formatter().parse(text) if name is not None}
        except ValueError as e:  # a lone { or }
            raise InputError(f"{part}: {e}", path=name_or_path) from None
        unknown = sorted(names - set(PERSONA_FIELDS))
        if unknown:
            raise InputError(f"{part}: unknown placeholder {{{unknown[0]}}} (a persona template may use "
                             f"{{username}} and {{history}})", path=name_or_path)
    return tpl
