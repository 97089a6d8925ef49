"""Tokenizer figures: dimming, patch cutting, code groups and the token histogram, by hand."""
from __future__ import annotations

import torch

from lavit_pl.modules.tokenizer_figures import (
    dim_dropped,
    draw_code_groups,
    draw_kept_patches,
    draw_token_histogram,
    frequent_codes,
    patch_at,
    token_histogram_csv,
)


def test_dim_dropped_scales_only_dropped_patches():
    image = torch.ones(3, 4, 4)
    keep = torch.tensor([True, False, False, True])  # 2x2 grid of 2x2 patches
    out = dim_dropped(image, keep, dim=0.25)
    assert torch.equal(out[:, :2, :2], torch.ones(3, 2, 2)) and torch.equal(out[:, 2:, 2:], torch.ones(3, 2, 2))
    assert torch.equal(out[:, :2, 2:], torch.full((3, 2, 2), 0.25)) and torch.equal(out[:, 2:, :2], torch.full((3, 2, 2), 0.25))


def test_patch_at_is_raster_order():
    image = torch.arange(16.0).view(1, 4, 4).expand(3, 4, 4)
    assert patch_at(image, 1, 2)[0].tolist() == [[2.0, 3.0], [6.0, 7.0]]
    assert patch_at(image, 2, 2)[0].tolist() == [[8.0, 9.0], [12.0, 13.0]]


def test_frequent_codes_count_kept_tokens_only():
    keep = torch.tensor([[True, True, False, False], [True, True, True, False]])
    codes = torch.tensor([[5, 2, 9, 9], [5, 5, 2, 9]])
    assert frequent_codes(keep, codes, 2) == [(5, 3), (2, 2)]


def test_histogram_csv_by_hand():
    csv = token_histogram_csv(torch.tensor([1, 1, 3, 4]), torch.tensor([1, 1, 2, 2]), num_patches=4)
    assert csv.splitlines() == [
        "tokens,all,complexity_1,complexity_2", "0,0,0,0", "1,2,2,0", "2,0,0,0", "3,1,0,1", "4,1,0,1",
    ]


def test_drawings_have_the_planned_sizes():
    g = torch.Generator().manual_seed(0)
    images = torch.rand(5, 3, 8, 8, generator=g)
    keep = torch.rand(5, 4, generator=g) > 0.5
    keep[:, 0] = True
    codes = torch.randint(0, 3, (5, 4), generator=g)
    grid = draw_kept_patches(images, keep, ["a"] * 5, scale=4, columns=4)
    assert grid.size == (4 * (32 + 8) + 8, 2 * (32 + 8 + 18) + 8)
    groups = draw_code_groups(images, keep, codes, num_codes=2, per_code=3, scale=4)
    assert groups.size == (120 + 3 * (16 + 4) + 4, 2 * (16 + 4) + 4)
    hist = draw_token_histogram(torch.tensor([1, 2, 2, 4]), torch.tensor([1, 1, 2, 2]), num_patches=4, rho=1 / 3)
    assert hist.size[1] == 3 * (90 + 10) + 10 + 16  # panels: all, complexity 1, complexity 2
