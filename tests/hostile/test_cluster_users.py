"""Hostile inputs for `cluster_users.py` (socialsynth.jobs.bluesky.cli:main_cluster).

Every case ends in exit 2 with one stderr line naming the file, line, field or flag, or in exit 0 with the skip
counted (its reason in the printed event table or the run record); never a traceback. Categories: malformed event
files (broken and deeply nested JSON, damaged .gz/.zst), wrong JSON types, every Jetstream change the cluster files
do not use (a profile delete crashed with KeyError), encodings (non-UTF-8, BOM, UTF-16), empty files and folders,
replayed (duplicate) events, a huge post, a bad value for every numeric and choice flag, unwritable places, missing
embedding models, and damaged earlier outputs (run record, parsed-users cache).

Runs that get past parsing use a tiny deterministic encoder in place of all-MiniLM-L6-v2 (``fake_embedder``), so
each case takes well under a second; the missing-model cases load the real sentence-transformers code.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
from pathlib import Path

import numpy as np
import pytest

from socialsynth.jobs.bluesky import pipeline
from socialsynth.jobs.bluesky.cli import main_cluster
from tests.hostile.conftest import Case, Error, Skip, case_params

T0 = 1740823200000000
TOPICS = ["gardening tomatoes and summer heat", "telescopes and the night sky", "sourdough bread and flour"]


def _post(did: str, rkey: str, text, t: int = 0, **record_fields) -> dict:
    record = {"$type": "app.bsky.feed.post", "createdAt": "2025-03-01T10:00:00Z", "text": text, "langs": ["en"],
              **record_fields}
    body = {"rev": rkey, "operation": "create", "collection": "app.bsky.feed.post", "rkey": rkey, "record": record,
            "cid": f"c{rkey}"}
    return {"did": did, "time_us": T0 + t * 1_000_000, "kind": "commit", "commit": body}


def _good_events() -> list[dict]:
    """Six users with three English posts each: enough for --n-clusters 2 --min-cluster-size 1."""
    events = []
    for u in range(6):
        for k in range(3):
            text = f"user {u} writes about {TOPICS[u % 3]}, post {k}"
            events.append(_post(f"did:plc:user{u}", f"u{u}p{k}", text, t=u * 10 + k))
    return events


def _lines(events) -> str:
    return "".join(json.dumps(e) + "\n" for e in events)


def _events_file(tmp: Path, extra: str | bytes = b"", name: str = "events.jsonl") -> dict:
    """The good events plus ``extra`` raw lines, as one file."""
    extra = extra.encode() if isinstance(extra, str) else extra
    path = tmp / name
    path.write_bytes(_lines(_good_events()).encode() + extra)
    return {"data": path}


def _with(*events) -> callable:
    return lambda tmp: _events_file(tmp, _lines(events))


def _raw(data: bytes, name: str = "events.jsonl"):
    def setup(tmp: Path) -> dict:
        (tmp / name).write_bytes(data)
        return {"data": tmp / name}

    return setup


def _zst(raw: bytes) -> bytes:
    import zstandard

    return zstandard.ZstdCompressor().compress(raw)


def _damaged(kind: str):
    def setup(tmp: Path) -> dict:
        raw = _lines(_good_events() * 30).encode()
        data = gzip.compress(raw) if kind == "gz" else _zst(raw)
        (tmp / f"events.jsonl.{kind}").write_bytes(data[: len(data) // 2])
        return {"data": tmp / f"events.jsonl.{kind}"}

    return setup


def _in_folder(tmp: Path) -> dict:
    """A folder of two event files, the second damaged (a folder run must not quietly drop its events)."""
    folder = tmp / "root"
    folder.mkdir()
    (folder / "a.jsonl").write_text(_lines(_good_events()), encoding="utf-8")
    (folder / "b.jsonl.gz").write_bytes(b"\x1f\x8b\x08\x00 not really gzip")
    return {"data": folder, "bad": folder / "b.jsonl.gz"}


def _file_in_the_way(name: str):
    def setup(tmp: Path) -> dict:
        values = _events_file(tmp)
        (tmp / name).write_text("a file, not a folder", encoding="utf-8")
        return values

    return setup


def _read_only_output(tmp: Path) -> dict:
    values = _events_file(tmp)
    (tmp / "ro").mkdir()
    (tmp / "ro").chmod(0o500)
    return values


def _record_is_a_list(tmp: Path) -> dict:
    values = _events_file(tmp)
    (tmp / "out").mkdir()
    (tmp / "out" / "cluster.meta.json").write_text("[1, 2, 3]", encoding="utf-8")
    return values


def _record_not_utf8(tmp: Path) -> dict:
    values = _events_file(tmp)
    (tmp / "out").mkdir()
    (tmp / "out" / "cluster.meta.json").write_bytes(b'{"job": "caf\xe9"}')
    return values


def _damaged_cache(tmp: Path) -> dict:
    """A parsed-users cache under the right key but torn (a kill while it was written by an older version)."""
    values = _events_file(tmp)
    from socialsynth.core.config import parse
    from socialsynth.jobs.bluesky.config import ClusterConfig
    from socialsynth.jobs.bluesky.events import find_input_files

    cfg = parse(ClusterConfig, ["--data-root", str(values["data"]), "-o", str(tmp / "out")])
    cache = cfg.caches / f"users-{pipeline.cache_key(find_input_files(cfg.data_root), cfg)}.json.gz"
    cache.parent.mkdir(parents=True)
    cache.write_bytes(gzip.compress(b'{"users": {"did:plc:x": ')[:-4])
    return values


RUN = ["--data-root", "{data}", "-o", "{tmp}/out", "--n-clusters", "2", "--min-cluster-size", "1", "--n-workers", "1"]


def run(*extra: str) -> list[str]:
    return [*RUN, *extra]


def C(case_id: str, argv, expect, setup=_events_file) -> Case:  # noqa: N802  (a table row)
    """A case whose setup defaults to the good events file."""
    return Case(case_id, argv, expect, setup)


CASES = [
    # ---- malformed files
    C("broken-json-line", run(), Skip("invalid JSON"), lambda t: _events_file(t, b'{"did": "did:plc:x", "ki\n')),
    C("deeply-nested-line", run(), Skip("nested too deeply"),
         lambda t: _events_file(t, b"[" * 100_000 + b"]" * 100_000 + b"\n")),
    C("only-broken-lines", run(), Error("no usable Jetstream events"), _raw(b"{broken\n[1,\nnot json\n")),
    C("truncated-gz", run(), Error("{data}: cannot read the file"), _damaged("gz")),
    C("truncated-zst", run(), Error("{data}: cannot read the file"), _damaged("zst")),
    C("zst-that-is-not-zstd", run(), Error("{data}: cannot read the file"),
         _raw(b'{"not": "compressed"}\n', name="events.jsonl.zst")),
    C("damaged-gz-among-good-files", run(), Error("{bad}: cannot read the file"), _in_folder),
    C("damaged-gz-parsed-in-workers", [*RUN[:-1], "2"], Error("{bad}: cannot read the file"), _in_folder),
    # ---- wrong types and fields
    C("time-us-a-string", run(), Skip("missing time_us"),
         _with({**_post("did:plc:z", "z1", "hello"), "time_us": "soon"})),
    C("commit-a-list", run(), Skip("missing commit"),
         _with({"did": "did:plc:z", "time_us": T0, "kind": "commit", "commit": [1, 2]})),
    C("text-a-number", run(), Skip("bad text"),
         _with(_post("did:plc:z", "z1", 12345))),
    C("line-a-number-or-null", run(), Skip("not an object"), lambda t: _events_file(t, b"42\nnull\n")),
    C("reply-parent-a-string", run(), Skip("missing reply parent"),
         _with(_post("did:plc:z", "z1", "hi", reply={"parent": "at://x", "root": "at://x"}))),
    C("kind-missing", run(), Skip("unknown kind"), _with({"did": "did:plc:z", "time_us": T0, "commit": {}})),
    # ---- Jetstream changes the cluster files do not use (a profile delete raised KeyError)
    C("profile-delete", run(), Skip("profile delete (not used)"),
         _with({"did": "did:plc:user0", "time_us": T0, "kind": "commit",
                "commit": {"rev": "r", "operation": "delete", "collection": "app.bsky.actor.profile",
                           "rkey": "self"}})),
    C("like-update", run(), Skip("like update (not used)"),
         _with({"did": "did:plc:user0", "time_us": T0, "kind": "commit",
                "commit": {"operation": "update", "collection": "app.bsky.feed.like", "rkey": "l",
                           "record": {"subject": {"uri": "at://did:plc:user1/app.bsky.feed.post/u1p0"}}}})),
    C("unknown-operation", run(), Skip("unknown operation"),
         _with({**_post("did:plc:z", "z1", "x"), "commit": {"operation": "resync", "collection": "app.bsky.feed.post",
                                                             "rkey": "z1"}})),
    C("unknown-collection", run(), Skip("unknown collection"),
         _with({"did": "did:plc:z", "time_us": T0, "kind": "commit",
                "commit": {"operation": "create", "collection": "app.bsky.feed.threadgate", "rkey": "t",
                           "record": {}}})),
    # ---- encodings
    C("latin-1-byte", run(), Skip("not UTF-8"), lambda t: _events_file(t, b'{"text": "caf\xe9"}\n')),
    C("utf8-bom", run(), Skip("skipped: 0"),
         lambda t: {"data": _raw(b"\xef\xbb\xbf" + _lines(_good_events()).encode())(t)["data"]}),
    C("utf16-file", run(), Error("no usable Jetstream events"), _raw(_lines(_good_events()).encode("utf-16"))),
    # ---- empty files, folders and texts
    C("empty-file", run(), Error("no usable Jetstream events"), _raw(b"")),
    C("blank-lines-only", run(), Error("no usable Jetstream events"), _raw(b"\n\n   \n")),
    C("empty-zst", run(), Error("no usable Jetstream events"), _raw(b"", name="events.zst")),
    C("folder-without-event-files", ["--data-root", "{tmp}/empty", "-o", "{tmp}/out"],
         Error("no event files"), lambda t: (t / "empty").mkdir()),
    C("too-few-users", run("--min-english-posts", "5"), Error("too few")),
    # ---- duplicates
    C("every-event-twice", run(), Skip("duplicate event (replayed)"),
         lambda t: _raw(_lines(_good_events() * 2).encode())(t)),
    # ---- huge texts
    C("two-megabyte-post", run(), Skip("cluster sizes"), _with(_post("did:plc:user0", "big", "word " * 400_000))),
    # ---- bad values for every numeric and choice flag (one case each)
    C("n-clusters-0", run("--n-clusters", "0"), Error("--n-clusters")),
    C("n-clusters-not-a-number", run("--n-clusters", "many"), Error("--n-clusters")),
    C("min-cluster-size-0", run("--min-cluster-size", "0"), Error("--min-cluster-size")),
    C("n-workers-0", run("--n-workers", "0"), Error("--n-workers")),
    C("min-english-posts-0", run("--min-english-posts", "0"), Error("--min-english-posts")),
    C("cap-ignored-messages-0", run("--cap-ignored-messages", "0"), Error("--cap-ignored-messages")),
    C("similarity-threshold-above-1", run("--similarity-threshold", "1.5"), Error("--similarity-threshold")),
    C("similarity-threshold-nan", run("--similarity-threshold", "nan"), Error("--similarity-threshold")),
    C("seed-negative", run("--seed", "-1"), Error("--seed")),
    C("start-date-32", run("--start-date", "32"), Error("--start-date")),
    C("start-date-month-13", run("--start-date", "2025-13-01"), Error("--start-date")),
    C("end-date-before-start", run("--start-date", "5", "--end-date", "3"), Error("--end-date")),
    C("date-range-on-a-single-file", run("--start-date", "1"), Error("{data}: a day range")),
    C("language-detector-bogus", run("--language-detector", "bogus"), Error("--language-detector")),
    C("device-without-gpu", run("--device", "cuda:7"), Error("--device")),
    C("embed-devices-cpu-0", run("--embed-devices", "cpu:0"), Error("--embed-devices")),
    C("metric-is-not-a-flag", run("--metric", "bogus"), Error("--metric")),
    C("embedding-pooling-bogus", run("--embedding-pooling", "max"), Error("--embedding-pooling")),
    C("embedding-max-tokens-zero", run("--embedding-max-tokens", "0"), Error("--embedding-max-tokens")),
    C("embedding-max-tokens-words", run("--embedding-max-tokens", "many"), Error("--embedding-max-tokens")),
    C("chains-bogus", run("--chains", "trees"), Error("--chains")),
    C("action-lines-bogus", run("--action-lines", "some"), Error("--action-lines")),
    C("preset-unknown", run("--preset", "nosuchpaper"), Error("--preset")),
    C("data-root-missing", ["--data-root", "{tmp}/nope"], Error("--data-root")),
    # ---- unwritable places
    C("file-where-output-folder-goes", [*RUN[:2], "-o", "{tmp}/taken", *RUN[4:]], Error("--output-dir"),
         _file_in_the_way("taken")),
    C("file-on-the-output-path", [*RUN[:2], "-o", "{tmp}/taken/out", *RUN[4:]], Error("--output-dir"),
         _file_in_the_way("taken")),
    C("file-where-cache-dir-goes", run("--cache-dir", "{tmp}/taken"), Error("--cache-dir"),
         _file_in_the_way("taken")),
    C("read-only-output-folder", [*RUN[:2], "-o", "{tmp}/ro/out", *RUN[4:]], Error("--output-dir"),
         _read_only_output),
    # ---- missing models
    C("embedding-model-missing-folder", run("--embedding-model", "/no/such/model"), Error("--embedding-model")),
    C("embedding-model-blank", run("--embedding-model", " "), Error("--embedding-model")),
    C("embedding-model-not-cached-offline", run("--embedding-model", "someorg/not-a-cached-model"),
         Error("--embedding-model")),
    # ---- damaged outputs
    C("run-record-a-list", run(), Error("cluster.meta.json"), _record_is_a_list),
    C("run-record-not-utf8", run(), Error("cluster.meta.json"), _record_not_utf8),
    C("damaged-users-cache", run(), Skip("damaged parsed-users cache"), _damaged_cache),
]


class TinyEncoder:
    """A sentence-transformers stand-in: a unit vector from the words of each text (similar texts, similar vectors)."""

    def encode(self, texts, **_):
        out = np.zeros((len(texts), 16), dtype=np.float32)
        for i, text in enumerate(texts):
            for word in str(text).split()[:200]:
                out[i, int(hashlib.md5(word.encode()).hexdigest(), 16) % 16] += 1.0
        norms = np.linalg.norm(out, axis=1, keepdims=True)
        return np.divide(out, norms, out=np.zeros_like(out), where=norms > 0)

    def get_embedding_dimension(self) -> int:
        return 16


@pytest.fixture(autouse=True)
def fake_embedder(monkeypatch):
    """The default embedding model becomes TinyEncoder; any other --embedding-model is loaded for real."""
    real = pipeline.make_embedder

    def make(cfg):
        if cfg.embedding_model != "embedded":
            return real(cfg)
        from socialsynth.text.embeddings import Embedder

        return Embedder("tiny", encoder=TinyEncoder(), cache_dir=cfg.caches / "embeddings")

    monkeypatch.setattr(pipeline, "make_embedder", make)


@pytest.mark.parametrize("case", case_params(CASES))
def test_hostile(case, hostile):
    if case.id == "read-only-output-folder" and os.geteuid() == 0:
        pytest.skip("root writes in read-only folders")
    hostile(main_cluster, case)


def test_corpus_size_and_categories():
    assert len(CASES) >= 15 and len({c.id for c in CASES}) == len(CASES)
    assert sum(isinstance(c.expect, Skip) for c in CASES) >= 10


def test_counted_skips_are_in_the_run_record(run_cli, tmp_path, monkeypatch):
    """A counted skip is in the record's ``skipped`` (by reason) as well as in the printed table."""
    monkeypatch.chdir(tmp_path)
    profile_delete = {"did": "did:plc:user0", "time_us": T0, "kind": "commit",
                      "commit": {"operation": "delete", "collection": "app.bsky.actor.profile", "rkey": "self"}}
    extra = _lines([profile_delete]) + "{broken\n" + _lines(_good_events()[:2])
    data = _events_file(tmp_path, extra)
    code, out, err = run_cli(main_cluster, [a.format(tmp=tmp_path, **data) for a in RUN])
    assert code == 0, err
    record = json.loads((tmp_path / "out" / "cluster.meta.json").read_text())
    assert record["skipped"] == {"profile delete (not used)": 1, "invalid JSON": 1, "duplicate event (replayed)": 2}
    assert record["complete"] is True and "duplicate event (replayed): 2 dropped" in out
