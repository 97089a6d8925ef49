"""Vision encoder: last-block features before the final norm, CLS dropped, release preprocessing,
frozen, and the paper-scale configs equal timm's registered architectures (built on the meta device)."""
from __future__ import annotations

import pytest
import timm
import torch
import torch.nn.functional as F

from lavit_pl.models.visual_encoder import (
    VisionEncoder,
    VisionEncoderConfig,
    clip_vitl14_config,
    eva_vitg14_config,
    tiny_clip_encoder_config,
    tiny_eva_encoder_config,
)


def make_encoder(cfg: VisionEncoderConfig) -> VisionEncoder:
    torch.manual_seed(0)
    return VisionEncoder(cfg)


def manual_features(vit, pixels: torch.Tensor, upto: int) -> torch.Tensor:
    """Run timm's pieces by hand: patch embed, position embedding, pre-norm, blocks[0..upto]."""
    x = vit.patch_embed(pixels)
    x = vit._pos_embed(x)
    x = x[0] if isinstance(x, tuple) else x  # Eva returns (tokens, rope)
    x = vit.norm_pre(x)
    for blk in vit.blocks[: upto + 1]:
        x = blk(x)
    return x[:, vit.num_prefix_tokens :]


@pytest.mark.parametrize("make_cfg", [tiny_eva_encoder_config, tiny_clip_encoder_config], ids=["eva", "clip"])
def test_features_are_the_last_block_output_without_final_norm(make_cfg):
    enc = make_encoder(make_cfg())
    pixels = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        # A non-identity final norm, so that applying it or not is visible whatever the width.
        enc.vit.norm.weight.fill_(3.0)
        enc.vit.norm.bias.fill_(1.0)
        ours = enc.features(pixels)
        expected = manual_features(enc.vit, pixels, enc.cfg.depth - 1)
        normed = enc.vit.forward_features(pixels)[:, enc.vit.num_prefix_tokens :]
    assert ours.shape == (2, 64, enc.cfg.width)
    torch.testing.assert_close(ours, expected)
    assert (ours - normed).abs().max() > 0.1  # forward_features would have applied the final norm


def test_feature_layer_selects_an_earlier_block():
    enc = make_encoder(tiny_eva_encoder_config(depth=3, feature_layer=-2))
    pixels = torch.randn(1, 3, 64, 64, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        torch.testing.assert_close(enc.features(pixels), manual_features(enc.vit, pixels, 1))


def test_preprocessing_resizes_bicubic_and_normalises_with_clip_statistics():
    cfg = tiny_eva_encoder_config()
    assert cfg.mean == [0.48145466, 0.4578275, 0.40821073]  # OpenAI CLIP statistics, as in the release
    assert cfg.std == [0.26862954, 0.26130258, 0.27577711]
    enc = make_encoder(cfg)
    images = torch.rand(2, 3, 80, 72, generator=torch.Generator().manual_seed(3))
    resized = F.interpolate(images, size=(64, 64), mode="bicubic", align_corners=False)
    mean, std = torch.tensor(cfg.mean).view(1, 3, 1, 1), torch.tensor(cfg.std).view(1, 3, 1, 1)
    torch.testing.assert_close(enc.preprocess(images), (resized - mean) / std)
    same = torch.rand(1, 3, 64, 64)
    torch.testing.assert_close(enc.preprocess(same), (same - mean) / std)
    with torch.no_grad():
        torch.testing.assert_close(enc(images), enc.features((resized - mean) / std))


def test_frozen_encoder_has_no_trainable_parameters_and_stays_in_eval():
    enc = make_encoder(tiny_eva_encoder_config())
    assert not any(p.requires_grad for p in enc.parameters())
    enc.train()
    assert enc.training and not enc.vit.training
    out = enc(torch.rand(1, 3, 64, 64))
    assert not out.requires_grad


def test_paper_eva_config_is_timm_eva_giant_without_head():
    with torch.device("meta"):
        ours = VisionEncoder(eva_vitg14_config())
        release_layout = timm.create_model("eva_giant_patch14_clip_224", num_classes=1024)
    assert ours.cfg.num_patches == 256 and ours.cfg.width == 1408
    theirs = {k: v.shape for k, v in release_layout.state_dict().items()}
    mine = {k: v.shape for k, v in ours.vit.state_dict().items()}
    assert len(theirs) == 528  # the release's eva_vitg_psz14.bin key count
    assert set(theirs) - set(mine) == {"head.weight", "head.bias"}
    assert all(theirs[k] == shape for k, shape in mine.items())
    assert mine["blocks.0.mlp.fc1.weight"] == (6144, 1408) and len(ours.vit.blocks) == 40


def test_paper_clip_config_is_timm_vit_large_quickgelu():
    with torch.device("meta"):
        ours = VisionEncoder(clip_vitl14_config())
        ref = timm.create_model("vit_large_patch14_clip_quickgelu_224", num_classes=0)
    assert {k: v.shape for k, v in ours.vit.state_dict().items()} == {k: v.shape for k, v in ref.state_dict().items()}


def test_config_checks_name_the_field():
    with pytest.raises(ValueError, match="image_size"):
        VisionEncoderConfig(image_size=100, patch_size=14)
    with pytest.raises(ValueError, match="weights_format"):
        VisionEncoderConfig(weights_format="npz")
    with pytest.raises(ValueError, match="feature_layer"):
        VisionEncoderConfig(depth=2, feature_layer=2)
