"""Generation cache policies: `none`, `lossless`, `lossy`, switchable between segments.

All frames of a segment share the input latent z, and their prompts differ only through the
interpolation fraction a. A `UnetCache` is handed to the generator, which calls it in place of
the plain UNet (`model.unet(..., call=cache)`); it walks the diffusers UNet2DConditionModel's
blocks itself:

* lossless: everything before the first cross-attention (time embedding, conv_in, the first
  ResNet, the first transformer's projection and self-attention) runs ONCE at batch 1 and is
  broadcast to the segment's N frames. With `factors` interpolation, cross-attention keys and
  values are built at rank-r cost: to_k(c(a)) = u(a)·[(1−a)·(V_prev·W_kᵀ) + a·(V·W_kᵀ)]/√r (+ bias),
  the r×d products computed once per segment and interpolated per frame. Equal to `none` up to
  float rounding (tested ≤ 1e-4 on images).
* lossy (DeepCache-style, on top of lossless): a frame whose prompt moved less than
  `threshold` (relative Frobenius distance ‖c_i − c_anchor‖/‖c_anchor‖) from the last fully
  computed frame ("anchor") reuses the anchor's deep features (the input of the last up-block)
  and recomputes only the shallow path: conv_in, the first down-block's layers and the last
  up-block. The segment's last frame (the keyframe, whose latent seeds the next segment) is
  always computed fully, so lossy errors never propagate across segments.

The model object is never changed: the rank-r cross-attention is a processor installed once per
UNet that hands over to the original processor except inside a cached call of the thread running
it, so other users of the same model (another thread, a compiled copy) get diffusers' code.

The policy is read from a `CacheControl` at every UNet call (i.e. per segment), so a GUI can
switch it live. Per-frame reuse is reported as the fraction of the plain UNet's FLOPs (matmul,
conv and attention FLOPs as torch.utils.flop_counter counts them, on fake tensors: no compute)
that the frame did not need; costs shared by the segment are split evenly between its frames.
"""

from __future__ import annotations

import contextlib
import math
import threading
from collections.abc import Iterator
from dataclasses import dataclass, replace
from typing import Any

import torch
import torch.nn.functional as F

from promptlab.errors import PromptlabError
from promptlab.models.base import Model
from promptlab.settings import CACHE_POLICIES as POLICIES


@dataclass
class CacheControl:
    """The live switch: `policy` and `threshold` are read at each segment (mutable on purpose)."""

    policy: str = "none"
    threshold: float = 0.05

    def __post_init__(self) -> None:
        self.set(self.policy, self.threshold)

    def set(self, policy: str | None = None, threshold: float | None = None) -> None:
        """Change the policy and/or threshold; takes effect at the next segment."""
        if policy is not None:
            if policy not in POLICIES:
                raise PromptlabError(f"cache policy must be one of {POLICIES}, got {policy!r}")
            self.policy = policy
        if threshold is not None:
            if not (threshold >= 0 and math.isfinite(threshold)):
                raise PromptlabError(f"cache threshold must be >= 0, got {threshold}")
            self.threshold = float(threshold)


@dataclass(frozen=True)
class Factors:
    """A segment's prompts as factors: frame i uses u = (1−a)U0 + aU1, v = (1−a)V0 + aV1, c = u·v/√r."""

    u0: torch.Tensor
    v0: torch.Tensor
    u1: torch.Tensor
    v1: torch.Tensor
    alphas: torch.Tensor  # (N,)
    offset: torch.Tensor | None = None  # (1, 77, D): the model's token positions, added to every c

    def select(self, idx: list[int]) -> Factors:
        return Factors(self.u0, self.v0, self.u1, self.v1, self.alphas[idx], self.offset)

    def project(self, linear: torch.nn.Linear) -> torch.Tensor:
        """linear(c(a)) for every frame (N, 77, d) at rank-r cost."""
        w = linear.weight
        a = self.alphas.to(w.device, w.dtype).view(-1, 1, 1)
        p0 = self.v0.to(w.device, w.dtype) @ w.t()          # (r, d): once per segment
        p1 = self.v1.to(w.device, w.dtype) @ w.t()
        u = torch.lerp(self.u0.to(w.device, w.dtype), self.u1.to(w.device, w.dtype), a)  # (N, 77, r)
        # the 1/√r scale goes on the small (N, r, d) side, not on the (N, 77, d) result
        out = torch.bmm(u, torch.lerp(p0, p1, a) * (1 / math.sqrt(self.u0.shape[-1])))
        if self.offset is not None:
            out = out + self.offset.to(w.device, w.dtype) @ w.t()
        return out if linear.bias is None else out + linear.bias


