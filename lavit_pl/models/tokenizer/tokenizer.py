"""LaVIT's dynamic visual tokenizer (paper section 3.1, figure 3a): frozen encoder -> selector ->
merger -> quantizer -> decoder. Public API (batched, variable length T_b per image):

- ``encode(images) -> (codes: list of (T_b,) long, features: list of (T_b, D))``; features are the
  merger outputs before quantisation (stage 2's continuous visual input).
- ``decode(codes) -> (B, N, D)`` reconstructed encoder features.
- ``select(patch_features) -> keep_mask (B, N) bool``; ``token_merger`` is a standalone
  :class:`TokenMerger` that stage 2 copies.
- ``forward(images | patch_features=...) -> TokenizerOutput`` for training (equation 4 inputs).

encode/decode/select follow the module's mode: in eval mode the selector is deterministic (argmax)
unless configured to sample like the release. The constructor only builds modules (no I/O), so a
LightningModule can call it inside ``configure_model``.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

import torch
from torch import Tensor, nn

from lavit_pl.models.tokenizer.decoder import FeatureDecoder, FeatureDecoderConfig
from lavit_pl.models.tokenizer.merger import TokenMerger, TokenMergerConfig
from lavit_pl.models.tokenizer.quantizer import QuantizerOutput, VectorQuantizer, VectorQuantizerConfig
from lavit_pl.models.tokenizer.selector import TokenSelector, TokenSelectorConfig
from lavit_pl.models.visual_encoder import VisionEncoder, VisionEncoderConfig

INFERENCE_PATHS = ("padded", "masked")


@dataclass
class DynamicVisualTokenizerConfig:
    encoder: VisionEncoderConfig = field(default_factory=VisionEncoderConfig)
    selector: TokenSelectorConfig = field(default_factory=TokenSelectorConfig)
    merger: TokenMergerConfig = field(default_factory=TokenMergerConfig)
    quantizer: VectorQuantizerConfig = field(default_factory=VectorQuantizerConfig)
    decoder: FeatureDecoderConfig = field(default_factory=FeatureDecoderConfig)
    use_selector: bool = True  # False: fixed length, every patch kept (Table 3b)
    inference_path: str = "padded"  # merger path of encode(): "padded" (fewer FLOPs) or "masked"

    def __post_init__(self) -> None:
        d = self.encoder.width
        for name, value in (
            ("selector.width", self.selector.width),
            ("merger.width", self.merger.width),
            ("quantizer.width", self.quantizer.width),
            ("decoder.out_dim", self.decoder.out_dim),
        ):
            if value != d:
                raise ValueError(f"DynamicVisualTokenizerConfig.{name}={value} must equal encoder.width={d}")
        if self.decoder.num_patches != self.encoder.num_patches:
            raise ValueError(f"DynamicVisualTokenizerConfig.decoder.num_patches={self.decoder.num_patches} must equal the encoder's N={self.encoder.num_patches}")
        if self.decoder.code_dim != self.quantizer.code_dim:
            raise ValueError(f"DynamicVisualTokenizerConfig.decoder.code_dim={self.decoder.code_dim} must equal quantizer.code_dim={self.quantizer.code_dim}")
        if self.inference_path not in INFERENCE_PATHS:
            raise ValueError(f"DynamicVisualTokenizerConfig.inference_path must be one of {INFERENCE_PATHS}, got {self.inference_path!r}")


@dataclass
class TokenizerOutput:
    """target: (B, N, D) raw encoder features; reconstruction: (B, N, D); keep_mask: (B, N) float 0/1
    (straight-through); keep_prob: (B, N) selector keep probability; merged: (B, N, D) merger outputs
    at every position (kept ones are X̂_r); quantizer: None when run with ``quantize=False``."""

    target: Tensor
    reconstruction: Tensor
    keep_mask: Tensor
    keep_prob: Tensor
    merged: Tensor
    quantizer: Optional[QuantizerOutput]


class DynamicVisualTokenizer(nn.Module):
    def __init__(self, cfg: DynamicVisualTokenizerConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.encoder = VisionEncoder(cfg.encoder)
        self.token_selector = TokenSelector(cfg.selector) if cfg.use_selector else None
        self.token_merger = TokenMerger(cfg.merger)
        self.quantizer = VectorQuantizer(cfg.quantizer)
        self.decoder = FeatureDecoder(cfg.decoder)

    def _selection(self, patch_features: Tensor) -> tuple[Tensor, Tensor]:
        """(B, N, D) -> (keep_mask (B, N) float straight-through, keep_prob (B, N))."""
        if self.token_selector is None:
            ones = patch_features.new_ones(patch_features.shape[:2])
            return ones, ones
        out = self.token_selector(patch_features)
        return out.keep_mask, out.keep_prob

    def select(self, patch_features: Tensor) -> Tensor:
        """patch_features: (B, N, D) -> keep_mask (B, N) bool, at least one True per image."""
        return self._selection(patch_features)[0].detach() > 0.5

    @torch.no_grad()
    def patch_features(self, pixels: Tensor) -> Tensor:
        """Encoder-normalised pixels (B, 3, S, S) (the data reader's output) -> frozen encoder
        features X (B, N, D)."""
        return self.encoder.features(pixels)

    def encode(self, images: Tensor) -> tuple[list[Tensor], list[Tensor]]:
        """images: (B, 3, H, W) in [0, 1] -> (codes: list of (T_b,) long, features: list of (T_b, D))."""
        return self.encode_features(self.encoder(images))

    def encode_features(self, patch_features: Tensor) -> tuple[list[Tensor], list[Tensor]]:
        """Same as :meth:`encode` from cached encoder features (B, N, D)."""
        keep = self.select(patch_features)
        if self.cfg.inference_path == "padded":
            features = self.token_merger.merge(patch_features, keep)
        else:
            merged = self.token_merger(patch_features, keep)
            features = list(torch.split(merged[keep], keep.sum(dim=1).tolist(), dim=0))
        lengths = [len(f) for f in features]
        indices = self.quantizer.lookup(self.quantizer.project(torch.cat(features)))  # (sum T_b,)
        return list(torch.split(indices, lengths)), features

    def decode(self, codes: list[Tensor]) -> Tensor:
        """codes: list of B (T_b,) long in [0, K), T_b >= 1 -> reconstructed features (B, N, D)."""
        lengths = [len(c) for c in codes]
        vectors = self.quantizer.embed(torch.cat(codes))  # (sum T_b, code_dim)
        return self.decoder.decode_lists(list(torch.split(vectors, lengths)))

    def forward(
        self, images: Tensor | None = None, *, patch_features: Tensor | None = None, quantize: bool = True
    ) -> TokenizerOutput:
        """Training path over all N positions (masked merger, all positions quantized, decoder with the
        keep mask as policy). Pass ``images`` (B, 3, H, W) or cached ``patch_features`` (B, N, D).
        ``quantize=False`` (the release's first phase) feeds the l2-normalised latents to the decoder
        and leaves the codebook untouched."""
        if (images is None) == (patch_features is None):
            raise ValueError("pass exactly one of images or patch_features")
        x = self.encoder(images) if patch_features is None else patch_features
        keep_mask, keep_prob = self._selection(x)
        merged = self.token_merger(x, keep_mask)
        q = None
        if quantize:
            q = self.quantizer(merged, weights=keep_mask)
            code_vectors = q.quantized
        else:
            code_vectors = self.quantizer.project(merged)
        reconstruction = self.decoder.forward_masked(code_vectors, keep_mask)
        return TokenizerOutput(x, reconstruction, keep_mask, keep_prob, merged, q)
