"""PAC-LoRA (SocialAlign, seed 004): persona-conditioned mixtures of LoRA experts on a frozen causal LM.

Every adapted linear layer gets E "analyse" experts A_i (r x d_in) and E "compose" experts B_j (d_out x r) and two
routers of its own (d_model -> 32 -> E, GELU, softmax):

    y = base(x) + (alpha / r) * (sum_j gB_j B_j) @ (sum_i gA_i A_i) @ dropout(x)

gA comes from the A-router, which sees only the news span of the prompt; gB from the B-router, which sees only the
user span (profile, history, persona). This module is plain torch on top of transformers (no peft): peft's LoRA
layer has one A and one B per adapter and no per-sequence gates.

Design decisions, and why:
  * Router input = the mean of the *input token embeddings* (``model.get_input_embeddings()``) over the span's
    tokens, computed once per sequence from the prompt. Hidden states of deeper layers would leak the rest of the
    prompt into each router through attention; input embeddings make "the A-router depends only on the news span"
    true by construction (and tested). The seed routed every token from its hidden state and, during cached
    decoding (one new token per step), lost the spans; here the routing computed at the prompt stays for every
    following cached step, so incremental decoding gives the same logits as one full forward pass.
  * ``routing="token"`` (``train --routing token``) is the seed's routing, kept beside ours for replays: every
    token is routed by its own input to the adapted layer (a router per layer reading that layer's input width),
    zeroed outside the router's span, so gates are (batch, tokens, E) and tokens outside both spans (the answer,
    the template, and every cached decoding step) all get the gates of a zero input.
  * A sequence whose span is empty gets uniform gates (what the seed's zero router input is meant to give).
  * Gates are per sequence, (batch, E), and are kept in one :class:`RoutingState` shared by all adapted layers;
    :class:`PACLoRAModel` fills it before each forward that carries masks (training, prefill) and leaves it for
    the cached steps that follow. HF ``generate`` expands rows with ``repeat_interleave`` (several samples or
    beams per prompt), so a batch that is k times the routed batch uses each row's routing k times in a row.
  * Efficiency: the experts are mixed per row first, (b, r, d_in) and (b, d_out, r), then two batched matmuls,
    rather than E full low-rank products.
  * B experts start at zero, so a fresh model computes exactly the base model; A experts get the LoRA
    (Kaiming-uniform) initialisation, different per expert so that the routers have something to choose from.
  * A base loaded in 4 or 8 bits (bitsandbytes, QLoRA) or spread over GPUs (device_map) works: its
    ``Linear4bit``/``Linear8bitLt`` layers are ``nn.Linear`` subclasses, the experts and routers are created on their
    layer's device, and the wrapper shows the Trainer the base's ``hf_device_map`` and ``quantization_method``.
  * Saving writes only the expert and router weights (safetensors) and a JSON config; loading rebuilds the
    modules on a fresh base model. Nothing is merged into the base weights (the mixture depends on the prompt).
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from socialsynth.jobs.response.records import DEFAULT_TARGETS

ROUTER_HIDDEN = 32
CONFIG_FILE = "pac_lora_config.json"
WEIGHTS_FILE = "pac_lora.safetensors"


@dataclass
class PACLoRAConfig:
    """Everything needed to rebuild the adapter modules on a base model (saved as pac_lora_config.json)."""

    experts: int = 3
    rank: int = 8
    alpha: float = 16.0
    dropout: float = 0.1
    target_modules: list[str] = field(default_factory=lambda: list(DEFAULT_TARGETS))
    router_hidden: int = ROUTER_HIDDEN
    base_model: str = ""  # as the user named it ("embedded", a hub id, a path)
    method: str = "pac-lora"
    routing: str = "span-mean"  # "token": the seed's per-token routing (adapters saved before it existed: span-mean)

    @classmethod
    def from_dict(cls, data: dict) -> PACLoRAConfig:
        known = {k: data[k] for k in cls.__dataclass_fields__ if k in data}
        return cls(**known)


class RoutingState:
    """The per-sequence routing input shared by every adapted layer of one model.

    ``news`` / ``user``: (batch, d_model) mean input embeddings over each span; ``has_news`` / ``has_user``:
    (batch,) bool, False where the span is empty (those rows get uniform gates).
    """

    def __init__(self):
        self.news: torch.Tensor | None = None
        self.user: torch.Tensor | None = None
        self.has_news: torch.Tensor | None = None
        self.has_user: torch.Tensor | None = None
        self.news_mask: torch.Tensor | None = None  # (batch, tokens) bool, token routing only
        self.user_mask: torch.Tensor | None = None
        self.version = 0  # bumped on every set(): modules may reuse gates computed for the same version

    @property
    def ready(self) -> bool:
        return self.news is not None

    @property
    def batch_size(self) -> int:
        return 0 if self.news is None else self.news.shape[0]

    def set(self, news: torch.Tensor, user: torch.Tensor, has_news: torch.Tensor, has_user: torch.Tensor,
            news_mask: torch.Tensor | None = None, user_mask: torch.Tensor | None = None) -> None:
        self.news, self.user, self.has_news, self.has_user = news, user, has_news, has_user
        self.news_mask, self.user_mask = news_mask, user_mask
        self.version += 1

    def clear(self) -> None:
        self.news = self.user = self.has_news = self.has_user = self.news_mask = self.user_mask = None


def _router(d_model: int, hidden: int, experts: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(d_model, hidden), nn.GELU(), nn.Linear(hidden, experts))


def gates_from(router: nn.Module, pooled: torch.Tensor, present: torch.Tensor) -> torch.Tensor:
    """Softmax gates (batch, E) from a router; rows whose span is empty get 1/E everywhere."""
    param = next(router.parameters())
    probs = F.softmax(router(pooled.to(param.device, param.dtype)).float(), dim=-1)  # device: a spread base
    uniform = torch.full_like(probs, 1.0 / probs.shape[-1])
    return torch.where(present[:, None].to(probs.device), probs, uniform)


class PACLoRALinear(nn.Module):
    """A frozen ``nn.Linear`` plus E gated LoRA-A experts, E gated LoRA-B experts and their two routers.

    ``lora_A``: (E, r, d_in); ``lora_B``: (E, d_out, r), zero at the start; ``router_a`` / ``router_b``:
    d_model -> hidden -> E. The gates come from the shared :class:`RoutingState` (set by :class:`PACLoRAModel`).
    """

    def __init__(
        self,
        base: nn.Linear,
        experts: int = 3,
        rank: int = 8,
        alpha: float = 16.0,
        dropout: float = 0.1,
        *,
        state: RoutingState | None = None,
        d_model: int | None = None,
        router_hidden: int = ROUTER_HIDDEN,
        routing: str = "span-mean",
    ):
        """`state`: the routing state shared by the model's adapted layers (a private one when None); `d_model`:
        the router input size, the model's embedding width (default: this layer's input width); `routing`:
        "span-mean" (per-sequence gates from the state) or "token" (the seed's: per-token gates from this layer's
        own input, masked to the span, so the routers read this layer's input width)."""
        super().__init__()
        if experts < 1 or rank < 1:
            raise ValueError(f"experts and rank must be >= 1 (got {experts}, {rank})")
        if routing not in ("span-mean", "token"):
            raise ValueError(f"routing must be span-mean or token, not {routing!r}")
        state = state if state is not None else RoutingState()
        self.routing = routing
        d_model = base.in_features if routing == "token" else (d_model or base.in_features)
        self.base = base
        for p in self.base.parameters():
            p.requires_grad_(False)
        self.state = state
        self.experts, self.rank, self.scaling = experts, rank, alpha / rank
        d_in, d_out = base.in_features, base.out_features
        device = base.weight.device
        self.lora_A = nn.Parameter(torch.empty(experts, rank, d_in, device=device))
        self.lora_B = nn.Parameter(torch.zeros(experts, d_out, rank, device=device))
        for i in range(experts):  # peft's LoRA-A initialisation, one draw per expert
            nn.init.kaiming_uniform_(self.lora_A.data[i], a=math.sqrt(5))
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.router_a = _router(d_model, router_hidden, experts).to(device)
        self.router_b = _router(d_model, router_hidden, experts).to(device)
        self._cached: tuple | None = None  # (state version, gA, gB) while decoding without gradients

    @property
    def in_features(self) -> int:
        return self.base.in_features

    @property
    def out_features(self) -> int:
        return self.base.out_features

    def gates(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(gA, gB), each (batch, E), from the routing state."""
        s = self.state
        if not s.ready:
            raise RuntimeError("PAC-LoRA routing is not set: run a forward pass with news_mask and user_mask first")
        reuse = not self.training and not torch.is_grad_enabled()  # cached decoding: same gates at every step
        if reuse and self._cached is not None and self._cached[0] == s.version:
            return self._cached[1], self._cached[2]
        g_a, g_b = gates_from(self.router_a, s.news, s.has_news), gates_from(self.router_b, s.user, s.has_user)
        self._cached = (s.version, g_a, g_b) if reuse else None
        return g_a, g_b

    def token_gates(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The seed's routing: (gA, gB), each (batch, tokens, E), from every token's own input to this layer; the
        A-router sees it only inside the news span, the B-router only inside the user span (zero elsewhere, as the
        seed's code gave). Cached decoding steps (tokens past the masked prompt) are outside both spans."""
        s = self.state
        if s.news_mask is None:
            raise RuntimeError("PAC-LoRA routing is not set: run a forward pass with news_mask and user_mask first")
        rows, width = x.shape[0], x.shape[1]
        news, user = s.news_mask, s.user_mask
        if rows != news.shape[0] and rows % news.shape[0] == 0:  # generate() with several samples per prompt
            news = news.repeat_interleave(rows // news.shape[0], dim=0)
            user = user.repeat_interleave(rows // user.shape[0], dim=0)
        if news.shape != (rows, width):  # a decoding step: the new tokens belong to no span
            news = user = torch.zeros((rows, width), dtype=torch.bool, device=x.device)
        param = next(self.router_a.parameters())
        h = x.to(param.dtype)
        g_a = F.softmax(self.router_a(h * news.to(h.device, h.dtype)[..., None]).float(), dim=-1)
        g_b = F.softmax(self.router_b(h * user.to(h.device, h.dtype)[..., None]).float(), dim=-1)
        return g_a, g_b

    def _token_forward(self, x: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
        """y = base(x) + scaling * sum_j gB_j(t) B_j (sum_i gA_i(t) A_i x_t), per token."""
        g_a, g_b = self.token_gates(x)
        e, r = self.experts, self.rank
        # all experts in one matmul each way, never a (tokens x experts x d_out) tensor: A as (E*r, d_in) ...
        h = F.linear(self.dropout(x).to(self.lora_A.dtype), self.lora_A.reshape(e * r, -1))  # (b, t, E*r)
        h = (h.unflatten(-1, (e, r)) * g_a.to(h.dtype)[..., None]).sum(-2)  # (b, t, r): gated sum of A_i x
        # ... and B as (E*r, d_out): the B gates scale each expert's copy of h
        h = (h[..., None, :] * (g_b * self.scaling).to(h.dtype)[..., None]).flatten(-2)  # (b, t, E*r)
        y = h @ self.lora_B.permute(0, 2, 1).reshape(e * r, -1)  # (b, t, d_out)
        return out + y.to(out.dtype)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.base(x)
        if self.routing == "token":
            return self._token_forward(x, out)
        g_a, g_b = self.gates()
        rows = x.shape[0]
        if x.dim() != 3 or rows % g_a.shape[0]:
            raise RuntimeError(
                f"PAC-LoRA input of shape {tuple(x.shape)} does not match the {g_a.shape[0]} routed sequences"
            )
        if rows != g_a.shape[0]:  # generate() with several samples/beams per prompt: rows repeated in place
            g_a = g_a.repeat_interleave(rows // g_a.shape[0], dim=0)
            g_b = g_b.repeat_interleave(rows // g_b.shape[0], dim=0)
        # per-row mixed experts, laid out for two contiguous bmm's; the scaling goes on the small B mixture
        a = torch.einsum("be,erd->bdr", g_a.to(self.lora_A.dtype), self.lora_A).contiguous()  # (b, d_in, r)
        b = torch.einsum("be,eor->bro", g_b.to(self.lora_B.dtype) * self.scaling, self.lora_B).contiguous()
        h = torch.bmm(self.dropout(x).to(a.dtype), a)  # (b, t, r)
        return out + torch.bmm(h, b).to(out.dtype)  # (b, t, d_out)

    def extra_repr(self) -> str:
        return f"experts={self.experts}, rank={self.rank}, scaling={self.scaling:g}, routing={self.routing}"


def _span_means(embeddings: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean embedding over the masked tokens of each row, and whether the row has any."""
    weights = mask.to(embeddings.dtype).unsqueeze(-1)
    count = weights.sum(1)
    mean = (embeddings * weights).sum(1) / count.clamp(min=1)
    return mean, (count.squeeze(-1) > 0)


class PACLoRAModel(nn.Module):
    """A causal LM whose target linears are :class:`PACLoRALinear`, with routing from the prompt spans.

    ``forward(input_ids, attention_mask, news_mask, user_mask, labels, past_key_values, ...)``: when the masks
    are given (training, or the prefill of a prompt) the routing is computed from them and kept; without masks
    (cached decoding steps) the kept routing is used. Everything else goes to the base model unchanged.
    """

    main_input_name = "input_ids"

    def __init__(self, base_model: nn.Module, config: PACLoRAConfig, state: RoutingState):
        super().__init__()
        self.base_model = base_model
        self.pac_config = config
        self.routing = state
        # Shown to the Trainer (only when the base has them), so that it leaves a base spread over GPUs
        # (hf_device_map) or a bitsandbytes base (quantization_method) where it is instead of calling .to().
        for name in ("hf_device_map", "quantization_method"):
            if getattr(base_model, name, None) is not None:
                setattr(self, name, getattr(base_model, name))

    # -- what Trainer and generate() look up on a model
    @property
    def config(self):
        return self.base_model.config

    @property
    def device(self) -> torch.device:
        return next(self.base_model.parameters()).device

    @property
    def generation_config(self):
        return self.base_model.generation_config

    def get_input_embeddings(self) -> nn.Module:
        return self.base_model.get_input_embeddings()

    def gradient_checkpointing_enable(self, **kwargs):
        self.base_model.gradient_checkpointing_enable(**kwargs)
        self.base_model.enable_input_require_grads()

    def adapted_modules(self) -> Iterable[tuple[str, PACLoRALinear]]:
        for name, module in self.base_model.named_modules():
            if isinstance(module, PACLoRALinear):
                yield name, module

    # -- routing
    @torch.no_grad()
    def set_routing(self, input_ids: torch.Tensor, news_mask: torch.Tensor, user_mask: torch.Tensor) -> None:
        """Compute and keep the routing input of each sequence from its prompt tokens and span masks."""
        if news_mask.shape != input_ids.shape or user_mask.shape != input_ids.shape:
            raise ValueError(
                f"news_mask {tuple(news_mask.shape)} and user_mask {tuple(user_mask.shape)} must have the shape of "
                f"input_ids {tuple(input_ids.shape)}"
            )
        embeddings = self.get_input_embeddings()(input_ids).float()
        news, has_news = _span_means(embeddings, news_mask.bool())
        user, has_user = _span_means(embeddings, user_mask.bool())
        self.routing.set(news, user, has_news, has_user, news_mask.bool(), user_mask.bool())

    def gates(self) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
        """The current (gA, gB) of every adapted module, by module name (span-mean routing; token routing's gates
        depend on each layer's input: see :meth:`PACLoRALinear.token_gates`)."""
        return {name: module.gates() for name, module in self.adapted_modules()}

    def forward(
        self,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        news_mask: torch.Tensor | None = None,
        user_mask: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        past_key_values=None,
        **kwargs,
    ):
        if news_mask is not None or user_mask is not None:
            if news_mask is None or user_mask is None or input_ids is None:
                raise ValueError("PAC-LoRA routing needs input_ids, news_mask and user_mask together")
            self.set_routing(input_ids, news_mask, user_mask)
        return self.base_model(
            input_ids=input_ids,
            attention_mask=attention_mask,
            labels=labels,
            past_key_values=past_key_values,
            **kwargs,
        )

    @torch.no_grad()
    def generate(self, input_ids, attention_mask=None, news_mask=None, user_mask=None, **kwargs):
        """HF generation with routing from the prompt spans: set once here, reused at every decoding step."""
        if news_mask is None or user_mask is None:
            raise ValueError("PAC-LoRA generate() needs news_mask and user_mask for the prompts")
        self.set_routing(input_ids, news_mask, user_mask)
        return self.base_model.generate(input_ids=input_ids, attention_mask=attention_mask, **kwargs)

    # -- saving
    def adapter_state_dict(self) -> dict[str, torch.Tensor]:
        """Expert and router weights only (the frozen base is not saved)."""
        out = {}
        for name, module in self.adapted_modules():
            for pname, p in module.named_parameters():
                if not pname.startswith("base."):
                    out[f"{name}.{pname}"] = p.detach().contiguous().cpu()
        return out

    def load_adapter_state_dict(self, weights: dict[str, torch.Tensor], source: str = "adapter") -> None:
        mine = {}
        for name, module in self.adapted_modules():
            for pname, p in module.named_parameters():
                if not pname.startswith("base."):
                    mine[f"{name}.{pname}"] = p
        missing = sorted(set(mine) - set(weights))
        extra = sorted(set(weights) - set(mine))
        if missing or extra:
            raise ValueError(
                f"{source} does not fit this model: {len(missing)} weights missing (e.g. {missing[:2]}), "
                f"{len(extra)} unexpected (e.g. {extra[:2]})"
            )
        with torch.no_grad():
            for key, p in mine.items():
                if weights[key].shape != p.shape:
                    raise ValueError(
                        f"{source}: {key} has shape {tuple(weights[key].shape)}, expected {tuple(p.shape)}"
                    )
                p.copy_(weights[key].to(p.dtype))
        self.routing.version += 1  # gates cached from the old weights are stale

    def save_adapter(self, directory: str | Path) -> None:
        """Write pac_lora.safetensors (experts + routers) and pac_lora_config.json into `directory`."""
        from safetensors.torch import save_file

        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        save_file(self.adapter_state_dict(), str(directory / WEIGHTS_FILE), metadata={"format": "pt"})
        (directory / CONFIG_FILE).write_text(json.dumps(asdict(self.pac_config), indent=2) + "\n", encoding="utf-8")

    def load_adapter_weights(self, directory: str | Path) -> None:
        from safetensors.torch import load_file

        path = Path(directory) / WEIGHTS_FILE
        self.load_adapter_state_dict(load_file(str(path)), source=str(path))

    def trainable_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters() if p.requires_grad)


def _d_model(model: nn.Module) -> int:
    return model.get_input_embeddings().weight.shape[1]


def apply_pac_lora(
    model: nn.Module,
    target_modules: Sequence[str] = DEFAULT_TARGETS,
    experts: int = 3,
    rank: int = 8,
    alpha: float = 16.0,
    dropout: float = 0.1,
    base_model_name: str = "",
    router_hidden: int = ROUTER_HIDDEN,
    routing: str = "span-mean",
) -> PACLoRAModel:
    """Freeze `model`, replace every nn.Linear whose attribute name is in `target_modules` by a PACLoRALinear
    (in place), and return the wrapper. Works for any causal LM whose projections are nn.Linear modules (Llama,
    Qwen2, Mistral names by default; pass the names of other architectures)."""
    config = PACLoRAConfig(
        experts=experts,
        rank=rank,
        alpha=float(alpha),
        dropout=float(dropout),
        target_modules=list(target_modules),
        router_hidden=router_hidden,
        base_model=base_model_name,
        routing=routing,
    )
    for p in model.parameters():
        p.requires_grad_(False)
    state = RoutingState()
    d_model = _d_model(model)
    targets = set(target_modules)
    found = []
    for parent_name, parent in list(model.named_modules()):
        for child_name, child in list(parent.named_children()):
            if child_name in targets and isinstance(child, nn.Linear) and not isinstance(child, PACLoRALinear):
                wrapped = PACLoRALinear(
                    child, experts, rank, alpha, dropout, state=state, d_model=d_model, router_hidden=router_hidden,
                    routing=routing,
                )
                setattr(parent, child_name, wrapped)
                found.append(f"{parent_name}.{child_name}" if parent_name else child_name)
    if not found:
        raise ValueError(
            f"no nn.Linear named {sorted(targets)} in the model: pass the target modules of its architecture"
        )
    return PACLoRAModel(model, config, state)


def read_config(directory: str | Path) -> PACLoRAConfig:
    path = Path(directory) / CONFIG_FILE
    return PACLoRAConfig.from_dict(json.loads(path.read_text(encoding="utf-8")))


def load_pac_lora(base_model: nn.Module, directory: str | Path) -> PACLoRAModel:
    """Rebuild the PAC-LoRA modules of a saved adapter on a freshly loaded base model and load their weights."""
    config = read_config(directory)
    model = apply_pac_lora(
        base_model,
        config.target_modules,
        config.experts,
        config.rank,
        config.alpha,
        config.dropout,
        config.base_model,
        config.router_hidden,
        config.routing,
    )
    model.load_adapter_weights(directory)
    return model


def is_pac_lora_dir(directory: str | Path) -> bool:
    return (Path(directory) / CONFIG_FILE).exists()
