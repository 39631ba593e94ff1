"""The classifier presets that replay the papers (train_classifier.py --preset valuescope | socsys | capstone):
what --print-config shows, the seed's ValueScope half and dev/test draws, and the model kinds the seeds trained
(DialogRPT's GPT-2 sequence-classification regressor, a T5 encoder with a linear head, a 2-column BCE head, the
TF-IDF NN with a class-weighted sampler, bag-of-words logistic regression), each on a tiny model built here."""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path

import numpy as np
import pytest
import yaml

from socialsynth.classify.presets import seed_dev_test, split_half
from socialsynth.classify.registry import load_classifier
from socialsynth.core.cli import run_main
from socialsynth.jobs.train.cli import main


def run_cli(*argv) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            rc = run_main(lambda: main([str(a) for a in argv]))
        except SystemExit as e:  # --print-config exits directly
            rc = e.code
    return rc, out.getvalue(), err.getvalue()


def printed_config(tmp_path, *argv) -> dict:
    dummy = tmp_path / "rows.jsonl"
    dummy.write_text('{"text": "a", "label": 1}\n')
    rc, out, err = run_cli(*argv, "--input", dummy, "--print-config")
    assert rc == 0, err
    return yaml.safe_load(out)


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]


def upvote_records(n: int) -> list[dict]:
    rng = np.random.default_rng(3)
    rows = []
    for i in range(n):
        good = i % 2 == 0
        rows.append({
            "id": f"c{i}",
            "comment": ("great insight thanks" if good else "meh whatever") + f" {i}",
            "submission_title": "How do I ask her out?",
            "created_submission": 1565411252 + 1000 * i,
            "created_comment": 1565411252 + 1000 * i + int(rng.integers(10, 20000)),
            "label": int(rng.choice([16, 32, 64])) if good else int(rng.choice([-2, 0, 1, 2])),
        })
    return rows


# ------------------------------------------------------------------------------- 1. valuescope (seed 000)


def test_valuescope_print_config_shows_the_seeds_upvote_training(tmp_path):
    cfg = printed_config(tmp_path, "--preset", "valuescope")
    assert cfg["model"] == "microsoft/DialogRPT-updown"
    assert (cfg["task"], cfg["recipe"], cfg["split_method"], cfg["seed"]) == ("regression", "upvote", "seed", 42)
    assert cfg["lr"] == 1e-5 and cfg["weight_decay"] == 0.001
    assert cfg["batch_size"] * cfg["grad_accum"] == 128
    assert (cfg["val_size"], cfg["test_size"]) == (5000, 5000)
    assert (cfg["max_length"], cfg["metric"], cfg["early_stopping"]) == (512, "pairwise_acc_0.1", 0)
    # the old name is the same preset, and flags still win over it
    assert printed_config(tmp_path, "--preset", "upvote") == cfg
    assert printed_config(tmp_path, "--preset", "upvote", "--lr", "3e-5", "-m", "tfidf-logreg")["lr"] == 3e-5


