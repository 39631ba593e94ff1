"""Small real outputs of the jobs, made once per test module, for `socialsynth export`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from socialsynth.llm.base import Completion

REPO = next(p for p in Path(__file__).resolve().parents if (p / "pyproject.toml").exists())
ASKMEN_LINES = (REPO / "data" / "askmen.jsonl").read_text(encoding="utf-8").splitlines()
FAILED_ID = json.loads(ASKMEN_LINES[1])["id"]
SERVER_ERROR = "server refused the request: prompt too long"


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def _failing_generate(original):
    """The backend's generate, except that every rewrite request of comment FAILED_ID fails the way a remote
    server's refusal does (finish_reason "error", empty text, a reason)."""

    def generate(self, chats, params, keys=None, progress=None):
        out = original(self, chats, params, keys=keys, progress=progress)
        keys = list(keys) if keys is not None else [""] * len(out)
        return [Completion("", c.n_prompt_tokens, 0, "error", c.seed, SERVER_ERROR)
                if str(k).startswith(f"{FAILED_ID}:") else c for c, k in zip(out, keys, strict=True)]

    return generate


@pytest.fixture(scope="module")
def norms_output(tmp_path_factory, tiny_model_dir) -> Path:
    """The normness job on 3 comments with the tiny model (best of 2 candidates, a second judge), one comment's
    rewrites failing: the output folder."""
    from socialsynth.jobs.norms.cli import main
    from socialsynth.llm.hf import HFBackend

    root = tmp_path_factory.mktemp("norms")
    data = root / "data"
    data.mkdir()
    (data / "askmen.jsonl").write_text("\n".join(ASKMEN_LINES[:3]) + "\n", encoding="utf-8")
    out = root / "out"
    argv = ["-r", "askmen", "-n", "formality", "-d", data, "-o", out, "-m", tiny_model_dir, "--embedding-model",
            "none", "--max-new-tokens", "6", "-b", "2", "--device", "cpu", "--levels", "1,3,5", "--candidates", "2",
            "--judge", f"hf:{tiny_model_dir}:logits"]
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(HFBackend, "generate", _failing_generate(HFBackend.generate))
        assert main([str(a) for a in argv]) == 0
    return out


@pytest.fixture(scope="module")
def instruct_output(tmp_path_factory) -> Path:
    """build_instruct_dataset.py (no LLM) on two hand-written cluster files: the output folder."""
    from socialsynth.jobs.bluesky.cli import main_instruct

    root = tmp_path_factory.mktemp("instruct")
    clusters = root / "processed_2_clusters"
    clusters.mkdir()
    for cid, users in ((0, ("alice", "bob")), (1, ("dave",))):
        chains = [[{"user_id": users[(t + i) % len(users)], "text": f"post {t}-{i} about bread and stars",
                    "unix_epoch": 1000 + 10 * t + i} for i in range(1 + t % 3)] for t in range(12)]
        (clusters / f"cluster_{cid}.jsonl").write_text("".join(json.dumps(c) + "\n" for c in chains))
    out = root / "instruct"
    assert main_instruct(["-i", str(clusters), "-o", str(out)]) == 0
    return out


@pytest.fixture(scope="module")
def augment_output(tmp_path_factory, tiny_model_dir) -> Path:
    """augment_labels.py with the tiny model: generated items plus the sparsity ladder's CSV splits."""
    from socialsynth.jobs.augment.cli import main
    from tests.helpers import write_csv

    root = tmp_path_factory.mktemp("augment")
    rows = [{"id": f"r{i}", "comment": f"ordinary friendly comment number {i} about things", "bad": 0}
            for i in range(20)]
    rows += [{"id": f"t{i}", "comment": f"you are a total idiot number {i}", "bad": 1} for i in range(6)]
    labelled = write_csv(root / "real.csv", rows)
    out = root / "out"
    argv = ["--input", labelled, "--text-col", "comment", "--label-col", "bad", "--target-label", "1",
            "--definition", "rude remarks", "--n", "2", "--max-requests", "2", "-m", tiny_model_dir,
            "--device", "cpu", "--max-new-tokens", "8", "--embedding-model", "none", "--min-words", "1",
            "-o", out, "--positive-rates", "0.3"]
    assert main([str(a) for a in argv]) == 0
    return out


@pytest.fixture(scope="module")
def response_output(tmp_path_factory) -> Path:
    """predict_responses.py build-dataset (no model) on the bundled sample: cases.jsonl, each row with its split."""
    from socialsynth.jobs.response.cli import main

    out = tmp_path_factory.mktemp("responses")
    assert main(["build-dataset", "--input", str(REPO / "data" / "responses_sample"), "-o", str(out)]) == 0
    return out
