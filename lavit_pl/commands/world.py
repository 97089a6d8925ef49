"""``python -m lavit_pl world -c experiments/world/shapes_tiny.yaml [key=value ...]``."""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Sequence

from lavit_pl.data.shapes.config import ShapesWorldConfig

DESCRIPTION = (
    "Write the Shapes world: training shards (img2dataset layout), held-out caption / VQA / GQA / VizWiz / "
    "NoCaps / OK-VQA files in the official layouts, a text corpus and an MMLU-layout quiz "
    "(docs/data_layout.md). Same seed -> identical bytes."
)
SCHEMA = ShapesWorldConfig


def schema_for(config_path: str | Path | None, overrides: Sequence[str]) -> type:
    return SCHEMA


def run(cfg: ShapesWorldConfig) -> int:
    from lavit_pl.data.shapes.world import generate_world

    manifest = generate_world(cfg)
    c = manifest["counts"]
    print(
        f"wrote {cfg.output_dir} (preset {cfg.preset}, seed {cfg.seed}) in {manifest['seconds']:.1f} s: "
        f"{c['train_pairs']} training pairs, {c['val_images']} val images, "
        f"{sum(manifest['image_folders'].values())} images outside shards; leakage check: "
        f"{'ok' if manifest['leakage']['ok'] else 'FAILED'}",
        file=sys.stderr,
    )
    return 0
