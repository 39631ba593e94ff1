"""Batched decoding for transformers causal LMs, written for throughput on small models.

Why not `model.generate`: a synthetic-data job sends thousands of prompts that share a long head (system
prompt, rubric, few-shot examples) and whose answers differ a lot in length. This loop
  * computes the shared head once and reuses its key/value cache for every batch (prefix caching),
  * drops rows from the batch as soon as they finish instead of decoding padding until the longest is done,
  * samples each row from its own seeded generator, so an answer does not depend on its batch neighbours.
Rows are left-padded after the shared head; positions come from the attention mask, so padding is invisible.
"""

from __future__ import annotations

import warnings
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from transformers import DynamicCache
from transformers.cache_utils import DynamicLayer

from socialsynth.llm.base import GenerationParams

# transformers 5.2x renamed the forward argument past_key_values to cache and warns on every call; the old name still
# works, and it is the only one transformers 5.0 (our minimum) knows
warnings.filterwarnings("ignore", message=r"`past_key_values` is deprecated", category=FutureWarning)


@dataclass
class PrefixKV:
    """Key/value cache of a prompt head shared by many requests (batch size 1)."""

    ids: tuple[int, ...]
    layers: list[tuple[torch.Tensor, torch.Tensor]]

    def __len__(self) -> int:
        return len(self.ids)


@torch.inference_mode()
def compute_prefix(model, ids: Sequence[int]) -> PrefixKV:
    device = model.device
    input_ids = torch.tensor([list(ids)], device=device)
    cache = DynamicCache(config=model.config)
    model(input_ids=input_ids, past_key_values=cache, use_cache=True, logits_to_keep=1)
    return PrefixKV(tuple(ids), [(layer.keys, layer.values) for layer in cache.layers])


class PreallocatedLayer(DynamicLayer):
    """A cache layer that writes into a buffer reserved for the whole generation and hands out views.

    transformers' dynamic layer concatenates the whole cache every step (at 64 rows x 300 positions that
    copying costs more than the matmuls on a CPU); its static layer avoids the copy but makes attention read
    every reserved slot. Views of the filled window avoid both: 98 ms/step against 146 (dynamic) and 117
    (static) for 64 rows at 300 positions, measured on this 2-core machine.

    The window is the columns [start, length). Continuous batching (see `decode`) writes a new request's
    keys/values into a finished row's slot, right-aligned at the end of the window, and moves `start` past
    columns that no live row uses any more; `compact` moves the window back to column 0 when the buffer end
    is reached. Buffers start zeroed so that stale columns hold finite numbers (they are masked, and a NaN
    would survive the mask).
    """

    def __init__(self, capacity: int):
        super().__init__()
        self.capacity = capacity
        self.start = 0
        self.length = 0

    def lazy_initialization(self, key_states: torch.Tensor, value_states: torch.Tensor) -> None:
        self.dtype, self.device = key_states.dtype, key_states.device
        rows, heads, _, dim = key_states.shape
        self._keys = torch.zeros((rows, heads, self.capacity, dim), dtype=self.dtype, device=self.device)
        self._values = torch.zeros(
            (rows, heads, self.capacity, value_states.shape[-1]), dtype=self.dtype, device=self.device
        )
        self.is_initialized = True

    def _views(self):
        self.keys = self._keys[:, :, self.start : self.length]
        self.values = self._values[:, :, self.start : self.length]

    def update(self, key_states: torch.Tensor, value_states: torch.Tensor, *args, **kwargs):
        if not self.is_initialized:
            self.lazy_initialization(key_states, value_states)
        n = key_states.shape[-2]
        if self.length + n > self.capacity:
            raise RuntimeError(f"cache capacity {self.capacity} exceeded")
        self._keys[:, :, self.length : self.length + n] = key_states
        self._values[:, :, self.length : self.length + n] = value_states
        self.length += n
        self._views()
        return self.keys, self.values

    def get_seq_length(self) -> int:
        return self.length - self.start

    def batch_select_indices(self, indices: torch.Tensor) -> None:
        if self.is_initialized:
            self._keys, self._values = self._keys[indices], self._values[indices]
            self._views()

    def write_rows(self, rows: torch.Tensor, keys: torch.Tensor, values: torch.Tensor) -> None:
        """Put new requests' keys/values into the slots `rows`, ending at the last filled column."""
        width = keys.shape[-2]
        self._keys[rows, :, self.length - width : self.length] = keys
        self._values[rows, :, self.length - width : self.length] = values

    def set_window(self, start: int) -> None:
        self.start = start
        self._views()

    def compact(self, capacity: int) -> None:
        """Move the window to column 0 of a buffer with `capacity` columns (a new one if it must grow)."""
        width = self.length - self.start
        if capacity != self.capacity:
            keys = self._keys.new_zeros((*self._keys.shape[:2], capacity, self._keys.shape[-1]))
            values = self._values.new_zeros((*self._values.shape[:2], capacity, self._values.shape[-1]))
            keys[:, :, :width] = self._keys[:, :, self.start : self.length]
            values[:, :, :width] = self._values[:, :, self.start : self.length]
            self._keys, self._values, self.capacity = keys, values, capacity
        else:
            self._keys[:, :, :width] = self._keys[:, :, self.start : self.length].clone()
            self._values[:, :, :width] = self._values[:, :, self.start : self.length].clone()
        self.start, self.length = 0, width
        self._views()


