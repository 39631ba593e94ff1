"""Seed 003 (Capstone-Meta) fidelity in augment_labels.py: the `capstone` preset, the raw "### Instruction: ...
### Response:" prompt format, prompts cut to --max-input-tokens, several samples per pair of examples, the
14-identity-group variant, keeping every parsed comment, the 70/15/15 split, and GPTQ errors through the CLI."""

from __future__ import annotations

import importlib.util
import json
import shutil
from pathlib import Path

import pytest
import yaml

import augment_labels as script
from socialsynth.jobs.augment.config import AugmentConfig
from socialsynth.jobs.augment.job import Augmenter, load_inputs, run_generation
from socialsynth.jobs.augment.ladder import LadderConfig, load_real_splits
from socialsynth.jobs.augment.text import CAPSTONE_GROUPS, DuplicateIndex, TextFilters, parse_groups
from socialsynth.llm.args import SamplingArgs
from tests.helpers import flag_cases, write_csv

ANSWER = '"first comment you clown go away now"\n"second comment nobody likes you at all"\n### Instruction: "not this"'


def make_cfg(labelled, out, **kw) -> AugmentConfig:
    base = dict(input=labelled, target_label="1", n=4, output_dir=out, text_col="comment", label_col="bad",
                label_name="toxic", definition="rude remarks", batch_size=4, embedding_model=None,
                sampling=SamplingArgs(seed=7), filters=TextFilters(min_words=4, max_words=30, near_dup=0))  # fmt: skip
    base.update(kw)
    return AugmentConfig(**base)


def read_jsonl(path) -> list[dict]:
    return [json.loads(line) for line in Path(path).read_text().splitlines()]


def cli_args(labelled, out) -> list[str]:
    return ["--input", labelled, "--text-col", "comment", "--label-col", "bad", "--target-label", "1",
            "--definition", "rude remarks", "--n", "3", "-o", out, "--embedding-model", "none"]  # fmt: skip


def test_preset_print_config_shows_the_seed_settings(labelled, tmp_path, run_cli):
    code, out, err = run_cli(script.main, [*cli_args(labelled, tmp_path / "o"), "--preset", "capstone",
                                           "--print-config"])  # fmt: skip
    assert code == 0, err
    cfg = yaml.safe_load(out)
    assert cfg["model"] == "TheBloke/WizardLM-Uncensored-Falcon-7B-GPTQ"
    assert (cfg["prompt_format"], cfg["template"], cfg["label_name"]) == ("raw", "augment_capstone", "offensive")
    assert cfg["item_parser"] == "quoted"
    assert (cfg["temperature"], cfg["top_p"], cfg["top_k"], cfg["repetition_penalty"]) == (0.8, 1.0, 50, 1.0)
    assert (cfg["max_new_tokens"], cfg["max_input_tokens"]) == (256, 512)
    assert (cfg["examples_per_prompt"], cfg["per_call"], cfg["samples_per_prompt"]) == (2, 5, 5)
    assert cfg["positive_rates"] == [0.0025, 0.01, 0.03, 0.05]
    assert (cfg["val_fraction"], cfg["test_fraction"]) == (0.15, 0.15)
    assert cfg["keep_flagged"] is True and cfg["dtype"] == "fp16"
    # flags still win over the preset
    code, out, _ = run_cli(script.main, [*cli_args(labelled, tmp_path / "o"), "--preset", "capstone",
                                         "--prompt-format", "chat", "--positive-rates", "none", "--print-config"])
    assert yaml.safe_load(out)["prompt_format"] == "chat" and yaml.safe_load(out)["positive_rates"] is None


def test_raw_format_sends_the_seeds_plain_prompt_and_stops_at_the_next_section(labelled, tmp_path,
                                                                                fake_backend_cls):
    backend = fake_backend_cls(reply=lambda prompt, key: ANSWER)
    cfg = make_cfg(labelled, tmp_path / "out", prompt_format="raw", template="augment_capstone")
    run_generation(cfg, backend=backend)
    prompt = backend.generate_calls[0][0][0]
    assert isinstance(prompt, str)  # no chat: the backend sends it without a template
    assert prompt.startswith("### Instruction: DEFINITION: toxic: rude remarks") and prompt.endswith("\n### Response:")
    assert "double quotes" in prompt and "you are a total idiot number" in prompt
    records = read_jsonl(tmp_path / "out" / "synthetic_1.jsonl")
    texts = [r["text"] for r in records]
    assert "not this" not in texts and texts[:2] == ["first comment you clown go away now",
                                                     "second comment nobody likes you at all"]
    assert "next_section" in records[0]["generation"]["parse_notes"]
    assert records[0]["provenance"]["prompt_format"] == "raw"
    meta = json.loads((tmp_path / "out" / "synthetic_1.meta.json").read_text())
    assert meta["provenance"]["prompt_format"] == "raw"


def test_chat_stays_the_default(labelled, tmp_path, fake_backend_cls):
    backend = fake_backend_cls(reply=lambda prompt, key: ANSWER)
    run_generation(make_cfg(labelled, tmp_path / "out"), backend=backend)
    assert isinstance(backend.generate_calls[0][0][0], list)


