"""Attention with a per-key keep/drop policy, shared by the token merger and the feature decoder.

DynamicViT (and the LaVIT release) apply a decision mask multiplicatively inside the softmax:
``attn_ij = exp(s_ij) * P_ij / sum_k exp(s_ik) * P_ik``. An additive ``-inf`` mask gives the same
forward value for a hard 0/1 policy, but its gradient with respect to a masked key is zero, so the
selector would never learn what keeping a dropped patch would have changed. We keep the
multiplicative form and still run torch SDPA: the policy weight ``w_j`` of each key multiplies its
value and is appended as one extra value channel, so one SDPA call returns
``num_i = sum_j p_ij w_j v_j`` and ``den_i = sum_j p_ij w_j`` (``p`` = softmax under the static mask)
and ``num_i / den_i`` equals the multiplicative masked softmax exactly, with exact gradients for
every ``w_j``, kept or dropped. Structure that does not depend on the policy (causality) stays in
SDPA's boolean ``attn_mask``.

The release additionally smooths the softmax with ``eps`` (``(a + eps/S) / (sum a + eps)``, ``a``
normalised by the row maximum over *all* keys). That cannot be expressed through SDPA, so
``eps > 0`` takes :func:`policy_attention_explicit`, which reproduces the release's arithmetic.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def split_heads(x: Tensor, num_heads: int) -> Tensor:
    """(B, L, D) -> (B, H, L, D/H)."""
    b, length, d = x.shape
    return x.view(b, length, num_heads, d // num_heads).transpose(1, 2)


def merge_heads(x: Tensor) -> Tensor:
    """(B, H, L, E) -> (B, L, H*E)."""
    b, h, length, e = x.shape
    return x.transpose(1, 2).reshape(b, length, h * e)


def _safe_ratio(num: Tensor, den: Tensor) -> Tensor:
    # den == 0 only where every key has weight 0 (e.g. cross-attention of an image that dropped
    # nothing); num is 0 there too. Dividing by 1 instead keeps the value 0 and the gradient finite
    # (a clamp to a tiny value would multiply the incoming gradient by 1/tiny).
    return num / torch.where(den > 0, den, torch.ones_like(den))


def policy_attention(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    key_weight: Tensor,
    attn_mask: Tensor | None = None,
    scale: float | None = None,
) -> Tensor:
    """Multiplicatively masked attention through one SDPA call (see module docstring).

    q: (B, H, L, E); k, v: (B, H, S, E); key_weight: (B, S) in [0, 1] (float, may carry gradient);
    attn_mask: (L, S) or broadcastable to (B, H, L, S), bool, True = may attend. Returns (B, H, L, E);
    rows whose weighted keys sum to zero return zeros.
    """
    e = v.shape[-1]
    w = key_weight.to(v.dtype)[:, None, :, None]  # (B, 1, S, 1)
    v_aug = torch.cat([v * w, w.expand(*v.shape[:-1], 1)], dim=-1)  # (B, H, S, E + 1)
    out = F.scaled_dot_product_attention(q, k, v_aug, attn_mask=attn_mask, scale=scale)
    return _safe_ratio(out[..., :e], out[..., e:])


def policy_attention_explicit(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    policy: Tensor,
    eps: float,
    scale: float | None = None,
) -> Tensor:
    """The release's eps-smoothed masked softmax, computed with explicit (L, S) score matrices.

    q: (B, H, L, E); k, v: (B, H, S, E); policy: broadcastable to (B, H, L, S), values in [0, 1].
    ``attn = exp(s - max_all(s)) * policy; attn = (attn + eps/S) / (sum(attn) + eps)`` in float32
    (float64 inputs stay float64). With ``eps = 0`` this equals :func:`policy_attention` when the
    policy is a per-key weight under a boolean mask. Returns (B, H, L, E).
    """
    scale = q.shape[-1] ** -0.5 if scale is None else scale
    compute = torch.float64 if q.dtype == torch.float64 else torch.float32
    scores = (q.to(compute) @ k.to(compute).transpose(-2, -1)) * scale  # (B, H, L, S)
    scores = scores - scores.amax(dim=-1, keepdim=True)
    attn = scores.exp() * policy.to(compute)
    s = attn.shape[-1]
    attn = _safe_ratio(attn + eps / s, attn.sum(dim=-1, keepdim=True) + eps)
    return (attn @ v.to(compute)).to(v.dtype)
