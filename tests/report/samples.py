"""Small real outputs of every job, made the way the jobs' own tests make them (tiny random model, fake backends,
hand-written events), for the report tests. Each function writes one job's output folder and returns it."""

from __future__ import annotations

import base64
import gzip
import json
import re
from pathlib import Path

from tests.conftest import FakeBackend, SeparableTexts
from tests.helpers import run_script, write_csv

REPO = next(p for p in Path(__file__).resolve().parents if (p / "pyproject.toml").exists())


def _check(proc) -> None:
    assert proc.returncode == 0, proc.stderr[-3000:]


def make_norms(folder: Path, model_dir: Path) -> Path:
    """generate_synthetic_data.py on the first 3 sample comments with the tiny model (8 new tokens: truncated)."""
    out = folder / "norms"
    _check(run_script("generate_synthetic_data.py", "-r", "askmen", "-n", "formality", "-d", REPO / "data", "-o", out,
                      "-m", model_dir, "--embedding-model", "none", "--max-new-tokens", "8", "-b", "3",
                      "--device", "cpu", "-e", "3", "--report"))
    return out


def norms_record(i: int, ladder: list[float], comment: str | None = None, judges: int = 2,
                 refusal_at: str | None = None) -> dict:
    """A normness record in the judges layout (issue 15): ``ladder`` is the primary judge's expected rating at levels
    1-5; the second judge rates one level higher; each level has two candidates."""
    levels = [str(lv) for lv in range(1, 6)]
    comment = comment or f"original comment number {i} about my weekend"
    rec = {"id": f"c{i}", "idx": i, "original_comment": comment, "original_score": 10 + i,
           "submission_title": f"thread {i}", "status": "ok", "judges": ["generator:tiny:likelihood", "hf:big:logits"]}
    rec["judges"] = rec["judges"][:judges]
    for lv in levels:
        rec[lv] = f"rewrite {i} at level {lv}: {comment} indeed"
    ratings = {}
    for j, name in enumerate(rec["judges"]):
        block = {"method": name.rsplit(":", 1)[-1], "original": {"rating": 2, "expected": 2.0 + j}}
        for lv, value in zip(levels, ladder, strict=True):
            block[lv] = {"rating": round(value + j), "expected": value + j}
        ratings[name] = block
    rec["ratings"] = ratings
    rec["original_rating"] = 2
    rec["original_rating_detail"] = {"rating": 2, "expected": 2.0}
    rec["rewrite_ratings"] = {lv: round(v) for lv, v in zip(levels, ladder, strict=True)}
    rec["rewrite_ratings_expected"] = dict(zip(levels, ladder, strict=True))
    rec["filters"] = {lv: {"refusal": lv == refusal_at, "passed": lv != refusal_at, "similarity": 0.8} for lv in levels}
    rec["preference_delta"] = {lv: round(0.1 * int(lv) - 0.3, 2) for lv in levels}
    rec["candidates"] = {lv: [{"text": rec[lv], "kept": True, "rating": ladder[k], "similarity": 0.8,
                               "selection_score": 0.5},
                              {"text": f"discarded candidate {i}/{lv}", "kept": False, "rating": 1.0,
                               "similarity": 0.2, "selection_score": -2.0}] for k, lv in enumerate(levels)}
    rec["selection"] = {"judge": rec["judges"][0], "rule": "closest to the level", "n": 2}
    return rec


def write_norms_run(folder: Path, records: list[dict], name: str = "sub_formality", summary: dict | None = None
                    ) -> Path:
    """A normness output and its run record, as the job writes them (for records made by hand)."""
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / f"{name}.jsonl", "w", encoding="utf-8") as handle:
        for rec in records:
            handle.write(json.dumps(rec, ensure_ascii=False) + "\n")
    meta = {"job": "norms", "command": "generate_synthetic_data.py -r sub -n formality", "versions": {},
            "complete": True, "status": "finished", "seconds": 1.0, "tokens": {}, "runs": [],
            "config": {"levels": [1, 2, 3, 4, 5]}, "dimension": "formality",
            "summary": {"n_records": len(records), "mean_rating_by_level": {"1": 1.5}, "pass_rate_by_level": {},
                        **(summary or {})}}
    (folder / f"{name}.meta.json").write_text(json.dumps(meta), encoding="utf-8")
    return folder


