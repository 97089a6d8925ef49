"""What a frozen vision encoder's patch features say about each grid cell of a Shapes image.

The tokenizer, and so every caption and answer, sees only the patch features of one encoder block.
This probe pools them per cell of the world's 3 x 3 grid and fits linear classifiers (L-BFGS,
light L2) for the kind and the colour of the shape in the cell, or "empty", on the VQAv2-like
train2014 images, then scores held-out val2014 images. Reported: kind and colour accuracy on
occupied cells (chance: 1 / kinds, 1 / colours) and empty-vs-occupied accuracy. And where the
features say a patch is, which the captions' and questions' positions need (the merger adds no
position embedding): the grid cell of each single patch inside an occupied cell (against the
majority cell) and the row of every patch (chance 1 / rows), both from one patch's feature.

    python -m evaluation.patch_probe --tokenizer-config experiments/stage1/tokenizer_tiny.yaml \\
        --weights runs/tiny/stage0_clip/export/open_clip_pytorch_model.bin --data data/shapes/tiny
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from lavit_pl.data.shapes.heldout import read_scenes
from lavit_pl.data.shapes.scene import CELL_NAMES, GRID, Scene

FIT_PREFIX = "vqav2/train2014/"
TEST_PREFIX = "vqav2/val2014/"


def patch_cells(patches_per_side: int, grid: int = GRID) -> torch.Tensor:
    """(N,) grid cell (row * grid + col) of each patch centre, patches in raster order."""
    centres = (torch.arange(patches_per_side, dtype=torch.float64) + 0.5) / patches_per_side
    line = (centres * grid).floor().long().clamp(max=grid - 1)
    return (line[:, None] * grid + line[None, :]).reshape(-1)


def cell_labels(scenes: Sequence[Scene], kinds: Sequence[str], colors: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor]:
    """(kind, colour) LongTensors (B, 9): the shape in each cell, ``len(kinds)`` / ``len(colors)`` when empty."""
    kind = torch.full((len(scenes), len(CELL_NAMES)), len(kinds), dtype=torch.long)
    color = torch.full((len(scenes), len(CELL_NAMES)), len(colors), dtype=torch.long)
    for b, scene in enumerate(scenes):
        for shape in scene.shapes:
            kind[b, shape.cell], color[b, shape.cell] = kinds.index(shape.kind), colors.index(shape.color)
    return kind, color


def linear_probe(x_fit: torch.Tensor, y_fit: torch.Tensor, x_test: torch.Tensor, n_classes: int, l2: float = 1e-3) -> torch.Tensor:
    """Multinomial logistic regression on standardised features; returns test predictions (M,)."""
    mean, std = x_fit.mean(0), x_fit.std(0) + 1e-5
    x_fit, x_test = (x_fit - mean) / std, (x_test - mean) / std
    torch.manual_seed(0)
    head = torch.nn.Linear(x_fit.shape[1], n_classes, dtype=x_fit.dtype)
    opt = torch.optim.LBFGS(head.parameters(), max_iter=300, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = F.cross_entropy(head(x_fit), y_fit) + l2 * head.weight.square().sum()
        loss.backward()
        return loss

    opt.step(closure)
    with torch.no_grad():
        return head(x_test).argmax(-1)


def probe_scores(pred: torch.Tensor, target: torch.Tensor, empty: int) -> dict[str, float]:
    occupied = target != empty
    return {"occupied_acc": (pred[occupied] == target[occupied]).float().mean().item(),
            "empty_vs_occupied_acc": ((pred == empty) == ~occupied).float().mean().item()}


def position_samples(feats: torch.Tensor, scenes: Sequence[Scene], cells: torch.Tensor
                     ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Single-patch samples for the position probes, from features (B, N, D) in raster order:
    (features (M, D), grid cell (M,)) of the patches inside occupied cells, and
    (features (B * N, D), patch row (B * N,)) of every patch."""
    occupied = torch.zeros(len(scenes), len(CELL_NAMES), dtype=torch.bool)
    for b, scene in enumerate(scenes):
        for shape in scene.shapes:
            occupied[b, shape.cell] = True
    inside = occupied[:, cells]  # (B, N): the patch's cell holds a shape
    side = int(round(len(cells) ** 0.5))
    rows = (torch.arange(len(cells)) // side).repeat(len(scenes))
    return feats[inside], cells.expand(len(scenes), -1)[inside], feats.flatten(0, 1), rows


def _load(data: Path, prefix: str) -> tuple[torch.Tensor, list[Scene]]:
    """Images (B, 3, H, W) in [0, 1] and their scenes, for the world's images below ``prefix``."""
    scenes = read_scenes(data, prefix)
    images = [torch.from_numpy(np.array(Image.open(data / prefix / name).convert("RGB"))).permute(2, 0, 1).float() / 255
              for name in scenes]
    return torch.stack(images), list(scenes.values())


def run(tokenizer_config: Path, weights: Path, data: Path, feature_layer: int | None = None) -> dict[str, Any]:
    from lavit_pl.config.loader import load_config
    from lavit_pl.models.visual_encoder import VisionEncoder
    from lavit_pl.modules.tokenizer_module import TokenizerRunConfig
    from lavit_pl.utils.checkpoint_io import load_vision_encoder_weights

    overrides = [f"model.encoder.weights_path={weights}"]
    if feature_layer is not None:
        overrides.append(f"model.encoder.feature_layer={feature_layer}")
    cfg = load_config(TokenizerRunConfig, tokenizer_config, overrides).model
    encoder = VisionEncoder(cfg.encoder)
    load_vision_encoder_weights(encoder)
    encoder.eval()
    world = json.loads((data / "world.json").read_text())
    kinds, colors = list(world["kinds"]), list(world["colors"])
    cells = patch_cells(cfg.encoder.image_size // cfg.encoder.patch_size)

    def features(prefix: str) -> tuple[torch.Tensor, list[Scene]]:
        images, scenes = _load(data, prefix)
        with torch.no_grad():
            return torch.cat([encoder(images[i:i + 256]) for i in range(0, len(images), 256)]).double(), scenes

    def pooled(feats: torch.Tensor, scenes: list[Scene]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        per_cell = torch.stack([feats[:, cells == c].mean(1) for c in range(len(CELL_NAMES))], 1).flatten(0, 1)
        kind, color = cell_labels(scenes, kinds, colors)
        return per_cell, kind.reshape(-1), color.reshape(-1)

    fit, test = features(FIT_PREFIX), features(TEST_PREFIX)
    x_fit, kind_fit, color_fit = pooled(*fit)
    x_test, kind_test, color_test = pooled(*test)
    out: dict[str, Any] = {"weights": str(weights), "feature_layer": cfg.encoder.feature_layer,
                           "fit_cells": len(x_fit), "test_cells": len(x_test)}
    for name, y_fit, y_test, classes in (("kind", kind_fit, kind_test, kinds), ("color", color_fit, color_test, colors)):
        pred = linear_probe(x_fit, y_fit, x_test, len(classes) + 1)
        out[name] = probe_scores(pred, y_test, len(classes)) | {"chance": 1.0 / len(classes)}
    cell_fit, cell_y_fit, row_fit, row_y_fit = position_samples(*fit, cells)
    cell_test, cell_y_test, row_test, row_y_test = position_samples(*test, cells)
    n_rows = int(row_y_fit.max()) + 1
    cell_pred = linear_probe(cell_fit, cell_y_fit, cell_test, len(CELL_NAMES))
    row_pred = linear_probe(row_fit, row_y_fit, row_test, n_rows)
    out["position"] = {
        "shape_patch_cell_acc": (cell_pred == cell_y_test).double().mean().item(),
        "shape_patch_cell_majority": (cell_y_test == cell_y_fit.mode().values).double().mean().item(),
        "patch_row_acc": (row_pred == row_y_test).double().mean().item(),
        "patch_row_chance": 1.0 / n_rows,
    }
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tokenizer-config", type=Path, default=Path("experiments/stage1/tokenizer_tiny.yaml"),
                    help="a tokenizer YAML whose model.encoder describes the encoder")
    ap.add_argument("--weights", type=Path, required=True, help="the encoder checkpoint (model.encoder.weights_format)")
    ap.add_argument("--data", type=Path, default=Path("data/shapes/tiny"), help="a Shapes world folder")
    ap.add_argument("--feature-layer", type=int, default=None, help="override model.encoder.feature_layer")
    args = ap.parse_args(argv)
    print(json.dumps(run(args.tokenizer_config, args.weights, args.data, args.feature_layer), indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
