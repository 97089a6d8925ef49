"""The parameter-free pixel-patch visual side, against a hand computation."""
from __future__ import annotations

import math

import pytest
import torch
from PIL import Image

from lavit_pl.generation.pixel_encoder import PixelPatchEncoder, PixelPatchEncoderConfig


def test_patches_in_raster_order_times_the_seeded_projection(tmp_path):
    config = PixelPatchEncoderConfig(image_size=4, patch_size=2, dim=3, seed=7)
    encoder = PixelPatchEncoder(config)
    # a 4x4 image whose four 2x2 quadrants are flat colours: each patch is one colour
    colours = [(255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 255)]  # top-left, top-right, bottom-left, bottom-right
    image = Image.new("RGB", (4, 4))
    for k, colour in enumerate(colours):
        x, y = 2 * (k % 2), 2 * (k // 2)
        image.paste(colour, (x, y, x + 2, y + 2))
    projection = torch.randn(12, 3, generator=torch.Generator().manual_seed(7)) / math.sqrt(12)
    expected = torch.stack([(torch.tensor(c, dtype=torch.float32) / 255 - 0.5).repeat(4) @ projection
                            for c in colours])  # patch = 4 pixels of (R, G, B), pixel-major
    (got,) = encoder([image])
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-6)
    path = tmp_path / "q.png"
    image.save(path)
    torch.testing.assert_close(encoder([str(path)])[0], got, rtol=0, atol=0)  # lossless file == PIL input


def test_config_checks_name_the_field():
    with pytest.raises(ValueError, match="PixelPatchEncoderConfig.image_size"):
        PixelPatchEncoderConfig(image_size=10, patch_size=4)
    with pytest.raises(ValueError, match="PixelPatchEncoderConfig.dim"):
        PixelPatchEncoderConfig(dim=0)
    with pytest.raises(TypeError, match="PIL image or a path"):
        PixelPatchEncoder(PixelPatchEncoderConfig())([123])
