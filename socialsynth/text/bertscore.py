"""BERTScore (Zhang et al., ICLR 2020) computed here with transformers: content preservation as ValueScope's
filter measured it (``bert_score`` with ``microsoft/deberta-xlarge-mnli``, F1 >= 0.5, no idf, no baseline
rescaling).

For a candidate and a reference: the token embeddings of one hidden layer, each L2-normalised; precision is the
mean over candidate tokens of the best cosine with a reference token, recall the mean over reference tokens of the
best cosine with a candidate token, F1 their harmonic mean. [CLS] and [SEP] weigh nothing in the means but can be a
token's best match, as in ``bert_score`` (0.3.13, checked equal to 1e-6 on a tiny BERT). An empty text scores 0.
The package itself is not needed: it is not maintained for transformers 5 (its ``score`` fails on a tokenizer
without a length limit), so the same computation is written here.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import numpy as np

DEFAULT_MODEL = "microsoft/deberta-xlarge-mnli"
# The layer BERTScore uses for the models ValueScope and common setups name (its published defaults).
KNOWN_LAYERS = {
    "microsoft/deberta-xlarge-mnli": 40,
    "microsoft/deberta-large-mnli": 18,
    "microsoft/deberta-base-mnli": 9,
    "roberta-large": 17,
    "roberta-base": 10,
    "bert-base-uncased": 9,
    "bert-base-multilingual-cased": 9,
    "distilbert-base-uncased": 5,
}
MAX_TOKENS = 512  # a tokenizer without a limit reports ~1e30


class BertScorer:
    """BERTScore F1 (and P, R) of text pairs with any Hugging Face encoder (id or path).

    Args:
        name: the encoder; its tokenizer comes from the same place.
        layer: hidden layer to match (0 = embeddings); default: :data:`KNOWN_LAYERS`, else the last layer.
        device: "auto", "cpu", "cuda", ...
        batch_size: texts per forward pass.
    """

    metric = "bertscore"

    def __init__(self, name: str = DEFAULT_MODEL, layer: int | None = None, device: str = "auto",
                 batch_size: int = 32):
        from transformers import AutoModel, AutoTokenizer

        from socialsynth.core.errors import InputError
        from socialsynth.llm.loading import check_model_available, resolve_device

        check_model_available(name, flag="--content-model")
        self.device = resolve_device(device)
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(name)
            self.model = AutoModel.from_pretrained(name).to(self.device).eval()
        except (OSError, ValueError) as e:
            first = (str(e).strip().splitlines() or [type(e).__name__])[0]
            raise InputError(f"cannot load model {name}: {first}", field="--content-model") from None
        n_layers = int(getattr(self.model.config, "num_hidden_layers", 0) or 0)
        self.layer = KNOWN_LAYERS.get(name, n_layers) if layer is None else int(layer)
        if not 0 <= self.layer <= n_layers:
            raise InputError(f"{name} has layers 0-{n_layers}, not {self.layer}", field="--content-layer")
        self.name = name
        self.batch_size = batch_size
        positions = int(getattr(self.model.config, "max_position_embeddings", MAX_TOKENS) or MAX_TOKENS)
        tokens = int(getattr(self.tokenizer, "model_max_length", MAX_TOKENS) or MAX_TOKENS)
        self.max_length = min(tokens, positions, MAX_TOKENS)  # longer texts are cut, as BERTScore cuts them
        self.seconds = 0.0

    def _embed(self, texts: Sequence[str]) -> list[tuple[np.ndarray, np.ndarray]]:
        """Per text: the normalised token vectors at the chosen layer (padding left out) and which of them are
        ordinary tokens (not [CLS]/[SEP]: those weigh nothing, but may still be a token's best match, as in
        BERTScore)."""
        import torch

        out: list[tuple[np.ndarray, np.ndarray]] = []
        for start in range(0, len(texts), self.batch_size):
            batch = list(texts[start : start + self.batch_size])
            enc = self.tokenizer(batch, padding=True, truncation=True, max_length=self.max_length,
                                 return_special_tokens_mask=True, return_tensors="pt")
            special = enc.pop("special_tokens_mask").bool()
            enc = {k: v.to(self.device) for k, v in enc.items()}
            with torch.no_grad():
                hidden = self.model(**enc, output_hidden_states=True).hidden_states[self.layer].float()
            hidden = torch.nn.functional.normalize(hidden, dim=-1).cpu()
            present = enc["attention_mask"].cpu().bool()
            out.extend((hidden[r][present[r]].numpy(), (~special[r][present[r]]).numpy()) for r in range(len(batch)))
        return out

    def score(self, candidates: Sequence[str], references: Sequence[str]) -> tuple[np.ndarray, ...]:
        """(P, R, F1), one value per (candidate, reference) pair."""
        if len(candidates) != len(references):
            raise ValueError("candidates and references differ in length")
        t0 = time.perf_counter()
        n = len(candidates)
        p, r, f = np.zeros(n), np.zeros(n), np.zeros(n)
        todo = [i for i in range(n) if candidates[i].strip() and references[i].strip()]  # empty: 0
        cands = self._embed([candidates[i] for i in todo])
        refs = self._embed([references[i] for i in todo])
        for i, (c, c_words), (ref, r_words) in zip(todo, cands, refs, strict=True):
            if not c_words.any() or not r_words.any():
                continue
            sim = c @ ref.T
            p[i], r[i] = sim.max(axis=1)[c_words].mean(), sim.max(axis=0)[r_words].mean()
            f[i] = 2 * p[i] * r[i] / (p[i] + r[i]) if p[i] + r[i] > 0 else 0.0
        self.seconds += time.perf_counter() - t0
        return p, r, f

    def pair_similarity(self, originals: Sequence[str], rewrites: Sequence[str]) -> np.ndarray:
        """BERTScore F1 of each rewrite (candidate) against its original (reference), as ValueScope scored them."""
        return self.score(list(rewrites), list(originals))[2]