class _State:
    """One UNet's cross-attention state: which thread runs a cached call (0: none) and its factors."""

    def __init__(self) -> None:
        self.owner = 0
        self.factors: Factors | None = None
        self.lock = threading.Lock()  # one cached call at a time per UNet

    def __deepcopy__(self, memo: dict) -> _State:
        return _State()  # a copied UNet (module_copy) starts idle, with its own lock


_INSTALL = threading.Lock()


def _state_of(unet: Any) -> _State:
    """The UNet's cross-attention state; our processors are installed on first use and stay (they
    change no result outside a cached call)."""
    with _INSTALL:
        procs = dict(unet.attn_processors)
        for p in procs.values():
            if isinstance(p, _CrossAttention):
                return p.state
        state = _State()
        unet.set_attn_processor({k: (_CrossAttention(state, p) if k.endswith("attn2.processor") else p)
                                 for k, p in procs.items()})
        return state


class _CrossAttention:
    """Cross-attention processor: rank-r K/V from factors, and a batch-1 query broadcast to N frames.

    Outside a cached call of the calling thread it hands over to the layer's original processor,
    so the `none` policy and every other user of the model run exactly diffusers' code.
    """

    def __init__(self, state: _State, original: Any) -> None:
        self.state, self.original = state, original

    def __call__(self, attn: Any, hidden_states: torch.Tensor, encoder_hidden_states: torch.Tensor | None = None,
                 attention_mask: torch.Tensor | None = None, temb: torch.Tensor | None = None,
                 **kwargs: Any) -> torch.Tensor:
        st = self.state
        if not st.owner or encoder_hidden_states is None or st.owner != threading.get_ident():
            return self.original(attn, hidden_states, encoder_hidden_states, attention_mask, temb, **kwargs)
        q = attn.to_q(hidden_states)
        if st.factors is not None:
            k, v = st.factors.project(attn.to_k), st.factors.project(attn.to_v)
        else:
            k, v = attn.to_k(encoder_hidden_states), attn.to_v(encoder_hidden_states)
        n, heads = k.shape[0], attn.heads
        if q.shape[0] != n:
            q = q.expand(n, -1, -1)
        hd = k.shape[-1] // heads
        q = q.reshape(n, -1, heads, hd).transpose(1, 2)
        k = k.view(n, -1, heads, hd).transpose(1, 2)
        v = v.view(n, -1, heads, hd).transpose(1, 2)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=attention_mask, dropout_p=0.0, is_causal=False)
        out = out.transpose(1, 2).reshape(n, -1, heads * hd).to(q.dtype)
        return attn.to_out[1](attn.to_out[0](out))


def _plain_attention(attn: Any) -> bool:
    """Only the plain SD cross-attention (no extra norms, residual or rescale) gets our processor."""
    return (getattr(attn, "spatial_norm", None) is None and getattr(attn, "group_norm", None) is None
            and getattr(attn, "norm_cross", None) is None and not getattr(attn, "residual_connection", False)
            and getattr(attn, "rescale_output_factor", 1.0) == 1.0 and getattr(attn, "norm_q", None) is None
            and getattr(attn, "norm_k", None) is None)


# private diffusers methods the batch-1 walk relies on (pyproject caps diffusers to tested versions)
TRANSFORMER_PRIVATE = ("_operate_on_continuous_inputs", "_get_output_for_continuous_inputs")


