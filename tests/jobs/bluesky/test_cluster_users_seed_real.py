"""--preset blueprint on BluePrint's own example events: the seed mode writes only the line kinds the seed writes.

The data root holds the real `expected_input_format_examples.json` (read in place, never copied into the repo)
next to a small file of hand-written English users who like, follow, block and quote the one real user who passes
the English rule. The embedder is the embedded MiniLM with the preset's CLS pooling (no model download).
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from socialsynth.jobs.bluesky.cli import main_cluster
from socialsynth.jobs.bluesky.events import EventStats, parse_files
from tests.jobs.bluesky.test_cluster_users_cli import _events, _post

REPO = next(p for p in Path(__file__).resolve().parents if (p / "pyproject.toml").exists())
EXAMPLES = REPO.parent / "shared" / "data" / "real" / "bluesky_blueprint_examples"
EXAMPLES = EXAMPLES / "expected_input_format_examples.json"
REAL = "did:plc:3fua2ckctobd7qsejqrj4247"  # the real account with two English replies in the examples
UNKNOWN_POST = "at://did:plc:nobody/app.bsky.feed.post/zzz"
SEED_KINDS = {"like", "unlike", "repost", "unrepost", "follow", "unfollow", "block", "unblock", "post_update",
              "post_delete", "quote", "ignore"}  # fmt: skip

pytestmark = pytest.mark.skipif(not EXAMPLES.is_file(), reason="real data folder absent")


def _commit(did: str, t: int, collection: str, rkey: str, record: dict) -> dict:
    record = {"$type": collection, "createdAt": f"2025-03-04T00:00:{t:02d}Z", **record}
    return {"did": did, "time_us": 1741000000000000 + t * 1000000, "kind": "commit",
            "commit": {"rev": rkey, "operation": "create", "collection": collection, "rkey": rkey,
                       "record": record, "cid": f"cid{rkey}"}}  # fmt: skip


def _real_replies() -> list:
    events = list(parse_files([EXAMPLES], EventStats()))
    return [e for e in events if e.did == REAL and e.kind == "reply" and list(e.langs) == ["en"]]


def _synthetic(real_reply_uri: str, other_real_did: str) -> list[dict]:
    like, follow, block = "app.bsky.feed.like", "app.bsky.graph.follow", "app.bsky.graph.block"
    quote = {"text": "quoting this", "langs": ["en"],
             "embed": {"$type": "app.bsky.embed.record", "record": {"cid": "c", "uri": real_reply_uri}}}
    quote_unknown = {"text": "quoting a stranger", "langs": ["en"],
                     "embed": {"$type": "app.bsky.embed.record", "record": {"cid": "c", "uri": UNKNOWN_POST}}}
    return _events() + [
        _commit("did:plc:cooking0", 1, like, "lk1", {"subject": {"cid": "c", "uri": real_reply_uri}}),
        _commit("did:plc:cooking0", 2, like, "lk2", {"subject": {"cid": "c", "uri": UNKNOWN_POST}}),
        _commit("did:plc:cooking0", 3, follow, "fo1", {"subject": other_real_did}),
        _commit("did:plc:cooking0", 4, block, "bl1", {"subject": REAL}),
        _commit("did:plc:cooking0", 5, "app.bsky.actor.profile", "self", {"displayName": "C", "description": "bio"}),
        _commit("did:plc:astro0", 6, "app.bsky.feed.post", "qt1", quote),
        _commit("did:plc:astro0", 7, "app.bsky.feed.post", "qt2", quote_unknown),
        _post("did:plc:cooking3", "x1", "Jupiter is lovely but I prefer bread", 2000,
              reply_to="at://did:plc:astro0/app.bsky.feed.post/astro0p0"),
    ]  # fmt: skip


def _run(run_cli, root: Path, out: Path, *extra) -> tuple[dict, list[tuple[int, list]]]:
    code, _, err = run_cli(main_cluster, ["--preset", "blueprint", "--embedding-model", "embedded", "--data-root", root,
                                          "-o", out, "--n-clusters", 2, "--min-cluster-size", 2, "--n-workers", 1,
                                          *extra])  # fmt: skip
    assert code == 0, err
    folder = out / "processed_2_clusters"
    clusters = json.loads((folder / "user_clusters.json").read_text())
    lines = [(int(f.stem.split("_")[1]), json.loads(x)) for f in sorted(folder.glob("cluster_*.jsonl"))
             for x in f.read_text().splitlines()]  # fmt: skip
    return clusters, lines


def _kind(line: list) -> str | None:
    if len(line) == 2 and "actions" in line[1]:
        return next(k for k, v in line[1]["actions"].items() if v)
    return None  # a chain


def test_seed_mode_on_the_real_examples_writes_only_the_seed_line_kinds(tmp_path, run_cli):
    replies = _real_replies()
    assert len(replies) == 2
    events = list(parse_files([EXAMPLES], EventStats()))
    other = next(e.subject for e in events if e.kind == "follow" and e.subject != REAL)  # a DID with no posts here
    root = tmp_path / "root"
    root.mkdir()
    (root / "examples.json").symlink_to(EXAMPLES)  # read in place
    synthetic = _synthetic(replies[0].uri, other)
    (root / "synthetic.jsonl").write_text("".join(json.dumps(e) + "\n" for e in synthetic), encoding="utf-8")

    clusters, lines = _run(run_cli, root, tmp_path / "seed")
    assert REAL in clusters and len(clusters) == 13
    posts = {(e.did, e.text) for e in [*events, *parse_files([root / "synthetic.jsonl"], EventStats())]
             if e.kind in ("post", "reply") and list(e.langs) == ["en"] and e.did in clusters}  # fmt: skip
    kinds = Counter(_kind(line) for _, line in lines)
    assert set(kinds) - {None} <= SEED_KINDS and not kinds["profile_update"]
    for cluster, line in lines:
        kind = _kind(line)
        if kind is None:  # chains: members' own posts and replies only
            assert all(clusters.get(m["user_id"]) == cluster for m in line), line
            continue
        content, action = line
        assert clusters[action["user_id"]] == cluster
        assert (content["user_id"], content.get("text", "")) in posts, line  # the seed's content: a post in the data
    assert kinds["like"] == 2 and kinds["block"] == 1 and kinds["quote"] == 1 and kinds["follow"] == 1
    real_texts = {r.text for r in replies}
    assert sum(line[0].get("text") in real_texts for _, line in lines if _kind(line)) == 3  # like, block, quote
    chains = [line for _, line in lines if _kind(line) is None]
    # the real thread is quote -> reply -> reply; quotes are not chain messages in the seed, so the first reply
    # heads the chain and the second follows it
    real_chains = [c for c in chains if any(m["user_id"] == REAL for m in c)]
    assert [[m["text"] for m in c] for c in real_chains] == [[r.text for r in replies]]

    # ours (the default lines and chains) on the same data writes what the seed leaves out
    _, ours = _run(run_cli, root, tmp_path / "ours", "--action-lines", "all", "--chains", "paths")
    ours_kinds = Counter(_kind(line) for _, line in ours)
    assert ours_kinds["profile_update"] == 1
    assert ours_kinds["like"] == 3 and ours_kinds["quote"] == 3  # likes and quotes of posts not in the data, no text
    assert any(_kind(line) == "follow" and "text" not in line[0] for _, line in ours)
    assert any(_kind(line) is None and len({clusters[m["user_id"]] for m in line}) > 1 for _, line in ours)
