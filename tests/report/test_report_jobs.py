"""socialsynth report on each job's small outputs: the records' texts and flags are on the page, nothing is fetched
from the network, markup in a comment stays text, and the command's errors are one line (exit 2)."""

from __future__ import annotations

import pytest

from socialsynth.__main__ import main as socialsynth_main
from socialsynth.core.outputs import find_runs, require_runs
from socialsynth.report.build import build_report
from tests.helpers import read_jsonl, run_script
from tests.report.samples import (
    JUDGES_SUMMARY,
    assert_offline,
    cells,
    item_lists,
    norms_record,
    only_list,
    write_norms_run,
)


def report(folder, tmp_path, name="report.html", **kw) -> str:
    return build_report(folder, tmp_path / name, **kw).read_text(encoding="utf-8")


# ------------------------------------------------------------------------------------------- normness


@pytest.mark.slow  # runs a whole job (tiny model or MiniLM)
def test_norms_report_has_every_original_rewrite_flag_and_the_plot(norms_out, tmp_path):
    html = report(norms_out, tmp_path)
    assert_offline(html)
    records = read_jsonl(norms_out / "askmen_formality.jsonl")
    data = only_list(html)
    assert [it["id"] for it in data["items"]] == [str(r["id"]) for r in records]
    texts = {c["t"] for c in cells(data)}
    for rec in records:
        assert rec["original_comment"] in texts
        assert all(rec[lv] in texts for lv in "12345")
    # 8 new tokens: every rewrite is cut at the limit, flagged and outlined as failing the filters
    flagged = [c for c in cells(data) if c["l"] != "original"]
    assert all("truncated" in c["f"] and c["b"] for c in flagged)
    assert "truncated" in data["flags"] and data["diff"] is True
    assert all(isinstance(c["d"], list) for c in flagged)
    assert html.count('src="data:image/png;base64,') >= 1  # the shift plot, inlined
    assert "Very Casual" in html  # the level names of the dimension, in the summary table


@pytest.mark.slow  # runs a whole job (tiny model or MiniLM)
def test_report_flag_writes_the_page_with_plots_drawn_after_the_run_record(norms_out):
    """make_norms passed --report: the page exists and holds the shift plot, drawn after the record closed."""
    page = (norms_out / "askmen_formality.report.html").read_text(encoding="utf-8")
    assert_offline(page)
    assert 'src="data:image/png;base64,' in page and "askmen_formality" in page


def test_norms_judges_candidates_ladders_and_sort_keys(tmp_path):
    records = [norms_record(0, [1.0, 2.0, 3.0, 4.0, 5.0]), norms_record(1, [1.0, 3.0, 2.5, 4.0, 4.5],
                                                                      refusal_at="3")]
    html = report(write_norms_run(tmp_path / "out", records, summary=JUDGES_SUMMARY), tmp_path)
    assert "generator:tiny:likelihood × hf:big:logits" in html and "0.77 [0.4, 0.9]" in html  # agreement + CI
    assert "0.81 [0.5, 0.95]" in html and "1/2" in html  # per judge: Spearman with the level, ladders in order
    data = only_list(html)
    first, second = data["items"]
    assert "ladder does not rise" not in first["f"] and "ladder does not rise" in second["f"]
    assert "judges disagree" in first["f"]  # the second judge rates every text one level higher
    level3 = second["c"][3]
    assert level3["l"] == "3" and "refusal" in level3["f"] and level3["b"] is True
    assert any(n.startswith("generator:tiny:likelihood: 2.50") for n in level3["n"])
    assert any(n.startswith("hf:big:logits: 3.50") for n in level3["n"])
    assert [x["kept"] for x in level3["x"]] == [True, False] and level3["x"][1]["t"] == "discarded candidate 1/3"
    assert first["k"]["r5"] == 5.0 and second["k"]["r5"] == 4.5 and first["k"]["d5"] == 0.2
    assert {"orig", "ladder", "spread", "r1", "d1"} <= {s["key"] for s in data["sorts"]}
    assert "refusal" in data["flags"] and "ladder does not rise" in data["flags"]


def test_markup_in_a_comment_is_text_and_cannot_close_the_script(tmp_path):
    evil = 'lol </script><script>alert("x")</script> <img src="https://tracker.example/p.png"> & more'
    html = report(write_norms_run(tmp_path / "out", [norms_record(0, [1, 2, 3, 4, 5], comment=evil)]), tmp_path)
    assert "</script><script>alert" not in html and "tracker.example/p.png\">" not in html
    assert_offline(html)
    assert only_list(html)["items"][0]["c"][0]["t"] == evil


