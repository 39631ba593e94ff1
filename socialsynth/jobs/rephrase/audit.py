"""Linkability audit of rephrased posts: can a synthetic post be traced back to the original it came from?

Two attacks, both pure functions (embeddings and texts in, numbers out) so tests can build cases with a known
answer:

- **Embedding re-identification**: rank every original by cosine similarity to the synthetic post. The post is
  re-identified at top-1 when its own original ranks first, at top-5 when it ranks in the first five. Ties count
  for the attacker (rank = 1 + the number of originals strictly more similar than the own one).
- **Exact replay**: identifying strings of the original that reappear verbatim in its rephrasing: names
  (capitalised tokens not at a sentence start), numbers (digit sequences of 2+ digits) and rare word 3-grams
  (3-grams of the original found in at most `max_df` originals of the corpus, i.e. search-engine bait).
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Sequence

import numpy as np

QUANTILES = (0.1, 0.25, 0.5, 0.75, 0.9)
SUBREDDIT_PREFIX = re.compile(r"^\s*posted in the\s+\S+\s+subreddit\s*:\s*", re.IGNORECASE)
RELATED_TAG = re.compile(r"\[RELATED:[^\]]*\]", re.IGNORECASE)
# Capitalised words that are not names wherever they stand.
NOT_NAMES = frozenset(
    "I I'm I've I'd I'll Im Ive Id OK Ok TL DR TLDR TIFU AITA WIBTA Reddit Edit EDIT Update UPDATE PS Mr Mrs Ms Dr "
    "Monday Tuesday Wednesday Thursday Friday Saturday Sunday January February March April May June July August "
    "September October November December Christmas".split()
)
_TOKEN = re.compile(r"[A-Za-z][A-Za-z'’\-]*|\d+(?:[.,:/\-]\d+)*|[.!?\n]+")
_WORD = re.compile(r"[a-z0-9']+")


def strip_context(text: str) -> str:
    """The post without the seed's "Posted in the X subreddit:" prefix and [RELATED: ...] tags (context, not PII)."""
    return RELATED_TAG.sub(" ", SUBREDDIT_PREFIX.sub("", text or ""))


def names_and_numbers(text: str) -> tuple[set[str], set[str]]:
    """Capitalised tokens not at a sentence start (names, places, organisations) and digit sequences of 2+ digits."""
    names, numbers = set(), set()
    sentence_start = True
    for tok in _TOKEN.findall(strip_context(text)):
        if tok[0] in ".!?\n":
            sentence_start = True
            continue
        if tok[0].isdigit():
            if sum(ch.isdigit() for ch in tok) >= 2:
                numbers.add(tok)
        elif tok[0].isupper() and len(tok) > 1 and not sentence_start and tok not in NOT_NAMES:
            names.add(tok.rstrip("'’-"))
        sentence_start = False
    return names, numbers


def word_ngrams(text: str, n: int = 3) -> set[tuple[str, ...]]:
    words = _WORD.findall(strip_context(text).lower().replace("’", "'"))
    return {tuple(words[i : i + n]) for i in range(len(words) - n + 1)}


def ngram_document_frequency(texts: Iterable[str], n: int = 3) -> Counter:
    """In how many texts each word n-gram occurs."""
    df: Counter = Counter()
    for text in texts:
        df.update(word_ngrams(text, n))
    return df


def replay(original: str, synthetic: str, doc_freq: Counter, max_df: int = 1, n: int = 3) -> dict:
    """What of the original's names, numbers and rare n-grams reappears verbatim in the synthetic post."""
    names, numbers = names_and_numbers(original)
    syn_tokens = set(_TOKEN.findall(strip_context(synthetic)))
    syn_tokens |= {t.rstrip("'’-") for t in syn_tokens}
    rare = {g for g in word_ngrams(original, n) if doc_freq.get(g, 0) <= max_df}
    syn_grams = word_ngrams(synthetic, n)
    return {
        "names": sorted(names),
        "numbers": sorted(numbers),
        "rare_ngrams": len(rare),
        "replayed_names": sorted(names & syn_tokens),
        "replayed_numbers": sorted(numbers & syn_tokens),
        "replayed_ngrams": sorted(" ".join(g) for g in rare & syn_grams),
    }


def own_ranks(similarity: np.ndarray, own: Sequence[int]) -> np.ndarray:
    """1-based rank of each row's own column among all columns (ties count for the attacker)."""
    sim = np.asarray(similarity, dtype=np.float64)
    own = np.asarray(own, dtype=np.int64)
    own_sim = sim[np.arange(len(own)), own]
    return 1 + (sim > own_sim[:, None]).sum(axis=1)


def _stats(values: np.ndarray) -> dict:
    if len(values) == 0:
        return {"mean": None, **{f"q{int(q * 100)}": None for q in QUANTILES}}
    out = {"mean": round(float(values.mean()), 4)}
    out.update({f"q{int(q * 100)}": round(float(np.quantile(values, q)), 4) for q in QUANTILES})
    return out


