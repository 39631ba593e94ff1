#!/usr/bin/env python
"""Bluesky pipeline throughput on large synthetic Jetstream input: parse, fold into users, chains, embeddings.

Generates seeded Jetstream-shaped JSON-lines files in the seed's ``<root>/DD/HH/*`` layout (a few files per hour):
posts, replies (to posts already in the data, some to posts outside it), quotes, likes, reposts, follows, blocks,
deletes of each (matching earlier creates), post updates, profile updates and a few identity/account events, in
proportions close to the public Jetstream firehose. Post texts are real ones from ``../shared/data/real``
(TweetEval, the Bluesky author feeds, Reddit college comments) when present, else synthetic sentences.

For each size, in a fresh process (so peak RSS is that size's own):
- parse: ``parse_files`` alone, events/s (the fastest of ``--repeat`` runs, default 3, as for parse+fold);
- parse+fold: ``UserData().add_all(parse_files(...))``, events/s, and the fold's share (parse+fold minus parse);
- chains: ``build_chains`` on the folded data;
- embed: the embedded MiniLM on a seeded sample of distinct post texts (``--embed-sample``, default 2,000; only a
  sample, to keep the run short), with a fresh SQLite cache, then the same texts again (all cache hits).

The requirement checked: 10x the events costs at most 12x the time, i.e. time(parse+fold, largest) /
time(parse+fold, smallest) <= 12 * (largest / smallest) / 10 (= 12 for 100k -> 1M). Exit status 1 on FAIL.

    OMP_NUM_THREADS=2 HF_HUB_OFFLINE=1 .venv/bin/python bench/cluster.py               # 100k and 1M, ~5 min here
    .venv/bin/python bench/cluster.py --sizes 20000,200000 --embed-sample 200          # a quick smoke run
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import random
import resource
import shutil
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from itertools import accumulate
from multiprocessing import get_context
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from socialsynth.core.io import atomic_write_json  # noqa: E402

REAL = ROOT.parent / "shared" / "data" / "real"
GENERATOR_VERSION = 2

# share of events by kind, roughly the public Jetstream mix (likes dominate, then follows and reposts)
MIX = {
    "like": 0.50,
    "follow": 0.12,
    "repost": 0.09,
    "post": 0.07,
    "reply": 0.05,
    "quote": 0.01,
    "block": 0.012,
    "unlike": 0.04,
    "unfollow": 0.025,
    "unrepost": 0.01,
    "unblock": 0.003,
    "post_delete": 0.01,
    "post_update": 0.002,
    "profile": 0.015,
    "identity": 0.005,
    "account": 0.003,
}
COLLECTION = {
    "post": "app.bsky.feed.post",
    "like": "app.bsky.feed.like",
    "repost": "app.bsky.feed.repost",
    "follow": "app.bsky.graph.follow",
    "block": "app.bsky.graph.block",
    "profile": "app.bsky.actor.profile",
}
# the delete kinds and the kind of record each deletes
DELETES = {"unlike": "like", "unrepost": "repost", "unfollow": "follow", "unblock": "block", "post_delete": "post"}
B32 = "234567abcdefghijklmnopqrstuvwxyz"
WORDS = (
    "the a this my our new old good bad big small today tonight again really just still never always people "
    "friends music game team city news art book film show coffee rain weather work weekend code bug release "
    "paper data model thread post photo dog cat garden trip train bus park love hate think know see want need "
    "like watch read write build fix ship finally honestly maybe probably"
).split()


# --------------------------------------------------------------------------- texts


def _csv_texts(path: Path, column: str, limit: int) -> list[str]:
    out: list[str] = []
    csv.field_size_limit(10**8)
    with open(path, newline="", encoding="utf-8") as handle:
        for row in csv.DictReader(handle):
            text = (row.get(column) or "").strip()
            if text:
                out.append(text[:300])  # Bluesky's post limit is 300 graphemes
                if len(out) >= limit:
                    break
    return out


def load_texts(rng: random.Random) -> tuple[list[str], str]:
    """Real post texts when the shared data is there, else seeded synthetic sentences; and where they came from."""
    texts: list[str] = []
    used: list[str] = []
    for name in ("sentiment", "emotion", "hate", "offensive"):
        path = REAL / "tweeteval" / f"{name}.csv"
        if path.exists():
            got = _csv_texts(path, "text", 10**6)
            texts += got
            used.append(f"tweeteval/{name}.csv ({len(got)})")
    feeds = REAL / "bluesky_author_feeds" / "events.jsonl"
    if feeds.exists():
        n = 0
        with open(feeds, encoding="utf-8") as handle:
            for line in handle:
                try:
                    text = json.loads(line)["commit"]["record"]["text"]
                except (ValueError, KeyError, TypeError):
                    continue
                if isinstance(text, str) and text.strip():
                    texts.append(text[:300])
                    n += 1
        used.append(f"bluesky_author_feeds/events.jsonl ({n})")
    reddit = REAL / "reddit_college" / "comments.csv"
    if reddit.exists():
        got = _csv_texts(reddit, "text", 40_000)
        texts += got
        used.append(f"reddit_college/comments.csv ({len(got)})")
    texts = list(dict.fromkeys(texts))
    if len(texts) >= 1000:
        return texts, "real: " + ", ".join(used) + f"; {len(texts)} distinct"
    synthetic = [
        " ".join(rng.choice(WORDS) for _ in range(rng.randint(4, 30))).capitalize() + rng.choice(".!?")
        for _ in range(50_000)
    ]
    return list(dict.fromkeys(synthetic)), "synthetic sentences (no real data found)"


# --------------------------------------------------------------------------- generator


def tid(time_us: int, clock: int) -> str:
    """An atproto TID (13 chars of sortable base32) from a microsecond time and a 10-bit clock id."""
    n = (time_us << 10) | (clock & 1023)
    return "".join(B32[(n >> (5 * i)) & 31] for i in range(12, -1, -1))


class Ring:
    """The last ``size`` items added, for sampling targets of replies, likes and deletes in bounded memory."""

    def __init__(self, size: int):
        self.size, self.items, self.pos = size, [], 0

    def add(self, item) -> None:
        if len(self.items) < self.size:
            self.items.append(item)
        else:
            self.items[self.pos] = item
            self.pos = (self.pos + 1) % self.size

    def pick(self, rng: random.Random):
        return self.items[rng.randrange(len(self.items))] if self.items else None

    def pop(self, rng: random.Random):
        if not self.items:
            return None
        i = rng.randrange(len(self.items))
        item = self.items[i]
        self.items[i] = self.items[-1]
        self.items.pop()  # not full any more: the next add appends
        return item


def generate(root: Path, n_events: int, n_users: int, seed: int, texts: list[str], days: int = 2, per_hour: int = 3):
    """Write ``n_events`` Jetstream lines under ``root/DD/HH/jetstream_N``; return counts by kind."""
    rng = random.Random(seed)
    dids, user_cum, outsiders = _accounts(rng, n_users)
    kinds = list(MIX)
    kind_cum = list(accumulate(MIX[k] for k in kinds))
    stream = _Stream(rng, dids, outsiders, texts)
    counts: dict[str, int] = {}
    hours = days * 24
    per_file = -(-n_events // (hours * per_hour))
    start_us = 1_735_689_600_000_000  # 2025-01-01T00:00:00Z
    step = hours * 3600 * 1_000_000 / n_events
    file_no = 0
    handle = None
    kind_batch = rng.choices(kinds, cum_weights=kind_cum, k=n_events)
    user_batch = rng.choices(range(n_users), cum_weights=user_cum, k=n_events)
    for i in range(n_events):
        if i % per_file == 0:
            if handle:
                handle.close()
            handle = _open_file(root, file_no, per_hour)
            file_no += 1
        time_us = start_us + int(i * step) + rng.randrange(1000)
        env = stream.event(kind_batch[i], dids[user_batch[i]], time_us, seq=i + 1)
        handle.write(json.dumps(env, separators=(",", ":"), ensure_ascii=False))
        handle.write("\n")
        counts[kind_batch[i]] = counts.get(kind_batch[i], 0) + 1
    if handle:
        handle.close()
    return counts, file_no


def _accounts(rng: random.Random, n_users: int) -> tuple[list[str], list[float], list[str]]:
    """The accounts in the data (shuffled), their cumulative activity weights, and accounts outside the data."""
    dids = [f"did:plc:{rng.getrandbits(120):030x}"[:32] for _ in range(n_users)]
    # activity is heavy-tailed: a few accounts make most events (Zipf-like weights)
    cum = list(accumulate(1.0 / rank**0.9 for rank in range(1, n_users + 1)))
    rng.shuffle(dids)
    outsiders = [f"did:plc:{rng.getrandbits(120):030x}"[:32] for _ in range(max(100, n_users // 4))]
    return dids, cum, outsiders


def _open_file(root: Path, file_no: int, per_hour: int):
    """The ``file_no``-th output file, ``per_hour`` of them an hour: ``root/DD/HH/jetstream_N``."""
    hour = file_no // per_hour
    folder = root / f"{hour // 24 + 1:02d}" / f"{hour % 24:02d}"
    folder.mkdir(parents=True, exist_ok=True)
    return open(folder / f"jetstream_{file_no % per_hour}", "w", encoding="utf-8")


def _timestamp(time_us: int) -> str:
    """ISO 8601 UTC with milliseconds, as Jetstream writes ``createdAt``."""
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(time_us // 1_000_000)) + f".{time_us // 1000 % 1000:03d}Z"


def _commit(rev: str, operation: str, collection: str, rkey: str, record: dict | None = None, cid: str = "") -> dict:
    """A Jetstream commit; a delete has no record and no cid."""
    commit = {"rev": rev, "operation": operation, "collection": collection, "rkey": rkey}
    if record is not None:
        commit.update(record=record, cid=cid)
    return commit


def _post_record(now: str, text: str) -> dict:
    return {"$type": COLLECTION["post"], "createdAt": now, "langs": ["en"], "text": text}


def _envelope(kind: str, did: str, time_us: int, seq: int, now: str, commit: dict | None) -> dict:
    """The Jetstream line around an event: identity and account events carry no commit."""
    if kind == "identity":
        identity = {"did": did, "handle": f"{did[-8:]}.bsky.social", "seq": seq, "time": now}
        return {"did": did, "time_us": time_us, "kind": "identity", "identity": identity}
    if kind == "account":
        account = {"active": True, "did": did, "seq": seq, "time": now}
        return {"did": did, "time_us": time_us, "kind": "account", "account": account}
    return {"did": did, "time_us": time_us, "kind": "commit", "commit": commit}


class _Stream:
    """What the generator remembers between events (recent posts and records, to reply to, like and delete), and
    one method per kind of event. All randomness comes from the one seeded ``rng``, in a fixed order."""

    def __init__(self, rng: random.Random, dids: list[str], outsiders: list[str], texts: list[str]):
        self.rng, self.dids, self.outsiders, self.texts = rng, dids, outsiders, texts
        self.posts = Ring(50_000)  # (uri, cid, root_uri, root_cid, did, rkey, text)
        self.created = {k: Ring(50_000) for k in ("like", "repost", "follow", "block")}  # (did, rkey)

    def cid(self) -> str:
        return "bafyrei" + "".join(B32[(x >> (5 * i)) & 31] for x in [self.rng.getrandbits(260)] for i in range(52))

    def text(self) -> str:
        return self.texts[self.rng.randrange(len(self.texts))]

    def outside_post_uri(self, time_us: int, seq: int) -> str:
        return f"at://{self.rng.choice(self.outsiders)}/app.bsky.feed.post/{tid(time_us - 10**9, seq)}"

    def event(self, kind: str, did: str, time_us: int, seq: int) -> dict:
        """One Jetstream line of ``kind`` by ``did`` (deletes and post updates are by the target's author)."""
        now = _timestamp(time_us)
        rkey = tid(time_us, seq)
        commit = None
        if kind in DELETES:
            did, commit = self.delete(DELETES[kind], did, rkey, time_us, seq)
        elif kind in ("post", "reply", "quote"):
            commit = self.post(kind, did, rkey, now, time_us, seq)
        elif kind == "post_update":
            did, commit = self.post_update(did, rkey, now)
        elif kind in ("like", "repost", "follow", "block"):
            commit = self.subject_record(kind, did, rkey, now, time_us, seq)
        elif kind == "profile":
            commit = self.profile(did, rkey, now)
        return _envelope(kind, did, time_us, seq, now, commit)

    def delete(self, base: str, did: str, rkey: str, time_us: int, seq: int) -> tuple[str, dict]:
        target = self.posts.pop(self.rng) if base == "post" else self.created[base].pop(self.rng)
        if target is None or self.rng.random() < 0.08:  # some deletes are of records made before the data starts
            d_did, d_rkey = did, tid(time_us - self.rng.randrange(1, 10**12), seq)
        else:
            d_did, d_rkey = (target[4], target[5]) if base == "post" else target
        return d_did, _commit(rkey, "delete", COLLECTION[base], d_rkey)

    def post(self, kind: str, did: str, rkey: str, now: str, time_us: int, seq: int) -> dict:
        text = self.text()
        record = _post_record(now, text)
        parent = self.posts.pick(self.rng)
        if kind == "reply":
            record["reply"] = self.reply_ref(parent, time_us, seq)
        elif kind == "quote" and parent is not None:
            record["embed"] = {"$type": "app.bsky.embed.record", "record": {"cid": parent[1], "uri": parent[0]}}
        c = self.cid()
        uri = f"at://{did}/app.bsky.feed.post/{rkey}"
        root_uri, root_cid = (
            (record["reply"]["root"]["uri"], record["reply"]["root"]["cid"]) if kind == "reply" else (uri, c)
        )
        self.posts.add((uri, c, root_uri, root_cid, did, rkey, text))
        return _commit(rkey, "create", COLLECTION["post"], rkey, record, c)

    def reply_ref(self, parent: tuple | None, time_us: int, seq: int) -> dict:
        if parent is None or self.rng.random() < 0.25:  # replies to posts outside the data
            puri = self.outside_post_uri(time_us, seq)
            parent = (puri, self.cid(), puri, None, None, None, "")
        p_uri, p_cid, r_uri, r_cid = parent[0], parent[1], parent[2], parent[3] or parent[1]
        return {"parent": {"cid": p_cid, "uri": p_uri}, "root": {"cid": r_cid, "uri": r_uri}}

    def post_update(self, did: str, rkey: str, now: str) -> tuple[str, dict]:
        target = self.posts.pick(self.rng)
        if target is not None:
            did, rkey = target[4], target[5]
        return did, _commit(rkey, "update", COLLECTION["post"], rkey, _post_record(now, self.text()), self.cid())

    def subject_record(self, kind: str, did: str, rkey: str, now: str, time_us: int, seq: int) -> dict:
        """A like or repost (of a post) or a follow or block (of an account)."""
        if kind in ("like", "repost"):
            target = self.posts.pick(self.rng)
            if target is None or self.rng.random() < 0.3:  # most of the network is outside any sample
                subject = {"cid": self.cid(), "uri": self.outside_post_uri(time_us, seq)}
            else:
                subject = {"cid": target[1], "uri": target[0]}
        else:
            in_data = self.rng.random() < 0.6
            subject = self.dids[self.rng.randrange(len(self.dids))] if in_data else self.rng.choice(self.outsiders)
        record = {"$type": COLLECTION[kind], "createdAt": now, "subject": subject}
        commit = _commit(rkey, "create", COLLECTION[kind], rkey, record, self.cid())
        self.created[kind].add((did, rkey))
        return commit

    def profile(self, did: str, rkey: str, now: str) -> dict:
        record = {
            "$type": COLLECTION["profile"],
            "displayName": f"user {did[-6:]}",
            "description": self.text()[:256],
            "createdAt": now,
        }
        operation = "update" if self.rng.random() < 0.8 else "create"
        return _commit(rkey, operation, COLLECTION["profile"], "self", record, self.cid())


# --------------------------------------------------------------------------- measuring (one process per size)


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def measure(data_dir: str, embed_sample: int, cache_dir: str, seed: int, repeat: int = 2) -> dict:
    """Run in a fresh (spawned) process: parse, parse+fold, chains, embeddings; return the figures."""
    from socialsynth.jobs.bluesky.events import EventStats, find_input_files, parse_files
    from socialsynth.jobs.bluesky.users import UserData, build_chains

    out: dict = {"rss_start_mb": round(_rss_mb(), 1)}
    files = find_input_files(data_dir)
    out["files"] = len(files)

    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        stats = EventStats()
        n = sum(1 for _ in parse_files(files, stats))
        best = min(best, time.perf_counter() - t0)
    out["parse_s"] = best
    out["events"] = n
    out["lines"] = stats.lines
    out["skipped"] = dict(stats.skipped)

    best = float("inf")
    for _ in range(repeat):
        users = None  # free the previous repeat's data first
        t0 = time.perf_counter()
        stats = EventStats()
        users = UserData().add_all(parse_files(files, stats))
        best = min(best, time.perf_counter() - t0)
    out["parse_fold_s"] = best
    out["fold_s"] = max(out["parse_fold_s"] - out["parse_s"], 1e-9)
    out["users"] = len(users.users)
    out["duplicates"] = users.duplicates
    out["unmatched_deletes"] = dict(users.unmatched_deletes())
    counts = users.counts()
    out["items"] = {k: v for k, v in counts.items()}

    t0 = time.perf_counter()
    chains, cstats = build_chains(users)
    out["chains_s"] = time.perf_counter() - t0
    out["chains"] = cstats.chains
    out["chain_roots"] = cstats.roots
    out["orphan_replies"] = cstats.orphan_replies
    out["max_chain_len"] = max((len(c) for c in chains), default=0)
    del chains
    out["rss_after_fold_mb"] = round(_rss_mb(), 1)

    texts = sorted(
        {
            item["text"]
            for u in users.users.values()
            for name in ("posts", "replies", "quotes")
            for item in getattr(u, name)
            if item.get("text", "").strip()
        }
    )
    out["distinct_post_texts"] = len(texts)
    del users
    if embed_sample > 0 and texts:
        from socialsynth.text.embeddings import Embedder

        sample = random.Random(seed).sample(texts, min(embed_sample, len(texts)))
        t0 = time.perf_counter()
        emb = Embedder("embedded", cache_dir=cache_dir)
        out["embed_load_s"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        emb.encode(sample)
        out["embed_s"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        emb.encode(sample)
        out["embed_cached_s"] = time.perf_counter() - t0
        out["embed_n"] = len(sample)
        out["embed_encoded"] = emb.encoded
        if emb.cache is not None:
            emb.cache.close()
    out["rss_peak_mb"] = round(_rss_mb(), 1)
    out["load_avg"] = list(os.getloadavg())
    return out


# --------------------------------------------------------------------------- main


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="100000,1000000", help="comma-separated event counts")
    ap.add_argument("--users", type=int, default=0, help="accounts in the data (default: events / 25 per size)")
    ap.add_argument("--embed-sample", type=int, default=2000, help="distinct post texts embedded per size (0: skip)")
    ap.add_argument("--out", default="/work/scratch/bench_cluster", help="where the generated files go")
    ap.add_argument("--keep", action="store_true", help="keep the generated files (and reuse them next time)")
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--repeat", type=int, default=3, help="parse and parse+fold runs per size; the fastest counts")
    ap.add_argument("--results", default=str(ROOT / "bench" / "results.json"))
    args = ap.parse_args()
    sizes = [int(s.replace("_", "")) for s in args.sizes.split(",") if s.strip()]
    out_root = Path(args.out or tempfile.mkdtemp(prefix="bench_cluster_"))
    out_root.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    load_start = os.getloadavg()
    print(
        f"load average at start: {load_start[0]:.2f} {load_start[1]:.2f} {load_start[2]:.2f}; "
        f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}, {os.cpu_count()} cpus"
    )

    rng = random.Random(args.seed)
    texts, source = load_texts(rng)
    print(f"post texts: {source}")

    rows = []
    ctx = get_context("spawn")
    for size in sizes:
        n_users = args.users or max(100, size // 25)
        data = out_root / f"events_{size}"
        cache = out_root / f"embcache_{size}"
        shutil.rmtree(cache, ignore_errors=True)
        manifest = data / "manifest.json"
        want = {"events": size, "users": n_users, "seed": args.seed, "version": GENERATOR_VERSION, "texts": source}
        gen_s = None
        if args.keep and manifest.exists() and json.loads(manifest.read_text()).get("params") == want:
            gen_info = json.loads(manifest.read_text())
            print(f"[{size}] reusing {data}")
        else:
            shutil.rmtree(data, ignore_errors=True)
            t0 = time.perf_counter()
            counts, n_files = generate(data, size, n_users, args.seed + size, texts)
            gen_s = time.perf_counter() - t0
            gen_info = {"params": want, "counts": counts, "files": n_files}
            manifest.write_text(json.dumps(gen_info, indent=1))  # at the root: not under DD/HH, not read as events
        mb = sum(p.stat().st_size for p in data.rglob("*") if p.is_file()) / 2**20
        print(
            f"[{size}] {gen_info['files']} files, {mb:.0f} MB, {n_users} users"
            + (f", generated in {gen_s:.1f} s" if gen_s else "")
            + f"; mix: {gen_info['counts']}"
        )
        with ProcessPoolExecutor(max_workers=1, mp_context=ctx) as pool:
            res = pool.submit(measure, str(data), args.embed_sample, str(cache), args.seed, args.repeat).result()
        res.update(size=size, users_arg=n_users, gen_s=gen_s, data_mb=round(mb, 1))
        rows.append(res)
        print(
            f"[{size}] done: parse {res['parse_s']:.1f} s, parse+fold {res['parse_fold_s']:.1f} s, "
            f"chains {res['chains_s']:.1f} s, peak RSS {res['rss_peak_mb']:.0f} MB, load {res['load_avg'][0]:.2f}"
        )
        if not args.keep:
            shutil.rmtree(data, ignore_errors=True)
            shutil.rmtree(cache, ignore_errors=True)

    hdr = (
        f"{'events':>9} {'users':>7} {'MB':>5} {'parse ev/s':>10} {'fold ev/s':>10} {'p+f s':>6} {'p+f ev/s':>9} "
        f"{'chains':>8} {'chain s':>7} {'emb/s':>6} {'cached/s':>9} {'RSS fold':>8} {'RSS peak':>8} {'load':>5}"
    )
    print()
    print(hdr)
    for r in rows:
        emb = f"{r['embed_n'] / r['embed_s']:6.0f}" if r.get("embed_s") else f"{'-':>6}"
        cached = f"{r['embed_n'] / r['embed_cached_s']:9.0f}" if r.get("embed_cached_s") else f"{'-':>9}"
        print(
            f"{r['events']:>9,} {r['users']:>7,} {r['data_mb']:>5.0f} {r['events'] / r['parse_s']:>10,.0f} "
            f"{r['events'] / r['fold_s']:>10,.0f} {r['parse_fold_s']:>6.1f} {r['events'] / r['parse_fold_s']:>9,.0f} "
            f"{r['chains']:>8,} {r['chains_s']:>7.2f} {emb} {cached} {r['rss_after_fold_mb']:>7.0f}M "
            f"{r['rss_peak_mb']:>7.0f}M {r['load_avg'][0]:>5.2f}"
        )
    for r in rows:
        print(
            f"  {r['events']:,} events: skipped {r['skipped']}; unmatched deletes {r['unmatched_deletes']}; "
            f"orphan replies {r['orphan_replies']:,}; longest chain {r['max_chain_len']}; "
            f"{r['distinct_post_texts']:,} distinct post texts, embedded {r.get('embed_n', 0)}"
            + (f" (model load {r['embed_load_s']:.1f} s)" if r.get("embed_load_s") else "")
        )

    verdict = None
    ratio = None
    if len(rows) >= 2:
        small, big = rows[0], rows[-1]
        ratio = big["parse_fold_s"] / small["parse_fold_s"]
        scale = big["events"] / small["events"]
        limit = 12 * scale / 10
        parse_ratio = big["parse_s"] / small["parse_s"]
        verdict = ratio <= limit
        print(
            f"\nrequirement: {scale:.0f}x the events (parse+fold) took {ratio:.2f}x the time "
            f"(parse alone {parse_ratio:.2f}x); limit {limit:.1f}x -> {'PASS' if verdict else 'FAIL'}"
        )
    total = time.perf_counter() - started
    load_end = os.getloadavg()
    print(f"total {total:.0f} s; load average at end: {load_end[0]:.2f} {load_end[1]:.2f} {load_end[2]:.2f}")

    results = json.loads(Path(args.results).read_text()) if Path(args.results).exists() else {}
    results["cluster"] = {
        "sizes": [
            {
                "events": r["events"],
                "users": r["users"],
                "files": r["files"],
                "data_mb": r["data_mb"],
                "parse_events_per_s": round(r["events"] / r["parse_s"]),
                "fold_events_per_s": round(r["events"] / r["fold_s"]),
                "parse_fold_s": round(r["parse_fold_s"], 2),
                "parse_fold_events_per_s": round(r["events"] / r["parse_fold_s"]),
                "chains": r["chains"],
                "chains_s": round(r["chains_s"], 2),
                "embed_sample": r.get("embed_n", 0),
                "embed_per_s": round(r["embed_n"] / r["embed_s"], 1) if r.get("embed_s") else None,
                "embed_cached_per_s": round(r["embed_n"] / r["embed_cached_s"], 1) if r.get("embed_cached_s") else None,
                "rss_after_fold_mb": r["rss_after_fold_mb"],
                "rss_peak_mb": r["rss_peak_mb"],
                "load_avg_1m": round(r["load_avg"][0], 2),
            }
            for r in rows
        ],
        "time_ratio": round(ratio, 2) if ratio is not None else None,
        "pass": verdict,
        "texts": source,
        "total_s": round(total, 1),
        "omp_threads": os.environ.get("OMP_NUM_THREADS"),
    }
    atomic_write_json(args.results, results)
    print(f"written: {args.results}")
    return 1 if verdict is False else 0


if __name__ == "__main__":
    raise SystemExit(main())
