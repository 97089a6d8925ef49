"""The per-cell linear probe of an encoder's patch features (evaluation/patch_probe.py)."""
from __future__ import annotations

import torch

from evaluation.patch_probe import cell_labels, linear_probe, patch_cells, position_samples, probe_scores
from lavit_pl.data.shapes.scene import Scene, Shape


def test_patch_cells_hand_computed():
    # 8 patches a side of a 64 px image: centres 4, 12, 20 | 28, 36 | 44, 52, 60 px against cell edges 21.3 / 42.7
    cells = patch_cells(8).reshape(8, 8)
    assert cells[0].tolist() == [0, 0, 0, 1, 1, 2, 2, 2]
    assert cells[:, 0].tolist() == [0, 0, 0, 3, 3, 6, 6, 6]
    assert cells[7, 7] == 8 and patch_cells(3).tolist() == list(range(9))


def test_cell_labels_mark_empty_cells():
    scenes = [Scene("white", (Shape("star", "red", "small", 0, 0.15, 0.15), Shape("circle", "blue", "large", 8, 0.8, 0.8)))]
    kind, color = cell_labels(scenes, ["circle", "star"], ["red", "blue"])
    assert kind.tolist() == [[1, 2, 2, 2, 2, 2, 2, 2, 0]]
    assert color.tolist() == [[0, 2, 2, 2, 2, 2, 2, 2, 1]]


def test_linear_probe_separates_separable_classes_and_not_random_labels():
    g = torch.Generator().manual_seed(0)
    centres = torch.randn(4, 16, generator=g, dtype=torch.float64) * 3
    y = torch.randint(4, (400,), generator=g)
    x = centres[y] + 0.3 * torch.randn(400, 16, generator=g, dtype=torch.float64)
    pred = linear_probe(x[:300], y[:300], x[300:], 4)
    assert (pred == y[300:]).all()
    shuffled = y[torch.randperm(400, generator=g)]
    assert (linear_probe(x[:300], shuffled[:300], x[300:], 4) == shuffled[300:]).float().mean() < 0.5


def test_probe_scores_hand_computed():
    target = torch.tensor([0, 1, 2, 2, 1])  # 2 = empty
    pred = torch.tensor([0, 0, 2, 1, 1])
    scores = probe_scores(pred, target, empty=2)
    assert abs(scores["occupied_acc"] - 2 / 3) < 1e-6  # cells 0, 1, 4 occupied; 0 and 4 right
    assert abs(scores["empty_vs_occupied_acc"] - 4 / 5) < 1e-6  # cell 3 called occupied


def test_position_samples_take_the_patches_of_occupied_cells_and_every_row():
    cells = patch_cells(8)
    scenes = [Scene("white", (Shape("star", "red", "small", 0, 0.15, 0.15),)),
              Scene("white", (Shape("circle", "blue", "large", 4, 0.5, 0.5), Shape("star", "red", "small", 8, 0.8, 0.8)))]
    feats = torch.arange(2 * 64, dtype=torch.float64).reshape(2, 64, 1)  # feature = b * 64 + patch index
    x_cell, y_cell, x_row, y_row = position_samples(feats, scenes, cells)
    # image 0: cell 0 = patches (0..2) x (0..2); image 1: cell 4 = rows/cols 3..4, cell 8 = rows/cols 5..7
    assert y_cell.tolist() == [0] * 9 + [4] * 4 + [8] * 9
    assert x_cell[:9, 0].tolist() == [0, 1, 2, 8, 9, 10, 16, 17, 18]
    assert x_cell[9:13, 0].tolist() == [64 + 27, 64 + 28, 64 + 35, 64 + 36]
    assert y_row.tolist() == [p // 8 for p in range(64)] * 2 and torch.equal(x_row[:, 0], feats.flatten())
