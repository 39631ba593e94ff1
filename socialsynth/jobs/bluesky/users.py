"""Per-user data folded from :class:`~socialsynth.jobs.bluesky.events.Event` streams, and conversation chains.

:class:`UserData` keeps, per DID, the lists BluePrint's user cache holds (``posts, replies, quotes, likes, unlikes,
reposts, unreposts, follows, unfollows, blocks, unblocks, post_updates, post_deletes``, plus the latest
``profile``). Every item is a plain dict ``{text, created_at, unix_epoch, cid, rkey, uri, langs, ...}`` so the whole
thing is JSON-serialisable (:meth:`UserData.to_dict` / :meth:`UserData.from_dict`).

Lookups are dictionaries, not scans (the seed scanned lists, quadratic overall):
- ``uri -> post item`` for posts, replies and quotes;
- ``uri (at://did/collection/rkey) -> created item`` for every create, so a delete (unlike, unrepost, unfollow,
  unblock, post delete) finds what it deletes by its record key and copies the subject (or the deleted post's text).
A delete whose create is not in the data is still recorded, with ``matched: False``, and counted in
:meth:`UserData.unmatched_deletes`; it never raises. Deleting does not remove the created item: both the like and
the unlike are behaviour BluePrint turns into actions.

Parallel use: fold each file (or day) into its own ``UserData`` in a worker, then ``merge`` them in input order.
``merge`` appends the other's items, drops records already present (Jetstream replays) and matches the other's
unmatched deletes against creates seen earlier, so merging partial results in order gives the same data as one
pass over all files.
"""

from __future__ import annotations

import gc
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from socialsynth.jobs.bluesky.events import Event

LISTS = (
    "posts",
    "replies",
    "quotes",
    "likes",
    "unlikes",
    "reposts",
    "unreposts",
    "follows",
    "unfollows",
    "blocks",
    "unblocks",
    "post_updates",
    "post_deletes",
)
_LIST_OF_KIND = {
    "post": "posts",
    "reply": "replies",
    "quote": "quotes",
    "like": "likes",
    "unlike": "unlikes",
    "repost": "reposts",
    "unrepost": "unreposts",
    "follow": "follows",
    "unfollow": "unfollows",
    "block": "blocks",
    "unblock": "unblocks",
    "post_update": "post_updates",
    "post_delete": "post_deletes",
}
_KIND_OF_LIST = {name: kind for kind, name in _LIST_OF_KIND.items()}
_DELETES = {"unlike", "unrepost", "unfollow", "unblock", "post_delete"}
MAX_ORPHAN_EXAMPLES = 5
_POST_LISTS = ("posts", "replies", "quotes")


@dataclass
class User:
    """One account's items, each a JSON-ready dict; ``profile`` is the latest profile record or None."""

    did: str
    posts: list[dict[str, Any]] = field(default_factory=list)
    replies: list[dict[str, Any]] = field(default_factory=list)
    quotes: list[dict[str, Any]] = field(default_factory=list)
    likes: list[dict[str, Any]] = field(default_factory=list)
    unlikes: list[dict[str, Any]] = field(default_factory=list)
    reposts: list[dict[str, Any]] = field(default_factory=list)
    unreposts: list[dict[str, Any]] = field(default_factory=list)
    follows: list[dict[str, Any]] = field(default_factory=list)
    unfollows: list[dict[str, Any]] = field(default_factory=list)
    blocks: list[dict[str, Any]] = field(default_factory=list)
    unblocks: list[dict[str, Any]] = field(default_factory=list)
    post_updates: list[dict[str, Any]] = field(default_factory=list)
    post_deletes: list[dict[str, Any]] = field(default_factory=list)
    profile: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {name: getattr(self, name) for name in LISTS}
        out["profile"] = self.profile
        return out

    @classmethod
    def from_dict(cls, did: str, data: dict[str, Any]) -> User:
        return cls(did=did, profile=data.get("profile"), **{name: list(data.get(name, [])) for name in LISTS})


def _item(event: Event) -> dict[str, Any]:
    item: dict[str, Any] = {
        "text": event.text,
        "created_at": event.created_at,
        "unix_epoch": event.unix_epoch,
        "cid": event.cid,
        "rkey": event.rkey,
        "uri": event.uri,
        "langs": list(event.langs),
    }
    if event.parent_uri:
        item["parent_uri"] = event.parent_uri
        item["root_uri"] = event.root_uri
    if event.quoted_uri:
        item["quoted_uri"] = event.quoted_uri
    if event.subject:
        item["subject"] = event.subject
        if event.subject_cid:
            item["subject_cid"] = event.subject_cid
    if event.kind == "profile_update":
        item["display_name"] = event.display_name
    if event.kind in _DELETES:
        item["matched"] = False
    return item


