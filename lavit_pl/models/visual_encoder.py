"""Frozen ViT encoder producing patch features X (B, N, D) for the dynamic visual tokenizer.

Built with timm from a registered architecture name whose sizes are overridden by config values,
so the paper's EVA-CLIP ViT-g/14 (``eva_giant_patch14_clip_224``), CLIP ViT-L/14
(``vit_large_patch14_clip_quickgelu_224``) and a tiny stand-in share one code path. Output = the
configured block's output *before* the final norm (LaVIT uses the last block's raw output), class
token dropped. Preprocessing lives beside the weights in the config: images in [0, 1] are resized
bicubically to ``image_size`` (no crop) and normalised with CLIP mean/std, as the release does.
Weights are never downloaded: ``weights_path``/``weights_format`` name a local file for
``lavit_pl.utils.checkpoint_io.load_vision_encoder_weights``; this module does no I/O.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

import timm
import torch
import torch.nn.functional as F
from torch import Tensor, nn

CLIP_MEAN = [0.48145466, 0.4578275, 0.40821073]
CLIP_STD = [0.26862954, 0.26130258, 0.27577711]
WEIGHT_FORMATS = ("lavit_eva", "eva_clip", "open_clip", "openai_clip", "timm")


@dataclass
class VisionEncoderConfig:
    timm_name: str = "eva_giant_patch14_clip_224"  # architecture family; sizes below override timm's
    image_size: int = 224
    patch_size: int = 14
    width: int = 1408  # D
    depth: int = 40
    num_heads: int = 16
    mlp_dim: int = 6144
    feature_layer: int = -1  # block whose (pre-final-norm) output is used; negative counts from the end
    weights_path: Optional[str] = None  # local checkpoint; None = random init (tests, stage 0)
    weights_format: str = "lavit_eva"  # see WEIGHT_FORMATS / lavit_pl.models.convert
    mean: list[float] = field(default_factory=lambda: list(CLIP_MEAN))
    std: list[float] = field(default_factory=lambda: list(CLIP_STD))
    resize_mode: str = "bicubic"
    frozen: bool = True

    def __post_init__(self) -> None:
        for name in ("image_size", "patch_size", "width", "depth", "num_heads", "mlp_dim"):
            if getattr(self, name) <= 0:
                raise ValueError(f"VisionEncoderConfig.{name} must be > 0, got {getattr(self, name)}")
        if self.image_size % self.patch_size:
            raise ValueError(f"VisionEncoderConfig.image_size={self.image_size} is not a multiple of patch_size={self.patch_size}")
        if not -self.depth <= self.feature_layer < self.depth:
            raise ValueError(f"VisionEncoderConfig.feature_layer={self.feature_layer} outside [-{self.depth}, {self.depth})")
        if self.weights_format not in WEIGHT_FORMATS:
            raise ValueError(f"VisionEncoderConfig.weights_format must be one of {WEIGHT_FORMATS}, got {self.weights_format!r}")
        if len(self.mean) != 3 or len(self.std) != 3 or min(self.std) <= 0:
            raise ValueError(f"VisionEncoderConfig.mean/std must be 3 values (std > 0), got {self.mean} / {self.std}")
        if self.resize_mode not in ("bicubic", "bilinear", "nearest"):
            raise ValueError(f"VisionEncoderConfig.resize_mode must be bicubic, bilinear or nearest, got {self.resize_mode!r}")

    @property
    def num_patches(self) -> int:
        return (self.image_size // self.patch_size) ** 2


def eva_vitg14_config(**overrides) -> VisionEncoderConfig:
    """The paper's encoder: EVA-CLIP ViT-g/14, 224 px, N = 256, D = 1408 (LaVIT release weights)."""
    return VisionEncoderConfig(**overrides)


def clip_vitl14_config(**overrides) -> VisionEncoderConfig:
    """Ablation encoder: OpenAI CLIP ViT-L/14 (QuickGELU), 224 px, N = 256, D = 1024."""
    base = dict(
        timm_name="vit_large_patch14_clip_quickgelu_224", width=1024, depth=24, num_heads=16, mlp_dim=4096,
        weights_format="openai_clip",
    )
    return VisionEncoderConfig(**{**base, **overrides})


