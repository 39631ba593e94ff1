"""Presets: job files shipped with the package that replay a paper's method (``--preset NAME`` on every script).

A preset is a folder ``presets/<name>/`` holding one YAML job file per script it covers, named after the script's
section (``generate_synthetic_data.yaml``, ``train_classifier.yaml``, ``predict_responses.train.yaml``, ...). The
first comment lines of a file describe it (``--list-presets`` prints them). A preset's values sit under the
``--config`` job file's and the command line's, so any of them can be changed while the rest stays the paper's.

Example::

    python generate_synthetic_data.py --preset valuescope -r askmen -n formality   # the seed's method
    python generate_synthetic_data.py --preset valuescope -m my/model              # ... with another generator
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

PRESETS_DIR = Path(__file__).resolve().parent
# Older names that still work, per script section (train_classifier.py --preset upvote predates the presets).
ALIASES = {"train_classifier": {"upvote": "valuescope"}}


def section_of(prog: str | None) -> str:
    """``"generate_synthetic_data.py"`` -> ``"generate_synthetic_data"``; ``"predict_responses.py train"`` ->
    ``"predict_responses.train"``; ``"socialsynth prepare"`` -> ``"prepare"``."""
    words = str(prog or "").replace(".py", "").split()
    if words and words[0] == "socialsynth":
        words = words[1:]
    return ".".join(words)


def preset_file(name: str, section: str) -> Path:
    return PRESETS_DIR / ALIASES.get(section, {}).get(name, name) / f"{section}.yaml"


def available(section: str) -> dict[str, str]:
    """Preset name -> description for the presets that cover ``section`` (aliases included)."""
    found = {p.parent.name: describe(p) for p in sorted(PRESETS_DIR.glob(f"*/{section}.yaml"))}
    for alias, target in ALIASES.get(section, {}).items():
        if target in found:
            found[alias] = f"same as {target}"
    return found


def describe(path: Path) -> str:
    """The leading ``#`` comment lines of a preset file, joined."""
    lines = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line.startswith("#"):
            break
        lines.append(line.lstrip("# ").rstrip())
    return " ".join(x for x in lines if x)


def load_preset(name: str, section: str) -> dict[str, Any]:
    """The values of preset ``name`` for ``section``; LookupError (its message for the user) for an unknown one.
    (Plain errors: this data package sits below socialsynth.core, which turns them into one-line InputErrors.)"""
    path = preset_file(name, section)
    if not path.is_file():
        have = ", ".join(available(section)) or "none for this script"
        raise LookupError(f"unknown preset {name!r} for {section.replace('.', ' ')} (have: {have}; see --list-presets)")
    data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    if not isinstance(data, dict):
        raise LookupError(f"{path}: a preset must be a mapping of flag names to values")
    return data


def listing(section: str) -> str:
    """What ``--list-presets`` prints: one line a preset."""
    found = available(section)
    if not found:
        return f"no presets for {section.replace('.', ' ')}\n"
    width = max(map(len, found))
    return "".join(f"{name:<{width}}  {text}\n" for name, text in found.items())
