"""The research code's comment filters (socialsynth.jobs.prepare.reddit)."""

from __future__ import annotations

import json
from collections import Counter

import pytest

from socialsynth.core.errors import InputError
from socialsynth.jobs.prepare.reddit import (
    DAY,
    FILTER_REASONS,
    JOIN_REASONS,
    PROCESSED_FIELDS,
    KeptWriter,
    filter_reason,
    prepare_comments,
    prepare_sources,
)
from socialsynth.jobs.prepare.sources import (
    COMMENT_COLUMNS,
    RowSource,
    iter_comments,
    load_submissions,
    submission_has_media,
)


@pytest.fixture(scope="module")
def raw_rows(askmen_raw_file):
    return [json.loads(line) for line in askmen_raw_file.read_text(encoding="utf-8").splitlines() if line.strip()]


def test_each_raw_row_gets_exactly_its_expected_reason(raw_rows):
    assert len(raw_rows) == 52
    for row in raw_rows:
        assert filter_reason(row) == row.get("_expected_filter"), row["id"]


def test_prepare_comments_counts_reasons_and_drops_private_fields(raw_rows, askmen_file):
    kept, dropped = prepare_comments(raw_rows)
    expected = Counter(r["_expected_filter"] for r in raw_rows if "_expected_filter" in r)
    assert dropped == expected
    assert set(dropped) <= set(FILTER_REASONS)
    assert len(kept) == 40
    assert all(not k.startswith("_") for rec in kept for k in rec)
    # Same records, in the same order, as the prepared sample shipped in data/.
    prepared = [json.loads(line) for line in askmen_file.read_text(encoding="utf-8").splitlines()]
    assert kept == prepared


BASE = {
    "id": "x",
    "parent_id": "t3_a",
    "link_id": "t3_a",
    "comment": "A fine comment.",
    "edited": False,
    "submission_has_media": False,
    "created_submission": 1_000_000,
    "created_comment": 1_000_100,
    "retrieved_on": 1_000_100 + 3 * 86400,
}


@pytest.mark.parametrize(
    "change,reason",
    [
        ({}, None),
        ({"parent_id": "t1_b"}, "not_top_level"),
        ({"parent_id": "t1_b", "link_id": None}, "not_top_level"),
        ({"comment": "[deleted]"}, "removed_or_deleted"),
        ({"comment": "  [removed] "}, "removed_or_deleted"),
        ({"comment": ""}, "removed_or_deleted"),
        ({"edited": 1_000_500}, "edited"),
        ({"edited": "false"}, None),
        ({"edited": 0}, None),
        ({"comment": "https://example.com/x?y=1"}, "single_link"),
        ({"comment": "see https://example.com for details"}, None),
        ({"submission_has_media": True}, "media_post"),
        ({"created_comment": 1_000_000 + 86400 + 1, "retrieved_on": 1_000_000 + 10 * 86400}, "late_comment"),
        ({"retrieved_on": 1_000_100 + 3600}, "retrieved_too_soon"),
        ({"created_comment": None}, None),  # unknown times: nothing to judge by
        ({"parent_id": None, "link_id": None, "depth": 1}, "not_top_level"),  # flat tables: depth in the thread
        ({"parent_id": None, "link_id": None, "depth": 0}, None),
        ({"parent_id": None, "link_id": None}, None),  # unknown: kept
    ],
)
def test_filter_reason_rules(change, reason):
    assert filter_reason({**BASE, **change}) == reason


# --------------------------------------------------------------------------- Pushshift dumps and flat tables

T0 = 1_600_000_000
RETRIEVED = T0 + 30 * DAY
MISSING = object()  # a field absent from the record (older dumps lack retrieved_on, deleted authors author_fullname)


def ps_post(pid, sub="AskMen", created=T0, **fields):
    """A Pushshift-like submission (self post unless fields say otherwise)."""
    return {
        "id": pid,
        "subreddit": sub,
        "title": f"Title of {pid}",
        "selftext": f"Body of {pid}",
        "created_utc": created,
        "is_self": True,
        "is_video": False,
        "media": None,
        "secure_media": None,
        "url": f"https://www.reddit.com/r/{sub}/comments/{pid}/",
        "domain": f"self.{sub}",
        **fields,
    }


