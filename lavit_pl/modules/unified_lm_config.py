"""Typed config of the stage-2 run (``stage: unified``); every paper number is a key here."""
from __future__ import annotations

from dataclasses import dataclass, field

from lavit_pl.data.stage2_cache import Stage2CacheConfig
from lavit_pl.data.stage2_documents import SequenceConfig
from lavit_pl.data.text_datamodules import MixtureDataConfig
from lavit_pl.models.llm import UnifiedLMConfig
from lavit_pl.models.tokenizer.selector import DETERMINISTIC_INFERENCE
from lavit_pl.models.tokenizer.tokenizer import DynamicVisualTokenizerConfig
from lavit_pl.modules.stage import RunConfig

VISUAL_INPUTS = ("continuous", "quantized")


@dataclass
class Stage2VisualConfig:
    """The frozen stage-1 side. ``tokenizer``: its architecture, equal to stage 1's (loading is
    strict); ``tokenizer.encoder.weights_path``: the encoder file (empty: the release's
    ``<tokenizer_dir>/eva_vitg_psz14.bin``). ``tokenizer_dir``: stage 1's exported
    ``visual_tokenizer/`` folder. ``input``: "continuous" (merger features through vit_proj, the
    paper) or "quantized" (Table 7a: the LLM's own embedding rows of the code ids). ``blind``: the
    blind baseline, images replaced by per-key noise before the encoder (``blind_seed``)."""

    tokenizer: DynamicVisualTokenizerConfig = field(default_factory=DynamicVisualTokenizerConfig)
    tokenizer_dir: str = ""
    input: str = "continuous"
    blind: bool = False
    blind_seed: int = 0

    def __post_init__(self) -> None:
        if self.input not in VISUAL_INPUTS:
            raise ValueError(f"visual.input must be one of {VISUAL_INPUTS}, got {self.input!r}")
        if self.tokenizer.selector.inference not in DETERMINISTIC_INFERENCE:
            raise ValueError(f"visual.tokenizer.selector.inference must be one of {DETERMINISTIC_INFERENCE} in stage 2 "
                             f"(got {self.tokenizer.selector.inference!r}): code targets and keep masks must be "
                             "deterministic (and cacheable)")


@dataclass
class UnifiedOptimConfig:
    """AdamW (paper: betas 0.9/0.95, eps 1e-6, wd 0.1), cosine with linear warm-up (paper 2K of 20K
    steps, ``trainer.max_steps``) down to ``min_lr_ratio`` x lr. ``lr_llm`` (paper 5e-5) for the
    LLM, ``lr_visual`` (paper 1.5e-4) for the merger copy, vit_proj and the new embedding rows."""

    lr_llm: float = 5e-5
    lr_visual: float = 1.5e-4
    betas: list[float] = field(default_factory=lambda: [0.9, 0.95])
    eps: float = 1e-6
    weight_decay: float = 0.1
    warmup_steps: int = 2000
    min_lr_ratio: float = 0.0

    def __post_init__(self) -> None:
        if self.lr_llm <= 0 or self.lr_visual <= 0:
            raise ValueError(f"optim.lr_llm and optim.lr_visual must be > 0, got {self.lr_llm}, {self.lr_visual}")
        if len(self.betas) != 2 or not all(0.0 <= b < 1.0 for b in self.betas):
            raise ValueError(f"optim.betas must be two values in [0, 1), got {list(self.betas)}")
        if self.eps <= 0 or self.weight_decay < 0 or self.warmup_steps < 0:
            raise ValueError("optim.eps must be > 0, optim.weight_decay and optim.warmup_steps >= 0")
        if not 0.0 <= self.min_lr_ratio <= 1.0:
            raise ValueError(f"optim.min_lr_ratio must be in [0, 1], got {self.min_lr_ratio}")


@dataclass
class UnifiedRunConfig(RunConfig):
    """``lm``: the LLaMA folder (stage 0's tiny one or LLaMA-7B), K, D, ``freeze_llm`` (Table 7b).
    ``data``: the mixture (``weights`` text : image_text, paper 2 : 1; ``batch_size`` documents)."""

    lm: UnifiedLMConfig = field(default_factory=UnifiedLMConfig)
    visual: Stage2VisualConfig = field(default_factory=Stage2VisualConfig)
    sequences: SequenceConfig = field(default_factory=SequenceConfig)
    optim: UnifiedOptimConfig = field(default_factory=UnifiedOptimConfig)
    data: MixtureDataConfig = field(default_factory=MixtureDataConfig)
    cache: Stage2CacheConfig = field(default_factory=Stage2CacheConfig)
    activation_checkpointing: bool = field(default=False, metadata={"help": "recompute LLaMA blocks in backward"})

    def __post_init__(self) -> None:
        tok = self.visual.tokenizer
        if self.lm.codebook_size != tok.quantizer.codebook_size:
            raise ValueError(f"lm.codebook_size={self.lm.codebook_size} must equal "
                             f"visual.tokenizer.quantizer.codebook_size={tok.quantizer.codebook_size}")
        if self.lm.visual_dim != tok.encoder.width:
            raise ValueError(f"lm.visual_dim={self.lm.visual_dim} must equal the merger width "
                             f"visual.tokenizer.encoder.width={tok.encoder.width}")
        reader = self.data.image_text.reader
        if reader.image_size != tok.encoder.image_size:
            raise ValueError(f"data.image_text.reader.image_size={reader.image_size} must equal "
                             f"visual.tokenizer.encoder.image_size={tok.encoder.image_size} (the encoder reads the "
                             f"reader's pixels as they are)")
        for name in ("mean", "std"):
            ours, theirs = list(getattr(reader, name)), list(getattr(tok.encoder, name))
            if any(abs(a - b) > 1e-6 for a, b in zip(ours, theirs)):
                raise ValueError(f"data.image_text.reader.{name}={ours} must equal visual.tokenizer.encoder.{name}={theirs}")
