"""Which classifier class serves which kind: `make_classifier(name)` for a new model (`--model`), and
`load_classifier(folder)` for a saved one, which gives back an object with `predict_scores` whichever kind it
is, so `--predict` and `generate_synthetic_data.py -u` never care how it was trained.

The kinds' modules (tfidf.py, transformer.py) are imported only when a model of that kind is made or loaded.
"""

from __future__ import annotations

import pickle
from pathlib import Path

from socialsynth.classify.labels import LabelSpace
from socialsynth.classify.model import BASELINES, CARD, NN_KINDS, TextClassifier, TrainSettings, read_card
from socialsynth.core.errors import InputError

__all__ = ["load_classifier", "make_classifier"]


def load_classifier(directory: str | Path, device: str = "auto") -> TextClassifier:
    """Load any saved classifier folder (transformer or TF-IDF baseline)."""
    card = read_card(directory)
    kind = card.get("kind")
    try:
        labels = LabelSpace.from_dict(card["labels"])
    except (KeyError, TypeError, ValueError) as exc:
        raise InputError(f"unreadable labels in the model card ({exc})", path=Path(directory) / CARD) from None
    try:
        if kind in BASELINES:
            from socialsynth.classify.tfidf import TfidfClassifier

            model = TfidfClassifier.load(Path(directory), labels, kind)
        elif kind in NN_KINDS:
            from socialsynth.classify.nn import TfidfNNClassifier

            model = TfidfNNClassifier.load(Path(directory), labels, card)
        elif kind == "transformer":
            from socialsynth.classify.transformer import TransformerClassifier

            model = TransformerClassifier.load(Path(directory), labels, card, device=device)
        else:
            raise InputError(f"unknown classifier kind {kind!r}", path=Path(directory) / CARD)
    except (OSError, EOFError, ValueError, pickle.UnpicklingError, AttributeError, ImportError, KeyError) as exc:
        # weights deleted, truncated or not this tool's: one line naming the folder, not a traceback
        reason = f"{type(exc).__name__}: {exc}".splitlines()[0][:300]
        raise InputError(f"cannot load the saved {kind} model ({reason}); retrain it", path=directory) from None
    model.thresholds = list(card.get("thresholds") or [])
    model.card = card
    return model


def make_classifier(name: str, labels: LabelSpace, settings: TrainSettings) -> TextClassifier:
    """`--model`: a baseline name (tfidf-logreg, tfidf-mlp, bow-logreg, tfidf-nn), 'embedded' (MiniLM), any Hugging
    Face encoder id/path, or t5-encoder[:NAME] (a T5 encoder with a linear head)."""
    if name in BASELINES:
        from socialsynth.classify.tfidf import TfidfClassifier

        return TfidfClassifier(labels, name)
    if name in NN_KINDS:
        from socialsynth.classify.nn import TfidfNNClassifier

        return TfidfNNClassifier(labels, name)
    from socialsynth.classify.transformer import TransformerClassifier

    return TransformerClassifier(labels, name, settings.max_length, device=settings.device,
                                 binary_columns=settings.binary_columns)