def test_large_lists_are_gzipped_and_read_back_the_same(tmp_path):
    folder = write_norms_run(tmp_path / "out", [norms_record(i, [1, 2, 3, 4, 5]) for i in range(30)])
    plain, packed = report(folder, tmp_path, "a.html"), report(folder, tmp_path, "b.html", compress=True)
    assert 'data-encoding="gzip+base64"' in packed and 'data-encoding="gzip+base64"' not in plain
    assert only_list(plain) == only_list(packed)


# ------------------------------------------------------------------------------------------- the other jobs


def test_rephrase_report_highlights_replayed_details_and_shows_the_search(rephrase_out, tmp_path):
    html = report(rephrase_out, tmp_path)
    assert_offline(html)
    data = only_list(html)
    records = read_jsonl(rephrase_out / "rephrased.jsonl")
    texts = {c["t"] for c in cells(data)}
    assert all(r["generated_text"] in texts and r["original"] in texts for r in records)
    p1 = next(it for it in data["items"] if it["id"] == "p1")
    replaying = next(c for c in p1["c"] if c["l"] == "model-a")
    assert {"Priya", "34"} <= set(replaying["h"]) and "replays details" in p1["f"]
    assert not next(c for c in p1["c"] if c["l"] == "model-b")["h"]
    p3 = next(it for it in data["items"] if it["id"] == "p3")
    assert "refusal" in next(c for c in p3["c"] if c["l"] == "model-b")["f"]
    assert "Temperature search" in html and "★" in html and "Linkability audit" in html
    assert data["columns"] == ["original", "model-a", "model-b"]


def test_augment_report_items_flags_and_ladder(augment_out, tmp_path):
    html = report(augment_out, tmp_path)
    assert_offline(html)
    data = only_list(html)
    records = read_jsonl(augment_out / "synthetic_1.jsonl")
    assert {c["t"] for c in cells(data)} == {r["text"] for r in records}
    short = [it for it in data["items"] if it["c"][0]["t"].startswith("short")]
    assert short and all("too_short" in it["f"] and it["c"][0]["b"] for it in short)
    assert "Sparsity ladder" in html and "achieved" in html
    assert 'alt="ladder.png"' in html  # the ladder curves, inlined


@pytest.mark.slow  # runs a whole job (tiny model or MiniLM)
def test_cluster_report_has_a_card_per_cluster(cluster_out, tmp_path):
    html = report(cluster_out, tmp_path)
    assert_offline(html)
    assert html.count("<div class='card'>") == 2
    assert "top terms:" in html and "ignored messages:" in html
    assert "follow" in html and "like" in html and "chains" in html  # the action kinds and their shares
    assert ("bread" in html or "sourdough" in html) and ("telescope" in html or "saturn" in html)
    assert 'alt="cluster_map.png"' in html


def test_responses_report_puts_predictions_beside_the_real_response(responses_out, tmp_path):
    html = report(responses_out, tmp_path)
    assert_offline(html)
    data = only_list(html)
    case = next(it for it in data["items"] if it["id"] == "t1:u1")
    assert [c["l"] for c in case["c"]] == ["real response", "pac-lora", "zero-shot"]
    assert case["c"][0]["t"] == "I love this news, great job everyone!"
    assert case["c"][2]["t"] == "Okay." and any(n.startswith("rouge_l") for n in case["c"][1]["n"])
    assert "sentiment differs" in {f for c in cells(data) for f in c.get("f", [])}
    assert "Comparison" in html and "[" in html and "pac-lora" in html


def test_train_report_metrics_confusion_and_errors(train_out, tmp_path):
    html = report(train_out, tmp_path)
    assert_offline(html)
    assert "confusion matrix" in html and "per label" in html and "macro_f1" in html
    data = only_list(html)
    predictions = read_jsonl(train_out / "predictions_test.jsonl")
    wrong = {p["id"] for p in predictions if p["label"] != p["prediction"]}
    assert wrong and data["items"] and {it["id"] for it in data["items"]} <= wrong
    assert all("(text not found" not in it["c"][0]["t"] for it in data["items"])


@pytest.mark.slow  # runs a whole job (tiny model or MiniLM)
def test_one_report_for_a_folder_of_several_jobs(report_root, norms_out, rephrase_out, train_out, tmp_path):
    html = report(report_root, tmp_path)
    assert_offline(html)
    assert len(item_lists(html)) >= 3
    assert {"norms", "rephrase", "train"} <= {r.job for r in find_runs(report_root)}


