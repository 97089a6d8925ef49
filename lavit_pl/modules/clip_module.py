"""Stage 0 LightningModule: contrastive training of the tiny CLIP on the Shapes world.

Validation reports zero-shot shape-kind and colour accuracy on held-out single-shape images
(prompts are config values), next to chance. Export writes the weights in the open_clip/OpenAI
layout (``open_clip_pytorch_model.bin``) plus ``open_clip_config.json``, which the vision-encoder
loader reads back exactly as it reads a real CLIP checkpoint.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import lightning as L
import torch
import torch.nn.functional as F

from lavit_pl.data.image_datamodules import ImageTextDataConfig, ImageTextDataModule
from lavit_pl.data.shapes.scene import plural
from lavit_pl.models.clip import ClipTextTokenizer, TinyClipConfig, build_clip, contrastive_loss
from lavit_pl.modules.clip_regions import ClipRegionConfig, PatchTokenTap, RegionHead, region_loss
from lavit_pl.modules.lr_schedule import cosine_with_warmup
from lavit_pl.modules.stage import RunConfig, Stage
from lavit_pl.utils.atomic import atomic_torch_save, atomic_write_json
from lavit_pl.utils.clip_export import CLIP_CONFIG_FILE, CLIP_WEIGHTS_FILE


@dataclass
class ClipOptimConfig:
    lr: float = 1e-3
    weight_decay: float = 0.1
    betas: list[float] = field(default_factory=lambda: [0.9, 0.98])
    eps: float = 1e-6
    warmup_steps: int = 100

    def __post_init__(self) -> None:
        if self.lr <= 0:
            raise ValueError(f"optim.lr must be > 0, got {self.lr}")


@dataclass
class CaptionAugmentConfig:
    """Colour words dropped from a share of training captions. Within a batch, the colour
    combination alone almost always identifies the matching caption, so a contrastive model need
    not learn shape kinds at all (measured: zero-shot kind accuracy stayed at chance while colour
    reached 100%). Captions without colours make kinds necessary."""

    color_dropout: float = field(default=0.5, metadata={"help": "probability a caption loses its colour words"})
    colors: list[str] = field(default_factory=list, metadata={"help": "colour words; empty: zero_shot.colors"})
    kind_negatives: int = field(default=0, metadata={
        "help": "hard negatives per caption whose shape kinds are swapped for other kinds (NegCLIP-style); 0: none"})

    def __post_init__(self) -> None:
        if not 0.0 <= self.color_dropout <= 1.0:
            raise ValueError(f"augment.color_dropout must be in [0, 1], got {self.color_dropout}")
        if self.kind_negatives < 0:
            raise ValueError(f"augment.kind_negatives must be >= 0, got {self.kind_negatives}")


def drop_color_words(caption: str, colors: list[str]) -> str:
    """'A large purple circle and a green square.' -> 'A large circle and a square.'"""
    pattern = r"\b(?:" + "|".join(re.escape(c) for c in colors) + r")\b ?"
    out = re.sub(pattern, "", caption, flags=re.IGNORECASE)
    return re.sub(r"\s{2,}", " ", out).strip()


def _word_forms(words: list[str]) -> tuple[dict[str, tuple[str, bool]], re.Pattern]:
    """{form: (word, is_plural)} for each word and its plural, and a whole-word pattern matching any form."""
    forms = {plural(w): (w, True) for w in words} | {w: (w, False) for w in words}
    pattern = re.compile(r"\b(" + "|".join(re.escape(f) for f in sorted(forms, key=len, reverse=True)) + r")\b", re.IGNORECASE)
    return forms, pattern


def swap_kind_words(caption: str, kinds: list[str], generator: torch.Generator) -> str | None:
    """Every kind word (singular or plural) replaced by a different kind drawn at random, plural kept:
    'Two red circles and a square.' -> 'Two red hexagons and a cross.' None if no kind is named."""
    forms, pattern = _word_forms(kinds)

    def replace(match: re.Match) -> str:
        kind, is_plural = forms[match.group(1).lower()]
        others = [k for k in kinds if k != kind]
        new = others[int(torch.randint(len(others), (1,), generator=generator))]
        return plural(new) if is_plural else new

    swapped, n = pattern.subn(replace, caption)
    return swapped if n else None


def caption_tags(captions: list[str], words: list[str]) -> torch.Tensor:
    """Multi-hot tags parsed from the text (Tag2Text-style): (B, len(words)) float, 1 where the caption
    names the word, singular or plural. 'Two red circles and a cross.' with [circle, square, cross]
    -> [1, 0, 1]."""
    forms, pattern = _word_forms(words)
    out = torch.zeros(len(captions), len(words))
    for i, caption in enumerate(captions):
        for match in pattern.finditer(caption):
            out[i, words.index(forms[match.group(1).lower()][0])] = 1.0
    return out


@dataclass
class CaptionTagConfig:
    """An auxiliary tagging loss on the image embedding, with tags parsed from each training caption
    (Tag2Text / RAM mine object tags from paired text the same way): multi-label BCE through a linear
    head that is not exported. Contrastive training alone learns colours at once but shape kinds
    barely (zero-shot kind 0.27 after 1,300 steps): a tag per kind word makes kinds a dense target.
    Its weight must be large because the contrastive gradient otherwise dominates Adam's per-parameter
    scale. Measured on the tiny world after 1,250 steps (zero-shot kind / colour): weight 5 -> 0.39 /
    1.0, 25 -> 0.86 / 0.98, 50 -> 0.93 / 0.88, 50 with colour dropout 0.25 -> 0.90 / 0.92. Colour words
    are left out of the tags on purpose: as tags beside kinds they starve the kinds (0.29)."""

    weight: float = field(default=0.0, metadata={"help": "weight of the tag loss; 0: off"})
    words: list[str] = field(default_factory=list, metadata={"help": "tag vocabulary; empty: zero_shot.kinds"})

    def __post_init__(self) -> None:
        if self.weight < 0:
            raise ValueError(f"tags.weight must be >= 0, got {self.weight}")


@dataclass
class ZeroShotConfig:
    kinds: list[str] = field(default_factory=list, metadata={"help": "shape kinds named in training text; empty: world.json's known_kinds"})
    colors: list[str] = field(default_factory=list, metadata={"help": "colours; empty: world.json's colors"})
    kind_prompt: str = "a {kind}."
    color_prompt: str = "a {color} shape."


@dataclass
class ClipRunConfig(RunConfig):
    model: TinyClipConfig = field(default_factory=TinyClipConfig)
    optim: ClipOptimConfig = field(default_factory=ClipOptimConfig)
    data: ImageTextDataConfig = field(default_factory=ImageTextDataConfig)
    zero_shot: ZeroShotConfig = field(default_factory=ZeroShotConfig)
    augment: CaptionAugmentConfig = field(default_factory=CaptionAugmentConfig)
    tags: CaptionTagConfig = field(default_factory=CaptionTagConfig)
    regions: ClipRegionConfig = field(default_factory=ClipRegionConfig)


class ClipModule(L.LightningModule):
    def __init__(self, cfg: ClipRunConfig):
        super().__init__()
        self.cfg = cfg
        self.tokenizer = ClipTextTokenizer(cfg.model.context_length)
        self.model = build_clip(cfg.model)
        self.tag_words = (cfg.tags.words or cfg.zero_shot.kinds) if cfg.tags.weight > 0 else []
        self.tag_head = torch.nn.Linear(cfg.model.embed_dim, len(self.tag_words)) if self.tag_words else None
        self.region_head = None
        if cfg.regions.weight > 0:
            zs = cfg.zero_shot
            depth = cfg.model.vision_layers
            if not -depth <= cfg.regions.feature_layer < depth:
                raise ValueError(f"regions.feature_layer {cfg.regions.feature_layer} names no block of the "
                                 f"{depth}-block vision tower (model.vision_layers); use -{depth}..{depth - 1}")
            self.region_head = RegionHead(cfg.model.vision_width, len(zs.kinds), len(zs.colors))
            self._region_tap = PatchTokenTap(self.model.visual.transformer.resblocks[cfg.regions.feature_layer])
        self._zs: dict[str, list[int]] = {"kind_hit": [], "color_hit": []}
        self._aug_rng = torch.Generator().manual_seed(cfg.seed)

    def _augment(self, captions: list[str]) -> list[str]:
        aug = self.cfg.augment
        colors = aug.colors or self.cfg.zero_shot.colors
        if aug.color_dropout == 0.0 or not colors:
            return captions
        drop = torch.rand(len(captions), generator=self._aug_rng) < aug.color_dropout
        return [drop_color_words(c, colors) if d else c for c, d in zip(captions, drop.tolist())]

    def _kind_negatives(self, captions: list[str]) -> list[str]:
        kinds = self.cfg.zero_shot.kinds
        swapped = (swap_kind_words(c, kinds, self._aug_rng) for _ in range(self.cfg.augment.kind_negatives) for c in captions)
        return [s for s in swapped if s is not None]

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor:
        captions = self._augment(batch["caption"])
        negatives = self._kind_negatives(captions)
        text = self.tokenizer(captions + negatives).to(self.device)
        img_emb = self.model.encode_image(batch["image"])  # (B, E)
        img = F.normalize(img_emb, dim=-1)
        txt = F.normalize(self.model.encode_text(text), dim=-1)  # (B + B', E)
        b = img.shape[0]
        loss = contrastive_loss(img, txt[:b], self.model.logit_scale.exp().clamp(max=100), txt[b:] if negatives else None)
        self.log("train/contrastive_loss", loss, batch_size=b)
        if self.tag_head is not None:
            # tags from the caption as written: colour dropout removes no tag word
            target = caption_tags(batch["caption"], self.tag_words).to(img_emb)
            tag_loss = F.binary_cross_entropy_with_logits(self.tag_head(img_emb), target)
            self.log("train/tag_loss", tag_loss, batch_size=b)
            loss = loss + self.cfg.tags.weight * tag_loss
        if self.region_head is not None:
            zs, rc = self.cfg.zero_shot, self.cfg.regions
            reg_loss, stats = region_loss(self.region_head, self._region_tap.patch_tokens(), batch["meta"]["scene"], zs.kinds, zs.colors, rc.min_overlap)
            self.log("train/region_loss", reg_loss, batch_size=b)
            for name, value in stats.items():
                self.log(f"train/region_{name}", value, batch_size=b)
            loss = loss + rc.weight * reg_loss
        self.log("train/loss", loss, prog_bar=True, batch_size=b)
        return loss

    @torch.no_grad()
    def _class_embeddings(self, prompts: list[str]) -> torch.Tensor:
        return F.normalize(self.model.encode_text(self.tokenizer(prompts).to(self.device)), dim=-1)

    def on_validation_epoch_start(self) -> None:
        zs = self.cfg.zero_shot
        self._kind_emb = self._class_embeddings([zs.kind_prompt.format(kind=k) for k in zs.kinds])
        self._color_emb = self._class_embeddings([zs.color_prompt.format(color=c) for c in zs.colors])
        self._zs = {"kind_hit": [], "color_hit": []}

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        zs = self.cfg.zero_shot
        img = F.normalize(self.model.encode_image(batch["image"]), dim=-1)
        kind_pred = (img @ self._kind_emb.t()).argmax(-1).tolist()
        color_pred = (img @ self._color_emb.t()).argmax(-1).tolist()
        for i, scene in enumerate(batch["meta"]["scene"]):
            shapes = scene["shapes"]
            if len(shapes) != 1:
                continue
            shape = shapes[0]
            if shape["kind"] in zs.kinds:
                self._zs["kind_hit"].append(int(zs.kinds[kind_pred[i]] == shape["kind"]))
            self._zs["color_hit"].append(int(zs.colors[color_pred[i]] == shape["color"]))

    def on_validation_epoch_end(self) -> None:
        for key, n_classes in (("kind", len(self.cfg.zero_shot.kinds)), ("color", len(self.cfg.zero_shot.colors))):
            hits = self._zs[f"{key}_hit"]
            if hits:
                self.log(f"val/zero_shot_{key}_acc", sum(hits) / len(hits))
                self.log(f"val/zero_shot_{key}_chance", 1.0 / n_classes)
                self.log(f"val/zero_shot_{key}_n", float(len(hits)))

    def configure_optimizers(self) -> Any:
        o = self.cfg.optim
        decay = [p for n, p in self.named_parameters() if p.ndim >= 2 and "embedding" not in n]
        no_decay = [p for n, p in self.named_parameters() if not (p.ndim >= 2 and "embedding" not in n)]
        opt = torch.optim.AdamW(
            [{"params": decay, "weight_decay": o.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
            lr=o.lr, betas=tuple(o.betas), eps=o.eps,
        )
        total = self.cfg.trainer.max_steps
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: cosine_with_warmup(s, o.warmup_steps, total))
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}


def _fill_zero_shot_classes(cfg: ClipRunConfig) -> None:
    """Empty class lists come from the world's manifest (known kinds only: the novel kind is never
    named in training text, so it cannot be prompted zero-shot)."""
    zs = cfg.zero_shot
    if zs.kinds and zs.colors:
        return
    manifest = Path(cfg.data.data_root) / "world.json"
    if not manifest.is_file():
        raise ValueError(f"zero_shot.kinds/colors are empty and {manifest} does not exist: set them in the config")
    world = json.loads(manifest.read_text())
    zs.kinds = zs.kinds or list(world["known_kinds"])
    zs.colors = zs.colors or list(world["colors"])


def build(cfg: ClipRunConfig) -> tuple[ClipModule, ImageTextDataModule]:
    if "scene" not in cfg.data.reader.metadata_fields:
        raise ValueError("clip stage: data.reader.metadata_fields must include 'scene' (zero-shot labels)")
    _fill_zero_shot_classes(cfg)
    return ClipModule(cfg), ImageTextDataModule(cfg.data)


def export(module: ClipModule, cfg: ClipRunConfig, run_dir: Path) -> dict[str, Any]:
    out = Path(run_dir) / "export"
    weights = out / CLIP_WEIGHTS_FILE
    state = {k: v.detach().cpu().contiguous() for k, v in module.model.state_dict().items()}
    atomic_torch_save(state, weights)
    atomic_write_json(out / CLIP_CONFIG_FILE, {"model_cfg": cfg.model.to_open_clip(), "preprocess_cfg": {
        "size": cfg.model.image_size, "mean": list(cfg.data.reader.mean), "std": list(cfg.data.reader.std), "interpolation": "bicubic",
        "resize_mode": "squash"}})
    metrics = {k: v.item() for k, v in module.trainer.callback_metrics.items() if k.startswith("val/")}
    atomic_write_json(out / "metrics.json", metrics)
    return {"weights": str(weights), **metrics}


STAGE = Stage(config=ClipRunConfig, build=build, export=export)
