"""A parameter-free visual side for wiring checks: fixed random projections of pixel patches.

Not a LaVIT component. It lets the evaluation harness run end to end (image files -> features ->
LM -> official results files) with a model folder whose visual side is not trained yet, and it is
what the tests plug in. Every image gives all N = (image_size / patch_size)^2 patches (a fixed
length, no selector): ``(N, D)`` with ``D = dim``.

An export names it in ``lavit_eval.json`` as
``{"factory": "lavit_pl.generation.pixel_encoder:build_pixel_patch_encoder", "args": {...}}``.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

import torch
from PIL import Image

from lavit_pl.generation.lavit_generator import EncodeImages, ImageInput


@dataclass
class PixelPatchEncoderConfig:
    image_size: int = 32  # H = W after a bicubic resize
    patch_size: int = 8
    dim: int = 64  # D
    seed: int = 0  # seeds the projection

    def __post_init__(self) -> None:
        if self.patch_size < 1 or self.image_size < self.patch_size or self.image_size % self.patch_size:
            raise ValueError(f"PixelPatchEncoderConfig.image_size must be a positive multiple of patch_size="
                             f"{self.patch_size}, got {self.image_size}")
        if self.dim < 1:
            raise ValueError(f"PixelPatchEncoderConfig.dim must be >= 1, got {self.dim}")


class PixelPatchEncoder:
    """``encoder(images) -> list of (N, D)``: resize, cut p x p patches in raster order, project."""

    def __init__(self, config: PixelPatchEncoderConfig, device: str | torch.device = "cpu"):
        self.config = config
        self.device = torch.device(device)
        fan_in = 3 * config.patch_size ** 2
        generator = torch.Generator().manual_seed(config.seed)
        self.projection = (torch.randn(fan_in, config.dim, generator=generator) / math.sqrt(fan_in)).to(self.device)

    def pixels(self, image: ImageInput) -> torch.Tensor:
        """(H, W, C) float in [0, 1] after the resize."""
        size = (self.config.image_size, self.config.image_size)
        if isinstance(image, Image.Image):
            rgb = image.convert("RGB").resize(size, Image.BICUBIC)
        elif isinstance(image, (str, Path)):
            with Image.open(image) as opened:
                rgb = opened.convert("RGB").resize(size, Image.BICUBIC)
        else:
            raise TypeError(f"PixelPatchEncoder: expected a PIL image or a path, got {type(image).__name__}")
        return torch.frombuffer(bytearray(rgb.tobytes()), dtype=torch.uint8).view(*size, 3).float() / 255

    def __call__(self, images: Sequence[ImageInput]) -> list[torch.Tensor]:
        p = self.config.patch_size
        out = []
        for image in images:
            x = self.pixels(image).to(self.device)  # (H, W, C)
            g = self.config.image_size // p
            patches = x.view(g, p, g, p, 3).permute(0, 2, 1, 3, 4).reshape(g * g, p * p * 3)  # (N, p*p*C)
            out.append((patches - 0.5) @ self.projection)  # (N, D)
        return out


def build_pixel_patch_encoder(model_dir: Path, args: Mapping[str, Any], device: str | torch.device) -> EncodeImages:
    """Factory named in ``lavit_eval.json``; ``args`` are :class:`PixelPatchEncoderConfig` fields."""
    return PixelPatchEncoder(PixelPatchEncoderConfig(**dict(args)), device)