def _fill_delete(item: dict[str, Any], created: dict[str, Any]) -> None:
    """Copy what a delete refers to from the item it deletes."""
    item["matched"] = True
    for key in ("subject", "subject_cid"):
        if key in created:
            item[key] = created[key]
    if "subject" not in created:  # a deleted post: keep its text (the content of a post_delete action)
        item["text"] = created.get("text", "")
        item["langs"] = list(created.get("langs", []))
        item["created_at"] = created.get("created_at", "")


def _change_key(kind: str, item: dict[str, Any]) -> tuple[str, ...] | None:
    """What makes a delete or a post update the same event when seen twice (Jetstream replays after a reconnect);
    None for creates (deduplicated by URI) and for items without a URI."""
    uri = item.get("uri") or ""
    if not uri:
        return None
    if kind in _DELETES:
        return kind, uri
    if kind == "post_update":  # a post may be edited many times: the same edit has the same cid (or text and time)
        return kind, uri, str(item.get("cid") or ""), str(item.get("text") or ""), str(item.get("unix_epoch"))
    return None


class UserData:
    """All users met in an event stream, with URI indexes. Build with :meth:`add` / :meth:`add_all`."""

    def __init__(self) -> None:
        self.users: dict[str, User] = {}
        self.duplicates = 0  # events seen twice (a create of the same URI, the same delete or update), dropped
        self._created: dict[str, dict[str, Any]] = {}  # at-uri -> created item (any collection)
        self._changes: set[tuple[str, ...]] = set()  # deletes and post updates already placed (see _change_key)
        self._posts: dict[str, tuple[str, dict[str, Any]]] = {}  # post uri -> (author did, item)

    # ---------------------------------------------------------------- building

    def user(self, did: str) -> User:
        found = self.users.get(did)
        if found is None:
            found = self.users[did] = User(did)
        return found

    def add(self, event: Event) -> None:
        """Fold one event in."""
        item = _item(event)
        user = self.user(event.did)
        if event.kind == "profile_update":
            user.profile = item
            return
        self._place(user, event.kind, item)

    def add_all(self, events: Iterable[Event]) -> UserData:
        # Every stored item is a dict the cyclic garbage collector tracks; its full collections walk the whole
        # growing data set again and again (1M events folded 22% slower, and superlinearly). Nothing here makes
        # reference cycles, so collection is paused while folding.
        paused = gc.isenabled()
        gc.disable()
        try:
            for event in events:
                self.add(event)
        finally:
            if paused:
                gc.enable()
        return self

    def _place(self, user: User, kind: str, item: dict[str, Any], later: UserData | None = None) -> None:
        name = _LIST_OF_KIND[kind]
        uri = item["uri"]
        change = _change_key(kind, item)
        if change is not None:  # a replayed delete or update would become a second action in the cluster files
            if change in self._changes:
                self.duplicates += 1
                return
            self._changes.add(change)
        if kind in _DELETES:
            created = self._created.get(uri) if not item.get("matched") else None
            # when merging, a create that ``later`` itself holds came after this delete: one pass would not match it
            if created is not None and (later is None or uri not in later._created):
                _fill_delete(item, created)
        elif kind != "post_update" and uri:
            if uri in self._created:
                self.duplicates += 1
                return
            self._created[uri] = item
            if name in _POST_LISTS:
                self._posts[uri] = (user.did, item)
        getattr(user, name).append(item)

    def merge(self, other: UserData) -> UserData:
        """Append ``other`` (the data that came *after* this one) into self and return self."""
        self.duplicates += other.duplicates
        for did, theirs in other.users.items():
            mine = self.user(did)
            for name in LISTS:
                kind = _KIND_OF_LIST[name]
                for item in getattr(theirs, name):
                    if kind in _DELETES and not item.get("matched"):
                        item = dict(item)
                    self._place(mine, kind, item, later=other)
            if theirs.profile is not None:
                mine.profile = theirs.profile
        return self

    # ---------------------------------------------------------------- lookups and counts

    def post(self, uri: str) -> tuple[str, dict[str, Any]] | None:
        """``(author did, item)`` of a post, reply or quote by URI, or None."""
        return self._posts.get(uri)

    def unmatched_deletes(self) -> Counter[str]:
        """Deletes whose create is not in the data, by list name (``unlikes``, ``post_deletes``, ...)."""
        out: Counter[str] = Counter()
        for user in self.users.values():
            for name in ("unlikes", "unreposts", "unfollows", "unblocks", "post_deletes"):
                out[name] += sum(1 for item in getattr(user, name) if not item.get("matched"))
        return +out

    def counts(self) -> Counter[str]:
        """Items per list over all users (plus ``users`` and ``profiles``)."""
        out: Counter[str] = Counter(users=len(self.users))
        for user in self.users.values():
            for name in LISTS:
                out[name] += len(getattr(user, name))
            out["profiles"] += user.profile is not None
        return out

    # ---------------------------------------------------------------- (de)serialising

    def to_dict(self) -> dict[str, Any]:
        return {"users": {did: user.to_dict() for did, user in self.users.items()}, "duplicates": self.duplicates}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> UserData:
        out = cls()
        out.duplicates = int(data.get("duplicates", 0))
        for did, raw in data.get("users", {}).items():
            user = out.users[did] = User.from_dict(did, raw)
            for name in LISTS:
                if name in ("unlikes", "unreposts", "unfollows", "unblocks", "post_deletes", "post_updates"):
                    keys = (_change_key(_KIND_OF_LIST[name], item) for item in getattr(user, name))
                    out._changes.update(key for key in keys if key is not None)
                    continue
                for item in getattr(user, name):
                    if item.get("uri"):
                        out._created[item["uri"]] = item
                        if name in _POST_LISTS:
                            out._posts[item["uri"]] = (did, item)
        return out


