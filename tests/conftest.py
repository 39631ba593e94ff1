"""Shared fixtures: a tiny random Llama with the embedded SmolLM2 tokenizer, fake backends, data paths."""

from __future__ import annotations

import os

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# One intra-op thread: on a 2-core machine shared with other jobs, OpenMP's spinning threads make every small
# tensor op up to 1000x slower when oversubscribed. Subprocesses started by the tests inherit this too.
os.environ.setdefault("OMP_NUM_THREADS", "1")

import logging
import sys
from collections.abc import Sequence
from pathlib import Path

import pytest

REPO = next(p for p in Path(__file__).resolve().parents if (p / "pyproject.toml").exists())
DATA = REPO / "data"
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from socialsynth.llm.base import (  # noqa: E402
    Backend,
    ChoiceScores,
    Completion,
    GenerationParams,
    GenerationStats,
    request_seed,
)


def pytest_configure(config):
    config.addinivalue_line("markers", "slow: uses the real embedded model (SmolLM2-135M); runs by default")


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    """A 2-layer random Llama (bf16 weights) with the embedded model's tokenizer and chat template."""
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    from socialsynth.llm.embedded import embedded_checkpoint

    path = tmp_path_factory.mktemp("tiny_llama")
    tokenizer = AutoTokenizer.from_pretrained(embedded_checkpoint())
    assert tokenizer.chat_template, "the embedded tokenizer should carry a chat template"
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=2048,
        tie_word_embeddings=True,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    torch.manual_seed(0)
    model = LlamaForCausalLM(config).to(torch.bfloat16)
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


@pytest.fixture(scope="session")
def tiny_backend(tiny_model_dir):
    from socialsynth.llm.hf import HFBackend

    return HFBackend(model=str(tiny_model_dir), device="cpu", dtype="fp32")


@pytest.fixture(scope="session")
def sharp_backend(tiny_model_dir):
    """The tiny model with its residual branches and final norm scaled up.

    Freshly initialised weights (std 0.02) leave the residual stream dominated by the input embedding, so with
    tied embeddings the plain tiny model greedily repeats the last prompt token and spreads its next-token
    probability almost uniformly: a padding or position bug would not change its answers. Scaling the
    attention/MLP output projections makes the predictions depend on the whole context, and scaling the final
    norm sharpens them, so comparisons against a reference computation can actually fail.
    """
    import torch

    from socialsynth.llm.hf import HFBackend

    backend = HFBackend(model=str(tiny_model_dir), device="cpu", dtype="fp32")
    with torch.no_grad():
        for layer in backend.model.model.layers:
            layer.self_attn.o_proj.weight.mul_(30.0)
            layer.mlp.down_proj.weight.mul_(30.0)
        backend.model.model.norm.weight.mul_(4.0)
    return backend


@pytest.fixture(scope="session")
def askmen_file() -> Path:
    path = DATA / "askmen.jsonl"
    assert path.exists()
    return path


@pytest.fixture(scope="session")
def askmen_raw_file() -> Path:
    return DATA / "askmen_raw.jsonl"


@pytest.fixture
def isolated_cache(tmp_path, monkeypatch) -> Path:
    """Point SOCIALSYNTH_CACHE_DIR at an empty folder (only for tests about conversion/caching)."""
    cache = tmp_path / "cache"
    monkeypatch.setenv("SOCIALSYNTH_CACHE_DIR", str(cache))
    return cache