def _has_plain_layers(model) -> bool:
    """Whether the model's cache is made of plain dynamic layers (what PreallocatedLayer replaces)."""
    return all(type(layer) is DynamicLayer for layer in DynamicCache(config=model.config).layers)


def _new_cache(model, prefix: PrefixKV | None, rows: int, capacity: int | None) -> DynamicCache:
    """A cache for `rows` sequences that starts with a copy of the shared head; with `capacity` (decoding),
    preallocated for that many positions."""
    layers = [(k.expand(rows, -1, -1, -1), v.expand(rows, -1, -1, -1)) for k, v in (prefix.layers if prefix else [])]
    cache = DynamicCache(config=model.config)
    # Sliding-window and hybrid models bring their own layer types: keep those (and their copying).
    if capacity is None or not _has_plain_layers(model):
        return DynamicCache([(k.contiguous(), v.contiguous()) for k, v in layers] or None, config=model.config)
    cache.layers = [PreallocatedLayer(capacity) for _ in cache.layers]
    for layer, (k, v) in zip(cache.layers, layers, strict=False):
        layer.update(k, v)
    return cache


def _batch_inputs(suffixes: Sequence[Sequence[int]], prefix: PrefixKV | None, pad_id: int, device):
    """Left-padded ids of the suffixes, the attention mask over head + suffixes, and the suffixes' positions."""
    ids, suffix_mask = _left_pad(suffixes, pad_id, device)
    p = len(prefix) if prefix is not None else 0
    mask = torch.cat([torch.ones((ids.shape[0], p), dtype=torch.long, device=device), suffix_mask], dim=1)
    positions = (suffix_mask.cumsum(-1) - 1).clamp(min=0) + p
    return ids, mask, positions


def _left_pad(suffixes: Sequence[Sequence[int]], pad_id: int, device) -> tuple[torch.Tensor, torch.Tensor]:
    width = max(len(s) for s in suffixes)
    ids = torch.full((len(suffixes), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(suffixes), width), dtype=torch.long)
    for i, s in enumerate(suffixes):
        if s:
            ids[i, width - len(s) :] = torch.tensor(s, dtype=torch.long)
            mask[i, width - len(s) :] = 1
    return ids.to(device), mask.to(device)