def tiny_eva_encoder_config(**overrides) -> VisionEncoderConfig:
    """CPU stand-in with the EVA structure (timm-keyed weights): 64 px, patch 8 (N = 64), D = 96."""
    base = dict(image_size=64, patch_size=8, width=96, depth=2, num_heads=4, mlp_dim=256, weights_format="timm")
    return VisionEncoderConfig(**{**base, **overrides})


def tiny_clip_encoder_config(**overrides) -> VisionEncoderConfig:
    """The stage-0 tiny CLIP image tower (open_clip ``CLIP``, OpenAI key layout, GELU, pre-LN):
    64 px, patch 8 (N = 64), D = 64, 4 blocks of 4 heads, MLP 256 (experiments/stage0/clip_tiny.yaml)."""
    base = dict(
        timm_name="vit_base_patch16_clip_224", image_size=64, patch_size=8, width=64, depth=4, num_heads=4,
        mlp_dim=256, weights_format="openai_clip",
    )
    return VisionEncoderConfig(**{**base, **overrides})


def build_timm_vit(cfg: VisionEncoderConfig) -> nn.Module:
    """The bare timm model (no head) for ``cfg``; never loads pretrained weights."""
    # +0.5: timm sizes the MLP as int(width * mlp_ratio); a ratio of exactly mlp_dim/width can land
    # on mlp_dim - 1 through float rounding.
    model = timm.create_model(
        cfg.timm_name, pretrained=False, num_classes=0, img_size=cfg.image_size, patch_size=cfg.patch_size,
        embed_dim=cfg.width, depth=cfg.depth, num_heads=cfg.num_heads, mlp_ratio=(cfg.mlp_dim + 0.5) / cfg.width,
    )
    hidden = model.blocks[0].mlp.fc1.out_features
    if hidden != cfg.mlp_dim or model.patch_embed.num_patches != cfg.num_patches:
        raise ValueError(f"timm '{cfg.timm_name}' built mlp {hidden}, {model.patch_embed.num_patches} patches; config says {cfg.mlp_dim}, {cfg.num_patches}")
    return model


class VisionEncoder(nn.Module):
    """images (B, 3, H, W) in [0, 1] -> patch features (B, N, D)."""

    def __init__(self, cfg: VisionEncoderConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.vit = build_timm_vit(cfg)
        self.register_buffer("pixel_mean", torch.tensor(cfg.mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("pixel_std", torch.tensor(cfg.std).view(1, 3, 1, 1), persistent=False)
        self.layer_index = cfg.feature_layer % cfg.depth
        if cfg.frozen:
            self.vit.requires_grad_(False)
            self.vit.eval()

    def train(self, mode: bool = True) -> "VisionEncoder":
        super().train(mode)
        if self.cfg.frozen:
            self.vit.eval()  # frozen: dropout/droppath stay off whatever the parent's mode
        return self

    def preprocess(self, images: Tensor) -> Tensor:
        """(B, 3, H, W) in [0, 1] -> (B, 3, image_size, image_size) normalised (release: resize, no crop)."""
        if images.dim() != 4 or images.shape[1] != 3:
            raise ValueError(f"images must be (B, 3, H, W), got {tuple(images.shape)}")
        size = self.cfg.image_size
        if images.shape[-2:] != (size, size):
            images = F.interpolate(images, size=(size, size), mode=self.cfg.resize_mode, align_corners=False if self.cfg.resize_mode != "nearest" else None)
        return (images - self.pixel_mean.to(images.dtype)) / self.pixel_std.to(images.dtype)

    def features(self, pixels: Tensor) -> Tensor:
        """Already preprocessed pixels (B, 3, S, S) -> (B, N, D): block ``feature_layer`` output,
        no final norm, prefix tokens removed."""
        (out,) = self.vit.forward_intermediates(
            pixels, indices=[self.layer_index], norm=False, stop_early=True, output_fmt="NLC", intermediates_only=True
        )
        return out

    def forward(self, images: Tensor) -> Tensor:
        pixels = self.preprocess(images)
        if self.cfg.frozen:
            with torch.no_grad():
                return self.features(pixels)
        return self.features(pixels)