class FakeBackend(Backend):
    """A Backend that answers from canned texts, for testing the logic above the model.

    `reply(chat, key)` returns the text for one request; `choice_probs(chat)` the 5 level probabilities;
    `loglik(chat, text)` the log-likelihood of a continuation.
    Every call is recorded.
    """

    def __init__(
        self, reply=None, choice_probs=None, finish_reason: str = "stop", perplexity: float = 20.0, loglik=None
    ):
        self.name = "fake-model"
        self.stats = GenerationStats()
        self.reply = reply or (lambda chat, key: f"rewritten {key}")
        self.choice_probs = choice_probs or (lambda chat: [0.1, 0.2, 0.4, 0.2, 0.1])
        self.finish_reason = finish_reason
        self.ppl = perplexity
        self.generate_calls: list[tuple[list, GenerationParams, list[str]]] = []
        self.score_calls: list[tuple[list, list[str]]] = []
        self.perplexity_calls: list[list[str]] = []
        self.loglik = loglik or (lambda chat, text: 0.0)
        self.continuation_calls: list[tuple[list, list[str]]] = []

    def generate(self, chats, params, keys=None, progress=None) -> list[Completion]:
        keys = list(keys) if keys is not None else [str(i) for i in range(len(chats))]
        self.generate_calls.append((list(chats), params, keys))
        out = []
        for chat, key in zip(chats, keys, strict=True):
            text = self.reply(chat, key)
            out.append(Completion(text, 10, len(text.split()), self.finish_reason, seed=request_seed(params.seed, key)))
        return out

    def score_choices(self, chats, choices: Sequence[str]) -> list[ChoiceScores]:
        self.score_calls.append((list(chats), list(choices)))
        return [ChoiceScores(list(self.choice_probs(c)), 0.9) for c in chats]

    def score_continuations(self, chats, continuations) -> list[float]:
        self.continuation_calls.append((list(chats), list(continuations)))
        return [self.loglik(c, t) for c, t in zip(chats, continuations, strict=True)]

    def perplexity(self, texts) -> list[float]:
        self.perplexity_calls.append(list(texts))
        return [self.ppl for _ in texts]


@pytest.fixture
def fake_backend_cls():
    return FakeBackend


# ------------------------------------------------------------------------------------ text classifiers
# (tests/test_classify_train.py, tests/test_train_cli.py, tests/test_classify_labels.py)


@pytest.fixture(scope="session")
def tiny_encoder_dir(tmp_path_factory) -> Path:
    """A 2-layer random BERT (hidden size 32) with the embedded all-MiniLM-L6-v2 tokenizer, for `--model`.

    Nothing is downloaded: the tokenizer comes from the offline embedded MiniLM package. With lr ~3e-3 it learns
    the keyword-separable data of :class:`SeparableTexts` in a few seconds on one CPU thread.
    """
    import torch
    from transformers import AutoTokenizer, BertConfig, BertModel

    from socialsynth.text.embeddings import embedded_model_path

    path = tmp_path_factory.mktemp("tiny_bert")
    tokenizer = AutoTokenizer.from_pretrained(embedded_model_path())
    config = BertConfig(
        vocab_size=tokenizer.vocab_size,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=128,
    )
    torch.manual_seed(0)
    BertModel(config).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


class SeparableTexts:
    """Labelled texts a classifier can learn from keywords, with shared filler words in every row.

    binary: 1-3 words of a toxic or a clean vocabulary (40% toxic); multiclass: 3 topics in turn; multilabel:
    each of Age/Gender/Location present with p=0.4 (0-3 labels a row), triggered by its keywords; regression:
    k in 0..4 times "banana", target 1.5*k + N(0, 0.3). Rows are dicts with id, text and label ("labels" is
    the label list for multilabel).
    """

    FILLER = "the a of and to in is it that this was for on with as at by we you they".split()
    TOXIC = "idiot stupid hate trash moron loser dumb awful".split()
    CLEAN = "thanks lovely great helpful kind friendly wonderful nice".split()
    TOPICS = {
        "sports": "goal match team score player coach league ball".split(),
        "cooking": "recipe oven bake flour sugar pan spice dinner".split(),
        "tech": "computer software code laptop server chip python app".split(),
    }
    MULTILABEL = {
        "Age": "old young years birthday teen elderly".split(),
        "Gender": "woman man female male girl boy".split(),
        "Location": "city london paris street country town".split(),
    }

    @classmethod
    def _sentence(cls, rng, words: list[str]) -> str:
        words = words + [rng.choice(cls.FILLER) for _ in range(rng.randint(3, 6))]
        rng.shuffle(words)
        return " ".join(words)

    @classmethod
    def binary(cls, n: int = 300, seed: int = 0, names=("clean", "toxic"), prefix: str = "b") -> list[dict]:
        import random

        rng = random.Random(seed)
        rows = []
        for i in range(n):
            toxic = rng.random() < 0.4
            vocab = cls.TOXIC if toxic else cls.CLEAN
            text = cls._sentence(rng, [rng.choice(vocab) for _ in range(rng.randint(1, 3))])
            rows.append({"id": f"{prefix}{i}", "text": text, "label": names[1] if toxic else names[0]})
        return rows

    @classmethod
    def multiclass(cls, n: int = 300, seed: int = 0, prefix: str = "m") -> list[dict]:
        import random

        rng = random.Random(seed)
        topics = list(cls.TOPICS)
        rows = []
        for i in range(n):
            topic = topics[i % len(topics)]
            text = cls._sentence(rng, [rng.choice(cls.TOPICS[topic]) for _ in range(rng.randint(1, 3))])
            rows.append({"id": f"{prefix}{i}", "text": text, "label": topic})
        return rows

    @classmethod
    def multilabel(cls, n: int = 300, seed: int = 0, prefix: str = "l") -> list[dict]:
        import random

        rng = random.Random(seed)
        rows = []
        for i in range(n):
            labels = [name for name in cls.MULTILABEL if rng.random() < 0.4]
            words = [rng.choice(cls.MULTILABEL[name]) for name in labels for _ in range(rng.randint(2, 3))]
            rows.append({"id": f"{prefix}{i}", "text": cls._sentence(rng, words), "labels": labels})
        return rows

    @classmethod
    def regression(cls, n: int = 300, seed: int = 0, prefix: str = "r") -> list[dict]:
        import random

        rng = random.Random(seed)
        rows = []
        for i in range(n):
            k = rng.randint(0, 4)
            target = round(1.5 * k + rng.gauss(0.0, 0.3), 4)
            rows.append({"id": f"{prefix}{i}", "text": cls._sentence(rng, ["banana"] * k), "label": target})
        return rows

    @staticmethod
    def write(path: Path, rows: list[dict], columns: Sequence[str] | None = None) -> Path:
        """Rows as JSONL (.jsonl), or CSV/TSV (.csv/.tsv; lists are written as JSON, None as an empty cell)."""
        import csv
        import json

        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.suffix == ".jsonl":
            with open(path, "w", encoding="utf-8") as handle:
                for row in rows:
                    handle.write(json.dumps(row, ensure_ascii=False) + "\n")
            return path
        columns = list(columns or rows[0])
        with open(path, "w", encoding="utf-8", newline="") as handle:
            writer = csv.writer(handle, delimiter="\t" if path.suffix == ".tsv" else ",")
            writer.writerow(columns)
            for row in rows:
                cells = []
                for c in columns:
                    value = row.get(c)
                    cells.append("" if value is None else json.dumps(value) if isinstance(value, list) else value)
                writer.writerow(cells)
        return path