@torch.inference_mode()
def prefill(
    model,
    suffixes: Sequence[Sequence[int]],
    prefix: PrefixKV | None,
    pad_id: int,
    capacity: int | None = None,
):
    """Run the prompts through the model; return (last-position logits, cache, attention mask, next positions).

    `capacity` (positions to reserve for decoding) selects a preallocated cache; None suits a single pass."""
    ids, mask, positions = _batch_inputs(suffixes, prefix, pad_id, model.device)
    if capacity is not None:
        capacity = max(capacity, mask.shape[1] + 1)
    cache = _new_cache(model, prefix, ids.shape[0], capacity)
    out = model(
        input_ids=ids,
        attention_mask=mask,
        position_ids=positions,
        past_key_values=cache,
        use_cache=True,
        logits_to_keep=1,
    )
    next_pos = positions[:, -1:] + 1
    return out.logits[:, -1, :].float(), cache, mask, next_pos


def _row_prefix_inputs(model, suffixes: Sequence[Sequence[int]], prefixes: Sequence[PrefixKV], pad_id: int):
    """Like `_batch_inputs` + `_new_cache` when each row has its own cached head: the heads are stacked
    left-padded to the longest (pad columns masked), the suffixes left-padded after them; positions continue
    each row's own head."""
    device = model.device
    ids, suffix_mask = _left_pad(suffixes, pad_id, device)
    rows, width = len(prefixes), max(len(p) for p in prefixes)
    head_mask = torch.zeros((rows, width), dtype=torch.long, device=device)
    layers = []
    for layer in range(len(prefixes[0].layers)):
        keys, values = prefixes[0].layers[layer]
        k = keys.new_zeros((rows, keys.shape[1], width, keys.shape[-1]))
        v = values.new_zeros((rows, values.shape[1], width, values.shape[-1]))
        for r, prefix in enumerate(prefixes):
            head_keys, head_values = prefix.layers[layer]
            k[r, :, width - len(prefix) :] = head_keys[0]
            v[r, :, width - len(prefix) :] = head_values[0]
        layers.append((k, v))
    for r, prefix in enumerate(prefixes):
        head_mask[r, width - len(prefix) :] = 1
    lengths = torch.tensor([len(p) for p in prefixes], device=device)[:, None]
    positions = (suffix_mask.cumsum(-1) - 1).clamp(min=0) + lengths
    cache = DynamicCache(layers, config=model.config)
    return ids, torch.cat([head_mask, suffix_mask], dim=1), positions, cache


@torch.inference_mode()
def continuation_logprobs(
    model,
    sequences: Sequence[Sequence[int]],
    cont_lengths: Sequence[int],
    prefix: PrefixKV | Sequence[PrefixKV] | None,
    pad_id: int,
) -> list[float]:
    """Sum of log-probabilities of the last `cont_lengths[i]` tokens of each sequence, given what precedes them.

    One teacher-forced pass; rows are left-padded so every continuation ends in the last column, and only the
    last max(cont_lengths) + 1 positions are projected to the vocabulary. `prefix`: one cached head shared by
    every row, or one per row (rows after different prompts, batched together by length).
    """
    if prefix is None or isinstance(prefix, PrefixKV):
        ids, mask, positions = _batch_inputs(sequences, prefix, pad_id, model.device)
        cache = _new_cache(model, prefix, ids.shape[0], None)
    else:
        ids, mask, positions, cache = _row_prefix_inputs(model, sequences, prefix, pad_id)
    keep = max(cont_lengths) + 1
    out = model(
        input_ids=ids,
        attention_mask=mask,
        position_ids=positions,
        past_key_values=cache,
        use_cache=True,
        logits_to_keep=keep,
    )
    logits = out.logits  # [rows, keep, vocab]; position j predicts column width - keep + j + 1
    sums = []
    for i, c in enumerate(cont_lengths):
        targets = ids[i, ids.shape[1] - c :]
        row = logits[i, keep - c - 1 : keep - 1].float().log_softmax(-1)
        sums.append(float(row.gather(1, targets[:, None]).sum()))
    return sums


NUCLEUS_CANDIDATES = 256  # top-p is searched among this many best tokens first (exact fallback below)