def supported(unet: Any) -> str:
    """'' if the walk below reproduces this UNet's forward, else why not (the cache then stays off)."""
    cfg = unet.config
    checks = [
        (callable(getattr(unet, "get_time_embed", None)), "diffusers without UNet2DConditionModel.get_time_embed"),
        (getattr(unet, "class_embedding", None) is None, "class embedding"),
        (cfg.get("addition_embed_type") is None, "addition embedding"),
        (getattr(unet, "encoder_hid_proj", None) is None, "encoder_hid_proj"),
        (not cfg.get("center_input_sample", False), "center_input_sample"),
        (getattr(unet, "mid_block", None) is not None, "no mid block"),
    ]
    for ok, what in checks:
        if not ok:
            return f"unsupported UNet feature: {what}"
    for blk in unet.down_blocks:
        if not hasattr(blk, "resnets"):
            return f"unsupported down block {type(blk).__name__}"
        for t in getattr(blk, "attentions", None) or []:
            if not getattr(t, "is_input_continuous", False):
                return f"unsupported transformer {type(t).__name__}"
            if not all(callable(getattr(t, m, None)) for m in TRANSFORMER_PRIVATE):
                return f"diffusers' {type(t).__name__} lacks {' or '.join(TRANSFORMER_PRIVATE)}"
    for name, mod in unet.named_modules():
        if name.endswith("attn2") and not _plain_attention(mod):
            return f"unsupported cross-attention at {name}"
    return ""


def plan_anchors(contexts: torch.Tensor, threshold: float) -> list[int]:
    """For each frame, the frame whose deep features it uses (itself when computed fully).

    Greedy in frame order: a frame is an anchor when its prompt moved more than `threshold`
    (relative Frobenius distance) from the current anchor's; the last frame is always an anchor.
    """
    n = contexts.shape[0]
    flat = contexts.detach().float().reshape(n, -1)
    out, anchor = [], 0
    for i in range(n):
        if i == 0 or i == n - 1:
            anchor = i
        else:
            ref = flat[anchor]
            if float((flat[i] - ref).norm() / ref.norm().clamp_min(1e-12)) > threshold:
                anchor = i
        out.append(anchor)
    return out


def _rows(t: torch.Tensor, idx: list[int] | None) -> torch.Tensor:
    return t if idx is None or t.shape[0] == 1 else t[idx]


def _batch(t: torch.Tensor, n: int) -> torch.Tensor:
    return t.expand(n, *t.shape[1:]) if t.shape[0] == 1 and n > 1 else t


def _transformer(t2d: Any, h: torch.Tensor, ctx: torch.Tensor) -> torch.Tensor:
    """A Transformer2DModel; with a batch-1 input its first cross-attention broadcasts to N frames."""
    if h.shape[0] == ctx.shape[0]:
        return t2d(h, encoder_hidden_states=ctx, return_dict=False)[0]
    _, _, height, width = h.shape
    hs, inner = t2d._operate_on_continuous_inputs(h)
    for block in t2d.transformer_blocks:
        hs = block(hs, encoder_hidden_states=ctx)
    return t2d._get_output_for_continuous_inputs(hs, h, hs.shape[0], height, width, inner)