def test_prompts_are_cut_to_max_input_tokens_keeping_the_response_marker(labelled, tmp_path, tiny_backend):
    long_rows = [{"id": f"t{i}", "comment": "you absolute clown " * 60 + f"number {i}", "bad": 1} for i in range(4)]
    long_rows += [{"id": f"r{i}", "comment": f"friendly comment {i}", "bad": 0} for i in range(6)]
    data = write_csv(tmp_path / "long.csv", long_rows)
    cfg = make_cfg(data, tmp_path / "out", prompt_format="raw", max_input_tokens=120, n=2, max_requests=2,
                   sampling=SamplingArgs(seed=1, max_new_tokens=4))
    aug = Augmenter(cfg, tiny_backend, load_inputs(cfg), DuplicateIndex([], None, 0))
    uncut = tiny_backend.prompt_token_count(aug.render(0))
    prompt = aug.chat(0)
    assert uncut > 120 >= tiny_backend.prompt_token_count(prompt)
    assert prompt.endswith("### Response:") and " ...\"" in prompt  # the examples were shortened, not the end
    run_generation(cfg, backend=tiny_backend)  # end to end with a real (tiny) model and raw prompts
    records = read_jsonl(tmp_path / "out" / "synthetic_1.jsonl")
    assert {r["generation"]["request"] for r in records} == {0, 1}
    assert all(r["generation"]["example_word_limits"] for r in records)


def test_a_prompt_too_long_even_without_examples_is_written_not_sent(labelled, tmp_path, tiny_backend):
    cfg = make_cfg(labelled, tmp_path / "out", prompt_format="raw", max_input_tokens=20, n=1, max_requests=1)
    run_generation(cfg, backend=tiny_backend)
    (record,) = read_jsonl(tmp_path / "out" / "synthetic_1.jsonl")
    assert record["status"] == "too_long" and "--max-input-tokens 20" in record["error"]


def test_samples_per_prompt_repeat_a_pair_with_new_seeds(labelled, tmp_path, fake_backend_cls):
    backend = fake_backend_cls(reply=lambda prompt, key: f'"{key} you are such a clown"')
    cfg = make_cfg(labelled, tmp_path / "out", samples_per_prompt=3, n=6, max_requests=6, keep_flagged=True)
    run_generation(cfg, backend=backend)
    by_request = {r["generation"]["request"]: r["generation"] for r in read_jsonl(cfg.output_dir / "synthetic_1.jsonl")}
    assert by_request[0]["example_ids"] == by_request[1]["example_ids"] == by_request[2]["example_ids"]
    assert by_request[3]["example_ids"] != by_request[0]["example_ids"]
    assert len({by_request[r]["request_seed"] for r in range(3)}) == 3


def test_identity_groups_take_turns_and_are_recorded(labelled, tmp_path, fake_backend_cls):
    backend = fake_backend_cls(reply=lambda prompt, key: f'"{key} comment that is rude to them"')
    cfg = make_cfg(labelled, tmp_path / "out", target_groups="Group A,Group B,Group C", samples_per_prompt=2,
                   n=8, max_requests=8, keep_flagged=True)
    run_generation(cfg, backend=backend)
    records = read_jsonl(cfg.output_dir / "synthetic_1.jsonl")
    groups = {r["generation"]["request"]: r["generation"]["target_group"] for r in records}
    assert [groups[r] for r in range(8)] == ["Group A", "Group A", "Group B", "Group B", "Group C", "Group C",
                                             "Group A", "Group A"]
    prompts = [p for chats, _, _ in backend.generate_calls for p in chats]
    assert "aimed at Group B" in prompts[2][-1]["content"]  # a template without {group}: one sentence added
    meta = json.loads((cfg.output_dir / "synthetic_1.meta.json").read_text())
    assert meta["provenance"]["target_groups"] == ["Group A", "Group B", "Group C"]


def test_the_capstone_group_list_and_group_files(tmp_path, labelled, fake_backend_cls):
    assert parse_groups("capstone") == list(CAPSTONE_GROUPS) and len(CAPSTONE_GROUPS) == 14
    file = tmp_path / "groups.txt"
    file.write_text("# one a line\nFarmers\n\nSailors\n")
    assert parse_groups(str(file)) == ["Farmers", "Sailors"]
    backend = fake_backend_cls(reply=lambda prompt, key: '"you lot are all the same, every one of you"')
    cfg = make_cfg(labelled, tmp_path / "out", target_groups="capstone", template="augment_capstone",
                   prompt_format="raw", max_requests=14, n=100, keep_flagged=True)
    run_generation(cfg, backend=backend)  # the seed's variant: one request per group
    prompts = [p for chats, _, _ in backend.generate_calls for p in chats]
    assert len(prompts) == 14 and "comments aimed at Muslims that match" in prompts[0]
    assert "aimed at Asian Americans/Pacific Islanders" in prompts[13]


