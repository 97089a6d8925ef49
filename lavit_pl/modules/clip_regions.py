"""Stage 0's region loss: the tiny CLIP's patch tokens learn what lies under them.

LaVIT's tokenizer reads the patch features of one ViT block (EVA-CLIP's last, before the final
norm), and everything downstream (token selection, merged tokens, captions, answers) can only use
what those features hold. A web-scale encoder's patch features name the objects under them; the
tiny CLIP trained contrastively on the Shapes world does not: a linear probe on its last-block
patch features, pooled per grid cell, recovers the colour of the shape in a cell (98.5 %) but not
its kind (25.7 %; 7 kinds; ``python -m evaluation.patch_probe``). This loss supervises exactly
those features: per patch, cross-entropy for the kind of the shape covering it and for its colour
(or background), through a LayerNorm + linear head that is not exported. Labels come from the
training scenes' annotations (:func:`lavit_pl.data.shapes.region_labels.patch_region_labels`); the
novel kind is one "other shape" class, as captions call it "shape".
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lavit_pl.data.shapes.region_labels import patch_region_labels


@dataclass
class ClipRegionConfig:
    weight: float = field(default=0.0, metadata={"help": "weight of the region loss (kind CE + colour CE per patch); 0: off"})
    feature_layer: int = field(default=-1, metadata={
        "help": "vision block whose patch outputs are supervised (python index into the blocks); -1 is the "
                "block the tokenizer reads, -2 leaves that block to the contrastive loss"})
    min_overlap: float = field(default=0.25, metadata={"help": "share of a patch a shape's box must cover to label it"})

    def __post_init__(self) -> None:
        if self.weight < 0:
            raise ValueError(f"regions.weight must be >= 0, got {self.weight}")
        if not 0.0 < self.min_overlap <= 1.0:
            raise ValueError(f"regions.min_overlap must be in (0, 1], got {self.min_overlap}")


class RegionHead(nn.Module):
    """Patch tokens (B, N, D) -> kind logits (B, N, n_kinds + 2) and colour logits (B, N, n_colors + 1).
    Kinds are supervised on shape patches only, so the kind head's background logit is only ever
    pushed down (it stays in the softmax, as in the runs measured in docs/stage1_tokenizer.md)."""

    def __init__(self, width: int, n_kinds: int, n_colors: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(width)
        self.kind = nn.Linear(width, n_kinds + 2)  # + "other shape", background
        self.color = nn.Linear(width, n_colors + 1)  # + background

    def forward(self, tokens: Tensor) -> tuple[Tensor, Tensor]:
        x = self.norm(tokens)
        return self.kind(x), self.color(x)


class PatchTokenTap:
    """Keeps the output of one open_clip vision block (B, 1 + N, D), batch first, while attached."""

    def __init__(self, block: nn.Module) -> None:
        self.tokens: Tensor | None = None
        self._handle = block.register_forward_hook(self._keep)

    def _keep(self, module: nn.Module, inputs: Any, output: Tensor) -> None:
        self.tokens = output

    def patch_tokens(self) -> Tensor:
        if self.tokens is None:
            raise RuntimeError("no vision forward since the tap was attached")
        return self.tokens[:, 1:]  # class token dropped, as the tokenizer's encoder does


def region_loss(
    head: RegionHead,
    patch_tokens: Tensor,
    scenes: Sequence[dict[str, Any]],
    kinds: Sequence[str],
    colors: Sequence[str],
    min_overlap: float,
) -> tuple[Tensor, dict[str, Tensor]]:
    """Kind cross-entropy over shape-covered patches + colour cross-entropy (background a class) over
    all patches; also both accuracies on shape-covered patches."""
    b, n, _ = patch_tokens.shape
    side = int(round(n**0.5))
    if side * side != n:
        raise ValueError(f"region loss needs a square patch grid, got {n} patch tokens")
    kind_t, color_t = (t.to(patch_tokens.device) for t in patch_region_labels(scenes, side, kinds, colors, min_overlap))
    kind_logits, color_logits = head(patch_tokens)
    on_shape = color_t < len(colors)
    # colours everywhere, their background class teaching where shapes are; kinds only where a shape
    # is (background is most patches and would drown the kinds)
    loss = F.cross_entropy(color_logits.flatten(0, 1), color_t.flatten())
    if not on_shape.any():
        return loss + kind_logits.sum() * 0.0, {}  # every parameter still in the graph (FSDP/DDP)
    loss = loss + F.cross_entropy(kind_logits[on_shape], kind_t[on_shape])
    stats = {"kind_acc": (kind_logits.argmax(-1) == kind_t)[on_shape].float().mean(),
             "color_acc": (color_logits.argmax(-1) == color_t)[on_shape].float().mean()}
    return loss, stats
