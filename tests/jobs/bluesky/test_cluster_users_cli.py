"""cluster_users.py end to end on hand-written Jetstream events, with the embedded MiniLM."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from socialsynth.core.run import read_run_record
from tests.helpers import run_script

REPO = next(p for p in Path(__file__).resolve().parents if (p / "pyproject.toml").exists())
TOPICS = {
    "cooking": [
        "I baked sourdough bread with rye flour",
        "This pasta sauce needs more garlic and basil",
        "Roasting vegetables in the oven tonight",
        "My soup recipe uses lentils and cumin",
    ],
    "astro": [
        "The telescope showed Jupiter's moons tonight",
        "A meteor shower peaks before dawn this week",
        "Saturn's rings look sharp through the new lens",
        "The nebula photo took four hours of exposure",
    ],
}


def _post(did: str, rkey: str, text: str, t: int, langs=("en",), reply_to: str | None = None) -> dict:
    record = {
        "$type": "app.bsky.feed.post",
        "createdAt": f"2025-03-0{1 + t % 5}T10:00:{t % 60:02d}Z",
        "text": text,
        "langs": list(langs),
    }
    if reply_to:
        record["reply"] = {"parent": {"cid": "c", "uri": reply_to}, "root": {"cid": "c", "uri": reply_to}}
    return {
        "did": did,
        "time_us": 1740823200000000 + t * 1000000,
        "kind": "commit",
        "commit": {
            "rev": rkey,
            "operation": "create",
            "collection": "app.bsky.feed.post",
            "rkey": rkey,
            "record": record,
            "cid": f"cid{rkey}",
        },
    }


def _events() -> list[dict]:
    events, t = [], 0
    for topic, texts in TOPICS.items():
        for u in range(6):
            did = f"did:plc:{topic}{u}"
            for k, text in enumerate(texts[:3]):
                t += 1
                events.append(_post(did, f"{topic}{u}p{k}", f"{text} ({u})", t))
            t += 1
            events.append(_post(did, f"{topic}{u}fr", "Je mange une pomme verte", t, langs=("fr",)))
    # a like, a follow and a reply across users
    events.append(
        {
            "did": "did:plc:astro0",
            "time_us": 1740900000000000,
            "kind": "commit",
            "commit": {
                "operation": "create",
                "collection": "app.bsky.feed.like",
                "rkey": "l1",
                "cid": "x",
                "record": {
                    "subject": {"cid": "c", "uri": "at://did:plc:astro1/app.bsky.feed.post/astro1p0"},
                    "createdAt": "2025-03-06T00:00:00Z",
                },
            },
        }
    )
    events.append(
        {
            "did": "did:plc:cooking0",
            "time_us": 1740900001000000,
            "kind": "commit",
            "commit": {
                "operation": "create",
                "collection": "app.bsky.graph.follow",
                "rkey": "f1",
                "cid": "x",
                "record": {"subject": "did:plc:cooking1", "createdAt": "2025-03-06T00:00:01Z"},
            },
        }
    )
    events.append(
        _post(
            "did:plc:cooking2",
            "rep1",
            "Great bread, what flour did you use?",
            999,
            reply_to="at://did:plc:cooking1/app.bsky.feed.post/cooking1p0",
        )
    )
    return events


def _run(*args, timeout=300) -> subprocess.CompletedProcess:
    return run_script("cluster_users.py", *args, timeout=timeout)


def test_cluster_users_end_to_end(tmp_path):
    day = tmp_path / "root" / "01" / "10"
    day.mkdir(parents=True)
    lines = [json.dumps(e) for e in _events()]
    (day / "events").write_text("\n".join(lines[:20]) + "\n{broken line\n", encoding="utf-8")
    (day / "more").write_text("\n".join(lines[20:]) + "\n", encoding="utf-8")
    out = tmp_path / "out"
    args = [
        "--data-root",
        tmp_path / "root",
        "--start-date",
        1,
        "--end-date",
        1,
        "-o",
        out,
        "--n-clusters",
        2,
        "--min-cluster-size",
        5,
        "--n-workers",
        2,
    ]
    proc = _run(*args)
    assert proc.returncode == 0, proc.stderr[-3000:]
    folder = out / "processed_2_clusters"
    clusters = json.loads((folder / "user_clusters.json").read_text())
    assert len(clusters) == 12  # every user has 3 English posts (the French one is dropped)
    for topic in TOPICS:  # the two personas are found
        assert len({clusters[f"did:plc:{topic}{u}"] for u in range(6)}) == 1
    assert clusters["did:plc:cooking0"] != clusters["did:plc:astro0"]
    meta = json.loads((folder / "meta.json").read_text())
    assert meta["events"]["skipped"] == {"invalid JSON": 1}
    lines_out = [json.loads(x) for f in folder.glob("cluster_*.jsonl") for x in f.read_text().splitlines()]
    texts = json.dumps(lines_out)
    assert "pomme" not in texts  # non-English posts of kept users are dropped
    actions = [ln[1]["actions"] for ln in lines_out if len(ln) == 2 and "actions" in ln[1]]
    assert sum(a["like"] for a in actions) == 1 and sum(a["follow"] for a in actions) == 1
    assert all(sum(a.values()) == 1 for a in actions)
    chain = next(ln for ln in lines_out if len(ln) == 2 and "actions" not in ln[1])
    assert chain[0]["user_id"] == "did:plc:cooking1" and chain[1]["user_id"] == "did:plc:cooking2"
    assert chain[0]["unix_epoch"] < chain[1]["unix_epoch"]
    assert (folder / "cluster_map.png").stat().st_size > 1000
    record = read_run_record(out / "cluster.meta.json")
    assert record["job"] == "cluster" and record["complete"] is True and record["status"] == "finished"
    assert record["k"] == 2 and record["output"] == str(folder) and record["events"] == meta["events"]
    assert record["config"]["n_clusters"] == 2 and (out / "cluster.config.yaml").exists()
    assert "run record:" in proc.stdout and "cluster sizes:" in proc.stdout
    # a rerun reuses the parsed-users cache; a changed input file is parsed again
    again = _run(*args)
    assert again.returncode == 0 and "reusing parsed users" in again.stderr
    (day / "more").write_text("\n".join(lines[20:-1]) + "\n", encoding="utf-8")
    changed = _run(*args)
    assert changed.returncode == 0 and "reusing parsed users" not in changed.stderr
    assert [r["status"] for r in read_run_record(out / "cluster.meta.json")["runs"]] == ["finished"] * 3


def test_cluster_users_too_few_users_is_bad_input(tmp_path):
    events = tmp_path / "events.jsonl"
    events.write_text("\n".join(json.dumps(e) for e in _events()[:8]) + "\n", encoding="utf-8")
    proc = _run("--data-root", events, "-o", tmp_path / "out", "--n-clusters", 3, "--n-workers", 1)
    assert proc.returncode == 2
    assert "too few" in proc.stderr and "Traceback" not in proc.stderr