def ps_comment(cid, pid="p1", sub="AskMen", created=T0 + 600, **fields):
    """A Pushshift-like top-level comment that passes every filter unless fields say otherwise."""
    row = {
        "id": cid,
        "body": f"Comment {cid}: a real opinion with a few words.",
        "author": f"user_{cid}",
        "author_fullname": f"t2_{cid}",
        "created_utc": created,
        "score": 10,
        "link_id": f"t3_{pid}",
        "parent_id": f"t3_{pid}",
        "subreddit": sub,
        "edited": False,
        "retrieved_on": RETRIEVED,
        **fields,
    }
    return {k: v for k, v in row.items() if v is not MISSING}


PS_POSTS = [
    ps_post("p1"),
    ps_post("p2", created=str(T0)),  # old dumps store times as strings
    ps_post("pimg", is_self=False, url="https://i.redd.it/abc123.jpg", domain="i.redd.it", post_hint="image"),
    ps_post("pcol", sub="College"),
]
PS_COMMENTS = [
    ps_comment("keep1", score=42),
    ps_comment("keep2", pid="p2", created=str(T0 + 60), score="7"),
    ps_comment("keep3", retrieved_on=MISSING, retrieved_utc=RETRIEVED, author_fullname=MISSING),
    ps_comment("keep4", pid="pcol", sub="College"),
    ps_comment("reply", parent_id="t1_keep1"),  # not_top_level
    ps_comment("gone", body="[deleted]"),  # removed_or_deleted
    ps_comment("edit", edited=T0 + 900),  # edited
    ps_comment("link", body="https://example.com/only-a-link"),  # single_link
    ps_comment("onimg", pid="pimg"),  # media_post
    ps_comment("late", created=T0 + DAY + 1),  # late_comment
    ps_comment("soon", retrieved_on=T0 + 600 + 3600),  # retrieved_too_soon
    ps_comment("orphan", pid="nopost"),  # no_submission
]
ONE_PER_REASON = {reason: 1 for reason in FILTER_REASONS} | {"no_submission": 1, "other_subreddit": 0}


def write_jsonl(path, rows, *, zst=False):
    data = "".join(json.dumps(row) + "\n" for row in rows).encode("utf-8")
    if zst:  # like the Pushshift dumps: a long window that a default decompressor refuses
        import io

        import zstandard

        params = zstandard.ZstdCompressionParameters.from_level(3, window_log=29)
        buffer = io.BytesIO()
        with zstandard.ZstdCompressor(compression_params=params).stream_writer(buffer, closefd=False) as writer:
            writer.write(data)
        data = buffer.getvalue()
    path.write_bytes(data)
    return path


def run_sources(comments, submissions, out, *, split=False, subreddits=(), on_bad_row="error"):
    report = prepare_sources(
        RowSource(comments, on_bad_row=on_bad_row),
        RowSource(submissions, on_bad_row=on_bad_row),
        KeptWriter(out, split=split),
        subreddits=subreddits,
    )
    return report


def read_out(path):
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


@pytest.mark.parametrize("zst", [False, True], ids=["jsonl", "zst"])
def test_pushshift_dump_one_drop_per_reason(tmp_path, zst):
    names = ("RC_2020-09.zst", "RS_2020-09.zst") if zst else ("RC.jsonl", "RS.jsonl")
    comments = write_jsonl(tmp_path / names[0], PS_COMMENTS, zst=zst)
    submissions = write_jsonl(tmp_path / names[1], PS_POSTS, zst=zst)
    report = run_sources(comments, submissions, tmp_path / "out.jsonl")

    kept = read_out(tmp_path / "out.jsonl")
    assert [r["id"] for r in kept] == ["keep1", "keep2", "keep3", "keep4"]
    assert {r: report.dropped[r] for r in (*FILTER_REASONS, *JOIN_REASONS)} == ONE_PER_REASON
    assert report.comments.rows_read == len(PS_COMMENTS) and report.submissions.rows_read == len(PS_POSTS)
    assert report.not_checked() == [] and dict(report.kept) == {"AskMen": 3, "College": 1}
    by_id = {r["id"]: r for r in kept}
    assert all(list(r) == list(PROCESSED_FIELDS) for r in kept)
    assert by_id["keep1"] == {
        "id": "keep1",
        "subreddit": "AskMen",
        "submission_id": "p1",
        "submission_title": "Title of p1",
        "submission_body": "Body of p1",
        "comment": "Comment keep1: a real opinion with a few words.",
        "created_comment": T0 + 600,
        "created_submission": T0,
        "label": 42,
        "author": "user_keep1",
        "author_id": "t2_keep1",
        "submission_has_media": False,
        "edited": False,
        "retrieved_on": RETRIEVED,
    }
    # string numbers of old dumps become numbers; retrieved_utc stands in for retrieved_on
    keep2 = by_id["keep2"]
    assert (keep2["label"], keep2["created_comment"], keep2["created_submission"]) == (7, T0 + 60, T0)
    assert by_id["keep3"]["retrieved_on"] == RETRIEVED and by_id["keep3"]["author_id"] is None