# --------------------------------------------------------------------------- chains


@dataclass
class ChainStats:
    """What :func:`build_chains` did: chains made, replies whose parent is not in the data, paths cut by depth."""

    chains: int = 0
    roots: int = 0
    orphan_replies: int = 0
    truncated: int = 0
    orphan_examples: list[str] = field(default_factory=list)
    unplaced: int = 0  # --chains seed: members' messages in no chain (under a placed parent, or below the depth)

    def format(self) -> str:
        text = (
            f"chains: {self.chains}   roots: {self.roots}   replies with parent not in data: "
            f"{self.orphan_replies}   paths cut at max depth: {self.truncated}"
        )
        return text + (f"   messages in no chain: {self.unplaced}" if self.unplaced else "")


_Node = tuple[str, dict[str, Any]]  # (author DID, post item)


def _post_nodes(users: UserData) -> dict[str, _Node]:
    """Every post, reply and quote with a URI, by URI."""
    nodes: dict[str, _Node] = {}
    for did, user in users.users.items():
        for name in _POST_LISTS:
            for item in getattr(user, name):
                if item.get("uri"):
                    nodes[item["uri"]] = (did, item)
    return nodes


def _link_replies(nodes: dict[str, _Node], orphans: str, stats: ChainStats) -> tuple[list[str], dict[str, list[str]]]:
    """(roots, parent URI -> reply URIs); replies whose parent is unknown are counted, and roots with "root"."""
    roots: list[str] = []
    children: dict[str, list[str]] = {}
    for uri, (_, item) in nodes.items():
        parent = item.get("parent_uri")
        if not parent:
            roots.append(uri)
        elif parent in nodes and parent != uri:
            children.setdefault(parent, []).append(uri)
        else:
            stats.orphan_replies += 1
            if len(stats.orphan_examples) < MAX_ORPHAN_EXAMPLES:
                stats.orphan_examples.append(uri)
            if orphans == "root":
                roots.append(uri)
    return roots, children


def _root_to_leaf(root: str, children: dict[str, list[str]], max_depth: int, stats: ChainStats):
    """The URI paths from ``root`` to each leaf, earliest reply first; paths are cut below ``max_depth`` replies."""
    stack: list[tuple[str, list[str]]] = [(root, [root])]
    while stack:
        uri, path = stack.pop()
        kids = [k for k in children.get(uri, ()) if k not in path]
        if kids and len(path) > max_depth:
            stats.truncated += 1
            kids = []
        if not kids:
            yield path
            continue
        for kid in reversed(kids):  # earliest reply first in the output
            stack.append((kid, path + [kid]))


def _element(node: _Node) -> dict[str, Any]:
    did, item = node
    return {"user_id": did, "text": item.get("text", ""), "unix_epoch": item["unix_epoch"]}


def build_chains(
    users: UserData, max_depth: int = 5, *, orphans: str = "root"
) -> tuple[list[list[dict[str, Any]]], ChainStats]:
    """Conversation chains, root first: each root-to-leaf path through the reply tree.

    Roots are posts and quotes; a chain holds the root and at most ``max_depth`` nested replies below it (a longer
    thread is cut there, counted in ``truncated``). Each element is ``{user_id, text, unix_epoch}`` (the seed lost
    ``unix_epoch`` on replies; here it is kept). A post with no replies is a chain of one.

    A reply whose parent is not in the data (common: the data holds a sample of users, and they reply to others)
    is counted in ``orphan_replies``. With ``orphans="root"`` (default) it starts its own chain as the first known
    message of its thread, because dropping it would lose most of a persona's own replies; ``orphans="drop"``
    makes it start no chain (its own replies are then dropped too).
    """
    if orphans not in ("root", "drop"):
        raise ValueError(f"orphans must be 'root' or 'drop', not {orphans!r}")
    stats = ChainStats()
    nodes = _post_nodes(users)
    roots, children = _link_replies(nodes, orphans, stats)

    def key(uri: str) -> tuple[int, str]:
        return nodes[uri][1]["unix_epoch"], uri

    for kids in children.values():
        kids.sort(key=key)
    roots.sort(key=key)
    chains: list[list[dict[str, Any]]] = []
    for root in roots:
        stats.roots += 1
        chains.extend([_element(nodes[u]) for u in path] for path in _root_to_leaf(root, children, max_depth, stats))
    stats.chains = len(chains)
    return chains, stats