def test_keep_flagged_counts_every_parsed_item_and_keeps_its_flags(labelled, tmp_path, fake_backend_cls):
    backend = fake_backend_cls(reply=lambda prompt, key: '"too short"\n"you are a total idiot number 1"')
    cfg = make_cfg(labelled, tmp_path / "out", keep_flagged=True, n=2, max_requests=1)
    run_generation(cfg, backend=backend)
    records = read_jsonl(cfg.output_dir / "synthetic_1.jsonl")
    assert all(r["passed"] for r in records)
    assert records[0]["flags"]["too_short"] and records[1]["flags"]["copies_real"]


def test_split_fractions_give_the_seeds_70_15_15(tmp_path):
    rows = [{"id": str(i), "comment": f"comment {i}", "bad": int(i % 10 == 0)} for i in range(200)]
    data = write_csv(tmp_path / "all.csv", rows)
    cfg = LadderConfig(tmp_path, "1", input=data, text_col="comment", label_col="bad", val_fraction=0.15,
                       test_fraction=0.15)
    train, val, test = load_real_splits(cfg)
    assert (len(train.texts), len(val.texts), len(test.texts)) == (140, 30, 30)
    train, val, test = load_real_splits(LadderConfig(tmp_path, "1", input=data, text_col="comment", label_col="bad"))
    assert (len(val.texts), len(test.texts)) == (20, 20)  # our default stays 80/10/10


BAD = flag_cases(
    """
    --prompt-format jinja
    --item-parser regex
    --max-input-tokens 0
    --samples-per-prompt 0
    --target-groups ' , '
    --target-groups no/such/groups.txt
    --target-groups a,b,a
    --val-fraction 0
    --val-fraction 0.5 --test-fraction 0.5  -> --test-fraction
    """
)


@pytest.mark.parametrize("extra, flag", BAD, ids=[" ".join(e) for e, _ in BAD])
def test_bad_value_is_one_line_naming_the_flag(extra, flag, labelled, tmp_path, bad_flag):
    bad_flag(script.main, [*cli_args(labelled, tmp_path / "o"), *extra], flag)
    assert not (tmp_path / "o").exists()


def test_a_gptq_model_without_gptqmodel_is_one_line_saying_what_to_install(labelled, tmp_path, tiny_model_dir,
                                                                           monkeypatch, run_cli):
    folder = shutil.copytree(tiny_model_dir, tmp_path / "gptq-model")
    config = json.loads((folder / "config.json").read_text())
    config["quantization_config"] = {"quant_method": "gptq", "bits": 4, "group_size": 32}
    (folder / "config.json").write_text(json.dumps(config))
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "gptqmodel" else real(name, *a))
    code, _, err = run_cli(script.main, [*cli_args(labelled, tmp_path / "o"), "-m", folder, "--device", "cpu"])
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    assert "GPTQ" in err and "pip install optimum gptqmodel" in err and "Traceback" not in err


def test_the_preset_model_is_refused_offline_in_one_line(labelled, tmp_path, run_cli):
    # the real loader (HF_HUB_OFFLINE=1 in the tests): the seed's model id is not in the cache
    code, _, err = run_cli(script.main, [*cli_args(labelled, tmp_path / "o"), "--preset", "capstone",
                                         "--positive-rates", "none", "--device", "cpu"])
    assert code == 2 and "WizardLM-Uncensored-Falcon-7B-GPTQ" in err and len(err.strip().splitlines()) == 1, err


def test_preset_print_config_reads_back_as_the_same_config(labelled, tmp_path, run_cli):
    from socialsynth.core.config import parse

    argv = [*cli_args(labelled, tmp_path / "o"), "--preset", "capstone", "--target-groups", "capstone"]
    code, out, _ = run_cli(script.main, [*argv, "--print-config"])
    job = tmp_path / "job.yaml"
    job.write_text(out)
    again = parse(AugmentConfig, ["--config", job], prog="augment_labels.py")
    assert again == parse(AugmentConfig, [str(a) for a in argv], prog="augment_labels.py")
    assert again.groups() == list(CAPSTONE_GROUPS) and again.ladder.val_fraction == 0.15


def test_the_seeds_quoted_parser_keeps_only_double_quoted_spans(labelled, tmp_path, fake_backend_cls):
    from socialsynth.jobs.augment.text import parse_quoted

    parsed = parse_quoted('### Response: Sure!\n1. "you are a #clown and a fool"\nnot quoted at all\n"second one"')
    assert parsed.items == ["you are a and a fool", "second one"] and "hashtags" in parsed.notes
    backend = fake_backend_cls(reply=lambda prompt, key: 'Here:\n"one quoted comment you fool" and a plain line\n#')
    cfg = make_cfg(labelled, tmp_path / "out", item_parser="quoted", n=1, max_requests=1, keep_flagged=True)
    run_generation(cfg, backend=backend)
    assert [r["text"] for r in read_jsonl(cfg.output_dir / "synthetic_1.jsonl")] == ["one quoted comment you fool"]
