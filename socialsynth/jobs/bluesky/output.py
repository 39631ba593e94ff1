"""BluePrint's output: ``user_clusters.json`` and one ``cluster_<id>.jsonl`` per cluster.

Each line of a cluster file is a JSON array, either

- a **chain** ``[{user_id, text, unix_epoch}, ...]`` root first (from
  :func:`~socialsynth.jobs.bluesky.users.build_chains`); a chain belongs to the cluster of the user who wrote its
  **last** message (the persona that "speaks" in it, as BluePrint's instruct step groups chains); or
- an **action pair** ``[content, action]``: content ``{user_id (author), text?, unix_epoch}`` and action
  ``{user_id (actor), actions: {13 flags, exactly one true}, unix_epoch, text?}``.

Lines come in the seed's order: chains, likes, unlikes, reposts, unreposts, follows, unfollows, blocks, unblocks,
updates (post updates, then profile updates: the seed's list names only "updates"), post deletes, quotes,
ignores. Within a type, users in sorted order and each user's items in data order.

What the content of each action is:

- like / unlike / repost / unrepost: the subject post ``(author, text, epoch)`` when it is in the data. When it is
  not (the usual case: a sample of users likes posts of many others), the content is ``{user_id: the DID in the
  subject URI, unix_epoch: the action's epoch}`` with no text, counted as ``<type>_no_content``. An unlike or
  unrepost whose like/repost is not in the data has no subject at all: it is dropped, counted as
  ``<type>_dropped``.
- follow / unfollow / block / unblock: the target's most recent post, reply or quote strictly before the action
  (the seed took the first match); with none, ``{user_id: target, unix_epoch: the action's epoch}`` without text
  (``<type>_no_content``); an unfollow/unblock with no known subject is dropped.
- post_update: content = the original post when in the data (else no text), action text = the new text.
- post_delete: content = the deleted post (the delete carries its text when it matched its create; else dropped).
- profile_update: content = ``{user_id: the user, text: profile description, unix_epoch}``; an empty profile
  description is still written (text "").
- quote: content = the quoted post (or the no-text form), action text = the quote's text.
- ignore: content = the ignored post, action ``{user_id: the member it was assigned to, unix_epoch: the post's}``.

Text keys are left out when there is no text to give (the ``text?`` of the schema).

``action_lines="seed"`` (``--action-lines seed``) writes only the lines BluePrint writes, with the content it
picks: a post is "in the data" only if it is a post or reply (not a quote) of a clustered user that passed the
English rule; likes, unlikes, reposts, unreposts and quotes of any other post are dropped (``<type>_not_in_data``);
follows, unfollows, blocks and unblocks need a clustered target with a post or reply at or before the action
(the seed's ``<=``; posts and replies only), else dropped; post updates and deletes need the user's own original
post or reply; profile updates are never written. Per-cluster chains from :func:`~socialsynth.jobs.bluesky.users.
seed_chains` are passed as ``chains_by_cluster``.
"""

from __future__ import annotations

import bisect
import json
import os
import tempfile
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from socialsynth.core.io import atomic_write_json
from socialsynth.jobs.bluesky.events import ACTION_KINDS
from socialsynth.jobs.bluesky.users import User, UserData

ACTIONS = (*ACTION_KINDS, "ignore")  # the 13 action flags, in the order they are written
# (action, User list) in output order; ignores come last, from ignored.py
_ORDER = (
    ("like", "likes"),
    ("unlike", "unlikes"),
    ("repost", "reposts"),
    ("unrepost", "unreposts"),
    ("follow", "follows"),
    ("unfollow", "unfollows"),
    ("block", "blocks"),
    ("unblock", "unblocks"),
    ("post_update", "post_updates"),
    ("profile_update", None),
    ("post_delete", "post_deletes"),
    ("quote", "quotes"),
)
_POST_TYPES = {"like", "unlike", "repost", "unrepost"}
_DID_TYPES = {"follow", "unfollow", "block", "unblock"}


def did_of_uri(uri: str) -> str:
    """``at://did:plc:x/app.bsky.feed.post/rkey`` -> ``did:plc:x`` ("" when it is not an AT URI)."""
    if not uri.startswith("at://"):
        return ""
    return uri[5:].split("/", 1)[0]


def _content(user_id: str, text: str | None, epoch: Any) -> dict[str, Any]:
    out: dict[str, Any] = {"user_id": user_id}
    if text:
        out["text"] = text
    out["unix_epoch"] = epoch
    return out