@pytest.fixture(scope="session")
def separable() -> type[SeparableTexts]:
    return SeparableTexts


@pytest.fixture(scope="session")
def train_cli():
    """Run `python train_classifier.py ARGS` in the repository (offline); returns the CompletedProcess."""
    import subprocess

    def run(*args, timeout: float = 120, check_rc: int | None = None) -> subprocess.CompletedProcess:
        from tests.helpers import run_script

        proc = run_script("train_classifier.py", *args, timeout=timeout)
        if check_rc is not None:
            assert proc.returncode == check_rc, (
                f"exit {proc.returncode}\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
            )
        return proc

    return run


# ------------------------------------------------------------------------------------------------ job command lines


@pytest.fixture
def run_cli(capsys):
    """Run a job's ``main(argv)`` as its script does (through run_main): returns (exit code, stdout, stderr)."""
    from socialsynth.core.cli import run_main

    def run(main, argv):
        try:
            code = run_main(lambda: main([str(a) for a in argv]))
        except SystemExit as e:  # argparse's own errors and --print-config exit from inside the parser
            code = e.code
        captured = capsys.readouterr()
        return code, captured.out, captured.err

    return run


@pytest.fixture
def bad_flag(run_cli):
    """``bad_flag(main, argv, flag)``: the command must stop with exit 2 and one stderr line naming ``flag``, no
    traceback; returns that line."""

    def check(main, argv, flag):
        code, _, err = run_cli(main, argv)
        lines = err.strip().splitlines()
        assert code == 2, err
        assert len(lines) == 1 and flag in lines[0] and "Traceback" not in err, err
        return lines[0]

    return check


@pytest.fixture(autouse=True)
def live_hf_log_stream():
    """transformers binds its log handler to sys.stderr as it was when it was first imported; inside an earlier
    test's capture that stream is closed by now, and each warning would print a logging traceback into stderr."""

    def rebind(stream) -> None:
        for handler in logging.getLogger("transformers").handlers:
            if type(handler) is logging.StreamHandler:  # transformers' own, not pytest's capturing handlers
                handler.stream = stream
                handler.__dict__.pop("flush", None)  # transformers pins flush to the stderr of that moment too

    rebind(sys.stderr)
    yield
    rebind(sys.__stderr__)