JUDGES_SUMMARY = {"judges": {
    "per_judge": {"generator:tiny:likelihood": {"methods": {"likelihood": 2}, "n_rewrites": 10,
                                                "spearman_target_rating": {"value": 0.81, "low": 0.5, "high": 0.95},
                                                "right_order": {"n": 1, "of": 2, "share": 0.5}}},
    "agreement": [{"judges": ["generator:tiny:likelihood", "hf:big:logits"], "n_rewrites": 10,
                   "spearman": {"value": 0.77, "low": 0.4, "high": 0.9}, "kappa": {"value": 0.35, "low": 0.1,
                                                                                  "high": 0.6}}],
    "ci": "95% percentile bootstrap CI resampling comments"}}


class _HashEmbedder:
    """Bag-of-words vectors: enough for the rephrase search and audit without a model."""

    name = "hash-embedder"

    def encode(self, texts):
        import hashlib

        import numpy as np

        out = np.zeros((len(texts), 64), dtype=np.float32)
        for i, text in enumerate(texts):
            for w in text.lower().split():
                out[i, int(hashlib.md5(w.encode()).hexdigest(), 16) % 64] += 1
        return out / np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-9)

    def pair_similarity(self, a, b):
        import numpy as np

        return (self.encode(list(a)) * self.encode(list(b))).sum(axis=1).astype(np.float64)


class _Spec:
    def __init__(self, backend, model):
        self.backend, self.model = backend, model

    def load(self):
        return self.backend


REPHRASE_POSTS = [
    {"id": "p1", "original_post": "Posted in AskMen: I'm 34, married to Priya, let go from Kessler Logistics."},
    {"id": "p2", "original_post": "Posted in AskWomen: my sister Maren turned 29 and moved to Boise for a bakery."},
    {"id": "p3", "original_post": "Posted in Advice: our landlord Mr Okafor raised the rent by 450 dollars."},
]


def rephrase_reply(chat, key):
    """Model a replays the name and number of its post; model b changes them; p3 is refused by b."""
    post = chat[-1]["content"]
    if "model-b" in key and "Okafor" in post:
        return "I'm sorry, but I can't rewrite this."
    if "model-a" in key:
        return '"Changed Post": ' + post.split(":", 1)[-1].replace("let go", "laid off")
    return '"Changed Post": A reader shared that a relative started a new job in another city last spring.'


def make_rephrase(folder: Path) -> Path:
    from socialsynth.jobs.rephrase.config import RephraseConfig
    from socialsynth.jobs.rephrase.job import run

    src = write_csv(folder / "posts.csv", REPHRASE_POSTS)
    out = folder / "rephrase"
    backends = []
    for model in ("model-a", "model-b"):
        backend = FakeBackend(reply=lambda chat, key, m=model: rephrase_reply(chat, f"{m}:{key}"))
        backends.append(_Spec(backend, model))
    cfg = RephraseConfig(input=src, output_dir=out, models=["model-a", "model-b"], search_temperatures=(0.6, 1.0),
                         search_sample=2, audit=True)
    run(cfg, specs=tuple(backends), embedder=_HashEmbedder())
    return out


def augment_reply(chat, key):
    n = key.rsplit("r", 1)[-1]
    return (f'Here are 3 toxic comments:\n1. "insult{n} you are so dumb honestly"\n2. "short{n} one"\n'
            f'3. "rage{n} get lost you absolute clown"')


def make_augment(folder: Path) -> Path:
    from socialsynth.jobs.augment.config import AugmentConfig, LadderArgs
    from socialsynth.jobs.augment.job import run
    from socialsynth.jobs.augment.text import TextFilters
    from socialsynth.llm.args import SamplingArgs

    rows = [{"id": f"r{i}", "comment": f"ordinary friendly comment number {i} about things", "bad": 0}
            for i in range(40)]
    rows += [{"id": f"t{i}", "comment": f"you are a total idiot number {i}", "bad": 1} for i in range(8)]
    src = write_csv(folder / "labelled.csv", rows)
    out = folder / "augment"
    cfg = AugmentConfig(input=src, target_label="1", n=6, output_dir=out, text_col="comment", label_col="bad",
                        label_name="toxic", definition="rude remarks", batch_size=2, sampling=SamplingArgs(seed=7),
                        filters=TextFilters(min_words=4, max_words=30, near_dup=0),
                        ladder=LadderArgs(positive_rates=[0.2, 0.3], evaluate=True))
    run(cfg, backend=FakeBackend(reply=augment_reply), embedder=None)
    return out