def make_action(kind: str, user_id: str, epoch: Any, text: str | None = None) -> dict[str, Any]:
    """An action object with exactly the flag ``kind`` true."""
    if kind not in ACTIONS:
        raise ValueError(f"unknown action {kind!r}")
    out: dict[str, Any] = {"user_id": user_id, "actions": {name: name == kind for name in ACTIONS}, "unix_epoch": epoch}
    if text:
        out["text"] = text
    assert sum(out["actions"].values()) == 1, out
    return out


def _post_content(data: UserData, uri: str, index: Mapping[str, tuple[str, dict]] | None = None) -> dict | None:
    """(author, text, epoch) of a post by URI, from ``index`` when given (the seed's lookups), else from the data."""
    if not uri:
        return None
    found = index.get(uri) if index is not None else data.post(uri)
    if found is None:
        return None
    author, item = found
    return _content(author, item.get("text", ""), item.get("unix_epoch"))


class _Timelines:
    """Per user, their posts/replies/quotes sorted by time, for "most recent post before t" (bisect, cached).

    ``seed_users`` (the clustered users) gives the seed's rule: their posts and replies only, at or before t."""

    def __init__(self, data: UserData, seed_users: set[str] | None = None) -> None:
        self.data = data
        self.seed_users = seed_users
        self._cache: dict[str, tuple[list[int], list[dict[str, Any]]]] = {}

    def _items(self, did: str) -> list[dict[str, Any]]:
        user = self.data.users.get(did)
        if user is None or (self.seed_users is not None and did not in self.seed_users):
            return []
        return [*user.posts, *user.replies] + ([] if self.seed_users is not None else list(user.quotes))

    def latest_before(self, did: str, epoch: Any) -> dict[str, Any] | None:
        if did not in self._cache:
            items = self._items(did)
            items = sorted((i for i in items if isinstance(i.get("unix_epoch"), int)), key=lambda i: i["unix_epoch"])
            self._cache[did] = ([i["unix_epoch"] for i in items], items)
        epochs, items = self._cache[did]
        if not isinstance(epoch, int):
            return None
        if self.seed_users is not None:
            at = bisect.bisect_right(epochs, epoch)  # the seed: at or before the action
        else:
            at = bisect.bisect_left(epochs, epoch)  # strictly before the action
        return items[at - 1] if at else None


class _Sources:
    """What the content of an action is looked up in, and the counts the lookups add to."""

    def __init__(self, data: UserData, timelines: _Timelines, counts: Counter[str],
                 seed_index: Mapping[str, tuple[str, dict]] | None = None) -> None:
        self.data = data
        self.timelines = timelines
        self.counts = counts
        self.seed_index = seed_index  # --action-lines seed: the only posts an action may point at

    @property
    def seed(self) -> bool:
        return self.seed_index is not None

    def content(self, uri: str) -> dict[str, Any] | None:
        return _post_content(self.data, uri, self.seed_index)

    def own_post(self, did: str, uri: str) -> dict[str, Any] | None:
        """The seed's original of an update or delete: the user's own post or reply."""
        found = self.seed_index.get(uri) if self.seed_index is not None and uri else None
        if found is None or found[0] != did:
            return None
        return _content(did, found[1].get("text", ""), found[1].get("unix_epoch"))

    def not_in_data(self, kind: str) -> None:
        self.counts[f"{kind}_not_in_data"] += 1


# content of one action item: (content, action text) or None when the item is dropped
_Found = tuple[dict[str, Any], str | None] | None


def _liked_post(kind: str, did: str, item: dict[str, Any], src: _Sources) -> _Found:
    """like / unlike / repost / unrepost: the subject post, or its author without text."""
    epoch = item.get("unix_epoch")
    subject = item.get("subject", "")
    if not subject:
        src.counts[f"{kind}_dropped"] += 1
        return None
    content = src.content(subject)
    if content is None:
        if src.seed:
            return src.not_in_data(kind)
        src.counts[f"{kind}_no_content"] += 1
        content = _content(did_of_uri(subject), None, epoch)
    return content, None


def _followed_user(kind: str, did: str, item: dict[str, Any], src: _Sources) -> _Found:
    """follow / unfollow / block / unblock: the target's latest post before the action, or the target alone."""
    epoch = item.get("unix_epoch")
    target = item.get("subject", "")
    if not target:
        src.counts[f"{kind}_dropped"] += 1
        return None
    latest = src.timelines.latest_before(target, epoch)
    if latest is None:
        if src.seed:
            return src.not_in_data(kind)
        src.counts[f"{kind}_no_content"] += 1
        return _content(target, None, epoch), None
    return _content(target, latest.get("text", ""), latest["unix_epoch"]), None