def _penalise_repeats_(logits: torch.Tensor, history: tuple[torch.Tensor, torch.Tensor] | None, penalty: float):
    """The CTRL repetition penalty on tokens each row has already generated, in place.

    `history` is (row indices, token ids), one pair per generated token: rows of a continuous batch have
    generated different numbers of tokens, so a flat list of pairs serves better than a padded matrix."""
    if history is None or history[0].numel() == 0 or penalty == 1.0:
        return
    rows, toks = history
    seen = logits[rows, toks]
    logits[rows, toks] = torch.where(seen > 0, seen / penalty, seen * penalty)


def _top_p_filter(sorted_probs: torch.Tensor, top_p: float) -> torch.Tensor:
    """Zero the tail of descending probabilities beyond top_p (keeping the token that crosses it)."""
    before = sorted_probs.cumsum(-1) - sorted_probs
    return sorted_probs.masked_fill(before >= top_p, 0.0)


def _inverse_cdf(probs: torch.Tensor, u: torch.Tensor, ids: torch.Tensor | None = None) -> torch.Tensor:
    """Each row's token where its cumulative distribution reaches u (ids maps candidate columns to tokens)."""
    cdf = probs.cumsum(-1)
    target = (u * cdf[:, -1]).clamp(min=1e-12).unsqueeze(-1)  # never land on a zero-probability token
    pick = torch.searchsorted(cdf, target).clamp(max=cdf.shape[-1] - 1)
    return pick.squeeze(-1) if ids is None else ids.gather(1, pick).squeeze(-1)


def next_tokens(
    logits: torch.Tensor,
    params: GenerationParams,
    generators: list[torch.Generator],
    history: tuple[torch.Tensor, torch.Tensor] | None = None,
) -> torch.Tensor:
    """Pick each row's next token: greedy at temperature 0, else seeded sampling with top-k / top-p.

    `logits` ([rows, vocab], float32) is overwritten: at 256 rows x 49k tokens every full-size copy costs
    10-20 ms, as much as a tenth of a decode step. Each row draws one uniform number from its own generator and
    inverts its cumulative distribution, so rows are sampled independently of each other while the arithmetic
    stays batched. Sorting the vocabulary is the slow part of top-p; the nucleus almost always lies within the
    best few hundred tokens, so only those are sorted, and a row whose nucleus is wider gets the full sort (for
    that row alone, so that a row's draw never depends on its neighbours).
    """
    _penalise_repeats_(logits, history, params.repetition_penalty)
    if params.temperature <= 0:
        return logits.argmax(-1)
    u = torch.cat([torch.rand(1, generator=g) for g in generators]).to(logits.device, logits.dtype)
    vocab = logits.shape[-1]
    if params.top_k and params.top_k < vocab:  # top-k first, then top-p among those (transformers' order)
        top, ids = torch.topk(logits, params.top_k, dim=-1)
        probs = top.div_(params.temperature).softmax(-1)
        if 0 < params.top_p < 1:
            probs = _top_p_filter(probs, params.top_p)
        return _inverse_cdf(probs, u, ids)
    logits.div_(params.temperature)
    if not 0 < params.top_p < 1:
        return _inverse_cdf(logits.softmax(-1), u)
    top, ids = torch.topk(logits, min(NUCLEUS_CANDIDATES, vocab), dim=-1)
    best = top[:, :1].clone()
    mass = logits.sub_(best).exp_()  # unnormalised probabilities, in place
    total = mass.sum(-1, keepdim=True)
    top = top.sub_(best).exp_().div_(total)
    picks = _inverse_cdf(_top_p_filter(top, params.top_p), u, ids)
    if top.shape[-1] < vocab:
        wide = (top.sum(-1) < params.top_p).nonzero().flatten()
        if wide.numel():
            full, full_ids = torch.sort(mass[wide] / total[wide], descending=True, dim=-1)
            picks[wide] = _inverse_cdf(_top_p_filter(full, params.top_p), u[wide], full_ids)
    return picks


