"""The visual side of stage 2 (DESIGN.md section 4): frozen targets and the trainable merger copy.

- :func:`frozen_visual_targets`: preprocessed pixels or cached encoder features -> patch features
  X (B, N, D), keep mask M (B, N) and code targets v (list of (T_b,)), from the frozen stage-1
  tokenizer in eval mode (deterministic selector). This is all the cache stores.
- :func:`merge_kept`: the stage-2 merger copy on (X, M) -> the continuous visual input, a list of
  (T_b, D); never cached, since stage 2 trains the copy.
- :func:`blind_pixels`: the *blind* baseline's input: per-key uniform noise images, normalised like
  real ones, that replace the images BEFORE the encoder, so T_b carries no image content.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Sequence

import torch
from torch import Tensor

from lavit_pl.models.tokenizer.merger import TokenMerger
from lavit_pl.models.tokenizer.tokenizer import DynamicVisualTokenizer


@dataclass
class FrozenTargets:
    """patch_features: (B, N, D); keep_mask: (B, N) bool; codes: list of B (T_b,) long, T_b = M_b.sum()."""

    patch_features: Tensor
    keep_mask: Tensor
    codes: list[Tensor]


@torch.no_grad()
def frozen_visual_targets(tokenizer: DynamicVisualTokenizer, pixels: Tensor | None = None,
                          patch_features: Tensor | None = None) -> FrozenTargets:
    """``pixels``: (B, 3, H, W) already resized and normalised (the readers' output; the encoder's
    own preprocessing is skipped), or cached ``patch_features`` (B, N, D)."""
    if tokenizer.training:
        raise ValueError("frozen_visual_targets: the stage-1 tokenizer must be in eval mode (deterministic selector)")
    if (pixels is None) == (patch_features is None):
        raise ValueError("frozen_visual_targets: pass exactly one of pixels or patch_features")
    if patch_features is None:
        patch_features = tokenizer.encoder.features(pixels)  # (B, N, D)
    keep = tokenizer.select(patch_features)  # (B, N) bool
    codes, _ = tokenizer.encode_features(patch_features)
    return FrozenTargets(patch_features, keep, codes)


def merge_kept(merger: TokenMerger, patch_features: Tensor, keep_mask: Tensor, path: str = "padded") -> list[Tensor]:
    """(B, N, D), (B, N) bool -> list of B (T_b, D) merger outputs at the kept positions.

    ``path`` as :class:`DynamicVisualTokenizerConfig.inference_path`: "padded" gathers kept and
    dropped tokens (fewer FLOPs), "masked" runs all N positions; equal at ``softmax_eps = 0``.
    """
    patch_features = patch_features.to(next(merger.parameters()).dtype)
    keep = keep_mask.bool()
    if path == "padded":
        return merger.merge(patch_features, keep)
    if path == "masked":
        merged = merger(patch_features, keep)  # (B, N, D)
        return list(torch.split(merged[keep], keep.sum(dim=1).tolist(), dim=0))
    raise ValueError(f"merge_kept: path must be 'padded' or 'masked', got {path!r}")


def key_seed(seed: int, key: str) -> int:
    return int.from_bytes(hashlib.blake2b(f"{seed}:{key}".encode(), digest_size=8).digest(), "little") >> 1


def blind_pixels(keys: Sequence[str], image_size: int, mean: Sequence[float], std: Sequence[float],
                 seed: int) -> Tensor:
    """(B, 3, S, S) normalised pixels of uniform-noise RGB images, one fixed image per sample key."""
    images = torch.stack([
        torch.rand(3, image_size, image_size, generator=torch.Generator().manual_seed(key_seed(seed, k)))
        for k in keys
    ])  # (B, 3, S, S) in [0, 1)
    mean_t = torch.tensor(list(mean)).view(1, 3, 1, 1)
    std_t = torch.tensor(list(std)).view(1, 3, 1, 1)
    return (images - mean_t) / std_t
