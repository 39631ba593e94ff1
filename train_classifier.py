#!/usr/bin/env python
"""Train and evaluate text classifiers: multi-label (PII categories), binary and multi-class (toxicity),
regression (upvotes). Fine-tunes any Hugging Face encoder (the embedded all-MiniLM-L6-v2 by default) or fits
TF-IDF baselines, on one file split 80/10/10 or on separate train/val/test files; compares real and synthetic
training data; scores new files with a saved model.

Examples:
  python train_classifier.py --task binary --input data/toxic_sample.csv --text-col text --label-col toxic
  python train_classifier.py --task multilabel --input pii.jsonl --label-col labels --model tfidf-logreg
  python train_classifier.py --recipe upvote --task regression --input data/askmen.jsonl -o output/upvote_askmen
  python train_classifier.py --preset valuescope --input askmen.jsonl -o output/upvote_askmen  # the seed's DialogRPT
  python train_classifier.py --task binary --compare --input real.csv --synthetic synthetic.csv:1.0
  python train_classifier.py --predict new.csv --model-dir output/classifier -o output/new_predictions.jsonl
"""

import sys

from socialsynth.core.cli import run_main
from socialsynth.jobs.train.cli import main

if __name__ == "__main__":
    sys.exit(run_main(main))
