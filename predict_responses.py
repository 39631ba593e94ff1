#!/usr/bin/env python
"""Persona-conditioned public-response prediction (SocialAlign): given a news item and a user (profile, history,
persona), predict the user's public response; PAC-LoRA (persona-conditioned mixture of LoRA experts) against
plain LoRA, zero-shot and the seed's ablations. Each subcommand is resumable and usable alone:

    python predict_responses.py build-dataset    --input data/responses_sample -o output/responses
    python predict_responses.py extract-personas -o output/responses
    python predict_responses.py train            -o output/responses --method pac-lora
    python predict_responses.py infer            -o output/responses --adapter output/responses/adapters/pac-lora
    python predict_responses.py evaluate         -o output/responses

`make demo-responses` runs all five on the bundled sample with the embedded model.
"""

from __future__ import annotations

import importlib
import sys

from socialsynth.core.cli import make_parser, run_main, setup_logging

# subcommand -> module in socialsynth.jobs.response with add_arguments(parser) and run(args) -> int
STAGES = {
    "build-dataset": "dataset",
    "extract-personas": "persona",
    "train": "training",
    "infer": "inference",
    "evaluate": "evaluate",
}


def build_parser():
    p = make_parser(__doc__)
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, module in STAGES.items():
        stage = importlib.import_module(f"socialsynth.jobs.response.{module}")
        sp = sub.add_parser(name, help=stage.__doc__.strip().splitlines()[0], description=stage.__doc__)
        sp.formatter_class = p.formatter_class
        sp.add_argument("-v", "--verbose", action="store_true")
        stage.add_arguments(sp)
        sp.set_defaults(stage=stage)
    return p


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    setup_logging(args.verbose)
    return args.stage.run(args)


if __name__ == "__main__":
    sys.exit(run_main(main))
