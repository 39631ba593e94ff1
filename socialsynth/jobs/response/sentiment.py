"""Sentiment labels (positive / neutral / negative) for predicted and real responses, for `evaluate`.

The seed (SocialAlign) compares the sentiment of predicted and real posts but its label set is not public; we
use the three-way set :data:`LABELS`. Two sources, chosen with ``--sentiment``:

- ``lexicon`` (default, English only): VADER from the ``vaderSentiment`` package, which ships its lexicon and
  works offline. A text is positive when VADER's compound score is >= 0.05, negative when <= -0.05, neutral
  otherwise: the thresholds VADER's authors document. VADER knows no Chinese (every Chinese text would come out
  neutral), so Chinese input stops with an error asking for a classifier instead.
- a folder saved by ``train_classifier.py`` (binary or multiclass, any kind): its predicted class names are
  mapped onto :data:`LABELS`, by name when they already are label names (``positive``/``pos``, ``neutral``/``neu``,
  ``negative``/``neg``, any case), otherwise with ``--sentiment-map pos=positive,neg=negative,...``. A binary model
  uses its saved decision threshold. Every class must map to a label, so nothing is silently dropped.
"""

from __future__ import annotations

import importlib.metadata
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path

from socialsynth.core.errors import InputError

log = logging.getLogger(__name__)

LABELS = ("negative", "neutral", "positive")
VADER_POSITIVE = 0.05  # compound >= 0.05: positive (VADER README)
VADER_NEGATIVE = -0.05  # compound <= -0.05: negative
_ALIASES = {
    "positive": "positive",
    "pos": "positive",
    "neutral": "neutral",
    "neu": "neutral",
    "negative": "negative",
    "neg": "negative",
}


def parse_sentiment_map(spec: str | None) -> dict[str, str]:
    """``"pos=positive,neg=negative"`` -> ``{"pos": "positive", "neg": "negative"}``; values must be in LABELS."""
    if not spec:
        return {}
    mapping: dict[str, str] = {}
    for part in spec.split(","):
        if not part.strip():
            continue
        name, sep, label = part.partition("=")
        name, label = name.strip(), label.strip().lower()
        if not sep or not name:
            raise InputError(f"expected CLASS=LABEL, got {part.strip()!r}", field="--sentiment-map")
        if label not in LABELS:
            raise InputError(f"{part.strip()!r}: the label must be one of {', '.join(LABELS)}", field="--sentiment-map")
        mapping[name] = label
    return mapping


class LexiconSentiment:
    """VADER compound score -> positive / neutral / negative (English only)."""

    def __init__(self):
        try:
            from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer
        except ImportError as exc:
            raise InputError(
                "--sentiment lexicon needs the vaderSentiment package (pip install vaderSentiment), "
                "or pass --sentiment DIR with a classifier saved by train_classifier.py",
                field="--sentiment",
            ) from exc
        self.analyzer = SentimentIntensityAnalyzer()

    def compound(self, text: str) -> float:
        return float(self.analyzer.polarity_scores(text)["compound"])

    @staticmethod
    def label_of(compound: float) -> str:
        if compound >= VADER_POSITIVE:
            return "positive"
        if compound <= VADER_NEGATIVE:
            return "negative"
        return "neutral"

    def check_languages(self, languages: Sequence[str]) -> None:
        """Stop (before any model is loaded) when some texts are Chinese: VADER would call them all neutral."""
        chinese = sum(1 for lang in languages if lang == "zh")
        if chinese:
            raise InputError(
                f"{chinese} of {len(languages)} responses are Chinese, and the default lexicon (VADER) is "
                "English-only: pass --sentiment DIR with a sentiment classifier saved by train_classifier.py",
                field="--sentiment",
            )

    def predict(self, texts: Sequence[str], languages: Sequence[str] | None = None) -> list[str]:
        if languages is not None:
            self.check_languages(languages)
        return [self.label_of(self.compound(t)) for t in texts]

    def describe(self) -> dict:
        try:
            version = importlib.metadata.version("vaderSentiment")
        except importlib.metadata.PackageNotFoundError:
            version = None
        return {
            "kind": "lexicon",
            "name": "VADER",
            "package": "vaderSentiment",
            "version": version,
            "rule": f"compound >= {VADER_POSITIVE}: positive; <= {VADER_NEGATIVE}: negative; else neutral",
        }


class ClassifierSentiment:
    """A train_classifier.py model whose class names are mapped onto LABELS."""

    def __init__(
        self, folder: str | Path, mapping: Mapping[str, str] | None = None, device: str = "auto", batch_size: int = 64
    ):
        from socialsynth.classify.registry import load_classifier

        self.folder = Path(folder)
        self.model = load_classifier(self.folder, device=device)
        self.batch_size = batch_size
        task, names = self.model.task, list(self.model.labels.names)
        if task not in ("binary", "multiclass"):
            raise InputError(
                f"a sentiment classifier must be binary or multiclass; this one is {task}", path=self.folder
            )
        mapping = dict(mapping or {})
        unknown = [n for n in mapping if n not in names]
        if unknown:
            raise InputError(
                f"--sentiment-map names {', '.join(map(repr, unknown))}, which the classifier does not have "
                f"(its classes: {', '.join(names)})",
                field="--sentiment-map",
            )
        self.label_of_class: list[str] = []
        unmapped = []
        for name in names:
            label = mapping.get(name) or _ALIASES.get(name.strip().lower())
            if label is None:
                unmapped.append(name)
            self.label_of_class.append(label)
        if unmapped:
            raise InputError(
                f"classifier classes {', '.join(map(repr, unmapped))} are not sentiment labels; map every class "
                f"with --sentiment-map CLASS=LABEL,... (labels: {', '.join(LABELS)}; classes: {', '.join(names)})",
                path=self.folder,
            )

    def check_languages(self, languages: Sequence[str]) -> None:
        """Any language: the classifier is the user's choice for the data at hand."""

    def predict(self, texts: Sequence[str], languages: Sequence[str] | None = None) -> list[str]:
        texts = list(texts)
        if not texts:
            return []
        decided = self.model.decide(self.model.predict_scores(texts, batch_size=self.batch_size))
        return [self.label_of_class[int(k)] for k in decided]

    def describe(self) -> dict:
        card = self.model.card
        return {
            "kind": "classifier",
            "folder": str(self.folder),
            "classifier_kind": card.get("kind"),
            "base_model": card.get("base_model") or card.get("model"),
            "task": self.model.task,
            "classes": dict(zip(self.model.labels.names, self.label_of_class, strict=False)),
            "thresholds": list(self.model.thresholds),
        }


def make_sentiment(spec: str, map_spec: str | None = None, device: str = "auto", batch_size: int = 64):
    """``--sentiment``: 'lexicon' or a classifier folder; ``--sentiment-map`` applies to classifiers only."""
    if spec == "lexicon":
        if map_spec:
            raise InputError("--sentiment-map applies to a classifier (--sentiment DIR), not to the lexicon")
        return LexiconSentiment()
    folder = Path(spec)
    if not folder.is_dir():
        raise InputError(
            "expected 'lexicon' or a classifier folder saved by train_classifier.py", path=spec, field="--sentiment"
        )
    return ClassifierSentiment(folder, parse_sentiment_map(map_spec), device=device, batch_size=batch_size)
