"""Command line of the normness job: `generate_synthetic_data.py` and `socialsynth norms` call :func:`main`.

    python generate_synthetic_data.py -r askmen -n formality
    python generate_synthetic_data.py --judge-agreement pairs.csv      # rater vs human pairwise labels
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

from socialsynth.core.cli import setup_logging
from socialsynth.core.config import parse
from socialsynth.jobs.norms.config import NormsConfig

PROG = "generate_synthetic_data.py"
DESCRIPTION = """Normness distillation (ValueScope): rewrite each Reddit comment at five levels of one norm dimension
(formality, politeness, ...) with an LLM, rate the original and every rewrite, and flag bad rewrites.

    python generate_synthetic_data.py -r askmen -n formality
    python generate_synthetic_data.py --judge-agreement pairs.csv      # rater vs human pairwise labels
"""


def main(argv: Sequence[str] | None = None) -> int:
    cfg = parse(NormsConfig, argv, prog=PROG, description=DESCRIPTION)
    setup_logging(cfg.verbose)
    if cfg.judge_agreement is not None:
        return run_judge(cfg)
    from socialsynth.jobs.norms.job import format_summary, run

    summary = run(cfg, command=_command(argv))
    print(format_summary(summary))
    return 0


def _command(argv: Sequence[str] | None) -> str:
    """The command a rerun repeats (in the run record and the resume hint)."""
    if argv is None:
        return "python " + " ".join(sys.argv)
    return f"python {PROG} " + " ".join(argv)


def run_judge(cfg: NormsConfig) -> int:
    """--judge-agreement: rate both comments of each labelled pair per dimension with every judge (one loaded at a
    time), print and write their agreement with people and with each other."""
    from collections import Counter

    from socialsynth.core.io import atomic_write_json
    from socialsynth.jobs.norms.judge import compare_judges, format_multi_report, load_pairs, sample_pairs

    skipped: Counter = Counter()
    rows, dims = load_pairs(cfg.judge_agreement, cfg.judge_topics, skipped)
    max_pairs = cfg.max_pairs
    rows = sample_pairs(rows, max_pairs, cfg.sampling.seed)
    specs = judge_specs(cfg)
    ratings, rows = rate_with_judges(specs, cfg, rows, dims, skipped)
    report = compare_judges(ratings, rows, dims, seed=cfg.sampling.seed)
    primary = ratings[0]
    sampled = f" (at most {max_pairs} per topic, drawn with seed {cfg.sampling.seed})" if max_pairs else ""
    who = (f"model {cfg.model.model}; rating method {cfg.rating_method}" if specs[0].backend == "generator"
           else f"judges: {', '.join(s.name for s in specs)}")
    print(f"{len(rows)} pairs from {cfg.judge_agreement}{sampled}; {who}")
    if skipped:
        print("skipped pairs: " + ", ".join(f"{k}: {v}" for k, v in sorted(skipped.items())))
    print(format_multi_report(report))
    out = Path(cfg.output_dir) / agreement_file_name(cfg, specs)
    atomic_write_json(
        out,
        {
            "input": str(cfg.judge_agreement),
            "topics": cfg.judge_topics,
            "max_pairs_per_topic": max_pairs,
            "seed": cfg.sampling.seed,
            "pairs": len(rows),
            # The primary (first) judge, under the fields a single-judge run always wrote:
            "model": primary.model,
            "rating_method": primary.requested_method,
            "rating_method_used": primary.methods_used,
            "rating_method_notes": primary.method_notes,
            "skipped": dict(skipped),
            "report": {d: {t: a.to_dict() for t, a in by_topic.items()}
                       for d, by_topic in report.people[primary.name].items()},
            **report.to_dict(),
        },
    )
    print(f"written: {out}")
    return 0


def judge_specs(cfg: NormsConfig) -> list:
    """The judges of --judge, in order; without any, the generator (-m) with --rating-method as before."""
    from socialsynth.jobs.norms.judges import JudgeSpec, generator_judge, parse_judges

    given = list(getattr(cfg, "judge", None) or [])
    if not given:
        return [generator_judge(cfg)]
    if all(isinstance(g, JudgeSpec) for g in given):
        return given
    return parse_judges([str(g) for g in given])


def rate_with_judges(specs: list, cfg: NormsConfig, rows: list[dict], dims: list[str], skipped) -> tuple[list, list]:
    """Every judge rates every distinct text of the pairs, one judge loaded at a time. A pair too long for any
    judge's context is dropped for all of them (and counted in ``skipped``), so every figure is on the same pairs.
    Returns the judges' ratings and the pairs kept."""
    from socialsynth.jobs.norms.judge import drop_long_pairs, rate_pair_texts
    from socialsynth.jobs.norms.judges import judge_rater, open_judge

    ratings = []
    for spec in specs:
        with open_judge(spec, cfg) as backend:
            def rater_for(dim, spec=spec, backend=backend):
                return judge_rater(spec, backend, dim, cfg)

            rows = drop_long_pairs(rows, dims, rater_for, backend.context_length(), skipped)
            judged = rate_pair_texts(spec.name, rater_for, rows, dims)
            judged.requested_method, judged.model = spec.method, backend.describe()
            ratings.append(judged)
            del rater_for
    return ratings, rows


def agreement_file_name(cfg: NormsConfig, specs: list) -> str:
    """judge_agreement_<input>_<method>.json for the generator alone (as before --judge existed), else
    judge_agreement_<input>_<judge slugs joined by +>.json (a hash when that grows past 120 characters)."""
    import hashlib

    stem = Path(cfg.judge_agreement).stem
    if len(specs) == 1 and specs[0].backend == "generator":
        return f"judge_agreement_{stem}_{cfg.rating_method}.json"
    joined = "+".join(s.slug for s in specs)
    if len(joined) > 120:
        joined = f"{len(specs)}judges-{hashlib.sha1(joined.encode('utf-8')).hexdigest()[:10]}"
    return f"judge_agreement_{stem}_{joined}.json"