@torch.inference_mode()
def decode(
    model,
    suffixes: Sequence[Sequence[int]],
    prefix: PrefixKV | None,
    params: GenerationParams,
    seeds: Sequence[int],
    eos_ids: Sequence[int],
    pad_id: int,
    max_rows: int | None = None,
    refill_fraction: float = 0.125,
    prune_fraction: float = 0.125,
    on_finish: Callable[[int], None] | None = None,
) -> tuple[list[tuple[list[int], str]], int]:
    """Generate for a stream of requests that share `prefix`, at most `max_rows` at a time (all when None).

    Continuous batching: when a row finishes, its slot goes to the next waiting request. Once `refill_fraction`
    of the slots are free, the waiting requests are prefilled together and their keys/values written into the
    free slots, so the batch stays full until the queue runs dry; from then on finished rows are dropped from
    the batch once `prune_fraction` of it has finished. Requests start longest first, so a later (shorter)
    prompt always fits right-aligned in the cache window. `on_finish(i)` is called when request i is done.

    Returns ([(new token ids, finish reason)] in input order, row-steps computed including idle slots).
    """
    n = len(suffixes)
    if n == 0:
        return [], 0
    rows = min(n, max_rows or n)
    if rows < n and not _has_plain_layers(model):  # sliding-window caches: no slots to refill; batch after batch
        order = sorted(range(n), key=lambda i: (-len(suffixes[i]), i))
        done: dict[int, tuple[list[int], str]] = {}
        computed = 0
        for at in range(0, n, rows):
            part = order[at : at + rows]
            outs, steps = decode(
                model,
                [suffixes[i] for i in part],
                prefix,
                params,
                [seeds[i] for i in part],
                eos_ids,
                pad_id,
                prune_fraction=prune_fraction,
                on_finish=(lambda j, part=part: on_finish(part[j])) if on_finish else None,
            )
            done.update(zip(part, outs, strict=True))
            computed += steps
        return [done[i] for i in range(n)], computed
    batcher = ContinuousBatcher(model, suffixes, prefix, params, seeds, eos_ids, pad_id, rows, on_finish)
    return batcher.run(refill_fraction, prune_fraction)


