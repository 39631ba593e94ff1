"""`socialsynth rate-sheet`: a blind sheet of rewrite pairs, its HTML form, its key, and the round trip through
--judge-agreement."""

from __future__ import annotations

import csv
import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from socialsynth.__main__ import main as socialsynth_main
from socialsynth.core.cli import run_main
from socialsynth.jobs.norms.cli import main as norms_main
from socialsynth.llm import BackendSpec

REPO = next(p for p in Path(__file__).resolve().parents if (p / "pyproject.toml").exists())
HUMAN_COLUMNS = (REPO / "data" / "judge_pairs_sample.csv").read_text(encoding="utf-8").splitlines()[0].split(",")
LEVEL_OF_ORIGINAL = 3  # the test's originals carry the marker [3]


def normness_output(path: Path, n: int = 6, dimension: str = "formality") -> Path:
    """A normness output: each text carries its level as a "[k]" marker (the original: [3])."""
    records = []
    for i in range(n):
        record = {"id": f"c{i}", "idx": i, "original_comment": f"original [3] comment {i}",
                  "submission_title": f"Post {i}", "provenance": {"dimension": dimension}}
        record.update({str(lv): f"rewrite [{lv}] of comment {i}" for lv in range(1, 6)})
        records.append(record)
    records[0]["2"] = "a </script><b>tag</b> [2] inside"  # markup in a comment must not break the page
    records[1]["4"] = ""  # an empty rewrite is never shown
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    return path


def rate_sheet(capsys, *args) -> tuple[int, str, str]:
    rc = socialsynth_main(["rate-sheet", *map(str, args)])
    out = capsys.readouterr()
    return rc, out.out, out.err


