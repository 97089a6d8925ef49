"""The shared LR multiplier, by hand."""
from __future__ import annotations

import pytest

from lavit_pl.modules.lr_schedule import cosine_with_warmup


def test_cosine_with_warmup_by_hand():
    assert cosine_with_warmup(0, 4, 14, 0.0) == 0.25  # (0 + 1) / 4
    assert cosine_with_warmup(3, 4, 14, 0.0) == 1.0
    assert cosine_with_warmup(9, 4, 14, 0.0) == pytest.approx(0.5)  # half way: (1 + cos(pi/2)) / 2
    assert cosine_with_warmup(14, 4, 14, 0.1) == pytest.approx(0.1)
    assert cosine_with_warmup(9, 4, 14, 0.1) == pytest.approx(0.55)