class ContinuousBatcher:
    """The state of one `decode` call: a batch of `rows` slots over one preallocated cache, fed from a queue.

    Each step samples a token for every slot (`sample`), hands the slots of finished requests to waiting ones
    (`refill`) or, once nothing waits, drops them from the batch (`prune`), moves the cache window past columns
    no live row uses (`slide_window`, `compact`) and runs the model one position further (`forward`).
    Slot bookkeeping: `slot_req[s]` is the request in slot s (-1 when free), `counts[s]` the tokens it has
    generated, `generators[s]` its seeded generator; the repetition-penalty history is a flat list of
    (slot, token) pairs (`hist_rows`, `hist_toks`).
    """

    def __init__(
        self,
        model,
        suffixes: Sequence[Sequence[int]],
        prefix: PrefixKV | None,
        params: GenerationParams,
        seeds: Sequence[int],
        eos_ids: Sequence[int],
        pad_id: int,
        rows: int,
        on_finish: Callable[[int], None] | None = None,
    ):
        """Queue the requests longest first and size the cache; `start` prefills the first `rows` of them."""
        n = len(suffixes)
        self.model, self.suffixes, self.prefix, self.params = model, suffixes, prefix, params
        self.seeds, self.eos_set, self.pad_id, self.on_finish = seeds, set(eos_ids), pad_id, on_finish
        self.queue = deque(sorted(range(n), key=lambda i: (-len(suffixes[i]), i)))
        self.slot_req = [self.queue.popleft() for _ in range(rows)]  # slot -> request index, -1 when free
        self.width = (len(prefix) if prefix is not None else 0) + len(suffixes[self.slot_req[0]])
        self.capacity = self.width + params.max_new_tokens + 1
        if self.queue:  # room for the window to slide before it has to be moved back to column 0
            self.capacity += (self.width + params.max_new_tokens) // 2
        self.generators = [torch.Generator().manual_seed(int(seeds[i])) for i in self.slot_req]
        self.counts = [0] * rows  # tokens generated by the request in each slot
        self.outputs: list[list[int]] = [[] for _ in range(n)]
        self.reasons = ["length"] * n
        self.computed = 0
        self.window_cells = self.used_cells = 0  # attention cells per step, all / used by live prompts

    def start(self) -> None:
        """Prefill the first requests into a cache with room for the whole generation; set up the mask buffer
        (one column per cache position), the window [start, length) and an empty repetition history."""
        first = self.slot_req
        self.logits, self.cache, mask, self.pos = prefill(
            self.model, [self.suffixes[i] for i in first], self.prefix, self.pad_id, capacity=self.capacity
        )
        self.streaming = all(isinstance(layer, PreallocatedLayer) for layer in self.cache.layers)
        self.device = self.logits.device
        self.mask_buf = torch.zeros((len(first), self.capacity), dtype=mask.dtype, device=self.device)
        self.mask_buf[:, : self.width] = mask
        self.start_col, self.length = 0, self.width
        self.hist_rows = torch.empty(0, dtype=torch.long, device=self.device)
        self.hist_toks = torch.empty(0, dtype=torch.long, device=self.device)

    @torch.inference_mode()
    def run(self, refill_fraction: float, prune_fraction: float) -> tuple[list[tuple[list[int], str]], int]:
        """Decode until every request is done; see `decode` for the arguments and the result."""
        self.start()
        while True:
            finished = self.sample()
            free = self.free_slots()
            if not self.queue and len(free) == len(self.slot_req):
                break
            self.forget(free)
            if self.streaming and self.queue and len(free) >= max(1, int(len(self.slot_req) * refill_fraction)):
                self.refill(free)
            elif not self.queue and len(free) >= max(1, int(len(self.slot_req) * prune_fraction)):
                self.prune()
            if self.streaming:
                self.slide_window(bool(finished or free))
            self.forward()
        return [(self.outputs[i], self.reasons[i]) for i in range(len(self.outputs))], self.computed

    def live_slots(self) -> list[int]:
        """Slots that hold an unfinished request."""
        return [s for s in range(len(self.slot_req)) if self.slot_req[s] >= 0]

    def free_slots(self) -> list[int]:
        """Slots without a request (finished, waiting for a refill or a prune)."""
        return [s for s in range(len(self.slot_req)) if self.slot_req[s] < 0]

    def record(self, slots: list[int], toks: list[int]) -> list[int]:
        """Append each slot's new token to its request; return the slots whose request just finished."""
        done = []
        for slot, tok in zip(slots, toks, strict=True):
            req = self.slot_req[slot]
            self.outputs[req].append(tok)
            self.counts[slot] += 1
            if tok in self.eos_set:
                self.reasons[req] = "stop"
                done.append(slot)
            elif self.counts[slot] >= self.params.max_new_tokens:
                done.append(slot)
        return done

    def release(self, slots: list[int]) -> None:
        """Free the slots of finished requests (telling `on_finish` which requests are done)."""
        for slot in slots:
            if self.on_finish:
                self.on_finish(self.slot_req[slot])
            self.slot_req[slot] = -1

    def sample(self) -> list[int]:
        """Pick every slot's next token (idle slots too: their generators are replaced on refill), record it
        for the live ones and free the slots that finished; return those slots."""
        live = self.live_slots()
        tokens = next_tokens(self.logits, self.params, self.generators, (self.hist_rows, self.hist_toks))
        self.computed += len(self.slot_req)
        tok_list = tokens.tolist()
        finished = self.record(live, [tok_list[s] for s in live])
        self.hist_rows = torch.cat([self.hist_rows, torch.tensor(live, dtype=torch.long, device=self.device)])
        self.hist_toks = torch.cat([self.hist_toks, tokens[live]])
        self.release(finished)
        self.tokens = tokens
        return finished

    def forget(self, free: list[int]) -> None:
        """Drop the repetition history of free slots."""
        if free:
            gone = torch.tensor(free, dtype=torch.long, device=self.device)
            keep = ~torch.isin(self.hist_rows, gone)
            self.hist_rows, self.hist_toks = self.hist_rows[keep], self.hist_toks[keep]

    def refill(self, free: list[int]) -> None:
        """Prefill waiting requests together and write their keys/values into free slots, right-aligned at the
        end of the window (widening the window to the left if they need it); sample their first tokens."""
        take = [self.queue.popleft() for _ in range(min(len(free), len(self.queue)))]
        slots = free[: len(take)]
        new_logits, new_cache, new_mask, new_pos = prefill(
            self.model, [self.suffixes[i] for i in take], self.prefix, self.pad_id
        )
        w = new_mask.shape[1]  # <= length: requests come longest first
        if self.length - w < self.start_col:
            self.start_col = self.length - w
        index = torch.tensor(slots, dtype=torch.long, device=self.device)
        for layer, new_layer in zip(self.cache.layers, new_cache.layers, strict=True):
            layer.write_rows(index, new_layer.keys, new_layer.values)
        self.mask_buf[index] = 0
        self.mask_buf[index, self.length - w : self.length] = new_mask
        self.pos[index] = new_pos
        for slot, req in zip(slots, take, strict=True):
            self.slot_req[slot], self.counts[slot] = req, 0
            self.generators[slot] = torch.Generator().manual_seed(int(self.seeds[req]))
        firsts = next_tokens(new_logits, self.params, [self.generators[s] for s in slots])
        self.tokens[index] = firsts
        self.release(self.record(slots, firsts.tolist()))
        self.hist_rows = torch.cat([self.hist_rows, index])
        self.hist_toks = torch.cat([self.hist_toks, firsts])

    def prune(self) -> None:
        """Drop free slots from the batch (cache rows, mask, positions, tokens, history renumbered)."""
        kept = self.live_slots()
        index = torch.tensor(kept, dtype=torch.long, device=self.device)
        self.cache.batch_select_indices(index)
        self.mask_buf, self.pos, self.tokens = self.mask_buf[index], self.pos[index], self.tokens[index]
        renumber = torch.full((len(self.slot_req),), -1, dtype=torch.long, device=self.device)
        renumber[index] = torch.arange(len(kept), device=self.device)
        self.hist_rows = renumber[self.hist_rows]
        self.slot_req = [self.slot_req[s] for s in kept]
        self.counts = [self.counts[s] for s in kept]
        self.generators = [self.generators[s] for s in kept]

    def slide_window(self, rows_changed: bool) -> None:
        """After rows finished or were replaced, move the window's start past columns no live row uses any more;
        when the window has reached the buffer's end, move it back to column 0 (`compact`)."""
        if rows_changed:
            live_rows = torch.tensor(self.live_slots(), device=self.device)
            if live_rows.numel():
                used = self.mask_buf[live_rows, self.start_col : self.length].any(0).nonzero()
                if used.numel():
                    self.start_col += int(used[0])
        for layer in self.cache.layers:
            layer.set_window(self.start_col)
        if self.length + 1 > self.capacity:
            self.compact()

    def compact(self) -> None:
        """Move the window (cache and mask) back to column 0, doubling the buffer when the window fills most
        of it."""
        width = self.length - self.start_col
        if 4 * (width + 1) > 3 * self.capacity:
            self.capacity *= 2
        for layer in self.cache.layers:
            layer.compact(self.capacity)
        window = self.mask_buf[:, self.start_col : self.length].clone()
        self.mask_buf = self.mask_buf.new_zeros((self.mask_buf.shape[0], self.capacity))
        self.mask_buf[:, :width] = window
        self.start_col, self.length = 0, width

    def forward(self) -> None:
        """Run the model on every slot's last token: the next logits, one more cache column."""
        self.mask_buf[:, self.length] = 1  # idle slots attend to their own token: finite numbers, ignored
        window = self.mask_buf[:, self.start_col : self.length + 1]
        self.window_cells += window.numel()  # how much of attention's work is real: see bench/throughput.py
        self.used_cells += int(window.sum())
        out = self.model(
            input_ids=self.tokens[:, None],
            attention_mask=window,
            position_ids=self.pos,
            past_key_values=self.cache,
            use_cache=True,
        )
        self.length += 1
        self.pos = self.pos + 1
        self.logits = out.logits[:, -1, :].float()
