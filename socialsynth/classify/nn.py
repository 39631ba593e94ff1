"""`tfidf-nn`: seed 003's NN baseline. TF-IDF features (5000 at most), one hidden layer of 128 with ReLU, a
linear output, trained with Adam (`--nn-lr`, 1e-3) for `--epochs` in batches of `--batch-size`. For binary and
multi-class labels, batches are drawn by a class-weighted sampler (each row weighted 1 / its class's count, drawn
with replacement), so a rare class is seen as often as a common one: that sampler is what the seed relied on
instead of loss weights. The weights after the last epoch are kept, as in the seed.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from socialsynth.classify.labels import LabelSpace
from socialsynth.classify.model import TextClassifier, TrainSettings, scores_from_logits

log = logging.getLogger(__name__)
VECTORIZER = "vectorizer.joblib"
WEIGHTS = "nn.pt"
HIDDEN = 128  # the seed's hidden width
MAX_FEATURES = 5000  # the seed's TfidfVectorizer(max_features=5000)


def _network(n_in: int, n_out: int):
    from torch import nn

    return nn.Sequential(nn.Linear(n_in, HIDDEN), nn.ReLU(), nn.Linear(HIDDEN, n_out))


def _row_weights(task: str, y: np.ndarray) -> np.ndarray | None:
    """1 / (rows of the row's class) for binary and multi-class labels; None (plain shuffling) otherwise."""
    if task not in ("binary", "multiclass"):
        return None
    classes, counts = np.unique(y.astype(int), return_counts=True)
    per_class = dict(zip(classes.tolist(), (1.0 / counts).tolist(), strict=True))
    return np.asarray([per_class[int(c)] for c in y], dtype=np.float64)


def _loss(task: str, logits, target):
    import torch.nn.functional as F

    if task == "binary":
        return F.binary_cross_entropy_with_logits(logits.view(-1), target.float())
    if task == "multilabel":
        return F.binary_cross_entropy_with_logits(logits, target.float())
    if task == "multiclass":
        return F.cross_entropy(logits, target.long())
    return F.mse_loss(logits.view(-1), target.float())


class TfidfNNClassifier(TextClassifier):
    kind = "tfidf-nn"

    def __init__(self, labels: LabelSpace, kind: str = "tfidf-nn"):
        super().__init__(labels)
        self.vectorizer = None
        self.network = None
        self.n_features = 0

    def _features(self, texts: Sequence[str]):
        import torch

        return torch.tensor(self.vectorizer.transform(list(texts)).toarray(), dtype=torch.float32)

    def fit(self, train_texts, y_train, val_texts, y_val, settings: TrainSettings, work_dir=None, stop=None) -> dict:
        import torch
        from sklearn.feature_extraction.text import TfidfVectorizer
        from torch.utils.data import DataLoader, TensorDataset, WeightedRandomSampler

        torch.manual_seed(settings.seed)
        self.vectorizer = TfidfVectorizer(max_features=min(settings.tfidf_features, MAX_FEATURES))
        self.vectorizer.fit(list(train_texts))
        self.n_features = len(self.vectorizer.vocabulary_)
        y = np.asarray(y_train)
        self.network = _network(self.n_features, self.labels.num_outputs)
        data = TensorDataset(self._features(train_texts), torch.tensor(y))
        weights = _row_weights(self.task, y)
        generator = torch.Generator().manual_seed(settings.seed)
        if weights is None:
            loader = DataLoader(data, batch_size=settings.batch_size, shuffle=True, generator=generator)
        else:
            sampler = WeightedRandomSampler(torch.tensor(weights), len(weights), generator=generator)
            loader = DataLoader(data, batch_size=settings.batch_size, sampler=sampler)
        optimiser = torch.optim.Adam(self.network.parameters(), lr=settings.nn_lr)
        epochs = max(1, round(settings.epochs))
        losses = []
        for _ in range(epochs):
            self.network.train()
            total = 0.0
            for features, target in loader:
                optimiser.zero_grad()
                loss = _loss(self.task, self.network(features), target)
                loss.backward()
                optimiser.step()
                total += loss.item() * len(target)
            losses.append(round(total / len(data), 6))
            if stop is not None and stop.requested:
                break
        log.info("tfidf-nn: %d features, %d epochs, training loss %s", self.n_features, len(losses), losses)
        return {"features": self.n_features, "epochs": len(losses), "train_loss": losses}

    def predict_scores(self, texts: Sequence[str], batch_size: int = 64) -> np.ndarray:
        import torch

        texts = list(texts)
        if not texts:
            width = () if self.task in ("binary", "regression") else (self.labels.size,)
            return np.zeros((0, *width))
        self.network.eval()
        chunks = []
        with torch.inference_mode():
            for start in range(0, len(texts), max(batch_size, 256)):
                chunks.append(self.network(self._features(texts[start : start + max(batch_size, 256)])).numpy())
        return scores_from_logits(self.task, np.concatenate(chunks))

    def card_fields(self) -> dict:
        return {"n_features": self.n_features, "hidden": HIDDEN}

    def save_weights(self, directory: Path) -> None:
        import joblib
        import torch

        joblib.dump(self.vectorizer, Path(directory) / VECTORIZER)
        torch.save(self.network.state_dict(), Path(directory) / WEIGHTS)

    @classmethod
    def load(cls, directory: Path, labels: LabelSpace, card: dict) -> TfidfNNClassifier:
        import joblib
        import torch

        model = cls(labels)
        model.vectorizer = joblib.load(Path(directory) / VECTORIZER)  # a file this tool wrote; joblib is pickle-based
        model.n_features = int(card.get("n_features") or len(model.vectorizer.vocabulary_))
        model.network = _network(model.n_features, labels.num_outputs)
        model.network.load_state_dict(torch.load(Path(directory) / WEIGHTS, weights_only=True))
        return model
