"""Everything stage 2 trains, as one module: the UnifiedLM (LLaMA + vit_proj) and the merger copy.

One forward runs the merger copy on the images whose features the packed rows need, splices the
projected features in and runs the LLM. Keeping both in one module makes it the single root unit
under FSDP2 (``fully_shard`` per LLaMA block, then on this module): every rank then all-gathers
the same parameters in the same order whatever its batch holds. Every forward also runs the merger
and vit_proj once on a dummy image (one kept, N - 1 dropped tokens) and returns an exact zero
through them (``idle``): a batch without image -> text documents, or whose images drop no token
(no cross-attention), would otherwise leave some gradients None on one rank, and FSDP2's
reduce-scatter (or DDP's reducer) would then disagree across ranks.
"""
from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor, nn

from lavit_pl.models.llm import UnifiedLM
from lavit_pl.models.stage2_visual import merge_kept
from lavit_pl.models.tokenizer.merger import TokenMerger


class UnifiedStage2Model(nn.Module):
    """``lm``: UnifiedLM; ``token_merger``: the trainable copy (None for Table 7a's quantized input);
    ``merge_path``: "padded" | "masked" (the stage-1 tokenizer's inference path); ``num_patches``: N."""

    def __init__(self, lm: UnifiedLM, token_merger: TokenMerger | None, merge_path: str, num_patches: int):
        super().__init__()
        self.lm = lm
        self.token_merger = token_merger
        self.merge_path = merge_path
        self.num_patches = num_patches

    def visual_features(self, patch_features: Tensor, keep_mask: Tensor, feature_images: Sequence[int]) -> Tensor:
        """patch_features (B, N, D), keep_mask (B, N) -> (F, D): the merger outputs of the images
        ``feature_images`` (with repeats, in slot order), each image merged once."""
        wanted = sorted(set(feature_images))
        rows = torch.tensor(wanted, device=patch_features.device)
        merged = merge_kept(self.token_merger, patch_features[rows], keep_mask[rows], self.merge_path)
        by_image = dict(zip(wanted, merged))
        return torch.cat([by_image[i] for i in feature_images])  # (F, D)

    def idle(self) -> Tensor:
        """An exact 0 computed through the merger and vit_proj (a one-kept-token dummy image)."""
        width = self.token_merger.cfg.width
        x = self.lm.vit_proj.weight.new_zeros(1, self.num_patches, width)  # (1, N, D)
        keep = torch.zeros(1, self.num_patches, dtype=torch.bool, device=x.device)
        keep[0, 0] = True
        (merged,) = merge_kept(self.token_merger, x, keep, self.merge_path)  # (1, D)
        return self.lm.vit_proj(merged).float().sum() * 0.0

    def forward(self, input_ids: Tensor, position_ids: Tensor, feature_slot: Tensor | None = None,
                patch_features: Tensor | None = None, keep_mask: Tensor | None = None,
                feature_images: Sequence[int] = ()) -> tuple[Tensor, Tensor]:
        """input_ids, position_ids, feature_slot: (R, S) packed rows -> (logits (R, S, V), zero).

        ``feature_images[j]`` is the image (row of ``patch_features``/``keep_mask``) of slot block j
        (see :class:`lavit_pl.data.stage2_documents.Stage2Batch`). ``zero`` is 0, to be added to the
        loss: it carries the idle pass.
        """
        features, zero = None, input_ids.new_zeros((), dtype=torch.float32)
        if self.token_merger is not None:
            zero = self.idle()  # every step: the batch's images may not reach every merger weight
        if feature_images:
            if self.token_merger is None:
                raise ValueError("UnifiedStage2Model: feature slots given but there is no merger (quantized input)")
            features = self.visual_features(patch_features, keep_mask, feature_images)
        logits = self.lm(input_ids, position_ids=position_ids,
                         feature_slot=feature_slot if features is not None else None, features=features)
        return logits, zero
