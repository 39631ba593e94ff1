"""The backend interface every generation engine implements, and the records it returns."""

from __future__ import annotations

import hashlib
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field

from socialsynth.core.errors import EXIT_FAILURE, InputError, Interrupted

Chat = list[dict[str, str]]  # [{"role": "system"|"user"|"assistant", "content": str}, ...]
# A prompt is a chat (the model's chat template is applied) or a plain string sent to the model exactly as it is
# (no chat template: the raw "### Instruction: ... ### Response:" format of older instruct models, e.g. seed 003).
Prompt = Chat | str
Progress = Callable[[int], None]  # called with the number of finished requests


@dataclass(frozen=True)
class GenerationParams:
    """Sampling parameters. temperature 0 means greedy decoding."""

    temperature: float = 0.7
    top_p: float = 0.9
    top_k: int = 0
    repetition_penalty: float = 1.1
    max_new_tokens: int = 256
    seed: int = 0

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class Completion:
    """One generated answer. `finish_reason` is "stop" (end of turn), "length" (hit max_new_tokens) or "error"
    (a remote server refused this one request, e.g. prompt too long; `error` says why and `text` is empty)."""

    text: str
    n_prompt_tokens: int
    n_new_tokens: int
    finish_reason: str
    seed: int | None = None
    error: str | None = None


@dataclass
class ChoiceScores:
    """Probabilities of a fixed set of one-token answers after one forward pass.

    `probs` are renormalised over the choices; `mass` is how much of the whole next-token distribution the
    choices held (a low mass means the model wanted to say something else).
    """

    probs: list[float]
    mass: float

    @property
    def best(self) -> int:
        return max(range(len(self.probs)), key=self.probs.__getitem__)

    def expected(self, values: Sequence[float]) -> float:
        return sum(p * v for p, v in zip(self.probs, values, strict=False))


@dataclass
class GenerationStats:
    """Counters a backend keeps so that scripts can report throughput honestly.

    Tokens in are `prompt_tokens` (prompts of generation requests) plus `scored_tokens` (everything fed through
    forward passes to score: the prompts of `score_choices`, chat + continuation of `score_continuations`, the
    texts of `perplexity`); tokens out are `new_tokens`. `snapshot()` sums them up for a run record."""

    prompt_tokens: int = 0  # prompt tokens of generation requests
    new_tokens: int = 0  # useful tokens: up to and including the end-of-turn token
    scored_tokens: int = 0  # tokens fed through forward passes to score (see above)
    padded_tokens: int = 0  # rows x steps actually computed during decoding
    seconds: float = 0.0  # spent generating
    scoring_seconds: float = 0.0  # spent in forward-pass scoring (ratings, continuations, perplexity)
    batches: int = 0
    extra: dict = field(default_factory=dict)

    def snapshot(self) -> dict:
        """Totals so far: {"tokens_in", "tokens_out", "seconds"}; the difference of two snapshots is what the
        calls between them cost."""
        return {
            "tokens_in": self.prompt_tokens + self.scored_tokens,
            "tokens_out": self.new_tokens,
            "seconds": self.seconds + self.scoring_seconds,
        }


class Unsupported(InputError):
    """The backend cannot do what was asked (e.g. a hosted API that returns no log-probabilities).

    Callers that have another way (the rater falls back from `likelihood` to `logits` to `generate`) catch it;
    otherwise it reaches the script as one line naming the flag to use instead (exit 2)."""


class BackendUnavailable(Interrupted):
    """A remote server did not answer after every retry. The job stops (exit 1); what was written stays, and
    rerunning the same command resumes where it stopped."""

    def __init__(self, message: str, resume_hint: str = "rerun the same command to resume"):
        super().__init__(message, resume_hint=resume_hint, exit_code=EXIT_FAILURE)


def request_seed(seed: int, key: str) -> int:
    """A per-request seed derived from the job seed and a stable request key.

    Sampling with it makes a request's output independent of batch composition and order, so a resumed or
    resharded job draws the same random numbers for the same comment.
    """
    digest = hashlib.blake2b(f"{seed}:{key}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") & 0x7FFF_FFFF_FFFF_FFFF


def request_seeds(seed: int, keys: Sequence[str] | None, n: int, mask: int = 0x7FFF_FFFF_FFFF_FFFF):
    """(keys, seeds) of n requests: the given keys (default: their index) and their `request_seed`s, cut to
    `mask` (servers take 32-bit seeds)."""
    keys = list(keys) if keys is not None else [str(i) for i in range(n)]
    return keys, [request_seed(seed, k) & mask for k in keys]


class Backend(ABC):
    """One interface over generation engines (`hf` and `vllm` in-process, `openai` over HTTP)."""

    name: str  # the model as the user named it (provenance)
    stats: GenerationStats

    seed_mask: int = 0x7FFF_FFFF_FFFF_FFFF  # the seeds the engine takes (servers: 32 bits)

    def generate(
        self,
        chats: Sequence[Prompt],
        params: GenerationParams,
        keys: Sequence[str] | None = None,
        progress: Progress | None = None,
    ) -> list[Completion]:
        """Answer each prompt: a chat (through the model's chat template) or a raw string (sent as it is, the
        completion continues it). `keys` name the requests for per-request seeding (default: their index).

        What every backend does around its engine: no chats, no work; the requests' keys and seeds (see
        `request_seeds`); `_generate` answers them in input order; their prompt and new tokens go to
        `stats.prompt_tokens` / `stats.new_tokens` and the time it took to `stats.seconds` (also if it raises)."""
        if not chats:
            return []
        t0 = time.perf_counter()
        try:
            keys, seeds = request_seeds(params.seed, keys, len(chats), self.seed_mask)
            results = self._generate(chats, params, keys, seeds, progress)
            self.stats.prompt_tokens += sum(c.n_prompt_tokens for c in results)
            self.stats.new_tokens += sum(c.n_new_tokens for c in results)
            return results
        finally:
            self.stats.seconds += time.perf_counter() - t0

    def _generate(self, chats: Sequence[Prompt], params: GenerationParams, keys: list[str], seeds: list[int],
                  progress: Progress | None) -> list[Completion]:
        """The engine's part of `generate`: answer every prompt (chat or raw string), in input order, with its
        request's seed."""
        raise NotImplementedError

    @abstractmethod
    def score_choices(self, chats: Sequence[Chat], choices: Sequence[str]) -> list[ChoiceScores]:
        """Probabilities of each one-token choice as the first token of the assistant's answer."""

    @abstractmethod
    def score_continuations(self, chats: Sequence[Chat], continuations: Sequence[str]) -> list[float]:
        """Log-probability (summed over tokens) of each continuation as the assistant's answer to its chat."""

    @abstractmethod
    def perplexity(self, texts: Sequence[str]) -> list[float]:
        """Perplexity of each plain text under the model (a fluency signal)."""

    def context_length(self) -> int | None:
        """Most tokens the model takes at once (prompt + answer), or None when the engine does not say (a server
        refuses an overlong request itself)."""
        return None

    def token_count(self, item: str | Chat) -> int | None:
        """Tokens of a plain text, or of a chat's prompt (generation prompt included); None when the engine cannot
        count them. Jobs use it with :meth:`context_length` to skip inputs too long for the model."""
        return None

    def prompt_token_count(self, prompt: Prompt) -> int | None:
        """Tokens of a prompt as :meth:`generate` sends it (a raw string with the special tokens the tokenizer
        adds, a chat with its template); None when the engine cannot count them."""
        return self.token_count(prompt)

    def describe(self) -> dict:
        """Provenance: what produced the outputs."""
        return {"backend": type(self).__name__, "model": self.name}
