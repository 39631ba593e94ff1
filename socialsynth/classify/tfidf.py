"""Bag-of-words baselines with scikit-learn: `tfidf-logreg` (logistic regression on TF-IDF 1-2-grams; Ridge for
regression), `tfidf-mlp` (a small multi-layer perceptron) and `bow-logreg` (seed 003's: raw unigram counts,
logistic regression with 1000 iterations). Same data, thresholds and report as the fine-tuned models, so a table
can put them side by side."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from socialsynth.classify.labels import LabelSpace
from socialsynth.classify.model import TextClassifier, TrainSettings

log = logging.getLogger(__name__)
WEIGHTS = "model.joblib"


class TfidfClassifier(TextClassifier):
    def __init__(self, labels: LabelSpace, kind: str = "tfidf-logreg"):
        super().__init__(labels)
        self.kind = kind
        self.pipeline = None

    def _estimator(self, settings: TrainSettings, n_rows: int):
        from sklearn.linear_model import LogisticRegression, Ridge
        from sklearn.multiclass import OneVsRestClassifier
        from sklearn.neural_network import MLPClassifier, MLPRegressor

        task = self.task
        balanced = "balanced" if settings.class_weight != "none" else None
        if self.kind == "tfidf-mlp":
            # scikit-learn's early stopping holds out 10%: on a few hundred rows that is too few to judge by and it
            # stops before learning, so it is used only for larger sets
            common = dict(
                hidden_layer_sizes=tuple(settings.mlp_hidden),
                early_stopping=n_rows >= 2000,
                n_iter_no_change=5,
                max_iter=max(int(settings.epochs * 10), 30),
                random_state=settings.seed,
            )
            return MLPRegressor(**common) if task == "regression" else MLPClassifier(**common)
        if task == "regression":
            return Ridge(alpha=1.0 / settings.logreg_c)
        logreg = LogisticRegression(
            C=settings.logreg_c,
            class_weight=balanced,
            max_iter=1000 if self.kind == "bow-logreg" else 2000,  # bow-logreg: the seed's LogisticRegression
            random_state=settings.seed,
        )
        return OneVsRestClassifier(logreg) if task == "multilabel" else logreg

    def fit(self, train_texts, y_train, val_texts, y_val, settings: TrainSettings, work_dir=None, stop=None) -> dict:
        from sklearn.feature_extraction.text import TfidfVectorizer
        from sklearn.pipeline import make_pipeline

        if self.kind == "bow-logreg":
            from sklearn.feature_extraction.text import CountVectorizer

            vectorizer = CountVectorizer()  # seed 003: every unigram, raw counts
        else:
            features = settings.tfidf_features if self.kind == "tfidf-logreg" else min(settings.tfidf_features, 5000)
            vectorizer = TfidfVectorizer(
                ngram_range=(1, settings.tfidf_ngrams),
                min_df=2 if len(train_texts) >= 200 else 1,
                max_features=features,
                sublinear_tf=True,
                strip_accents="unicode",
            )
        self.pipeline = make_pipeline(vectorizer, self._estimator(settings, len(train_texts)))
        y = np.asarray(y_train)
        fit_kwargs = {}
        weights = self.labels.class_weights(settings.class_weight)
        if self.kind == "tfidf-mlp" and weights is not None and self.task in ("binary", "multiclass"):
            # the MLP has no class_weight: weigh rows instead (positives by pos_weight, classes by their weight)
            row_w = np.where(y == 1, weights[0], 1.0) if self.task == "binary" else weights[y.astype(int)]
            fit_kwargs[f"{self.pipeline.steps[-1][0]}__sample_weight"] = row_w
        self.pipeline.fit(list(train_texts), y, **fit_kwargs)
        log.info("%s: %d features", self.kind, len(vectorizer.vocabulary_))
        return {"features": len(vectorizer.vocabulary_)}

    def predict_scores(self, texts: Sequence[str], batch_size: int = 64) -> np.ndarray:
        texts = list(texts)
        if not texts:
            width = () if self.task in ("binary", "regression") else (self.labels.size,)
            return np.zeros((0, *width))
        if self.task == "regression":
            return np.asarray(self.pipeline.predict(texts), dtype=np.float64)
        proba = np.asarray(self.pipeline.predict_proba(texts), dtype=np.float64)
        if self.task == "binary":
            return proba[:, list(self.pipeline.classes_).index(1)]
        if self.task == "multiclass":
            # classes absent from training get probability 0
            full = np.zeros((len(texts), self.labels.size))
            full[:, [int(c) for c in self.pipeline.classes_]] = proba
            return full
        return proba

    def save_weights(self, directory: Path) -> None:
        import joblib

        joblib.dump(self.pipeline, Path(directory) / WEIGHTS)

    @classmethod
    def load(cls, directory: Path, labels: LabelSpace, kind: str) -> TfidfClassifier:
        import joblib

        model = cls(labels, kind)
        model.pipeline = joblib.load(Path(directory) / WEIGHTS)  # a file this tool wrote; joblib is pickle-based
        return model