def _updated_post(kind: str, did: str, item: dict[str, Any], src: _Sources) -> _Found:
    """post_update: the original post (or the user without text); the action text is the new text."""
    if src.seed:
        content = src.own_post(did, item.get("uri", ""))
        return (content, item.get("text", "")) if content is not None else src.not_in_data(kind)
    content = src.content(item.get("uri", ""))
    if content is None:
        src.counts[f"{kind}_no_content"] += 1
        content = _content(did, None, item.get("unix_epoch"))
    return content, item.get("text", "")


def _deleted_post(kind: str, did: str, item: dict[str, Any], src: _Sources) -> _Found:
    """post_delete: the deleted post, or the text the delete copied from its create; dropped without either."""
    if src.seed:
        content = src.own_post(did, item.get("uri", ""))
        return (content, None) if content is not None else src.not_in_data(kind)
    content = src.content(item.get("uri", ""))
    if content is None:
        if not item.get("matched"):
            src.counts[f"{kind}_dropped"] += 1
            return None
        content = _content(did, item.get("text", ""), item.get("unix_epoch"))
    return content, None


def _quoted_post(kind: str, did: str, item: dict[str, Any], src: _Sources) -> _Found:
    """quote: the quoted post (or its author without text); the action text is the quote's text."""
    content = src.content(item.get("quoted_uri", ""))
    if content is None:
        if src.seed:
            return src.not_in_data(kind)
        src.counts[f"{kind}_no_content"] += 1
        content = _content(did_of_uri(item.get("quoted_uri", "")), None, item.get("unix_epoch"))
    return content, item.get("text", "")


_CONTENT_OF = {
    **{kind: _liked_post for kind in _POST_TYPES},
    **{kind: _followed_user for kind in _DID_TYPES},
    "post_update": _updated_post,
    "post_delete": _deleted_post,
    "quote": _quoted_post,
}


def _profile_pairs(user: User, counts: Counter[str]) -> Iterator[list[dict[str, Any]]]:
    """profile_update: the profile description (even empty) as the content."""
    if user.profile is not None:
        profile = user.profile
        counts["profile_update"] += 1
        epoch = profile.get("unix_epoch")
        content = {"user_id": user.did, "text": profile.get("text", "") or "", "unix_epoch": epoch}
        yield [content, make_action("profile_update", user.did, epoch)]


def _pairs_of(
    kind: str, user: User, data: UserData, timelines: _Timelines, counts: Counter[str],
    seed_index: Mapping[str, tuple[str, dict]] | None = None,
) -> Iterator[list[dict[str, Any]]]:
    """Action pairs of one type for one user; ``counts`` gets ``<kind>``, ``_no_content`` and ``_dropped``
    (``seed_index``: the seed's rules, see the module doc; ``_not_in_data`` counts what they drop)."""
    if kind == "profile_update":
        if seed_index is None:  # the seed never writes profile updates
            yield from _profile_pairs(user, counts)
        return
    content_of = _CONTENT_OF[kind]
    src = _Sources(data, timelines, counts, seed_index)
    for item in getattr(user, dict(_ORDER)[kind]):
        found = content_of(kind, user.did, item, src)
        if found is None:
            continue
        content, text = found
        counts[kind] += 1
        yield [content, make_action(kind, user.did, item.get("unix_epoch"), text)]


def action_pairs(
    user: User,
    data: UserData,
    counts: Counter[str] | None = None,
    ignored: Iterable[tuple[str, str]] = (),
) -> list[list[dict[str, Any]]]:
    """All action lines of one user, grouped by type in output order (``ignored``: ``(did, uri)`` pairs)."""
    counts = Counter() if counts is None else counts
    timelines = _Timelines(data)
    out = [pair for kind, _ in _ORDER for pair in _pairs_of(kind, user, data, timelines, counts)]
    out.extend(_ignore_pairs([p for p in ignored if p[0] == user.did], data, counts))
    return out


def _ignore_pairs(
    ignored: Iterable[tuple[str, str]], data: UserData, counts: Counter[str]
) -> Iterator[list[dict[str, Any]]]:
    for did, uri in ignored:
        content = _post_content(data, uri)
        if content is None:
            counts["ignore_dropped"] += 1
            continue
        counts["ignore"] += 1
        yield [content, make_action("ignore", did, content["unix_epoch"])]


def chain_owner(chain: Sequence[Mapping[str, Any]]) -> str:
    """The user a chain belongs to: the author of its last message."""
    return chain[-1]["user_id"] if chain else ""


