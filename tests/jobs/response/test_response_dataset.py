"""build-dataset (socialsynth/jobs/response/dataset.py) and the Weibo importers (weibo.py): cleaning rules, the
min-history skip, BM25 retrieval, splits, bad input lines, and the bundled English sample."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from predict_responses import main
from socialsynth.core.cli import run_main
from socialsynth.core.errors import InputError
from socialsynth.jobs.response import dataset
from socialsynth.jobs.response.dataset import (
    BuildConfig,
    CleaningRules,
    build_cases,
    clean_history,
    is_hashtag_only,
    run_build,
    tokenize,
    top_k,
)
from socialsynth.jobs.response.inputs import Post, RowChecker, User

REPO = next(p for p in Path(__file__).resolve().parents if (p / "pyproject.toml").exists())
SAMPLE = REPO / "data" / "responses_sample"


def write_jsonl(path: Path, rows) -> Path:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r, ensure_ascii=False)) + "\n" for r in rows))
    return path


def filler(uid: str, n: int, start: int = 0) -> list[dict]:
    return [
        {"id": f"{uid}-f{i}", "text": f"ordinary post number {i} about gardening and weather"}
        for i in range(start, start + n)
    ]


def make_inputs(tmp_path: Path, users, responses, topics=None) -> Path:
    topics = topics or [
        {"topic_id": "t1", "topic": "BikeLanes", "news": "The council approved new protected bike lanes downtown."},
        {"topic_id": "t2", "topic": "Heat", "news": "A heatwave brings record temperatures this week."},
    ]
    write_jsonl(tmp_path / "topics.jsonl", topics)
    write_jsonl(tmp_path / "users.jsonl", users)
    write_jsonl(tmp_path / "responses.jsonl", responses)
    return tmp_path


# -- cleaning ----------------------------------------------------------------------------------------------------


def test_each_cleaning_rule_drops_what_it_should():
    posts = [
        Post("keep1", "A normal post about trains", topics=["transit"]),
        Post("empty", "   "),
        Post("tags", "#cycling #summer"),
        Post("weibo_tags", "#山姆超市# #食品安全#"),
        Post("short_topic", "Chat about AI", topics=["ai"]),
        Post("excl_topic", "Buy now", topics=["advertising"]),
        Post("excl_text", "Click the lottery link"),
        Post("excl_retweet", "look at this", retweet="Win the lottery today"),
        Post("names_user", "greg says hello to all"),
        Post("keep2", "Retweeting news", retweet="A long article about rail policy"),
    ]
    user = User("u1", "greg", {}, posts)
    rules = CleaningRules(min_topic_chars=4, exclude_topics=("advert",), exclude_texts=("lottery",))
    drops = Counter()
    kept = clean_history(user, rules, drops)
    assert [p.id for p in kept] == ["keep1", "keep2"]
    assert drops == {
        "empty text": 1,
        "hashtag only": 2,
        "topic shorter than 4 characters": 1,
        "excluded topic": 1,
        "excluded text": 2,
        "names the user": 1,
    }
    # each rule can be switched off
    loose = CleaningRules(min_topic_chars=0, drop_naming_user=False)
    kept = {p.id for p in clean_history(user, loose, Counter())}
    assert {"short_topic", "names_user", "excl_topic", "excl_text"} <= kept
    strict = CleaningRules(require_topics=True)
    assert [p.id for p in clean_history(user, strict, Counter())] == ["keep1", "excl_topic"]


@pytest.mark.parametrize(
    "text,expected",
    [
        ("#MondayMotivation #cycling", True),
        ("#山姆# #话题#", True),
        ("#话题#真好", False),
        ("hello #tag", False),
        ("https://t.co/x #a #b", True),
        ("no tags at all", False),
    ],
)
def test_hashtag_only(text, expected):
    assert is_hashtag_only(text) is expected


def test_min_history_skip_is_counted_and_target_excluded(tmp_path):
    users = [
        # 10 usable posts, but one of them is the response itself: 9 left for its case -> skipped
        {"user_id": "a", "name": "alice", "history": filler("a", 9) + [{"id": "ra", "text": "Bike lanes, finally!"}]},
        # 10 usable + 2 dropped by cleaning -> kept
        {"user_id": "b", "name": "bob", "history": filler("b", 10) + [{"text": "#x #y"}, {"text": "bob here"}]},
        # only 8 -> skipped
        {"user_id": "c", "name": "carol", "history": filler("c", 8)},
    ]
    responses = [
        {"topic_id": "t1", "user_id": "a", "id": "ra", "text": "Bike lanes, finally!"},
        {"topic_id": "t1", "user_id": "b", "text": "Not sure about this"},
        {"topic_id": "t1", "user_id": "c", "text": "Great news"},
        {"topic_id": "t1", "user_id": "zz", "text": "who am I"},
    ]
    folder = make_inputs(tmp_path, users, responses)
    cfg = BuildConfig(input=folder, output_dir=tmp_path / "out", test_topics=("t2",))
    summary = run_build(cfg)
    cases = [json.loads(line) for line in (tmp_path / "out" / "cases.jsonl").read_text().splitlines()]
    assert [c["user_id"] for c in cases] == ["b"]
    reason = "fewer than 10 history posts after cleaning"
    assert summary["skipped_cases"] == {reason: 2, "user not in the users file": 1}
    assert summary["skipped_users"] == {"count": 2, "reasons": {reason: 2}}
    assert summary["dropped_history_posts"] == {"hashtag only": 1, "names the user": 1}
    meta = json.loads((tmp_path / "out" / "cases.meta.json").read_text())
    assert meta["counts"]["skipped_cases"][reason] == 2
    assert meta["inputs"]["users"]["sha256"] and meta["versions"]["rank_bm25"]
    # with a lower bar alice's case exists, and her response is not in her own history
    cases, _ = build_cases(BuildConfig(input=folder, min_history=9, test_topics=("t2",), top_k=20))
    alice = next(c for c in cases if c["user_id"] == "a")
    assert "ra" not in alice["history_ids"] and "Bike lanes, finally!" not in alice["history"]
    assert len(alice["history"]) == 9  # fewer posts than k: all of them


def test_answers_to_test_topics_never_reach_a_history(tmp_path):
    leak = "The heat is unbearable, stay inside"
    users = [{"user_id": "a", "name": "alice", "history": filler("a", 12) + [{"id": "h-leak", "text": leak}]}]
    responses = [
        {"topic_id": "t1", "user_id": "a", "text": "Bike lanes are great"},
        {"topic_id": "t2", "user_id": "a", "id": "h-leak", "text": leak},
    ]
    folder = make_inputs(tmp_path, users, responses)
    cases, stats = build_cases(BuildConfig(input=folder, test_topics=("t2",), top_k=50))
    train = next(c for c in cases if c["topic_id"] == "t1")
    assert leak not in train["history"] and train["split"] == "train"
    assert stats["dropped_history_posts"] == {"answer to a test topic": 1}


# -- BM25 --------------------------------------------------------------------------------------------------------


def test_bm25_ranks_the_matching_post_first():
    news = "Bus and metro workers will strike for 48 hours after wage talks broke down."
    history = [
        "Made pancakes for breakfast, the kids loved them.",
        "The weather is lovely today, going for a walk.",
        "Metro workers deserve better wages; I support the strike.",
        "Finished a good book about gardening.",
        "Traffic was terrible on the bridge again.",
    ]
    ranked = top_k(news, history, 3, "en")
    assert ranked[0][0] == 2 and ranked[0][1] > ranked[1][1]
    assert len(top_k(news, history, 10, "en")) == 5  # fewer posts than k
    assert top_k(news, [], 5, "en") == []
    assert [i for i, _ in top_k("zzz", history, 5, "en")] == [0, 1, 2, 3, 4]  # no overlap: input order


def test_bm25_chinese_without_jieba(monkeypatch):
    monkeypatch.setattr(dataset, "_jieba", lambda: None)
    assert tokenize("山姆超市abc Def", "zh") == ["山", "姆", "超", "市", "abc", "def"]
    news = "山姆超市10天翻车3次，屡现食品安全风波。"
    history = ["今天天气很好，出去散步了。", "山姆超市的食品安全问题又来了", "周末去看了电影"]
    assert top_k(news, history, 1, "zh")[0][0] == 1


def test_retweets_are_retrieved_with_their_text(tmp_path):
    post = Post("r", "看看这个", retweet="山姆超市食品安全风波")
    assert post.retrieval_text == "看看这个 山姆超市食品安全风波"
    assert dataset.history_item_text(post, "zh") == "转发了微博：山姆超市食品安全风波，并评论说：看看这个"


# -- splits and input errors ---------------------------------------------------------------------------------------


def test_splits(tmp_path):
    topics = [{"topic_id": f"t{i}", "news": f"news {i}", "split": "test" if i == 3 else None} for i in range(5)]
    parsed = dataset.read_topics(write_jsonl(tmp_path / "topics.jsonl", topics), RowChecker(False, Counter()))
    splits, how = dataset.assign_splits(parsed, ("t1", "t2"), None, 0)
    assert [t for t, s in splits.items() if s == "test"] == ["t1", "t2"]
    splits, _ = dataset.assign_splits(parsed, (), None, 0)
    assert [t for t, s in splits.items() if s == "test"] == ["t3"]
    a, how = dataset.assign_splits(parsed, (), 0.4, 7)
    b, _ = dataset.assign_splits(parsed, (), 0.4, 7)
    assert a == b and sum(s == "test" for s in a.values()) == 2 and "seed 7" in how
    with pytest.raises(InputError, match="unknown topic ids: nope"):
        dataset.assign_splits(parsed, ("nope",), None, 0)


def test_bad_line_gives_one_line_error_or_counted_skip(tmp_path, capsys):
    users = [
        {"user_id": "a", "name": "alice", "history": filler("a", 12)},
        {"user_id": "b", "name": "bob", "history": "not a list"},
        {"user_id": "c", "name": "carol", "history": [{"no_text": 1}]},
    ]
    folder = make_inputs(tmp_path, users, [{"topic_id": "t1", "user_id": "a", "text": "ok"}])
    with pytest.raises(InputError) as err:
        build_cases(BuildConfig(input=folder))
    assert str(err.value) == f"{folder / 'users.jsonl'}:2: field 'history': must be a list of posts"
    _, stats = build_cases(BuildConfig(input=folder, skip_bad_rows=True))
    assert stats["skipped_rows"] == {"users: bad history": 2}
    # invalid JSON in responses, through the command line: exit 2 and one line on stderr
    write_jsonl(folder / "users.jsonl", users[:1])
    write_jsonl(folder / "responses.jsonl", ['{"topic_id": "t1", "user_id": "a", "text": "ok"}', "{broken"])
    argv = ["build-dataset", "--input", str(folder), "-o", str(tmp_path / "out")]
    assert run_main(lambda: main(argv)) == 2
    err_lines = capsys.readouterr().err.strip().splitlines()
    assert len(err_lines) == 1 and "responses.jsonl:2: invalid JSON" in err_lines[0]


# -- Weibo importer --------------------------------------------------------------------------------------------------


def test_weibo_importer(tmp_path):
    root = tmp_path / "topics"
    topic = root / "山姆10天翻车3次"
    topic.mkdir(parents=True)
    (topic / "news.txt").write_text(
        "自9月以来，山姆超市10天已翻车3次，屡现食品安全风波。\\n顾客发现异物。", encoding="utf-8"
    )
    (topic / "search.csv").write_text(
        "user_id,用户昵称,微博正文,user_authentication,ip,话题,id\n"
        "1001,小王,山姆超市的食品安全真让人担心 网页链接,普通用户,北京,山姆10天翻车3次,w1\n"
        "1002,小李,#山姆10天翻车3次#,黄V,,山姆10天翻车3次,w2\n"
        "1003,老张,没有历史文件的用户,普通用户,上海,,w3\n",
        encoding="utf-8",
    )
    history = tmp_path / "user_history"
    weibo = [{"id": f"p{i}", "text": f"今天的第{i}条日常微博，分享生活", "topics": "日常生活分享"} for i in range(11)]
    weibo += [
        {"id": "p-food", "text": "超市食品安全问题要重视\n小王的微博视频", "topics": "食品安全话题,热门视频"},
        {
            "id": "p-rt",
            "text": "转发一下",
            "topics": "转发微博话题",
            "retweet": {"text": "山姆超市被曝出异物", "topics": ""},
        },
        {"id": "p-short", "text": "短话题的微博", "topics": "短"},
        {"id": "p-notopic", "text": "没有话题的微博"},
        {"id": "w1", "text": "山姆超市的食品安全真让人担心", "topics": "山姆10天翻车3次"},
    ]
    (history / "1001").mkdir(parents=True)
    (history / "1001" / "1001.json").write_text(
        json.dumps({"user": {"screen_name": "小王", "description": "吃货", "gender": "m"}, "weibo": weibo}),
        encoding="utf-8",
    )
    (history / "1002.json").write_text(json.dumps({"user": {"screen_name": "小李"}, "weibo": weibo[:3]}))

    cfg = BuildConfig(input=root, format="weibo", user_history=history, output_dir=tmp_path / "out", test_fraction=0)
    summary = run_build(cfg)
    cases = [json.loads(line) for line in (tmp_path / "out" / "cases.jsonl").read_text().splitlines()]
    assert len(cases) == 1
    case = cases[0]
    assert case["id"] == "山姆10天翻车3次:1001" and case["language"] == "zh" and case["split"] == "train"
    assert case["user_name"] == "小王"
    assert case["profile"] == {"description": "吃货", "gender": "m", "location": "北京", "level": "普通用户"}
    assert case["response"] == "山姆超市的食品安全真让人担心"  # 网页链接 removed
    assert case["news"].endswith("屡现食品安全风波。\n顾客发现异物。")
    assert "w1" not in case["history_ids"]  # the target post
    assert set(case["history_ids"][:2]) == {"p-food", "p-rt"}  # the food-safety posts rank first
    assert "超市食品安全问题要重视" in case["history"]  # video suffix cleaned away
    assert summary["skipped_rows"] == {"no history file": 1}
    assert summary["skipped_cases"] == {"hashtag-only response": 1}
    assert summary["dropped_history_posts"] == {"topic shorter than 4 characters": 1, "no topics": 1}
    assert summary["require_topics"] is True


# -- the bundled English sample ------------------------------------------------------------------------------------


def test_bundled_sample_builds(tmp_path):
    cfg = BuildConfig(input=SAMPLE, output_dir=tmp_path)
    first = run_build(cfg)
    assert first["n_topics"] == 5 and first["n_users"] == 10
    assert first["n_cases"] == first["n_responses"] >= 35
    assert first["split"]["test_topics"] == ["NovaX15Launch", "TransitStrike"]
    assert first["history_posts_after_cleaning"]["min"] >= 12
    text = (tmp_path / "cases.jsonl").read_text()
    cases = [json.loads(line) for line in text.splitlines()]
    assert all(len(c["history"]) == 5 and c["language"] == "en" for c in cases)
    assert {c["split"] for c in cases} == {"train", "test"}
    run_build(cfg)  # a rerun rebuilds the same file
    assert (tmp_path / "cases.jsonl").read_text() == text


def test_csv_and_parquet_inputs(tmp_path):
    import pandas as pd

    rows = lambda name: [json.loads(x) for x in (SAMPLE / f"{name}.jsonl").read_text().splitlines()]  # noqa: E731
    pd.DataFrame(rows("topics")).to_csv(tmp_path / "topics.csv", index=False)
    users = pd.DataFrame(rows("users"))
    users["history"] = users["history"].map(json.dumps)
    users.to_csv(tmp_path / "users.csv", index=False)
    pd.DataFrame(rows("responses")).to_parquet(tmp_path / "responses.parquet")
    from_tables, _ = build_cases(BuildConfig(input=tmp_path))
    from_jsonl, _ = build_cases(BuildConfig(input=SAMPLE))
    assert from_tables == from_jsonl