def read_csv(path: Path) -> list[dict]:
    with open(path, newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def version_level(version: str) -> int:
    return LEVEL_OF_ORIGINAL if version == "original" else int(version)


def test_sheet_is_blind_in_the_human_schema_with_a_separate_key(tmp_path, capsys):
    source = normness_output(tmp_path / "askmen_formality.jsonl")
    rc, stdout, err = rate_sheet(capsys, tmp_path / "sheets" / "askmen", "--input", source, "--pairs", 12,
                                 "--seed", 4)
    assert rc == 0, err
    rows = read_csv(tmp_path / "sheets" / "askmen.csv")
    with open(tmp_path / "sheets" / "askmen.csv", newline="", encoding="utf-8") as handle:
        header = next(csv.reader(handle))
    assert header == HUMAN_COLUMNS[:10] + ["formality"]
    assert len(rows) == 12 and all(r["formality"] == "" and r["topic"] == "askmen" for r in rows)
    key = json.loads((tmp_path / "sheets" / "askmen.key.json").read_text(encoding="utf-8"))
    assert key["dimensions"] == ["formality"] and len(key["pairs"]) == 12
    records = {json.loads(line)["id"]: json.loads(line) for line in source.read_text().splitlines()}
    sides = set()
    for row, entry in zip(rows, key["pairs"], strict=True):
        assert row["pair_id"] == entry["pair_id"]
        record = records[entry["record_id"]]
        for side in ("1", "2"):
            version = entry[f"comment{side}"]
            assert row[f"comment{side}"] == record["original_comment" if version == "original" else version]
            assert re.fullmatch(r"askmen_c\d{3}", row[f"comment{side}_id"])  # ids tell nothing of the version
        assert row["comment1"] != row["comment2"] and row["title1"] == record["submission_title"]
        sides.add(version_level(entry["comment1"]) > version_level(entry["comment2"]))
    assert sides == {True, False}  # the higher level is not always on one side
    assert len({e["record_id"] for e in key["pairs"]}) == 6  # spread over every comment before repeating one
    assert "" not in {r["comment1"] for r in rows} | {r["comment2"] for r in rows}
    assert "12 pairs" in stdout and "askmen.key.json" in stdout


def test_same_seed_same_sheet_other_seed_other_sheet(tmp_path, capsys):
    source = normness_output(tmp_path / "askmen_formality.jsonl")
    for name, seed in (("a", 1), ("b", 1), ("c", 2)):
        assert rate_sheet(capsys, tmp_path / name, "--input", source, "--pairs", 8, "--seed", seed)[0] == 0
    text = {name: (tmp_path / f"{name}.csv").read_text(encoding="utf-8") for name in "abc"}
    assert text["a"] == text["b"] and text["a"] != text["c"]


def test_html_form_is_self_contained_and_escapes_markup(tmp_path, capsys):
    source = normness_output(tmp_path / "askmen_formality.jsonl")
    assert rate_sheet(capsys, tmp_path / "s", "--input", source, "--pairs", 30, "--seed", 0)[0] == 0
    page = (tmp_path / "s.html").read_text(encoding="utf-8")
    assert "http://" not in page and "https://" not in page and " src=" not in page
    assert page.count("</script>") == 2  # the data block and the script: a comment's "</script>" is escaped
    assert "<\\/script><b>tag<\\/b> [2] inside" in page
    assert "Blob" in page and "hard-to-tell" in page


@pytest.mark.skipif(shutil.which("node") is None, reason="needs node to run the form's script")
def test_html_form_saves_the_chosen_answers_as_csv(tmp_path, capsys):
    source = normness_output(tmp_path / "askmen_formality.jsonl", n=2)
    assert rate_sheet(capsys, tmp_path / "s", "--input", source, "--pairs", 3, "--seed", 0)[0] == 0
    page = (tmp_path / "s.html").read_text(encoding="utf-8")
    data = page.split('<script id="data" type="application/json">')[1].split("</script>")[0]
    script = page.split("<script>")[1].split("</script>")[0]
    harness = tmp_path / "run.js"
    harness.write_text(NODE_DOM.replace("__DATA__", json.dumps(data)) + script + NODE_CLICKS, encoding="utf-8")
    proc = subprocess.run(["node", str(harness)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    saved = json.loads(proc.stdout)
    assert saved["download"] == "s.filled.csv"
    lines = list(csv.DictReader(saved["csv"].splitlines()))
    sheet = read_csv(tmp_path / "s.csv")
    assert [r["formality"] for r in lines] == ["1", "hard-to-tell", ""]  # as clicked below; the last left open
    for got, want in zip(lines, sheet, strict=True):
        assert {k: v for k, v in got.items() if k != "formality"} == {k: v for k, v in want.items()
                                                                       if k != "formality"}


# A tiny stand-in for the browser: just the DOM calls the form makes, and a Blob that keeps its text.
NODE_DOM = """
const nodes = {};
function make(tag) {
  const n = { tag: tag, children: [], listeners: {}, textContent: "", className: "",
    appendChild(c) { this.children.push(c); return c; }, remove() {},
    addEventListener(ev, fn) { this.listeners[ev] = fn; },
    click() { if (this.tag === "a") saved.download = this.download; } };
  if (tag === "input") inputs.push(n);
  return n;
}
const inputs = [];
const saved = {};
nodes.data = { textContent: __DATA__ };  // the raw text of the data block
nodes.sheet = make("form"); nodes.save = make("button"); nodes.count = make("span");
global.document = { getElementById: (id) => nodes[id], createElement: make,
  createTextNode: (t) => ({ textContent: t }), body: make("body") };
global.localStorage = { getItem: () => null, setItem: () => {} };
global.Blob = function (parts) { saved.csv = parts.join(""); };
global.URL = { createObjectURL: () => "blob:x" };
"""
NODE_CLICKS = """
function choose(pair, value) {
  const input = inputs.filter((i) => i.name.split("|")[0] === pair && i.value === value)[0];
  input.checked = true; input.listeners.change();
}
const DATA_ROWS = JSON.parse(nodes.data.textContent).rows;
choose(DATA_ROWS[0].pair_id, "1");
choose(DATA_ROWS[1].pair_id, "2");
choose(DATA_ROWS[1].pair_id, "hard-to-tell");
nodes.save.listeners.click();
process.stdout.write(JSON.stringify(saved));
"""


def test_round_trip_filled_sheet_gives_judge_agreement(tmp_path, capsys, fake_backend_cls, monkeypatch):
    source = normness_output(tmp_path / "askmen_formality.jsonl")
    assert rate_sheet(capsys, tmp_path / "sheet", "--input", source, "--pairs", 20, "--seed", 7)[0] == 0
    rows = read_csv(tmp_path / "sheet.csv")
    key = json.loads((tmp_path / "sheet.key.json").read_text(encoding="utf-8"))["pairs"]
    # A rater who picks the side of the higher target level, and cannot tell equal ones apart
    for row, entry in zip(rows, key, strict=True):
        first, second = version_level(entry["comment1"]), version_level(entry["comment2"])
        row["formality"] = "hard-to-tell" if first == second else ("1" if first > second else "2")
    filled = tmp_path / "sheet.filled.csv"
    with open(filled, "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    equal = sum(r["formality"] == "hard-to-tell" for r in rows)

    def by_marker(chat):
        level = next(k for k in range(1, 6) if f"[{k}]" in chat[-1]["content"])
        return [0.8 if k == level else 0.05 for k in range(1, 6)]

    monkeypatch.setattr(BackendSpec, "load", lambda spec: fake_backend_cls(choice_probs=by_marker))
    out = tmp_path / "out"
    try:
        rc = run_main(lambda: norms_main(["--judge-agreement", str(filled), "-o", str(out),
                                          "--judge", "hf:marker:logits"]))
    except SystemExit as e:
        rc = e.code
    captured = capsys.readouterr()
    assert rc == 0, captured.err
    (written,) = out.glob("judge_agreement_sheet.filled_*.json")
    counts = json.loads(written.read_text(encoding="utf-8"))["report"]["formality"]
    assert counts["all"]["agreement"] == 1.0
    assert counts["all"]["skipped"] == equal and counts["all"]["agree"] == 20 - equal
    assert set(counts) == {"askmen", "all"}
    assert "20 pairs" in captured.out


@pytest.mark.parametrize(
    ("make_input", "extra", "expect"),
    [
        (lambda p: p.write_text('{"id": "a", "comment": "x"}\n', encoding="utf-8"), [], "original_comment"),
        (lambda p: p.write_text('{"id": "a", "original_comment": "x", "1": "y"}\n', encoding="utf-8"), [],
         "--dimension"),
        (lambda p: p.write_text('{"id": "a", "original_comment": "x", "1": "x"}\n', encoding="utf-8"),
         ["--dimension", "formality"], "no record has two different"),
        (lambda p: normness_output(p), ["--dimension", "nosuchdimension"], "nosuchdimension"),
        (lambda p: normness_output(p), ["--pairs", "0"], "--pairs"),
        (lambda p: None, [], "no such file"),
    ],
)
def test_bad_input_is_one_line_exit_2(tmp_path, capsys, make_input, extra, expect):
    source = tmp_path / "askmen_formality.jsonl"
    make_input(source)
    rc, _, err = rate_sheet(capsys, tmp_path / "s", "--input", source, *extra)
    assert rc == 2 and expect in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert not (tmp_path / "s.csv").exists()


def test_an_existing_sheet_is_kept_unless_overwrite(tmp_path, capsys):
    source = normness_output(tmp_path / "askmen_formality.jsonl")
    assert rate_sheet(capsys, tmp_path / "s", "--input", source, "--pairs", 4)[0] == 0
    (tmp_path / "s.csv").write_text("answers", encoding="utf-8")
    rc, _, err = rate_sheet(capsys, "--input", source, tmp_path / "s.csv", "--pairs", 4)
    assert rc == 2 and "--overwrite" in err and (tmp_path / "s.csv").read_text(encoding="utf-8") == "answers"
    assert rate_sheet(capsys, tmp_path / "s", "--input", source, "--overwrite")[0] == 0
    assert (tmp_path / "s.csv").read_text(encoding="utf-8") != "answers"