def cluster_lines(
    cluster_users: Iterable[str],
    data: UserData,
    chains: Iterable[Sequence[Mapping[str, Any]]],
    ignored: Iterable[tuple[str, str]] = (),
    counts: Counter[str] | None = None,
    seed_index: Mapping[str, tuple[str, dict]] | None = None,
) -> Iterator[list[Any]]:
    """Every line of one cluster file, in the seed's order (see the module doc); ``seed_index`` (from
    :func:`seed_post_index`) applies the seed's rules for action lines."""
    counts = Counter() if counts is None else counts
    members = sorted(set(cluster_users))
    member_set = set(members)
    for chain in chains:
        if chain and chain_owner(chain) in member_set:
            counts["chains"] += 1
            yield list(chain)
    seed_users = None if seed_index is None else {did for did, _ in seed_index.values()}
    timelines = _Timelines(data, seed_users)
    for kind, _ in _ORDER:
        for did in members:
            user = data.users.get(did)
            if user is not None:
                yield from _pairs_of(kind, user, data, timelines, counts, seed_index)
    yield from _ignore_pairs(ignored, data, counts)


def seed_post_index(data: UserData, clustered: Iterable[str]) -> dict[str, tuple[str, dict[str, Any]]]:
    """URI -> (author, item) over the clustered users' posts and replies: what the seed looks content up in (its
    user data after the English filter; quotes are not searched). A clustered user with no post or reply still
    counts as clustered (a follow of them finds no post and is dropped)."""
    index: dict[str, tuple[str, dict[str, Any]]] = {}
    for did in clustered:
        user = data.users.get(did)
        for item in [] if user is None else [*user.posts, *user.replies]:
            if item.get("uri"):
                index[item["uri"]] = (did, item)
    return index


def _atomic_lines(path: Path, lines: Iterable[Any]) -> int:
    """Write JSON lines to a temp file next to ``path``, then ``os.replace`` it; returns the line count."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    n = 0
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            for line in lines:
                handle.write(json.dumps(line, ensure_ascii=False) + "\n")
                n += 1
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return n


def _file_chains(chains: Iterable[Sequence[Mapping[str, Any]]], labels: Mapping[str, int]):
    """(cluster -> chains by the cluster of each chain's last author, chains whose last author is in none)."""
    by_cluster: dict[int, list[Sequence[Mapping[str, Any]]]] = {}
    unassigned = 0
    for chain in chains:
        label = labels.get(chain_owner(chain))
        if label is None:
            unassigned += 1
        else:
            by_cluster.setdefault(label, []).append(chain)
    return by_cluster, unassigned


def write_cluster_files(
    out_dir: str | Path,
    labels_by_user: Mapping[str, int],
    data: UserData,
    chains: Iterable[Sequence[Mapping[str, Any]]],
    ignored: Mapping[int, Iterable[tuple[str, str]]] | None = None,
    *,
    chains_by_cluster: Mapping[int, Sequence[Sequence[Mapping[str, Any]]]] | None = None,
    action_lines: str = "all",
) -> dict[str, Any]:
    """Write ``user_clusters.json`` and ``cluster_<id>.jsonl`` for every cluster; return the counts.

    ``chains`` are filed under the cluster of their last author; ``chains_by_cluster`` (the seed's per-cluster
    chains) is used as given instead. ``action_lines="seed"`` keeps only the action lines the seed writes.

    Returns ``{"clusters": {id: {"users", "lines", "chains", <action>: n, <action>_no_content: n, ...}},
    "actions": totals per action type over all clusters, "chains_unassigned": chains whose last author is in no
    cluster}``.
    """
    if action_lines not in ("all", "seed"):
        raise ValueError(f"action_lines must be 'all' or 'seed', not {action_lines!r}")
    out = Path(out_dir)
    labels = {did: int(label) for did, label in labels_by_user.items()}
    ignored = ignored or {}
    by_cluster: dict[int, list[str]] = {}
    for did, label in labels.items():
        by_cluster.setdefault(label, []).append(did)
    unassigned = 0
    if chains_by_cluster is None:
        chains_by_cluster, unassigned = _file_chains(chains, labels)
    seed_index = seed_post_index(data, labels) if action_lines == "seed" else None
    atomic_write_json(out / "user_clusters.json", dict(sorted(labels.items())))
    report: dict[str, Any] = {"clusters": {}, "actions": Counter(), "chains_unassigned": unassigned}
    for label in sorted(by_cluster):
        counts: Counter[str] = Counter()
        members = by_cluster[label]
        lines = cluster_lines(members, data, chains_by_cluster.get(label, []), ignored.get(label, ()), counts,
                              seed_index)
        n = _atomic_lines(out / f"cluster_{label}.jsonl", lines)
        report["clusters"][label] = {"users": len(members), "lines": n, **dict(sorted(counts.items()))}
        report["actions"].update({k: v for k, v in counts.items() if k in ACTIONS})
    report["actions"] = {kind: report["actions"].get(kind, 0) for kind in ACTIONS}
    return report
