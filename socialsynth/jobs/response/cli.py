"""predict_responses.py: the first argument picks the stage, the rest is parsed with that stage's config.

    predict_responses.py build-dataset    --input data/responses_sample -o output/responses
    predict_responses.py extract-personas -o output/responses
    predict_responses.py train            -o output/responses --method pac-lora
    predict_responses.py infer            -o output/responses --adapter output/responses/adapters/pac-lora
    predict_responses.py evaluate         -o output/responses

Each stage takes --config STAGE.yaml and --print-config like every socialsynth job, and writes its run record
(`*.meta.json`) beside its output.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from socialsynth.core.cli import setup_logging
from socialsynth.core.config import parse
from socialsynth.core.errors import EXIT_BAD_INPUT
from socialsynth.jobs.response.config import BuildConfig, EvaluateConfig, InferConfig, PersonaConfig, TrainConfig

PROG = "predict_responses.py"


@dataclass(frozen=True)
class Stage:
    config: type
    module: str  # in socialsynth.jobs.response: run_<stage>(cfg) -> summary, format_summary(summary) -> str
    run: str


STAGES = {
    "build-dataset": Stage(BuildConfig, "dataset", "run_build"),
    "extract-personas": Stage(PersonaConfig, "persona", "run_personas"),
    "train": Stage(TrainConfig, "training", "run_train"),
    "infer": Stage(InferConfig, "inference", "run_infer"),
    "evaluate": Stage(EvaluateConfig, "evaluate", "run_evaluate"),
}
ALIASES = {"personas": "extract-personas"}
_TRUE_FALSE = ("true", "false", "yes", "no", "on", "off", "1", "0")


def stage_module(stage: Stage):
    return importlib.import_module(f"socialsynth.jobs.response.{stage.module}")


def usage() -> str:
    lines = [f"usage: {PROG} STAGE [flags] (each stage: {PROG} STAGE --help)", "", "stages:"]
    for name, stage in STAGES.items():
        first = (stage_module(stage).__doc__ or "").strip().splitlines()[0]
        lines.append(f"  {name:<18}{first}")
    return "\n".join(lines) + "\n\n" + (sys.modules[__name__].__doc__ or "")


def _tristate(argv: list[str], name: str) -> list[str]:
    """`--require-topics` alone -> `--require-topics=true`; `--no-require-topics` -> `--require-topics=false`."""
    on = {"--" + name, "--" + name.replace("-", "_")}
    off = {"--no-" + name, "--no_" + name.replace("-", "_")}
    out = []
    for i, token in enumerate(argv):
        following = argv[i + 1].lower() if i + 1 < len(argv) else ""
        if token in on and following not in _TRUE_FALSE:
            out.append(f"--{name}=true")
        elif token in off:
            out.append(f"--{name}=false")
        else:
            out.append(token)
    return out


ARGV_REWRITES: dict[str, Callable[[list[str]], list[str]]] = {
    "build-dataset": lambda argv: _tristate(argv, "require-topics"),
    "train": lambda argv: _tristate(argv, "gradient-checkpointing"),
}


def parse_stage(argv: Sequence[str]) -> tuple[str, object]:
    """(stage name, validated config) from a command line whose first word is the stage."""
    name = ALIASES.get(argv[0], argv[0])
    stage = STAGES[name]
    rest = ARGV_REWRITES.get(name, list)(list(argv[1:]))
    cfg = parse(stage.config, rest, prog=f"{PROG} {name}", description=stage_module(stage).__doc__)
    return name, cfg


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv:  # one line, like every other bad command line (the stages are listed by --help)
        print(f"{PROG}: error: no stage given (choose from {', '.join(STAGES)}; see --help)", file=sys.stderr)
        return EXIT_BAD_INPUT
    if argv[0] in ("-h", "--help"):
        sys.stdout.write(usage())
        return 0
    if ALIASES.get(argv[0], argv[0]) not in STAGES:
        print(f"{PROG}: error: unknown stage {argv[0]!r} (choose from {', '.join(STAGES)}; see --help)",
              file=sys.stderr)
        return EXIT_BAD_INPUT
    name, cfg = parse_stage(argv)
    setup_logging(cfg.verbose)
    stage = STAGES[name]
    module = stage_module(stage)
    summary = getattr(module, stage.run)(cfg)
    print(module.format_summary(summary))
    return 0