# --------------------------------------------------------------------------- BluePrint's chains (--chains seed)

SEED_MAX_DEPTH = 5  # the seed stops descending once its recursion depth passes 5


def _seed_element(did: str, item: dict[str, Any]) -> dict[str, Any]:
    """The seed's chain message: the text key only when there is text (the seed lost reply epochs; we keep them)."""
    out: dict[str, Any] = {"user_id": did}
    if item.get("text"):
        out["text"] = item["text"]
    out["unix_epoch"] = item.get("unix_epoch", 0)
    return out


class _SeedThreads:
    """One cluster's posts and replies (members only) and the reply links between them, in member order."""

    def __init__(self, users: UserData, members: Iterable[str]) -> None:
        self.nodes: dict[str, _Node] = {}
        self.children: dict[str, list[str]] = {}
        self.done: set[str] = set()
        self.order: list[tuple[str, str, dict[str, Any]]] = []  # (list name, did, item) in the seed's visit order
        for did in members:
            user = users.users.get(did)
            if user is None:
                continue
            for name in ("posts", "replies"):
                for item in getattr(user, name):
                    uri = item.get("uri") or ""
                    self.order.append((name, did, item))
                    if not uri:
                        continue
                    self.nodes[uri] = (did, item)
                    parent = item.get("parent_uri") if name == "replies" else None
                    if parent:
                        self.children.setdefault(parent, []).append(uri)

    def start(self, uri: str) -> list[dict[str, Any]]:
        """A chain headed by ``uri``, its reply tree appended depth-first."""
        self.done.add(uri)
        chain = [_seed_element(*self.nodes[uri])]
        self.descend(chain, uri, 0)
        return chain

    def descend(self, chain: list[dict[str, Any]], uri: str, depth: int) -> None:
        if depth > SEED_MAX_DEPTH:
            return
        for kid in self.children.get(uri, ()):
            if kid in self.done or kid not in self.nodes:
                continue
            self.done.add(kid)
            chain.append(_seed_element(*self.nodes[kid]))
            self.descend(chain, kid, depth + 1)


def _seed_reply_chain(threads: _SeedThreads, did: str, item: dict[str, Any]) -> list[dict[str, Any]] | None:
    """The chain the seed starts from a reply not yet placed, or None (it starts none)."""
    uri = item["uri"]
    parent, root = item.get("parent_uri") or "", item.get("root_uri") or ""
    if parent in threads.done:
        return None
    if not parent or parent not in threads.nodes:  # its thread starts outside the cluster: the reply heads it
        return threads.start(uri)
    if root and root in threads.nodes and root != parent:  # a deeper reply: the whole thread from its root, once
        return None if root in threads.done else threads.start(root)
    threads.done.update((parent, uri))  # a reply to a root-level message: that message, the reply, its replies
    chain = [_seed_element(*threads.nodes[parent]), _seed_element(did, item)]
    threads.descend(chain, uri, 0)
    return chain


def seed_chains(users: UserData, members: Iterable[str]) -> tuple[list[list[dict[str, Any]]], ChainStats]:
    """BluePrint's conversation chains of one cluster (``--chains seed``), built as its output formatter builds them.

    Only the members' posts and replies are used (other users' messages never appear). Members are visited in the
    given order, each one's posts, then replies: a post not yet placed heads a chain; a reply not yet placed heads
    one when its parent is not a member's message, starts its thread's root when the root is a member's message
    (once), else follows its parent. Below the head, replies are appended depth-first (earliest first) while the
    recursion depth is at most 5, each message at most once. Replies whose parent was already placed, and replies
    cut by the depth limit, start no chain (as in the seed). Elements keep ``unix_epoch`` (the seed wrote 0 for
    replies, a bug) and have a text key only when there is text.
    """
    threads = _SeedThreads(users, members)
    stats = ChainStats()
    chains: list[list[dict[str, Any]]] = []
    for name, did, item in threads.order:
        uri = item.get("uri") or ""
        if not uri or uri in threads.done:
            continue
        chain = threads.start(uri) if name == "posts" else _seed_reply_chain(threads, did, item)
        if chain:
            chains.append(chain)
    stats.chains = stats.roots = len(chains)
    stats.unplaced = sum(1 for uri in threads.nodes if uri not in threads.done)
    return chains, stats