class UnetCache:
    """A UNet call with a cache policy, owned by its caller (the generator calls it; see module doc)."""

    def __init__(self, model: Model, control: CacheControl | None = None) -> None:
        self.model = model
        self.unet = model.unet_module
        self.control = control or CacheControl()
        self.why_off = supported(self.unet)
        self.state = _state_of(self.unet) if not self.why_off else _State()
        self.factors: Factors | None = None
        self.anchors: list[int] = []
        self.policy_used = "none"
        self._last: tuple | None = None
        self._flops: dict[tuple, tuple[float, float, float]] = {}

    def wants_shared_input(self) -> bool:
        """Whether the next call will take the segment's input at batch 1 (then broadcast)."""
        return self.control.policy != "none" and not self.why_off

    @contextlib.contextmanager
    def segment(self, factors: Factors | None) -> Iterator[None]:
        """Give the next UNet call the segment's factors (None: prompts only as contexts)."""
        self.factors = factors
        try:
            yield
        finally:
            self.factors = None

    # the call -----------------------------------------------------------------------------------
    def __call__(self, x: torch.Tensor, t: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        n = context.shape[0]
        policy = self.control.policy if not self.why_off else "none"
        factors = self.factors if self.factors is not None and self.factors.alphas.shape[0] == n else None
        if factors is not None and self.model.token_positions is not None:
            factors = replace(factors, offset=self.model.token_positions.weight.detach())
        if policy == "none" or (x.shape[0] != 1 and n > 1):
            self.policy_used, self.anchors, self._last = "none", list(range(n)), None
            return self.model.default_unet_call(_batch(x, n), t, context)
        anchors = plan_anchors(context, self.control.threshold) if policy == "lossy" else list(range(n))
        self.policy_used, self.anchors = policy, anchors
        self._last = (x, t, context, factors, anchors)
        return self._run(x[:1], t[:1], context, factors, anchors)

    def _run(self, x: torch.Tensor, t: torch.Tensor, ctx: torch.Tensor, factors: Factors | None,
             anchors: list[int]) -> torch.Tensor:
        with self.state.lock:
            self.state.owner = threading.get_ident()
            try:
                return self._walk(x, t, ctx, factors, anchors)
            finally:
                self.state.owner, self.state.factors = 0, None

    def _walk(self, x: torch.Tensor, t: torch.Tensor, ctx: torch.Tensor, factors: Factors | None,
              anchors: list[int]) -> torch.Tensor:
        u, st = self.unet, self.state
        n = ctx.shape[0]
        full = sorted(set(anchors))
        sel = None if len(full) == n else full
        st.factors = factors
        emb = u.time_embedding(u.get_time_embed(sample=x, timestep=t), None)
        if u.time_embed_act is not None:
            emb = u.time_embed_act(emb)
        h = u.conv_in(x)
        skips = [h]
        k_last = len(u.up_blocks[-1].resnets)
        shallow: list[torch.Tensor] | None = None
        c = ctx

        def narrow(h: torch.Tensor) -> torch.Tensor:
            nonlocal shallow, c
            if shallow is None and len(skips) >= k_last:
                shallow = list(skips[:k_last])
                if sel is not None:
                    c = ctx[sel]
                    st.factors = factors.select(sel) if factors is not None else None
                    return _rows(h, sel)
            return h

        for blk in u.down_blocks:
            attns = getattr(blk, "attentions", None)
            for i, resnet in enumerate(blk.resnets):
                h = resnet(narrow(h), emb)
                if attns is not None:
                    h = _transformer(attns[i], h, c)
                skips.append(h)
            for down in blk.downsamplers or []:
                h = down(narrow(h))
                skips.append(h)
        h = narrow(h)
        if getattr(u.mid_block, "has_cross_attention", False):
            h = u.mid_block(_batch(h, c.shape[0]), emb, encoder_hidden_states=c)
        else:
            h = u.mid_block(h, emb)
        odd = any(s % 2 ** u.num_upsamplers for s in x.shape[-2:])
        for blk in u.up_blocks[:-1]:
            res = skips[-len(blk.resnets):]
            skips = skips[:-len(blk.resnets)]
            size = skips[-1].shape[2:] if odd else None
            m = max(h.shape[0], c.shape[0])
            h = self._up(blk, _batch(h, m), tuple(_batch(r, m) for r in res), emb, c, size)
        # the last up-block: every frame, deep features from its anchor
        st.factors = factors
        if sel is not None:
            h = h[[full.index(a) for a in anchors]]
        res = tuple(_batch(r, n) for r in (shallow or skips))
        h = self._up(u.up_blocks[-1], _batch(h, n), res, emb, ctx, None)
        if u.conv_norm_out is not None:
            h = u.conv_act(u.conv_norm_out(h))
        return u.conv_out(h)

    @staticmethod
    def _up(blk: Any, h: torch.Tensor, res: tuple, emb: torch.Tensor, ctx: torch.Tensor, size: Any) -> torch.Tensor:
        if getattr(blk, "has_cross_attention", False):
            return blk(hidden_states=h, temb=emb, res_hidden_states_tuple=res, encoder_hidden_states=ctx,
                       upsample_size=size)
        return blk(hidden_states=h, temb=emb, res_hidden_states_tuple=res, upsample_size=size)

    # accounting ---------------------------------------------------------------------------------
    def reused(self) -> list[float]:
        """Per frame of the last call: the fraction of the plain UNet's FLOPs it did not compute."""
        if self._last is None:
            return [0.0] * len(self.anchors)
        anchors, n = self._last[4], self._last[2].shape[0]
        plain, shared, deep = self.costs()
        if plain <= 0:
            return [0.0] * n
        return [max(0.0, 1 - (shared + (deep if anchors[i] == i else 0.0)) / plain) for i in range(n)]

    def costs(self) -> tuple[float, float, float]:
        """FLOPs of the last cached call: (plain UNet per frame, shared per frame, deep path per anchor)."""
        if self._last is None:
            return 0.0, 0.0, 0.0
        x, t, ctx, factors, _ = self._last
        key = (tuple(x.shape[1:]), ctx.shape[0], factors is not None, str(ctx.dtype))
        if key not in self._flops:
            self._flops[key] = self._count(x[:1], t[:1], ctx, factors)
        return self._flops[key]

    def _count(self, x: torch.Tensor, t: torch.Tensor, ctx: torch.Tensor,
               factors: Factors | None) -> tuple[float, float, float]:
        """(plain UNet per frame, shared cost per frame, deep path per anchor) in FLOPs, on fake tensors."""
        n = ctx.shape[0]
        plain = count_flops(lambda: self.model.default_unet_call(x, t, ctx[:1]))
        every = count_flops(lambda: self._run(x, t, ctx, factors, list(range(n))))
        if n == 1:
            return plain, 0.0, every
        one = count_flops(lambda: self._run(x, t, ctx, factors, [0] * (n - 1) + [n - 1]))
        # frame 0 and the last are anchors in `one`; frames between reuse frame 0's features
        deep = (every - one) / (n - 2) if n > 2 else 0.0
        shared = (one - 2 * deep) / n
        return plain, shared, deep


def count_flops(fn: Any) -> float:
    """FLOPs (matmul, conv, attention) of `fn()` as torch.utils.flop_counter counts them, on fake tensors."""
    from torch._subclasses.fake_tensor import FakeTensorMode
    from torch.utils import flop_counter
    from torch.utils.flop_counter import FlopCounterMode

    cpu_sdpa = torch.ops.aten._scaled_dot_product_flash_attention_for_cpu
    if cpu_sdpa not in flop_counter.flop_registry:
        # torch has no formula for its CPU attention kernel, so attention would count as free on
        # CPU: at 512 px the shared first self-attention alone is a fifth of the tiny UNet
        def sdpa(q: Any, k: Any, v: Any, *_: Any, out_shape: Any = None, **__: Any) -> int:
            return flop_counter.sdpa_flop_count(q, k, v)

        flop_counter.register_flop_formula(cpu_sdpa)(sdpa)
    with torch.no_grad(), FakeTensorMode(allow_non_fake_inputs=True), FlopCounterMode(display=False) as counter:
        fn()
    return float(counter.get_total_flops())


def factors_for(seg_index: int, cur: tuple[torch.Tensor, torch.Tensor],
                prev: tuple[torch.Tensor, torch.Tensor] | None, alphas: torch.Tensor, interp: str) -> Factors | None:
    """The segment's factors when its prompts are factor-interpolated (the only rank-r case)."""
    if seg_index == 0 or prev is None:
        return Factors(cur[0], cur[1], cur[0], cur[1], torch.ones(alphas.shape[0]))
    if interp != "factors":
        return None
    return Factors(prev[0], prev[1], cur[0], cur[1], alphas)
