"""Stage 0 (tiny world only): a small CLIP image/text pair, built with open_clip.

It stands in for EVA-CLIP (the tokenizer's frozen encoder) and for CLIP ViT-L/14 (re-ranking,
in-domain FID). It is an ``open_clip.CLIP`` so its state dict is in the OpenAI/open_clip layout
(``visual.conv1.weight``, ``visual.transformer.resblocks.i.*``, ``token_embedding.weight``...):
exactly the format the real-checkpoint loaders read.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from open_clip.model import CLIP, CLIPTextCfg, CLIPVisionCfg
from open_clip.tokenizer import SimpleTokenizer

OPEN_CLIP_VOCAB_SIZE = 49408  # open_clip's BPE tokenizer (SimpleTokenizer); the text tower's embedding rows


@dataclass
class TinyClipConfig:
    image_size: int = 64
    patch_size: int = 8
    vision_width: int = 64
    vision_layers: int = 4
    vision_head_width: int = 16
    text_width: int = 64
    text_layers: int = 2
    text_heads: int = 4
    context_length: int = 40
    embed_dim: int = 64
    pool_type: str = "tok"  # open_clip vision pooling: "tok" (class token, OpenAI CLIP) or "avg" (mean of patch tokens)

    def __post_init__(self) -> None:
        if self.pool_type not in ("tok", "avg"):
            raise ValueError(f"clip.pool_type must be 'tok' or 'avg', got '{self.pool_type}'")
        if self.image_size % self.patch_size:
            raise ValueError(f"clip.image_size ({self.image_size}) must be a multiple of clip.patch_size ({self.patch_size})")
        if self.vision_width % self.vision_head_width:
            raise ValueError("clip.vision_width must be a multiple of clip.vision_head_width")
        if self.text_width % self.text_heads:
            raise ValueError("clip.text_width must be a multiple of clip.text_heads")

    @property
    def num_patches(self) -> int:
        return (self.image_size // self.patch_size) ** 2

    def to_open_clip(self) -> dict:
        """The model config in open_clip's ``model_cfg`` JSON layout (saved beside the weights)."""
        return {
            "embed_dim": self.embed_dim,
            "vision_cfg": {
                "image_size": self.image_size,
                "layers": self.vision_layers,
                "width": self.vision_width,
                "head_width": self.vision_head_width,
                "patch_size": self.patch_size,
                "pool_type": self.pool_type,
            },
            "text_cfg": {
                "context_length": self.context_length,
                "vocab_size": OPEN_CLIP_VOCAB_SIZE,
                "width": self.text_width,
                "heads": self.text_heads,
                "layers": self.text_layers,
            },
        }


def build_clip(cfg: TinyClipConfig) -> CLIP:
    oc = cfg.to_open_clip()
    return CLIP(
        embed_dim=oc["embed_dim"],
        vision_cfg=CLIPVisionCfg(**oc["vision_cfg"]),
        text_cfg=CLIPTextCfg(**oc["text_cfg"]),
    )


class ClipTextTokenizer:
    """open_clip's BPE tokenizer (its vocabulary ships inside the package: no download)."""

    def __init__(self, context_length: int):
        self._tok = SimpleTokenizer(context_length=context_length)

    def __call__(self, texts: list[str]) -> torch.Tensor:
        """texts -> token ids (B, context_length)."""
        return self._tok(texts)


def contrastive_loss(
    image_emb: torch.Tensor, text_emb: torch.Tensor, logit_scale: torch.Tensor, negative_text_emb: torch.Tensor | None = None
) -> torch.Tensor:
    """Symmetric InfoNCE over a batch. image_emb, text_emb: (B, E), l2-normalised; row i of each is a pair.

    ``negative_text_emb`` (B', E), l2-normalised: extra captions that match no image (hard negatives,
    NegCLIP-style). They join the candidates of the image-to-text term only."""
    logits = logit_scale * image_emb @ text_emb.t()  # (B, B)
    target = torch.arange(logits.shape[0], device=logits.device)
    i2t = logits
    if negative_text_emb is not None:
        i2t = torch.cat([logits, logit_scale * image_emb @ negative_text_emb.t()], dim=1)  # (B, B + B')
    return 0.5 * (F.cross_entropy(i2t, target) + F.cross_entropy(logits.t(), target))