def make_cluster(folder: Path) -> Path:
    """cluster_users.py on the hand-written events of its own test (two personas, a like, a follow, a reply)."""
    from tests.jobs.bluesky.test_cluster_users_cli import _events

    day = folder / "events" / "01" / "10"
    day.mkdir(parents=True)
    (day / "events").write_text("\n".join(json.dumps(e) for e in _events()) + "\n", encoding="utf-8")
    out = folder / "cluster"
    _check(run_script("cluster_users.py", "--data-root", folder / "events", "--start-date", 1, "--end-date", 1,
                      "-o", out, "--n-clusters", 2, "--min-cluster-size", 5, "--n-workers", 1,
                      "--add-ignored-messages", timeout=300))
    return out


RESPONSE_REFERENCES = {
    ("t1", "u1"): "I love this news, great job everyone!",
    ("t1", "u2"): "This is terrible and sad.",
    ("t2", "u1"): "Awful decision, I hate it.",
}
RESPONSE_PREDICTIONS = {
    "pac-lora": ["I love this, great job!", "Terrible news, so sad.", "Awful, I hate it."],
    "zero-shot": ["Okay.", "Great news!", "Nice."],
}


def make_responses(folder: Path) -> Path:
    """predict_responses.py evaluate on two prediction files (the records.py schema)."""
    from predict_responses import main

    out = folder / "responses"
    (out / "predictions").mkdir(parents=True)
    for method, texts in RESPONSE_PREDICTIONS.items():
        lines = []
        for (topic, user), text in zip(RESPONSE_REFERENCES, texts, strict=True):
            rec = {"id": f"{topic}:{user}", "topic_id": topic, "user_id": user, "variant": "full", "method": method,
                   "prediction": text, "reference": RESPONSE_REFERENCES[(topic, user)], "model": "tiny", "seed": 0}
            lines.append(json.dumps(rec) + "\n")
        (out / "predictions" / f"{method}.jsonl").write_text("".join(lines), encoding="utf-8")
    assert main(["evaluate", "-o", str(out), "--embedding-model", "none", "--bootstrap", "50"]) == 0
    return out


def make_train(folder: Path, task: str = "multiclass") -> Path:
    """train_classifier.py with the TF-IDF baseline on keyword-separable texts."""
    rows = getattr(SeparableTexts, task)(150, seed=3)
    names = sorted({r["label"] for r in rows})
    for row in rows[::6]:  # some wrong labels, so that the test set has errors to show
        row["label"] = names[(names.index(row["label"]) + 1) % len(names)]
    src = SeparableTexts.write(folder / f"{task}.csv", rows)
    out = folder / f"classifier_{task}"
    _check(run_script("train_classifier.py", "--task", task, "--input", src, "--model", "tfidf-logreg", "-o", out))
    return out


# ------------------------------------------------------------------------------------------- reading a report back

_LIST = re.compile(r'<script type="application/json" id="([^"]+)-data"( data-encoding="gzip\+base64")?>(.*?)</script>',
                   re.S)
_NETWORK = [re.compile(p, re.I) for p in (r"""(?:src|href|action|poster|data)\s*=\s*["']?\s*(?:https?:)?//""",
                                          r"""url\(\s*["']?\s*(?:https?:)?//""", r"@import")]


def item_lists(html: str) -> dict[str, dict]:
    """list id -> the data the page script shows (decoded when gzipped)."""
    out = {}
    for list_id, packed, text in _LIST.findall(html):
        if packed:
            text = gzip.decompress(base64.b64decode(text)).decode("utf-8")
        out[list_id] = json.loads(text)
    return out


def only_list(html: str) -> dict:
    lists = item_lists(html)
    assert len(lists) == 1, list(lists)
    return next(iter(lists.values()))


def assert_offline(html: str) -> None:
    """No network URL where a browser would fetch one: src/href/url()/@import."""
    for pattern in _NETWORK:
        assert not pattern.search(html), pattern.search(html).group(0)
    assert "<link" not in html.lower() and "<iframe" not in html.lower()


def cells(data: dict) -> list[dict]:
    return [c for item in data["items"] for c in item["c"]]