def test_zst_fixture_needs_the_long_window(tmp_path):
    import zstandard

    path = write_jsonl(tmp_path / "RS_2020-09.zst", PS_POSTS, zst=True)
    with pytest.raises(zstandard.ZstdError, match="too much memory"):
        zstandard.ZstdDecompressor().stream_reader(path.open("rb")).read()
    assert [row["id"] for _, row in RowSource(path)] == [p["id"] for p in PS_POSTS]


def test_subreddit_selection_counts_other_subreddits_and_skips_their_posts(tmp_path):
    comments = write_jsonl(tmp_path / "RC.jsonl", PS_COMMENTS)
    submissions = write_jsonl(tmp_path / "RS.jsonl", PS_POSTS)
    report = run_sources(comments, submissions, tmp_path / "askmen.jsonl", subreddits=["ASKMEN"])
    assert [r["id"] for r in read_out(tmp_path / "askmen.jsonl")] == ["keep1", "keep2", "keep3"]
    assert report.dropped["other_subreddit"] == 1 and report.dropped["no_submission"] == 1
    assert report.submissions_held == 3 and report.submissions_not_held == {"other_subreddit": 1}


def test_split_by_subreddit_reopens_files_beyond_the_open_limit(tmp_path):
    rows = [{"id": f"{sub}{i}", "subreddit": sub} for i in range(3) for sub in ("A", "b", "C", "B")]
    with KeptWriter(tmp_path / "out", split=True, max_open=1) as writer:
        for row in rows:
            writer.write(row)
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["A.jsonl", "C.jsonl", "b.jsonl"]
    assert [r["id"] for r in read_out(tmp_path / "out" / "b.jsonl")] == ["b0", "B0", "b1", "B1", "b2", "B2"]
    assert writer.kept == {"A": 3, "b": 6, "C": 3}


def test_a_failure_midway_leaves_no_output_and_no_temp_file(tmp_path):
    lines = [json.dumps(ps_comment("keep1")), json.dumps(ps_comment("keep2")), '{"id": "broken",']
    comments = tmp_path / "RC.jsonl"
    comments.write_text("\n".join(lines) + "\n", encoding="utf-8")
    submissions = write_jsonl(tmp_path / "RS.jsonl", PS_POSTS)
    (tmp_path / "out").mkdir()
    with pytest.raises(InputError) as error:
        run_sources(comments, submissions, tmp_path / "out" / "all.jsonl")
    assert (error.value.path, error.value.line) == (str(comments), 3)
    assert list((tmp_path / "out").iterdir()) == []


def test_comments_are_streamed_not_loaded(tmp_path):
    path = tmp_path / "RC.jsonl"
    path.write_text(json.dumps(ps_comment("first")) + "\nnot json at all\n", encoding="utf-8")
    stream = iter_comments(RowSource(path))
    assert next(stream)["id"] == "first"  # the broken line 2 has not been read yet
    with pytest.raises(InputError, match="RC.jsonl:2: invalid JSON"):
        next(stream)


@pytest.mark.parametrize(
    "post,expected",
    [
        (ps_post("a"), False),
        (ps_post("a", media={"oembed": {"type": "video"}}), True),
        (ps_post("a", secure_media={"reddit_video": {}}), True),
        (ps_post("a", is_video=True), True),
        (ps_post("a", post_hint="rich:video"), True),
        (ps_post("a", post_hint="link", is_self=False, url="https://example.com/story"), False),
        (ps_post("a", is_self=False, url="https://example.com/clip.MP4?x=1", domain="example.com"), True),
        (ps_post("a", is_self=False, url="https://youtu.be/abc", domain="youtu.be"), True),
        (ps_post("a", is_self=False, url="https://www.youtube.com/watch?v=abc", domain=None), True),
        (ps_post("a", is_self=False, url="https://i.imgur.com/x", domain="i.imgur.com"), True),
        ({"id": "a", "title": "t", "is_video": "False", "url": "", "media": ""}, False),  # a CSV row
        ({"id": "a", "title": "t"}, None),  # no media fields at all: unknown
    ],
)
def test_submission_has_media(post, expected):
    assert submission_has_media(post) is expected


