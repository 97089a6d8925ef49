"""Stage-1 objective, paper equation (4), as a pure function.

L = (1/N) sum_i (1 - cos(x_i, x_rec_i)) + lambda * (rho - (1/N) sum_i M_i)^2, averaged over images.
The keep-ratio penalty is taken per image (the equation as written; default) or on the batch-mean
keep ratio (``ratio_per_image = False``), which lets images trade tokens with each other.
The quantizer's commitment term is not part of equation (4); add ``QuantizerOutput.commitment_loss``.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch.nn.functional as F
from torch import Tensor


@dataclass
class TokenizerLossConfig:
    rho: float = 1.0 / 3.0  # target keep ratio
    ratio_weight: float = 2.0  # lambda; 0 for the fixed-length variant (no selector)
    ratio_per_image: bool = True

    def __post_init__(self) -> None:
        if not 0.0 < self.rho <= 1.0:
            raise ValueError(f"TokenizerLossConfig.rho must be in (0, 1], got {self.rho}")
        if self.ratio_weight < 0:
            raise ValueError(f"TokenizerLossConfig.ratio_weight must be >= 0, got {self.ratio_weight}")


@dataclass
class TokenizerLoss:
    """total = reconstruction + ratio_weight * ratio (scalars); keep_ratio = batch-mean of M."""

    total: Tensor
    reconstruction: Tensor
    ratio: Tensor
    keep_ratio: Tensor


def tokenizer_loss(
    target: Tensor,
    reconstruction: Tensor,
    keep_mask: Tensor,
    rho: float = 1.0 / 3.0,
    ratio_weight: float = 2.0,
    ratio_per_image: bool = True,
) -> TokenizerLoss:
    """target, reconstruction: (B, N, D); keep_mask: (B, N) float (straight-through) -> TokenizerLoss."""
    if target.shape != reconstruction.shape:
        raise ValueError(f"target {tuple(target.shape)} and reconstruction {tuple(reconstruction.shape)} differ")
    if keep_mask.shape != target.shape[:2]:
        raise ValueError(f"keep_mask must be (B, N) = {tuple(target.shape[:2])}, got {tuple(keep_mask.shape)}")
    cos = F.cosine_similarity(reconstruction.float(), target.float(), dim=-1)  # (B, N)
    rec = (1.0 - cos).mean()
    keep_per_image = keep_mask.float().mean(dim=1)  # (B,)
    if ratio_per_image:
        ratio = (rho - keep_per_image).pow(2).mean()
    else:
        ratio = (rho - keep_per_image.mean()).pow(2)
    return TokenizerLoss(
        total=rec + ratio_weight * ratio, reconstruction=rec, ratio=ratio, keep_ratio=keep_per_image.mean().detach()
    )
