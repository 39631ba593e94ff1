"""predict_responses.py's declared configs (socialsynth/jobs/response/config.py, cli.py): a bad value is one line
naming the flag (exit 2) before anything loads; --print-config fed back with --config gives the same config and
the same outputs; every stage's run record reads with read_run_record, with tokens per model and stage summed
over resumed runs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from predict_responses import main
from socialsynth.core.cli import run_main
from socialsynth.core.config import flat_values
from socialsynth.core.run import read_run_record
from socialsynth.jobs.response.cli import parse_stage
from socialsynth.jobs.response.config import BuildConfig, EvaluateConfig, InferConfig, PersonaConfig, TrainConfig
from socialsynth.jobs.response.persona import run_personas
from socialsynth.llm.args import SamplingArgs
from tests.helpers import flag_cases

REPO = next(p for p in Path(__file__).resolve().parents if (p / "pyproject.toml").exists())
SAMPLE = REPO / "data" / "responses_sample"


def run_cli(argv, capsys) -> tuple[int, str, str]:
    try:
        rc = run_main(lambda: main([str(a) for a in argv]))
    except SystemExit as e:  # argparse's own errors (choices, types) exit from inside parse
        rc = e.code
    captured = capsys.readouterr()
    return rc, captured.out, captured.err


# -- (a) bad values --------------------------------------------------------------------------------------------

BAD = [
    ([SAMPLE if word == "SAMPLE" else word for word in argv], name)
    for argv, name in flag_cases(
        """
        build-dataset --input SAMPLE --top-k 0  -> --top-k
        build-dataset --input SAMPLE --test-fraction 1  -> --test-fraction
        build-dataset --input SAMPLE --bm25-b 1.5  -> --bm25-b
        build-dataset --input SAMPLE --bm25-k1 -1  -> --bm25-k1
        build-dataset --input SAMPLE --min-history -1  -> --min-history
        build-dataset --input SAMPLE --format csv  -> --format
        build-dataset --input SAMPLE --require-topics=maybe  -> --require-topics
        build-dataset --input /no/such/folder  -> --input
        build-dataset --format weibo  -> --input
        build-dataset --input SAMPLE --exclude-topics /no/such/list.txt  -> --exclude-topics
        extract-personas --persona-posts 0  -> --persona-posts
        extract-personas --batch-size 0  -> --batch-size
        extract-personas --top-p 1.5  -> --top-p
        extract-personas --temperature -0.1  -> --temperature
        extract-personas --max-new-tokens 0  -> --max-new-tokens
        extract-personas --backend openai --api-base ''  -> --api-base
        train --lr 0  -> --lr
        train --dropout 1  -> --dropout
        train --grad-accum 0  -> --grad-accum
        train --epochs 0  -> --epochs
        train --max-steps 0  -> --max-steps
        train --method qlora  -> --method
        train --scheduler step  -> --scheduler
        train --backend openai --api-base http://127.0.0.1:1/v1  -> --backend
        train -q 3  -> --quantization
        train --routing tokens  -> --routing
        train --device-map auto --device cpu  -> --device-map
        train --gradient-checkpointing=maybe  -> --gradient-checkpointing
        infer --rag --rag-k 0  -> --rag-k
        infer --rag --zero-shot  -> --adapter
        train --name ../elsewhere  -> --name
        train --target-modules ,  -> --target-modules
        infer  -> --adapter
        infer --zero-shot --adapter SAMPLE  -> --adapter
        infer --adapter /no/such/adapter  -> --adapter
        infer --zero-shot --batch-size 0  -> --batch-size
        infer --zero-shot --max-length 0  -> --max-length
        infer --zero-shot --method-name a/b  -> --method-name
        infer --zero-shot --variant half  -> --variant
        infer --zero-shot --top-k -1  -> --top-k
        evaluate --kl-epsilon -1  -> --kl-epsilon
        evaluate --bootstrap -1  -> --bootstrap
        evaluate --min-topic-users 0  -> --min-topic-users
        evaluate --language fr  -> --language
        evaluate --sentiment-map 1=positive  -> --sentiment-map
        evaluate --sentiment /no/such/classifier  -> --sentiment
        evaluate --predictions /no/such/predictions.jsonl  -> --predictions
        evaluate --batch-size 0  -> --batch-size
        """
    )
]


@pytest.mark.parametrize("argv,flag", BAD, ids=[" ".join(map(str, a[:1] + a[-2:])) for a, _ in BAD])
def test_bad_value_is_one_line_naming_the_flag(argv, flag, bad_flag):
    bad_flag(main, argv, flag)


def test_unknown_or_missing_stage(capsys):
    assert run_cli(["predict"], capsys)[0] == 2
    rc, _, err = run_cli([], capsys)
    assert rc == 2 and "no stage given" in err
    rc, out, _ = run_cli(["--help"], capsys)
    assert rc == 0 and all(name in out for name in ("build-dataset", "extract-personas", "train", "infer", "evaluate"))


def test_old_spellings_still_parse(tmp_path):
    _, cfg = parse_stage(["build-dataset", "--input", str(SAMPLE), "--no-require-topics", "--test-topics", "a, b"])
    assert cfg.require_topics is False and cfg.test_topics == ("a", "b")
    _, cfg = parse_stage(["build-dataset", "-i", str(SAMPLE), "--require-topics", "--bm25_k1", "1.2"])
    assert cfg.require_topics is True and cfg.k1 == 1.2
    _, cfg = parse_stage(["build-dataset", "--input", str(SAMPLE)])
    assert cfg.require_topics is None
    files = [tmp_path / "a.jsonl", tmp_path / "b.jsonl"]
    for f in files:
        f.write_text("")
    _, cfg = parse_stage(["evaluate", "--predictions", *map(str, files), "--no-plots", "--output_dir", str(tmp_path)])
    assert cfg.predictions == files and cfg.no_plots and cfg.output_dir == tmp_path
    _, cfg = parse_stage(["infer", "--zero-shot"])
    assert cfg.model.model is None and cfg.params.top_k == 20 and cfg.params.repetition_penalty == 1.2
    _, cfg = parse_stage(["personas", "--no-personas"])  # alias of extract-personas
    assert isinstance(cfg, PersonaConfig) and cfg.params.max_new_tokens == 160
    _, cfg = parse_stage(["train", "--model-name", "embedded", "--warmup", "5"])
    assert cfg.model.model == "embedded" and cfg.adapter_name == "pac-lora" and cfg.warmup == 5


def test_configs_build_from_python(tmp_path):
    assert BuildConfig(input=SAMPLE).top_k == 5
    assert TrainConfig(variant="without_history").adapter_name == "pac-lora-without_history"
    assert InferConfig(zero_shot=True).sampling.temperature == 0.7
    assert EvaluateConfig(predictions=[str(SAMPLE / "topics.jsonl")]).predictions == [SAMPLE / "topics.jsonl"]


# -- (b) the round trip ----------------------------------------------------------------------------------------


def _round_trip(argv, tmp_path, capsys):
    rc, out, _ = run_cli([*argv, "--print-config"], capsys)
    assert rc == 0
    job = tmp_path / f"{argv[0]}.yaml"
    job.write_text(out)
    _, direct = parse_stage([str(a) for a in argv])
    _, from_file = parse_stage([argv[0], "--config", str(job)])
    assert flat_values(from_file) == flat_values(direct)
    return job


def test_print_config_round_trips_for_every_stage(tmp_path, capsys):
    pred = tmp_path / "m.jsonl"
    pred.write_text("")
    stages = [
        ["build-dataset", "--input", SAMPLE, "-o", tmp_path, "--top-k", "3", "--no-require-topics",
         "--test-topics", "t1,t2", "--bm25-b", "0.5"],
        ["extract-personas", "-o", tmp_path, "--persona-posts", "3", "--temperature", "0.2",
         "--instruction-template-zh", "response_instruction_zh"],
        ["train", "-o", tmp_path, "--method", "lora", "--variant", "without_persona", "--max-steps", "7",
         "--target-modules", "q_proj,v_proj", "--lr", "1e-3"],
        ["infer", "-o", tmp_path, "--zero-shot", "--variant", "without_history", "--top-k", "5", "--seed", "9"],
        ["evaluate", "-o", tmp_path, "--predictions", pred, "--embedding-model", "none", "--bootstrap", "0",
         "--no-plots"],
    ]
    for argv in stages:
        _round_trip(argv, tmp_path, capsys)


def test_job_file_gives_the_same_outputs_as_the_flags(tmp_path, capsys):
    flags = ["--input", SAMPLE, "--top-k", "3", "--test-fraction", "0.4", "--seed", "2"]
    job = _round_trip(["build-dataset", *flags, "-o", tmp_path / "a"], tmp_path, capsys)
    assert run_cli(["build-dataset", *flags, "-o", tmp_path / "a"], capsys)[0] == 0
    assert run_cli(["build-dataset", "--config", job, "-o", tmp_path / "b"], capsys)[0] == 0
    assert (tmp_path / "a" / "cases.jsonl").read_text() == (tmp_path / "b" / "cases.jsonl").read_text()
    for out in ("a", "b"):  # the personas stage without a model, from flags and from its job file
        assert run_cli(["extract-personas", "-o", tmp_path / out, "--no-personas"], capsys)[0] == 0
    job = _round_trip(["extract-personas", "-o", tmp_path / "b", "--no-personas"], tmp_path, capsys)
    assert run_cli(["extract-personas", "--config", job], capsys)[0] == 0
    for variant in ("full", "without_persona", "without_history"):
        a = (tmp_path / "a" / "alpaca" / f"{variant}.jsonl").read_text()
        assert a and a == (tmp_path / "b" / "alpaca" / f"{variant}.jsonl").read_text()
    # the record keeps the resolved config, and its config.yaml is a job file
    record = read_run_record(tmp_path / "b" / "cases.meta.json")
    assert record["complete"] is True and record["config"]["top_k"] == 3 and record["counts"]["n_cases"] > 0
    _, again = parse_stage(["build-dataset", "--config", str(tmp_path / "b" / "cases.config.yaml")])
    assert again.top_k == 3 and again.output_dir == tmp_path / "b"


# -- (c) run records -------------------------------------------------------------------------------------------


def _cases(n_users: int) -> str:
    rows = []
    for i in range(n_users):
        rows.append({"id": f"t1:u{i}", "topic_id": "t1", "topic": "Topic", "news": "News about t1.",
                     "user_id": f"u{i}", "user_name": f"user{i}", "profile": {},
                     "history": [f"post {i}-{k}" for k in range(3)], "response": f"reply {i}", "split": "train",
                     "language": "en"})
    return "".join(json.dumps(r) + "\n" for r in rows)


def test_persona_record_counts_tokens_and_sums_them_over_a_resume(tmp_path, fake_backend_cls):
    class Counting(fake_backend_cls):
        def generate(self, chats, params, keys=None, progress=None):
            out = super().generate(chats, params, keys, progress)
            self.stats.prompt_tokens += 7 * len(chats)
            self.stats.new_tokens += 3 * len(chats)
            return out

    (tmp_path / "cases.jsonl").write_text(_cases(2))
    cfg = PersonaConfig(output_dir=tmp_path, batch_size=1, sampling=SamplingArgs(max_new_tokens=20))
    run_personas(cfg, backend=Counting(reply=lambda chat, key: "1. Interests: trains"))
    first = read_run_record(tmp_path / "personas.meta.json")
    assert first["tokens"] == {"fake-model": {"persona": {"in": 14, "out": 6, "seconds": first["tokens"]["fake-model"]
                                                          ["persona"]["seconds"]}}}
    assert first["complete"] is True and first["n_written"] == 2 and first["job"] == "response.personas"

    (tmp_path / "cases.jsonl").write_text(_cases(5))  # three more users: the rerun does only them
    run_personas(cfg, backend=Counting(reply=lambda chat, key: "1. Interests: buses"))
    record = read_run_record(tmp_path / "personas.meta.json")
    assert record["tokens"]["fake-model"]["persona"]["in"] == 14 + 21
    assert record["tokens"]["fake-model"]["persona"]["out"] == 6 + 9
    assert [r["tokens"]["fake-model"]["persona"]["in"] for r in record["runs"]] == [14, 21]
    assert [r["status"] for r in record["runs"]] == ["finished", "finished"]
    assert record["n_written"] == 5 and record["summary"]["personas_this_run"] == 3


def test_zero_shot_infer_record_counts_tokens(tmp_path, tiny_model_dir, capsys):
    (tmp_path / "alpaca").mkdir()
    rec = {"id": "t:u", "topic_id": "t", "user_id": "u", "split": "test", "variant": "full",
           "instruction": "Write a short post about bridges.", "input": "", "output": "Bridges!"}
    (tmp_path / "alpaca" / "full.jsonl").write_text(json.dumps(rec) + "\n")
    argv = ["infer", "-o", tmp_path, "--zero-shot", "-m", tiny_model_dir, "--device", "cpu", "--dtype", "fp32",
            "--max-new-tokens", "3"]
    assert run_cli(argv, capsys)[0] == 0
    record = read_run_record(tmp_path / "predictions" / "zero-shot.meta.json")
    tokens = record["tokens"][str(tiny_model_dir)]["infer"]
    assert tokens["in"] > 0 and 0 < tokens["out"] <= 3
    assert record["complete"] is True and record["written"] == 1 and record["params"]["top_k"] == 20
    rec2 = dict(rec, id="t:u2", user_id="u2")
    with open(tmp_path / "alpaca" / "full.jsonl", "a") as handle:
        handle.write(json.dumps(rec2) + "\n")
    assert run_cli(argv, capsys)[0] == 0  # resumes with the new record only
    again = read_run_record(tmp_path / "predictions" / "zero-shot.meta.json")
    assert len(again["runs"]) == 2 and again["written"] == 2
    summed = again["tokens"][str(tiny_model_dir)]["infer"]
    per_run = [r["tokens"][str(tiny_model_dir)]["infer"] for r in again["runs"]]
    assert summed["in"] == sum(t["in"] for t in per_run) and summed["out"] == sum(t["out"] for t in per_run)


def test_evaluate_writes_a_run_record(tmp_path, capsys):
    (tmp_path / "predictions").mkdir()
    rec = {"id": "t:u", "topic_id": "t", "user_id": "u", "prediction": "Great news!", "reference": "Great news."}
    (tmp_path / "predictions" / "m.jsonl").write_text(json.dumps(rec) + "\n")
    argv = ["evaluate", "-o", tmp_path, "--embedding-model", "none", "--bootstrap", "0", "--no-plots"]
    assert run_cli(argv, capsys)[0] == 0
    record = read_run_record(tmp_path / "eval" / "evaluate.meta.json")
    assert record["complete"] is True and record["shared_cases"] == 1 and record["tokens"] == {}
    assert (tmp_path / "eval" / "evaluate.config.yaml").exists()
