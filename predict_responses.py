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

import sys

from socialsynth.core.cli import run_main
from socialsynth.jobs.response.cli import STAGES, main  # noqa: F401  (tests and callers use main)

if __name__ == "__main__":
    sys.exit(run_main(main))
