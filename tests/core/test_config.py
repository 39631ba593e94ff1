"""socialsynth.core.config: dataclass fields become flags, job files, --print-config, validation as one line."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from socialsynth.core.config import (
    ConfigError,
    RangeArgs,
    check_min,
    comma_ints,
    flag,
    flat_values,
    group,
    parse,
    to_yaml,
)
from socialsynth.core.errors import InputError
from socialsynth.llm.args import ModelArgs, SamplingArgs
from tests.helpers import flag_cases


@dataclass
class Toy:
    """A toy job."""

    subreddit: str | None = flag(None, "subreddit", names=("-r", "--subreddit"))
    dimension: str = flag("formality", "dimension", names=("-n", "--norm_dimension"))
    batch_size: int = flag(16, "comments per chunk", names=("-b", "--batch_size"))
    levels: tuple[int, ...] = flag((1, 2, 3, 4, 5), "levels", convert=comma_ints)
    output_dir: Path = flag(Path("output"), "output folder", names=("-o", "--output_dir"))
    plot: bool = flag(True, "draw the plot")
    fast: bool = flag(False, "go fast")
    extra: list[str] = flag(help="repeatable", append=True, default_factory=list)
    model: ModelArgs = group(ModelArgs)
    sampling: SamplingArgs = group(SamplingArgs, temperature=1.0)
    range: RangeArgs = group(RangeArgs)

    def __post_init__(self):
        check_min(self, "batch_size", 1)
        if not self.levels or not set(self.levels) <= {1, 2, 3, 4, 5}:
            raise ConfigError("levels", f"must be among 1-5, got {list(self.levels)}")


def test_flags_spellings_groups_and_defaults():
    cfg = parse(Toy, ["-r", "askmen", "--norm-dimension", "humor", "--batch-size", "3", "--levels", "5,1",
                      "--no-plot", "--fast", "--extra", "a", "--extra", "b", "-m", "tiny", "--top_p", "0.5",
                      "-s", "2", "-e", "9", "-o", "out"])
    assert (cfg.subreddit, cfg.dimension, cfg.batch_size, cfg.levels) == ("askmen", "humor", 3, (1, 5))
    assert (cfg.plot, cfg.fast, cfg.extra, cfg.output_dir) == (False, True, ["a", "b"], Path("out"))
    assert (cfg.model.model, cfg.sampling.top_p, cfg.range.start_idx, cfg.range.end_idx) == ("tiny", 0.5, 2, 9)
    assert cfg.sampling.temperature == 1.0  # the job's own default for a shared group
    default = parse(Toy, [])
    assert (default.batch_size, default.levels, default.plot, default.extra) == (16, (1, 2, 3, 4, 5), True, [])
    assert parse(Toy, ["--norm_dimension", "x"]).dimension == "x"


def test_job_file_under_field_or_flag_names_and_command_line_wins(tmp_path):
    job = tmp_path / "job.yaml"
    job.write_text("subreddit: askmen\nnorm-dimension: politeness\nbatch_size: 4\nlevels: [1, 5]\ntemperature: 0.2\n")
    cfg = parse(Toy, ["--config", str(job), "-b", "8"])
    assert (cfg.subreddit, cfg.dimension, cfg.batch_size, cfg.levels) == ("askmen", "politeness", 8, (1, 5))
    assert cfg.sampling.temperature == 0.2


def test_print_config_round_trip(tmp_path, capsys):
    argv = ["-r", "askmen", "-b", "3", "--levels", "1,5", "--no-plot", "--extra", "x", "--temperature", "0.3"]
    with pytest.raises(SystemExit) as stop:
        parse(Toy, [*argv, "--print-config"])
    assert stop.value.code == 0
    text = capsys.readouterr().out
    job = tmp_path / "job.yaml"
    job.write_text(text)
    assert flat_values(parse(Toy, ["--config", str(job)])) == flat_values(parse(Toy, argv))
    assert to_yaml(parse(Toy, ["--config", str(job)])) == text


BAD = flag_cases(
    """
    -b 0                                  -> --batch-size
    -b many                               -> --batch-size
    --levels 0,9
    --temperature -1
    --top-p 1.5
    --max-new-tokens 0
    -s 5 -e 2                             -> --end-idx
    --shard 3/2
    --concurrency 0
    --backend openai --api-base ''        -> --api-base
    """
)


@pytest.mark.parametrize("argv,flag_name", BAD, ids=[" ".join(a) for a, _ in BAD])
def test_bad_values_are_one_line_naming_the_flag(argv, flag_name, bad_flag, monkeypatch):
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    bad_flag(lambda args: parse(Toy, args) and 0, argv, flag_name)


def test_unknown_flag_and_bad_choice_exit_2_in_one_line(capsys):
    for argv in (["--no-such-flag"], ["--backend", "tpu"]):
        with pytest.raises(SystemExit) as stop:
            parse(Toy, argv)
        assert stop.value.code == 2
        assert len(capsys.readouterr().err.strip().splitlines()) == 1


def test_job_file_errors_name_the_file_and_key(tmp_path):
    job = tmp_path / "job.yaml"
    job.write_text("batch_sise: 4\n")
    with pytest.raises(InputError, match="job.yaml.*batch_sise"):
        parse(Toy, ["--config", str(job)])
    job.write_text("batch_size: [oops\n")
    with pytest.raises(InputError, match="not valid YAML"):
        parse(Toy, ["--config", str(job)])
    job.write_text("batch_size: lots\n")
    with pytest.raises(InputError, match="--batch-size"):
        parse(Toy, ["--config", str(job)])
    with pytest.raises(InputError, match="cannot read"):
        parse(Toy, ["--config", str(tmp_path / "absent.yaml")])


def test_model_and_sampling_groups_build_engine_objects():
    cfg = parse(Toy, ["-m", "tiny", "-q", "4", "--temperature", "0", "--seed", "7"])
    spec = cfg.model.spec(seed=cfg.sampling.seed, max_batch_size=8)
    assert (spec.model, spec.quantization, spec.seed, spec.max_batch_size) == ("tiny", 4, 7, 8)
    params = cfg.sampling.params(max_new_tokens=12)
    assert (params.temperature, params.seed, params.max_new_tokens) == (0.0, 7, 12)


def test_help_lists_every_spelling_and_default():
    from socialsynth.core.config import build_parser

    text = build_parser(Toy, prog="toy").format_help()
    for spelling in ("--norm_dimension", "--norm-dimension", "--batch_size", "--batch-size", "--no-plot",
                     "--config", "--print-config", "(default: 16)"):
        assert spelling in text


@pytest.mark.parametrize(
    "script",
    ["generate_synthetic_data.py", "rephrase_posts.py", "augment_labels.py", "train_classifier.py",
     "cluster_users.py", "build_instruct_dataset.py"],
)
def test_every_script_takes_config_and_print_config(script):
    repo = next(p for p in Path(__file__).resolve().parents if (p / "pyproject.toml").exists())
    text = subprocess.run([sys.executable, script, "--help"], cwd=repo, capture_output=True, text=True,
                          timeout=120).stdout
    assert "--config" in text and "--print-config" in text
