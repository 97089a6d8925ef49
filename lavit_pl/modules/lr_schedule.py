"""The learning-rate multiplier of the stage-0 CLIP and the stage-1 tokenizer (``LambdaLR``)."""
from __future__ import annotations

import math


def cosine_with_warmup(step: int, warmup: int, total: int, floor: float = 0.0) -> float:
    """LR multiplier: linear warm-up to 1 over ``warmup`` steps, counting the step being taken
    ((step + 1) / warmup), then cosine to ``floor`` at ``total``."""
    if step < warmup:
        return (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    return floor + (1.0 - floor) * 0.5 * (1.0 + math.cos(math.pi * progress))