def write_csv(path, header, rows):
    import csv

    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)
    return path


COLLEGE_POSTS = ["post_id", "subreddit", "title", "selftext", "author_hash", "created_utc", "upvotes", "over_18"]
COLLEGE_COMMENTS = [
    "comment_id",
    "post_id",
    "parent_id",
    "depth",
    "subreddit",
    "post_title",
    "text",
    "author_hash",
    "created_utc",
    "upvotes",
    "n_direct_replies",
]


def college_tables(tmp_path):
    posts = write_csv(
        tmp_path / "posts.csv",
        COLLEGE_POSTS,
        [
            ["pa1", "GradSchool", "Is a second master's worth it?", "Asking for, well, me.", "h1", T0, 12, False],
            ["pb2", "College", "Dorm or apartment, junior year?", "", "h2", T0 + 50, 3, False],
        ],
    )

    def row(cid, pid, parent, depth, text, created=T0 + 300, upvotes=5, sub="GradSchool"):
        return [cid, pid, parent, depth, sub, "(title repeated)", text, "h9", created, upvotes, 0]

    comments = write_csv(
        tmp_path / "comments.csv",
        COLLEGE_COMMENTS,
        [
            row(
                "c1",
                "pa1",
                "t3_pa1",
                0,
                'Only if it "opens a door", literally,\nnot just delays a decision.',
                upvotes=17,
            ),
            row("c2", "pa1", "t1_c1", 1, "Agreed."),  # reply: parent and depth agree
            row("c3", "pa1", "", 2, "Depth says reply."),  # no parent_id: the depth decides
            row("c4", "pa1", "t1_c2", "", "Parent says reply."),  # no depth: the parent decides
            row("c5", "pb2", "t3_pb2", 0, "Apartment, no contest.", sub="College", upvotes=-3),
            row("c6", "pb2", "t3_pb2", 0, "[removed]", sub="College"),
            row("c7", "zz9", "t3_zz9", 0, "Post not in the table."),
            row("c8", "pa1", "t3_pa1", 0, "Much later.", created=T0 + 2 * DAY),
        ],
    )
    return comments, posts


def test_flat_tables_join_depth_rule_and_not_checked_note(tmp_path, capsys):
    from socialsynth.__main__ import main

    comments, posts = college_tables(tmp_path)
    out = tmp_path / "out"
    assert (
        main(["prepare", "--comments", str(comments), "--posts", str(posts), "--split-by-subreddit", "-o", str(out)])
        == 0
    )
    printed = capsys.readouterr().out
    assert "not checked: edited, media_post, retrieved_too_soon (columns absent)" in printed
    assert "comment=text" in printed and "label=upvotes" in printed and "submission_id=post_id" in printed

    grad, college = read_out(out / "GradSchool.jsonl"), read_out(out / "College.jsonl")
    assert [r["id"] for r in grad] == ["c1"] and [r["id"] for r in college] == ["c5"]
    assert grad[0]["comment"] == 'Only if it "opens a door", literally,\nnot just delays a decision.'
    assert (grad[0]["submission_title"], grad[0]["submission_body"]) == (
        "Is a second master's worth it?",
        "Asking for, well, me.",
    )
    assert (grad[0]["label"], grad[0]["created_comment"], grad[0]["created_submission"]) == (17, T0 + 300, T0)
    assert college[0]["label"] == -3 and college[0]["submission_body"] == ""
    assert (grad[0]["edited"], grad[0]["retrieved_on"], grad[0]["submission_has_media"]) == (None, None, None)

    meta = json.loads((out / "prepare.meta.json").read_text(encoding="utf-8"))
    assert meta["dropped"] == {
        "not_top_level": 3,
        "removed_or_deleted": 1,
        "edited": 0,
        "single_link": 0,
        "media_post": 0,
        "late_comment": 1,
        "retrieved_too_soon": 0,
        "no_submission": 1,
        "other_subreddit": 0,
        "duplicate_id": 0,
    }
    assert meta["kept"] == {"GradSchool": 1, "College": 1}
    assert meta["not_checked"] == ["edited", "media_post", "retrieved_too_soon"]