def linkability(synthetic_emb: np.ndarray, original_emb: np.ndarray, own: Sequence[int]) -> dict:
    """Top-1/top-5 re-identification rates and similarity distributions, from L2-normalised embeddings.

    `own[i]` is the row of `original_emb` that synthetic post i was made from."""
    syn = np.asarray(synthetic_emb, dtype=np.float64)
    orig = np.asarray(original_emb, dtype=np.float64)
    n = len(syn)
    if n == 0:
        return {"n": 0, "n_originals": len(orig), "top1": None, "top5": None, "mean_rank": None}
    sim = syn @ orig.T
    own = np.asarray(own, dtype=np.int64)
    ranks = own_ranks(sim, own)
    own_sim = sim[np.arange(n), own]
    others = sim.copy()
    others[np.arange(n), own] = -np.inf
    best_other = others.max(axis=1) if orig.shape[0] > 1 else np.full(n, np.nan)
    best_other = best_other[np.isfinite(best_other)]
    return {
        "n": n,
        "n_originals": int(orig.shape[0]),
        "top1": round(float((ranks == 1).mean()), 4),
        "top5": round(float((ranks <= 5).mean()), 4),
        "mean_rank": round(float(ranks.mean()), 2),
        "ranks": [int(r) for r in ranks],  # per synthetic post, in input order (the job keys them by record id)
        "chance_top1": round(1 / orig.shape[0], 4),
        "own_similarity": _stats(own_sim),
        "best_other_similarity": _stats(best_other),
    }


def replay_rates(originals: Sequence[str], synthetics: Sequence[str], doc_freq: Counter, max_df: int = 1) -> dict:
    """Exact-replay rates over pairs (original, its synthetic post).

    `posts_*`: share of synthetic posts replaying at least one item, among posts whose original has one;
    `tokens_*`: share of the originals' items replayed; `examples`: a few replayed items."""
    post_hits, post_has = Counter(), Counter()
    tok_hits, tok_total = Counter(), Counter()
    examples: dict[str, list] = {"names": [], "numbers": [], "ngrams": []}
    for orig, syn in zip(originals, synthetics, strict=True):
        r = replay(orig, syn, doc_freq, max_df)
        for kind, total, hit in (
            ("names", len(r["names"]), r["replayed_names"]),
            ("numbers", len(r["numbers"]), r["replayed_numbers"]),
            ("ngrams", r["rare_ngrams"], r["replayed_ngrams"]),
        ):
            if total:
                post_has[kind] += 1
                tok_total[kind] += total
                tok_hits[kind] += len(hit)
                post_hits[kind] += bool(hit)
                for item in hit:
                    if len(examples[kind]) < 5 and item not in examples[kind]:
                        examples[kind].append(item)
    out = {"n": len(synthetics)}
    for kind in ("names", "numbers", "ngrams"):
        out[f"posts_{kind}"] = round(post_hits[kind] / post_has[kind], 4) if post_has[kind] else None
        out[f"tokens_{kind}"] = round(tok_hits[kind] / tok_total[kind], 4) if tok_total[kind] else None
        out[f"n_posts_with_{kind}"] = post_has[kind]
    out["examples"] = examples
    return out


def audit(
    original_texts: Sequence[str],
    original_emb: np.ndarray,
    synthetic_texts: Sequence[str],
    synthetic_emb: np.ndarray,
    own: Sequence[int],
    max_df: int = 1,
) -> dict:
    """The whole audit for one model: linkability from embeddings plus exact replay from texts."""
    doc_freq = ngram_document_frequency(original_texts)
    result = linkability(synthetic_emb, original_emb, own)
    result["replay"] = replay_rates([original_texts[i] for i in own], synthetic_texts, doc_freq, max_df)
    return result


def _pct(value) -> str:
    return "-" if value is None else f"{value:.0%}"


def _num(value) -> str:
    return "-" if value is None else f"{value:.3f}"


def format_audit(by_model: dict[str, dict]) -> str:
    """A readable table: one row per model."""
    head = (
        f"{'model':<24} {'n':>4} {'top-1':>6} {'top-5':>6} {'chance':>6} {'own sim':>8} {'best other':>10} "
        f"{'names':>6} {'numbers':>7} {'3-grams':>7}"
    )
    lines = [head, "-" * len(head)]
    for slug, a in by_model.items():
        if not a.get("n"):
            lines.append(f"{slug:<24} {0:>4} (no synthetic posts)")
            continue
        rp = a["replay"]
        lines.append(
            f"{slug:<24} {a['n']:>4} {_pct(a['top1']):>6} {_pct(a['top5']):>6} {_pct(a['chance_top1']):>6} "
            f"{_num(a['own_similarity']['mean']):>8} {_num(a['best_other_similarity']['mean']):>10} "
            f"{_pct(rp['posts_names']):>6} {_pct(rp['posts_numbers']):>7} {_pct(rp['posts_ngrams']):>7}"
        )
    lines.append(
        "top-1/top-5: share of synthetic posts whose own original is the most similar / among the 5 most similar "
        "originals (embedding cosine); own sim / best other: mean cosine to the own original / to the closest other "
        "one; names, numbers, 3-grams: share of posts replaying at least one of their original's (among posts whose "
        "original has any)"
    )
    return "\n".join(lines)
