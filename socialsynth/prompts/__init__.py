"""Prompt templates and norm-dimension definitions, kept as data (YAML) beside this file.

A dimension file (see dimensions/README.md) names five levels from low to high, a rubric for each and a few
rated examples. Templates are format strings; their hash goes into every record's provenance so a changed
prompt is visible in the output.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import yaml

from socialsynth.core.errors import InputError

HERE = Path(__file__).resolve().parent
DIMENSIONS_DIR = HERE / "dimensions"
TEMPLATES_DIR = HERE / "templates"
N_LEVELS = 5


@dataclass(frozen=True)
class Level:
    name: str
    rubric: str


@dataclass(frozen=True)
class Example:
    level: int
    title: str
    comment: str


@dataclass(frozen=True)
class Dimension:
    """One norm dimension: five ordered levels with rubrics, and few-shot examples for the judge."""

    name: str
    description: str
    levels: tuple[Level, ...]
    examples: tuple[Example, ...]
    source: str
    rating_shots: int | None = None  # how many examples the judge sees (None: all)

    @property
    def level_names(self) -> list[str]:
        return [lv.name for lv in self.levels]

    def definitions(self) -> str:
        """The rubric block shown to the model: one line per level."""
        return "\n".join(f"{i}. {lv.name}: {lv.rubric}" for i, lv in enumerate(self.levels, 1))

    def fingerprint(self) -> str:
        blob = json.dumps([self.name, self.description, self.levels, self.examples], default=str)
        return hashlib.sha256(blob.encode()).hexdigest()[:12]


@dataclass(frozen=True)
class Template:
    """A chat template: system and user format strings (and, for few-shot turns, an assistant one)."""

    name: str
    system: str
    user: str
    assistant: str = ""

    @property
    def hash(self) -> str:
        blob = json.dumps([self.system, self.user, self.assistant])
        return hashlib.sha256(blob.encode()).hexdigest()[:12]


def known_dimensions() -> list[str]:
    return sorted(p.stem for p in DIMENSIONS_DIR.glob("*.yaml"))


def _find_yaml(name_or_path: str, folder: Path, kind: str, hint: str) -> Path:
    """A YAML file given by path, or by name in one of our data folders; an unknown name lists the known ones."""
    path = Path(name_or_path)
    if path.suffix in (".yaml", ".yml") and path.exists():
        return path
    path = folder / f"{name_or_path}.yaml"
    if not path.exists():
        known = ", ".join(sorted(p.stem for p in folder.glob("*.yaml")))
        raise InputError(f"unknown {kind} {name_or_path!r}; known: {known} ({hint})")
    return path


def load_dimension(name_or_path: str) -> Dimension:
    """Load a dimension by name (a file in prompts/dimensions/) or by the path of a YAML file."""
    hint = "or give the path of a YAML file, see socialsynth/prompts/dimensions/README.md"
    return _parse_dimension(_find_yaml(name_or_path, DIMENSIONS_DIR, "norm dimension", hint))


@cache
def _parse_dimension(path: Path) -> Dimension:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as e:
        raise InputError(f"not a valid YAML dimension file ({str(e).splitlines()[0]})", path=path) from e
    if not isinstance(data, dict):
        raise InputError("a dimension file must be a mapping with name, levels, examples", path=path)
    levels = data.get("levels")
    if not isinstance(levels, list) or len(levels) != N_LEVELS:
        raise InputError(f"needs exactly {N_LEVELS} levels, ordered low to high", path=path, field="levels")
    parsed = []
    for i, lv in enumerate(levels, 1):
        if not isinstance(lv, dict) or not str(lv.get("name", "")).strip() or not str(lv.get("rubric", "")).strip():
            raise InputError(f"level {i} needs a name and a rubric", path=path, field="levels")
        parsed.append(Level(str(lv["name"]).strip(), " ".join(str(lv["rubric"]).split())))
    examples = []
    for ex in data.get("examples") or []:
        try:
            level = int(ex["level"])
            if not 1 <= level <= N_LEVELS:
                raise ValueError
            examples.append(Example(level, str(ex.get("title", "")), str(ex["comment"])))
        except (KeyError, TypeError, ValueError) as e:
            raise InputError(
                f"bad example {ex!r}: needs level 1-{N_LEVELS} and comment", path=path, field="examples"
            ) from e
    shots = data.get("rating_shots")
    if shots is not None and (not isinstance(shots, int) or shots < 0):
        raise InputError("rating_shots must be a whole number >= 0", path=path, field="rating_shots")
    return Dimension(
        str(data.get("name") or path.stem),
        str(data.get("description", "")),
        tuple(parsed),
        tuple(examples),
        str(path),
        shots,
    )


def known_templates() -> list[str]:
    return sorted(p.stem for p in TEMPLATES_DIR.glob("*.yaml"))


@cache
def load_template(name_or_path: str) -> Template:
    """Load a chat template by name (a file in prompts/templates/) or by the path of a YAML file."""
    path = _find_yaml(name_or_path, TEMPLATES_DIR, "template", "or the path of a YAML file")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
        return Template(
            str(data.get("name") or path.stem),
            str(data["system"]).strip(),
            str(data["user"]).strip(),
            str(data.get("assistant", "")).strip(),
        )
    except (yaml.YAMLError, KeyError, TypeError, AttributeError) as e:
        raise InputError(f"a template needs 'system' and 'user' format strings ({e})", path=path) from e