def test_column_overrides_and_missing_columns(tmp_path):
    path = write_csv(tmp_path / "c.csv", ["cid", "thread", "words", "ups", "ts"], [["x1", "p1", "Hi there.", "4", T0]])
    with pytest.raises(InputError) as error:
        list(iter_comments(RowSource(path)))
    assert error.value.field == "id" and error.value.path == str(path)
    assert "looked for: id, comment_id" in str(error.value)

    columns = COMMENT_COLUMNS.with_overrides(
        {"id": "cid", "submission_id": "thread", "comment": "words", "created_comment": "ts"}
    )
    [row] = iter_comments(RowSource(path), columns)
    assert (row["id"], row["submission_id"], row["comment"], row["label"], row["created_comment"]) == (
        "x1",
        "p1",
        "Hi there.",
        4,
        T0,
    )
    with pytest.raises(InputError, match="unknown comments field 'score'"):
        COMMENT_COLUMNS.with_overrides({"score": "ups"})


def test_bad_rows_are_counted_when_skipping(tmp_path):
    path = tmp_path / "RS.jsonl"
    lines = [json.dumps(ps_post("p1")), "{oops", json.dumps(ps_post("p2", created="yesterday")), "[1, 2]"]
    lines += [json.dumps({k: v for k, v in ps_post("p3").items() if k != "id"}), json.dumps(ps_post("p1"))]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    source = RowSource(path, on_bad_row="skip")
    posts, counts = load_submissions(source)
    assert list(posts) == ["p1"] and counts == {"duplicate_id": 1}
    assert source.rows_read == 6
    assert source.skipped == {
        "invalid JSON": 1,
        "created_submission not a number": 1,
        "not an object": 1,
        "missing submission_id": 1,
    }
    with pytest.raises(InputError) as error:
        load_submissions(RowSource(path))
    assert (error.value.line, str(error.value)) == (
        2,
        f"{path}:2: invalid JSON (Expecting property name enclosed in double quotes, column 2)",
    )


@pytest.mark.parametrize("suffix", [".tsv", ".parquet", ".jsonl.gz", ".csv.zst"])
def test_flat_tables_in_other_formats_give_the_same_records(tmp_path, suffix):
    import gzip

    import pandas as pd
    import zstandard

    comments_csv, posts_csv = college_tables(tmp_path)
    reference = tmp_path / "reference.jsonl"
    run_sources(comments_csv, posts_csv, reference)
    converted = []
    for path in (comments_csv, posts_csv):
        frame = pd.read_csv(path, dtype=str, keep_default_na=False)
        target = path.with_name(path.stem + suffix)
        if suffix == ".tsv":
            frame.to_csv(target, sep="\t", index=False)
        elif suffix == ".parquet":
            frame.to_parquet(target)
        elif suffix == ".jsonl.gz":
            target.write_bytes(gzip.compress(frame.to_json(orient="records", lines=True).encode("utf-8")))
        else:
            target.write_bytes(zstandard.ZstdCompressor().compress(path.read_bytes()))
        converted.append(target)
    run_sources(*converted, tmp_path / "out.jsonl")
    assert read_out(tmp_path / "out.jsonl") == read_out(reference)
    assert [r["id"] for r in read_out(reference)] == ["c1", "c5"]


def test_csv_line_that_is_not_utf8(tmp_path):
    comments, posts = college_tables(tmp_path)
    raw = comments.read_bytes().replace(b"Agreed.", b"Agr\xe9ed.")
    comments.write_bytes(raw)
    with pytest.raises(InputError) as error:
        run_sources(comments, posts, tmp_path / "out.jsonl")
    assert (error.value.line, error.value.message) == (4, "not valid UTF-8 (byte 47)")  # c1 spans lines 2-3
    report = run_sources(comments, posts, tmp_path / "out.jsonl", on_bad_row="skip")
    assert report.comments.skipped == {"not UTF-8": 1} and report.comments.rows_read == 8
    assert report.dropped["not_top_level"] == 2  # c2 (the reply) was skipped, not judged