# ------------------------------------------------------------------------------------------- outputs and CLI


@pytest.mark.slow  # runs a whole job (tiny model or MiniLM)
def test_find_runs_gives_each_file_to_its_run(rephrase_out, norms_out):
    (run,) = find_runs(rephrase_out)
    assert run.job == "rephrase"
    assert {"rephrased.jsonl", "audit.json", "temperature_search.png"} <= {p.name for p in run.data_files}
    (norms,) = find_runs(norms_out / "askmen_formality.meta.json")
    assert {p.name for p in norms.data_files} >= {"askmen_formality.jsonl", "askmen_formality.shift.png"}
    assert "askmen_formality.config.yaml" not in {p.name for p in norms.data_files}


@pytest.mark.slow  # runs a whole job (tiny model or MiniLM)
def test_cli_writes_the_page(norms_out, tmp_path, capsys):
    assert socialsynth_main(["report", str(norms_out), "-o", str(tmp_path / "r.html")]) == 0
    assert "report:" in capsys.readouterr().out and (tmp_path / "r.html").stat().st_size > 1000


@pytest.mark.parametrize("case", ["missing", "empty", "out_is_folder"])
def test_cli_bad_input_is_one_line_exit_2(case, tmp_path):
    target, extra = tmp_path / "nothing", []
    if case == "empty":
        target.mkdir()
        (target / "x.meta.json").write_text("{}", encoding="utf-8")  # not a run record
    if case == "out_is_folder":
        write_norms_run(target, [norms_record(0, [1, 2, 3, 4, 5])])
        extra = ["-o", str(tmp_path)]
    proc = run_script("-m", "socialsynth", "report", target, *extra)
    assert proc.returncode == 2, proc.stderr
    lines = [ln for ln in proc.stderr.splitlines() if ln.startswith("error")]
    assert len(lines) == 1 and "Traceback" not in proc.stderr
    if case != "out_is_folder":
        with pytest.raises(Exception, match="no run records|no such folder"):
            require_runs(target)


def test_report_of_a_record_file_only_shows_that_run(tmp_path):
    write_norms_run(tmp_path / "out", [norms_record(0, [1, 2, 3, 4, 5])], name="a_formality")
    write_norms_run(tmp_path / "out", [norms_record(1, [1, 2, 3, 4, 5])], name="b_formality")
    html = report(tmp_path / "out" / "b_formality.meta.json", tmp_path)
    assert [it["id"] for it in only_list(html)["items"]] == ["c1"]


def test_word_diff_opcodes_rebuild_the_rewrite_from_the_original():
    import random

    from socialsynth.report.normness import original_matcher, word_diff, words

    rng = random.Random(0)
    vocab = "a b c d e f".split()
    for _ in range(300):
        original = " ".join(rng.choice(vocab) for _ in range(rng.randint(0, 10)))
        rewrite = "\n".join(rng.choice(vocab) for _ in range(rng.randint(0, 10)))
        a, b, rebuilt, i = words(original), words(rewrite), [], 0
        for i1, i2, j1, j2 in word_diff(original_matcher(original), rewrite):
            rebuilt += a[i:i1] + b[j1:j2]  # what the page shows: equal words, then the inserted ones
            i = i2
        assert rebuilt + a[i:] == b


def test_the_finish_hook_writes_a_report_only_when_asked(tmp_path):
    from dataclasses import dataclass

    from socialsynth.core.run import JobRun
    from socialsynth.report import hook

    @dataclass
    class Cfg:
        report: bool

    folder = write_norms_run(tmp_path / "out", [norms_record(0, [1, 2, 3, 4, 5])])
    for name, asked in (("quiet", False), ("asked", True)):
        (folder / f"{name}.jsonl").write_text((folder / "sub_formality.jsonl").read_text(), encoding="utf-8")
        with JobRun("norms", folder / f"{name}.meta.json", {"report": asked, "levels": [1, 2, 3, 4, 5]}):
            pass
    hook.note_finished(type("Run", (), {"config": Cfg(False), "path": folder / "quiet.meta.json"})())
    hook.note_finished(type("Run", (), {"config": Cfg(True), "path": folder / "asked.meta.json"})())
    assert hook.write_pending() == [folder / "asked.report.html"]
    assert not (folder / "quiet.report.html").exists()
    assert "c0" in (folder / "asked.report.html").read_text(encoding="utf-8")