def test_seed_half_is_the_research_codes_half():
    # upvote_prediction/main.py: np.random.seed(42); rand_idx = np.random.permutation(len(data)); first len//2 train
    for n in (7, 80, 1001):
        np.random.seed(42)
        rand_idx = np.random.permutation(n)
        train, infer = split_half(n, 42, "seed")
        assert train == rand_idx[: n // 2].tolist() and infer == rand_idx[n // 2 :].tolist()
    ours_train, ours_infer = split_half(7, 42)  # our default is unchanged: (n+1)//2 to training, sorted
    assert len(ours_train) == 4 and ours_train == sorted(ours_train)
    assert sorted(ours_train + ours_infer) == list(range(7))


def test_seed_dev_test_draws_like_datasets_train_test_split():
    # Dataset.train_test_split(test_size=K, seed=S): default_rng(S).permutation(n), the first K rows are "test"
    n, k = 50, 6
    first = np.random.default_rng(42).permutation(n)
    held, train = first[: 2 * k], first[2 * k :]
    second = np.random.default_rng(42).permutation(2 * k)
    tr, dev, test = seed_dev_test(n, 42, k, k)
    assert tr == train.tolist()
    assert test == held[second[:k]].tolist() and dev == held[second[k:]].tolist()


def test_valuescope_counts_hold_out_the_seeds_rows_and_small_files_fall_back(tmp_path, separable):
    records = upvote_records(40)
    path = separable.write(tmp_path / "askmen.jsonl", records)
    out = tmp_path / "upvote"
    rc, _, err = run_cli("--preset", "valuescope", "--input", path, "-m", "tfidf-logreg", "--val-size", "3",
                         "--test-size", "3", "-o", out)
    assert rc == 0, err
    train_half, _ = split_half(40, 42, "seed")
    _, dev, test = seed_dev_test(20, 42, 3, 3)
    ids = [r["id"] for r in records]
    assert [p["id"] for p in read_jsonl(out / "predictions_val.jsonl")] == [ids[train_half[i]] for i in dev]
    assert [p["id"] for p in read_jsonl(out / "predictions_test.jsonl")] == [ids[train_half[i]] for i in test]
    assert (out / "inference_sample_idxs.txt").read_text().split() == [str(i) for i in split_half(40, 42, "seed")[1]]
    # 5000 + 5000 of 20 rows: the seed's datasets call would fail; we hold out the fractions and say so
    rc, _, err = run_cli("--preset", "valuescope", "--input", path, "-m", "tfidf-logreg", "-o", tmp_path / "small")
    assert rc == 0, err
    split = json.loads((tmp_path / "small" / "metrics.json").read_text())["data"]["split"]
    assert split["method"] == "seed (fractions)" and split["train"] + split["val"] + split["test"] == 20


@pytest.fixture(scope="module")
def tiny_gpt2_regressor(tmp_path_factory) -> Path:
    """DialogRPT's architecture in miniature: GPT2ForSequenceClassification, one logit, a GPT-2 byte-level BPE
    tokenizer without a pad token (as microsoft/DialogRPT-updown ships)."""
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import GPT2Config, GPT2ForSequenceClassification, GPT2TokenizerFast

    path = tmp_path_factory.mktemp("tiny_dialogrpt")
    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    corpus = [r["comment"] + " || How do I ask her out? Time of reply: Saturday" for r in upvote_records(40)]
    bpe.train_from_iterator(corpus, trainers.BpeTrainer(vocab_size=300, special_tokens=["<|endoftext|>"],
                                                         initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    tokenizer = GPT2TokenizerFast(tokenizer_object=bpe, bos_token="<|endoftext|>", eos_token="<|endoftext|>",
                                  unk_token="<|endoftext|>")
    assert tokenizer.pad_token is None
    config = GPT2Config(vocab_size=len(tokenizer), n_positions=128, n_embd=32, n_layer=2, n_head=2, num_labels=1,
                        bos_token_id=tokenizer.eos_token_id, eos_token_id=tokenizer.eos_token_id)
    torch.manual_seed(0)
    GPT2ForSequenceClassification(config).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


def test_dialogrpt_style_gpt2_regressor_trains_a_step_and_predicts(tmp_path, separable, tiny_gpt2_regressor):
    records = upvote_records(40)
    path = separable.write(tmp_path / "askmen.jsonl", records)
    out = tmp_path / "upvote"
    rc, printed, err = run_cli("--preset", "valuescope", "--input", path, "-m", tiny_gpt2_regressor, "--epochs", "1",
                               "--val-size", "3", "--test-size", "3", "--eval-steps", "1", "--device", "cpu", "-o", out)
    assert rc == 0, err
    assert "pairwise ranking accuracy" in printed
    card = json.loads((out / "classifier.json").read_text())
    assert card["history"]["steps"] == 1  # 14 rows at 8 x 16 a step
    model = load_classifier(out, device="cpu")
    config = model.model.config
    assert type(model.model).__name__ == "GPT2ForSequenceClassification"
    assert (config.num_labels, config.problem_type) == (1, "regression")
    assert config.pad_token_id == model.tokenizer.eos_token_id == model.tokenizer.pad_token_id
    held_ids = set((out / "inference_sample_ids.txt").read_text().split())
    held = separable.write(tmp_path / "held.jsonl", [r for r in records if r["id"] in held_ids])
    rc, _, err = run_cli("--predict", held, "--model-dir", out, "-o", tmp_path / "held.predictions.jsonl")
    assert rc == 0, err
    predicted = read_jsonl(tmp_path / "held.predictions.jsonl")
    assert len(predicted) == 20 and all(np.isfinite(p["prediction"]) and "predicted_upvotes" in p for p in predicted)
    # padded batches score each text as it scores alone (the last real token is found past the eos pads)
    texts = [read_jsonl(held)[i]["comment"] for i in range(3)]
    batch = model.predict_scores(texts, batch_size=3)
    alone = [model.predict_scores([t], batch_size=1)[0] for t in texts]
    np.testing.assert_allclose(batch, alone, atol=1e-4)


# ----------------------------------------------------------------------------------- 2. socsys (seed 001)


def test_socsys_print_config_shows_the_seeds_pii_classifier(tmp_path):
    cfg = printed_config(tmp_path, "--preset", "socsys")
    assert (cfg["task"], cfg["model"]) == ("multilabel", "roberta-base")
    assert (cfg["epochs"], cfg["batch_size"], cfg["warmup"], cfg["weight_decay"]) == (50, 8, 500, 0.01)
    assert (cfg["val_fraction"], cfg["test_fraction"]) == (0.2, 0.0)  # 80/20, the 20 evaluated every epoch
    assert cfg["eval_steps"] is None and cfg["early_stopping"] == 0 and cfg["class_weight"] == "none"
    assert cfg["select_model"] == "last"  # mlc_roberta.py keeps the weights after epoch 50


def test_socsys_preset_splits_80_20_with_no_test_part(tmp_path, separable):
    path = separable.write(tmp_path / "pii.jsonl", separable.multilabel(50, seed=1))
    out = tmp_path / "pii"
    rc, _, err = run_cli("--preset", "socsys", "--input", path, "--label-col", "labels", "-m", "tfidf-logreg",
                         "-o", out)
    assert rc == 0, err
    split = json.loads((out / "metrics.json").read_text())["data"]["split"]
    assert (split["train"], split["val"], split["test"]) == (40, 10, 0)
    assert not (out / "predictions_test.jsonl").exists()


# ---------------------------------------------------------------------------------- 3. capstone (seed 003)


def test_capstone_print_config_shows_the_seeds_bert_classifier(tmp_path):
    cfg = printed_config(tmp_path, "--preset", "capstone")
    assert (cfg["task"], cfg["model"], cfg["binary_columns"]) == ("binary", "bert-base-uncased", 2)
    assert (cfg["lr"], cfg["batch_size"], cfg["epochs"], cfg["weight_decay"]) == (2e-5, 16, 3, 0.01)
    assert (cfg["metric"], cfg["select_model"], cfg["class_weight"]) == ("f1_at_0.5", "best", "none")
    assert (cfg["val_fraction"], cfg["test_fraction"], cfg["max_length"]) == (0.15, 0.15, 512)
    for kind in ("t5-encoder", "tfidf-nn", "bow-logreg"):  # the seed's other classifiers are names -m takes
        assert printed_config(tmp_path, "--preset", "capstone", "-m", kind)["model"] == kind


FAST = ["--epochs", "12", "--lr", "3e-3", "--max-length", "32", "--device", "cpu", "--val-fraction", "0.2",
        "--test-fraction", "0.2"]


def trained_binary(tmp_path, separable, *argv) -> tuple[Path, dict]:
    path = separable.write(tmp_path / "toxic.jsonl", separable.binary(150, seed=2))
    out = tmp_path / "model"
    rc, _, err = run_cli("--preset", "capstone", "--input", path, *argv, "-o", out)
    assert rc == 0, err
    return out, json.loads((out / "metrics.json").read_text())


def test_two_column_bce_head_learns_and_scores_the_toxic_column(tmp_path, separable, tiny_encoder_dir):
    out, metrics = trained_binary(tmp_path, separable, "-m", tiny_encoder_dir, *FAST)
    model = load_classifier(out, device="cpu")
    assert model.model.config.num_labels == 2 and model.model.config.problem_type == "multi_label_classification"
    assert metrics["headline"]["auprc"] > 0.9
    rows = read_jsonl(out / "predictions_test.jsonl")
    assert all(0.0 <= r["score"] <= 1.0 for r in rows)
    toxic = model.predict_scores(["you idiot moron"], 1)[0]  # SeparableTexts' toxic words
    assert toxic > model.predict_scores(["lovely sunny garden"], 1)[0]


@pytest.fixture(scope="module")
def tiny_t5_dir(tmp_path_factory, tiny_encoder_dir) -> Path:
    """A 2-layer random T5 (encoder and decoder, as t5-small is saved) with the tiny BERT's offline tokenizer."""
    import torch
    from transformers import AutoTokenizer, T5Config, T5ForConditionalGeneration

    path = tmp_path_factory.mktemp("tiny_t5")
    tokenizer = AutoTokenizer.from_pretrained(tiny_encoder_dir)
    config = T5Config(vocab_size=len(tokenizer), d_model=32, d_kv=8, d_ff=64, num_layers=2, num_heads=4,
                      pad_token_id=tokenizer.pad_token_id, decoder_start_token_id=tokenizer.pad_token_id)
    torch.manual_seed(0)
    T5ForConditionalGeneration(config).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


def test_t5_encoder_with_a_linear_head_trains_and_reloads(tmp_path, separable, tiny_t5_dir):
    out, metrics = trained_binary(tmp_path, separable, "-m", f"t5-encoder:{tiny_t5_dir}", "--binary-columns", "1",
                                  "--select-model", "last", *FAST)
    card = json.loads((out / "classifier.json").read_text())
    assert card["architecture"] == "t5-encoder"
    model = load_classifier(out, device="cpu")
    assert type(model.model).__name__ == "T5EncoderClassifier"
    names = [n for n, _ in model.model.named_parameters()]
    assert "classifier.weight" in names and not any(n.startswith("decoder") for n in names)  # encoder + head only
    assert metrics["headline"]["auprc"] > 0.8
    rows = read_jsonl(out / "predictions_test.jsonl")
    texts = {r["id"]: r["text"] for r in separable.binary(150, seed=2)}
    again = model.predict_scores([texts[r["id"]] for r in rows], 16)
    np.testing.assert_allclose(again, [r["score"] for r in rows], atol=1e-4)


def test_t5_encoder_names_a_missing_folder_in_one_line(tmp_path):
    dummy = tmp_path / "rows.jsonl"
    dummy.write_text('{"text": "a", "label": 1}\n')
    rc, _, err = run_cli("--task", "binary", "--input", dummy, "-m", "t5-encoder:./no/such/t5")
    assert rc == 2 and "no such model folder: ./no/such/t5" in err and "Traceback" not in err


def test_class_weighted_sampler_draws_each_class_alike():
    import torch
    from torch.utils.data import WeightedRandomSampler

    from socialsynth.classify.nn import _row_weights

    y = np.array([1] * 10 + [0] * 990)
    drawn = y[list(WeightedRandomSampler(torch.tensor(_row_weights("binary", y)), 20000,
                                         generator=torch.Generator().manual_seed(0)))]
    assert 0.45 < drawn.mean() < 0.55  # 1% positives in the data, half of what the network sees
    assert _row_weights("multilabel", y) is None


def test_tfidf_nn_learns_a_rare_class_and_reloads(tmp_path, separable):
    rows = separable.binary(400, seed=3)
    rows = [r for r in rows if r["label"] == "clean"] + [r for r in rows if r["label"] == "toxic"][:15]
    path = separable.write(tmp_path / "rare.jsonl", rows)
    out = tmp_path / "nn"
    rc, _, err = run_cli("--preset", "capstone", "--input", path, "-m", "tfidf-nn", "--epochs", "5",
                         "--batch-size", "64", "-o", out)
    assert rc == 0, err
    card = json.loads((out / "classifier.json").read_text())
    assert card["kind"] == "tfidf-nn" and card["hidden"] == 128
    assert len(card["history"]["train_loss"]) == 5
    model = load_classifier(out)
    predicted = read_jsonl(out / "predictions_test.jsonl")
    # the sampler lifts the 4% class over the 0.5 line: rare toxic rows score above it, clean rows below
    assert np.mean([p["score"] for p in predicted if p["label"] == "toxic"]) > 0.5
    assert np.mean([p["score"] for p in predicted if p["label"] == "clean"]) < 0.5
    assert json.loads((out / "metrics.json").read_text())["headline"]["auroc"] > 0.9
    again = model.predict_scores([{r["id"]: r["text"] for r in rows}[p["id"]] for p in predicted])
    np.testing.assert_allclose(again, [p["score"] for p in predicted], atol=1e-6)


def test_bow_logreg_counts_unigrams(tmp_path, separable):
    out, metrics = trained_binary(tmp_path, separable, "-m", "bow-logreg")
    model = load_classifier(out)
    vectorizer = model.pipeline.steps[0][1]
    assert type(vectorizer).__name__ == "CountVectorizer" and vectorizer.ngram_range == (1, 1)
    assert model.pipeline.steps[-1][1].max_iter == 1000 and model.pipeline.steps[-1][1].class_weight is None
    assert metrics["headline"]["auprc"] > 0.9


def test_seed_time_format_is_the_research_codes_text(tmp_path, separable):
    from socialsynth.classify.presets import upvote_text

    record = {"comment": "Ask her.", "submission_title": "How?", "created_submission": 1565411252,
              "created_comment": 1565411252 + 3791}
    assert upvote_text(record, time_format="seed") == (
        "Time of reply: Saturday August 10 2019 05:30:43 AM, which is 1 hours 3 minutes 11 seconds after post. || "
        "How? || Ask her.")
    # a model trained on the seed's text is scored on the same text by --predict (the card says which)
    records = upvote_records(40)
    out = tmp_path / "upvote"
    path = separable.write(tmp_path / "r.jsonl", records)
    rc, _, err = run_cli("--preset", "valuescope", "--time-format", "seed", "--input", path, "-m", "tfidf-logreg",
                         "-o", out)
    assert rc == 0, err
    assert json.loads((out / "classifier.json").read_text())["preset"]["time_format"] == "seed"
    model = load_classifier(out)
    rc, _, err = run_cli("--predict", path, "--model-dir", out, "-o", tmp_path / "p.jsonl")
    assert rc == 0, err
    texts = [upvote_text(r, time_format="seed") for r in records]
    np.testing.assert_allclose([p["prediction"] for p in read_jsonl(tmp_path / "p.jsonl")],
                               model.predict_scores(texts), atol=1e-6)


def test_raw_targets_train_on_log2_scores_unscaled(tmp_path, separable, tiny_gpt2_regressor):
    path = separable.write(tmp_path / "r.jsonl", upvote_records(40))
    out = tmp_path / "raw"
    rc, _, err = run_cli("--preset", "valuescope", "--input", path, "-m", tiny_gpt2_regressor, "--epochs", "1",
                         "--val-size", "3", "--test-size", "3", "--device", "cpu", "-o", out)
    assert rc == 0, err
    assert json.loads((out / "classifier.json").read_text())["target_scale"] == [0.0, 1.0]


def test_doccano_span_files_train_as_multilabel_rows(tmp_path, separable):
    from socialsynth.classify.labels import parse_label_list

    assert parse_label_list([[0, 5, "Age"], [9, 14, "Gender"], [20, 23, "Age"]]) == ["Age", "Gender"]
    assert parse_label_list('[[0, 5, "Age"]]') == ["Age"] and parse_label_list([]) == []
    with pytest.raises(ValueError):
        parse_label_list([[0, "5", "Age"]])  # not a span: still refused, not turned into an odd name
    # seed 001's AnnotationLlama3-19.jsonl rows: {id, text, label: [[start, end, category]], Comments}
    rows = []
    for r in separable.multilabel(60, seed=4):
        spans = [[0, 3, name] for name in r["labels"]]
        rows.append({"id": r["id"], "text": r["text"], "label": spans, "Comments": []})
    path = separable.write(tmp_path / "AnnotationLlama3-19.jsonl", rows)
    out = tmp_path / "pii"
    rc, _, err = run_cli("--preset", "socsys", "--input", path, "-m", "tfidf-logreg", "-o", out)
    assert rc == 0, err
    card = json.loads((out / "classifier.json").read_text())
    assert set(card["labels"]["names"]) == {"Age", "Gender", "Location"}


def test_two_column_loss_is_bce_on_one_hot_targets_with_the_weight_on_the_positive_column():
    import torch
    import torch.nn.functional as F
    from transformers.modeling_outputs import SequenceClassifierOutput

    from socialsynth.classify.transformer import _loss_function

    logits = torch.tensor([[0.3, -1.2], [2.0, 0.5], [-0.4, 0.9]])
    labels = torch.tensor([1, 0, 1])
    one_hot = torch.tensor([[0.0, 1.0], [1.0, 0.0], [0.0, 1.0]])
    out = SequenceClassifierOutput(logits=logits)
    plain = _loss_function("binary", None)(out, labels)
    assert torch.isclose(plain, F.binary_cross_entropy_with_logits(logits, one_hot))
    weighted = _loss_function("binary", np.array([4.0]))(out, labels)
    expected = F.binary_cross_entropy_with_logits(logits, one_hot, pos_weight=torch.tensor([1.0, 4.0]))
    assert torch.isclose(weighted, expected)
