"""Embedder over several processes (sentence-transformers' multi-process pool) behind the same cache.

Uses the tiny random BERT of conftest (tiny_encoder_dir) in two CPU processes: the vectors must match one
process, only cache misses may reach the pool, and no worker may outlive close() or a SIGTERM.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

from socialsynth.core.errors import InputError
from socialsynth.text.embeddings import Embedder, parse_devices

REPO = next(p for p in Path(__file__).resolve().parents if (p / "pyproject.toml").exists())
TEXTS = [f"post number {i} about {topic} and other things" for i, topic in enumerate(["cats", "tea", "rain"] * 8)]
TEXTS += ["short", "a much longer text that goes on and on about nothing at all, for padding's sake", "   "]


def _alive(pid: int) -> bool:
    """True while `pid` runs (a zombie counts as gone)."""
    try:
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def _wait_gone(pids, timeout: float = 20.0) -> list[int]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        alive = [pid for pid in pids if _alive(pid)]
        if not alive:
            return []
        time.sleep(0.1)
    return alive


def test_parse_devices():
    assert parse_devices(None) is None
    assert parse_devices("") is None
    assert parse_devices("none") is None
    assert parse_devices("cuda:0,cuda:1") == ["cuda:0", "cuda:1"]
    assert parse_devices("cpu:3") == ["cpu", "cpu", "cpu"]
    assert parse_devices("cpu") == ["cpu"]
    assert parse_devices("cuda:0, cpu:2") == ["cuda:0", "cpu", "cpu"]
    for bad in ("gpu:0", "cpu:0", "cuda:x", "cpu:2:3"):
        with pytest.raises(InputError, match="--embed-devices"):
            parse_devices(bad)


def test_devices_need_a_pool_capable_encoder():
    class Plain:
        def encode(self, texts, **kwargs):
            return np.ones((len(texts), 3), dtype=np.float32)

        def get_embedding_dimension(self):
            return 3

    with pytest.raises(ValueError, match="start_multi_process_pool"):
        Embedder("fake", encoder=Plain(), devices=["cpu", "cpu"])
    single = Embedder("fake", encoder=Plain(), devices=["cpu"])  # one device: no pool, injection keeps working
    assert single.devices == [] and single.encode(["x"]).shape == (1, 3)


def test_pool_matches_one_process_and_only_misses_reach_it(tiny_encoder_dir, tmp_path):
    one = Embedder(str(tiny_encoder_dir), device="cpu", prefix="")
    expected = one.encode(TEXTS)
    first, rest = TEXTS[:10], TEXTS
    with Embedder(
        str(tiny_encoder_dir), prefix="", devices=["cpu", "cpu"], cache_dir=tmp_path / "c", pool_min_texts=5
    ) as emb:
        small = emb.encode(first[:3])  # below pool_min_texts: encoded here, pool not started
        assert not emb.pool_running and emb.encoded == 3 and emb.pool_encoded == 0
        got = emb.encode(rest)
        assert emb.pool_running
        workers = [p.pid for p in emb._pool["processes"]]
        assert len(workers) == 2 and all(_alive(pid) for pid in workers)
        n_unique = len({t for t in TEXTS if t.strip()})
        assert emb.pool_encoded == n_unique - 3  # the 3 cached texts never went to the pool
        assert len(emb.cache) == n_unique
        # the same vectors as one process, within bf16 rounding (batches are cut differently)
        np.testing.assert_allclose(got, expected, atol=2e-2)
        cos = (got * expected).sum(axis=1)
        assert np.all(cos[[i for i, t in enumerate(TEXTS) if t.strip()]] > 0.999)
        assert np.all(got[-1] == 0)  # whitespace: zero row, never encoded
        np.testing.assert_allclose(small, expected[:3], atol=2e-2)
        # a second call is served from the cache: nothing reaches the pool
        before = emb.pool_encoded
        np.testing.assert_array_equal(emb.encode(TEXTS), got)
        assert emb.pool_encoded == before
    assert _wait_gone(workers) == [], "close() must stop the workers"
    # a fresh Embedder on the same cache finds everything there and never starts a pool
    with Embedder(
        str(tiny_encoder_dir), prefix="", devices=["cpu", "cpu"], cache_dir=tmp_path / "c", pool_min_texts=1
    ) as again:
        np.testing.assert_array_equal(again.encode(TEXTS), got)
        assert not again.pool_running and again.encoded == 0


def test_sigterm_stops_the_workers(tiny_encoder_dir, tmp_path):
    """A job killed by SIGTERM (no handler of its own) takes its pool workers with it and still dies of SIGTERM."""
    script = tmp_path / "job.py"
    script.write_text(
        textwrap.dedent(
            f"""
            import sys, time
            sys.path.insert(0, {str(REPO)!r})
            from socialsynth.text.embeddings import Embedder

            if __name__ == "__main__":
                emb = Embedder({str(tiny_encoder_dir)!r}, prefix="", devices=["cpu", "cpu"], pool_min_texts=1)
                emb.encode(["one text", "two texts"])
                print(" ".join(str(p.pid) for p in emb._pool["processes"]), flush=True)
                time.sleep(120)
            """
        )
    )
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    proc = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True, env=env)
    try:
        line = proc.stdout.readline()
        workers = [int(pid) for pid in line.split()]
        assert len(workers) == 2 and all(_alive(pid) for pid in workers), line
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == -signal.SIGTERM
        assert _wait_gone(workers) == [], "pool workers outlived the SIGTERM"
    finally:
        if proc.poll() is None:
            proc.kill()
