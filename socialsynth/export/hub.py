"""``--push-to-hub REPO``: the one network call of socialsynth, made only when that flag is given.

Parquet and JSONL exports are already in the Hub's layout (``<subset>/<split>-*``, README.md with ``configs``), so
the folder is uploaded as it is in one commit. A ``datasets`` folder (``--format hf``) is pushed with
``push_to_hub`` per subset (the Hub stores it as Parquet), then the card, rewritten for that Parquet layout, is
uploaded over the README that ``push_to_hub`` wrote. The repository is created private unless ``--public``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from pathlib import Path

from socialsynth.export.tables import EXPORT_MARKER
from socialsynth.export.writers import Written

log = logging.getLogger(__name__)


def push(folder: Path, repo: str, written: Sequence[Written], *, fmt: str, private: bool,
         parquet_card: Callable[[], str]) -> str:
    """Push the export; returns the repository's address. ``parquet_card`` renders the card for the Hub's Parquet
    layout (used for ``--format hf`` only)."""
    from huggingface_hub import HfApi

    api = HfApi()
    url = api.create_repo(repo, repo_type="dataset", private=private, exist_ok=True)
    if fmt in ("parquet", "jsonl"):
        api.upload_folder(folder_path=str(folder), repo_id=repo, repo_type="dataset",
                          commit_message="socialsynth export", ignore_patterns=[EXPORT_MARKER])
        return str(url)
    import datasets

    for w in written:
        data = datasets.load_from_disk(str(folder / w.load_path) if w.load_path else str(folder))
        data.push_to_hub(repo, config_name=w.subset.name, private=private,
                         commit_message=f"socialsynth export: {w.subset.name}")
    api.upload_file(path_or_fileobj=parquet_card().encode("utf-8"), path_in_repo="README.md", repo_id=repo,
                    repo_type="dataset", commit_message="socialsynth data card")
    return str(url)
