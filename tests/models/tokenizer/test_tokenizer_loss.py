"""Equation (4) against a hand computation."""
from __future__ import annotations

import pytest
import torch

from lavit_pl.models.tokenizer.losses import TokenizerLossConfig, tokenizer_loss


def example():
    # Image 0: cosines 1, 0, -1 -> (1/3) * (0 + 1 + 2) = 1; keeps 1 of 3 -> (1/3 - 1/3)^2 = 0.
    # Image 1: cosines 1, 1, 1 (rec is a positive multiple) -> 0; keeps 3 of 3 -> (1/3 - 1)^2 = 4/9.
    target = torch.tensor([[[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]], [[1.0, 2.0], [3.0, -1.0], [0.5, 0.5]]])
    rec = torch.tensor([[[2.0, 0.0], [1.0, 0.0], [-1.0, -1.0]], [[2.0, 4.0], [0.3, -0.1], [5.0, 5.0]]])
    keep = torch.tensor([[1.0, 0.0, 0.0], [1.0, 1.0, 1.0]])
    return target, rec, keep


def test_per_image_ratio_by_hand():
    target, rec, keep = example()
    loss = tokenizer_loss(target, rec, keep, rho=1 / 3, ratio_weight=2.0, ratio_per_image=True)
    rec_expected = (1.0 + 0.0) / 2  # mean over the two images
    ratio_expected = (0.0 + 4 / 9) / 2
    torch.testing.assert_close(loss.reconstruction, torch.tensor(rec_expected))
    torch.testing.assert_close(loss.ratio, torch.tensor(ratio_expected))
    torch.testing.assert_close(loss.total, torch.tensor(rec_expected + 2.0 * ratio_expected))
    torch.testing.assert_close(loss.keep_ratio, torch.tensor(2 / 3))


def test_batch_mean_ratio_by_hand():
    target, rec, keep = example()
    loss = tokenizer_loss(target, rec, keep, ratio_per_image=False)
    # batch keep ratio (1/3 + 1) / 2 = 2/3 -> (1/3 - 2/3)^2 = 1/9
    torch.testing.assert_close(loss.ratio, torch.tensor(1 / 9))
    torch.testing.assert_close(loss.total, torch.tensor(0.5 + 2 / 9))


def test_gradient_reaches_keep_mask_and_reconstruction():
    target, rec, keep = example()
    rec = rec.clone().requires_grad_(True)
    keep = keep.clone().requires_grad_(True)
    tokenizer_loss(target, rec, keep).total.backward()
    # d/dM of 2 * mean_b (rho - mean_i M)^2 for image 1: 2 * (1/2) * 2 * (1 - 1/3) * (1/3) = 4/9 per entry
    torch.testing.assert_close(keep.grad[1], torch.full((3,), 4 / 9))
    assert (keep.grad[0] == 0).all()
    assert rec.grad.abs().sum() > 0


def test_shape_errors_and_config_checks():
    target, rec, keep = example()
    with pytest.raises(ValueError, match="keep_mask"):
        tokenizer_loss(target, rec, keep[:, :2])
    with pytest.raises(ValueError, match="rho"):
        TokenizerLossConfig(rho=0.0)
