"""Per-patch labels from a scene's annotations: which shape (kind, colour) covers each ViT patch.

Stage 0's region loss (``lavit_pl.modules.clip_regions``) trains the tiny CLIP's patch tokens to
say what lies under them, as the patch features of a web-scale encoder such as EVA-CLIP do. Kinds
outside ``kinds`` (the world's novel kind, which training text never names) get one shared
"other shape" class, so the labels name no more than the "There is ..." captions do ("shape").
"""
from __future__ import annotations

from typing import Any, Sequence

import torch


def patch_region_labels(
    scenes: Sequence[dict[str, Any]],
    patches_per_side: int,
    kinds: Sequence[str],
    colors: Sequence[str],
    min_overlap: float = 0.25,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Scene JSON dicts -> (kind, colour) labels, each LongTensor (B, N), N = patches_per_side ** 2,
    patches in raster order.

    A patch takes the shape whose bounding box (``bbox``: x0, y0, x1, y1 as fractions of the image
    side) covers the largest share of the patch, if that share is >= ``min_overlap``; else it is
    background. Kind classes: ``kinds`` in order, then "other shape" (``len(kinds)``), then
    background (``len(kinds) + 1``). Colour classes: ``colors``, then background (``len(colors)``).
    """
    if not 0.0 < min_overlap <= 1.0:
        raise ValueError(f"min_overlap must be in (0, 1], got {min_overlap}")
    g = patches_per_side
    edges = torch.arange(g + 1, dtype=torch.float64) / g
    lo, hi = edges[:-1], edges[1:]
    kind_labels = torch.full((len(scenes), g * g), len(kinds) + 1, dtype=torch.long)
    color_labels = torch.full((len(scenes), g * g), len(colors), dtype=torch.long)
    for b, scene in enumerate(scenes):
        best = torch.full((g, g), float(min_overlap), dtype=torch.float64)
        for shape in scene["shapes"]:
            if shape["color"] not in colors:
                raise ValueError(f"scene shape colour {shape['color']!r} is not one of {list(colors)}")
            x0, y0, x1, y1 = shape["bbox"]
            wx = (torch.minimum(hi, torch.tensor(x1)) - torch.maximum(lo, torch.tensor(x0))).clamp(min=0) * g
            wy = (torch.minimum(hi, torch.tensor(y1)) - torch.maximum(lo, torch.tensor(y0))).clamp(min=0) * g
            share = wy[:, None] * wx[None, :]  # (rows, cols): covered share of each patch
            wins = (share >= best).reshape(-1)
            best = torch.maximum(best, share)
            kind = kinds.index(shape["kind"]) if shape["kind"] in kinds else len(kinds)
            kind_labels[b, wins] = kind
            color_labels[b, wins] = colors.index(shape["color"])
    return kind_labels, color_labels
