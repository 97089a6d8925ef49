"""Packing kept/dropped tokens without a loop over images, on a hand-sized mask."""
from __future__ import annotations

import torch

from lavit_pl.models.tokenizer.packing import from_padded, group_tokens, pack, pad_sequences, split_packed, to_padded


def test_group_pack_pad_round_trip_by_hand():
    mask = torch.tensor([[True, False, True], [False, False, True]])
    g = group_tokens(mask)
    assert g.flat_index.tolist() == [0, 2, 5]  # raster order, image after image
    assert g.pad_index.tolist() == [0, 1, 2]  # slots in the (2 images x 2) padded batch
    assert g.valid.tolist() == [[True, True], [True, False]]
    assert g.lengths.tolist() == [2, 1] and g.max_len == 2
    x = torch.arange(2 * 3 * 2, dtype=torch.float32).view(2, 3, 2)
    flat = pack(x, g)
    assert flat.tolist() == [[0, 1], [4, 5], [10, 11]]
    padded = to_padded(flat, g)
    assert padded.tolist() == [[[0, 1], [4, 5]], [[10, 11], [0, 0]]]
    assert torch.equal(from_padded(padded, g), flat)
    assert [t.tolist() for t in split_packed(flat, g)] == [[[0, 1], [4, 5]], [[10, 11]]]
    seqs, valid = pad_sequences([flat[:2], flat[2:]])
    assert torch.equal(seqs, padded) and torch.equal(valid, g.valid)


def test_empty_groups():
    g = group_tokens(torch.zeros(2, 4, dtype=torch.bool))
    assert g.max_len == 0 and g.flat_index.numel() == 0
    assert to_padded(torch.zeros(0, 3), g).shape == (2, 0, 3)
