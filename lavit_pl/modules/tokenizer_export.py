"""Export of a trained stage-1 tokenizer (``<run>/export/``):

- ``visual_tokenizer/``: the LaVIT release layout, read back by ``load_lavit_tokenizer``:
  ``tokenizer_encoder.bin`` (selector, merger, quantizer) and ``tokenizer_decoder.bin`` through the
  converters of ``lavit_pl.models.convert``, and the frozen encoder as ``eva_vitg_psz14.bin`` (the
  release's file name; timm keys, which is what the release's EVA file holds, whatever the encoder).
- ``tokenizer.safetensors`` (our keys, full state dict) + ``tokenizer_config.json`` (the
  ``DynamicVisualTokenizerConfig``; ``encoder.weights_path`` relative to the export folder):
  :func:`load_exported_tokenizer` rebuilds the model from these two.
- ``metrics.json``: a full validation pass in eval mode (deterministic selection): keep ratio vs rho,
  tokens per image, Spearman(complexity, tokens), codebook usage/perplexity, reconstruction cosine,
  the ratio-penalty form and the schedule.
- ``figures/``: ``kept_patches.png``, ``code_groups.png``, ``tokens_per_image.png`` and
  ``tokens_per_image.csv`` (see ``tokenizer_figures``).
"""
from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path
from typing import Any, Optional

import torch
from omegaconf import OmegaConf
from safetensors.torch import load_file, save
from torch import Tensor

from lavit_pl.data.image_datamodules import ImagesDataModule
from lavit_pl.models.convert import ours_to_lavit_tokenizer_decoder, ours_to_lavit_tokenizer_encoder
from lavit_pl.models.tokenizer import DynamicVisualTokenizer, DynamicVisualTokenizerConfig
from lavit_pl.modules.tokenizer_figures import (
    draw_code_groups,
    draw_kept_patches,
    draw_token_histogram,
    token_histogram_csv,
)
from lavit_pl.modules.tokenizer_metrics import TokenizerStats
from lavit_pl.utils.atomic import atomic_torch_save, atomic_write_bytes, atomic_write_json, atomic_write_text
from lavit_pl.utils.checkpoint_io import (
    LAVIT_EVA_FILE,
    LAVIT_TOKENIZER_DECODER_FILE,
    LAVIT_TOKENIZER_ENCODER_FILE,
    load_strict,
)

SAFETENSORS_FILE = "tokenizer.safetensors"
CONFIG_FILE = "tokenizer_config.json"
RELEASE_DIR = "visual_tokenizer"


def release_state_dicts(state: dict[str, Tensor]) -> dict[str, dict[str, Tensor]]:
    """Our full tokenizer state dict -> {release file name: its state dict}."""
    encoder_vit = {k[len("encoder.vit."):]: v for k, v in state.items() if k.startswith("encoder.vit.")}
    ours_enc = {k: v for k, v in state.items() if k.startswith(("token_selector.", "token_merger.", "quantizer."))}
    ours_dec = {k: v for k, v in state.items() if k.startswith("decoder.")}
    return {
        LAVIT_EVA_FILE: encoder_vit,
        LAVIT_TOKENIZER_ENCODER_FILE: ours_to_lavit_tokenizer_encoder(ours_enc),
        LAVIT_TOKENIZER_DECODER_FILE: ours_to_lavit_tokenizer_decoder(ours_dec),
    }


def exported_config(model_cfg: DynamicVisualTokenizerConfig) -> dict[str, Any]:
    cfg = dataclasses.asdict(model_cfg)
    cfg["encoder"].update(weights_path=f"{RELEASE_DIR}/{LAVIT_EVA_FILE}", weights_format="timm")
    return cfg


def load_exported_tokenizer(export_dir: str | Path) -> DynamicVisualTokenizer:
    """Rebuild a tokenizer from ``tokenizer_config.json`` + ``tokenizer.safetensors`` (strict)."""
    export_dir = Path(export_dir)
    raw = json.loads((export_dir / CONFIG_FILE).read_text())
    cfg = OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(DynamicVisualTokenizerConfig), raw))
    cfg.encoder.weights_path = str(export_dir / cfg.encoder.weights_path)
    tokenizer = DynamicVisualTokenizer(cfg)
    load_strict(tokenizer, load_file(str(export_dir / SAFETENSORS_FILE)), str(export_dir / SAFETENSORS_FILE))
    return tokenizer.eval()


@torch.no_grad()
def validation_pass(module: Any, cfg: Any) -> tuple[dict[str, float], dict[str, Any]]:
    """Eval-mode pass over every validation image -> (metrics, figure material: the first
    ``eval.figure_pool_images`` images in [0, 1] with their keep masks and codes)."""
    datamodule = ImagesDataModule(cfg.data)
    datamodule.setup("validate")
    loader = datamodule.val_dataloader()
    if not loader:
        raise ValueError("export needs validation data: data.val_shards is empty")
    reader = cfg.data.reader
    mean = torch.tensor(reader.mean).view(1, 3, 1, 1)
    std = torch.tensor(reader.std).view(1, 3, 1, 1)
    stats = TokenizerStats(cfg.model.quantizer.codebook_size, cfg.model.encoder.num_patches)
    pool: dict[str, list[Tensor]] = {"images": [], "keep": [], "codes": [], "complexity": []}
    pooled, pool_size = 0, cfg.eval.figure_pool_images
    was_training = module.training
    module.eval()
    from lavit_pl.modules.tokenizer_module import complexity_of

    try:
        for batch in loader:
            images = batch["image"].to(module.device)
            out, keep, cosine = module.evaluate_batch(images)
            complexity = complexity_of(batch, cfg.eval.complexity_field)
            stats.update(keep, out.quantizer.indices, cosine, complexity)
            if pooled < pool_size:
                take = min(pool_size - pooled, images.shape[0])
                pool["images"].append((batch["image"][:take] * std + mean).clamp(0, 1))
                pool["keep"].append(keep[:take].cpu())
                pool["codes"].append(out.quantizer.indices[:take].cpu())
                if complexity is not None:
                    pool["complexity"].append(complexity[:take])
                pooled += take
    finally:
        module.train(was_training)
    material = {k: torch.cat(v) if v else None for k, v in pool.items()}
    material["tokens"], material["all_complexity"] = stats.per_image()
    return stats.compute(), material


def _figure_order(complexity: Optional[Tensor], count: int, available: int) -> list[int]:
    """Indices of ``count`` pool images, round-robin over complexity levels (low to high)."""
    if complexity is None:
        return list(range(min(count, available)))
    levels = sorted({int(c) for c in complexity.tolist()})
    by_level = {lv: (complexity.long() == lv).nonzero().view(-1).tolist() for lv in levels}
    per_level = max(1, count // max(1, len(levels)))
    chosen = [i for lv in levels for i in by_level[lv][:per_level]]
    return chosen[:count]


def write_figures(material: dict[str, Any], cfg: Any, folder: Path) -> list[str]:
    written = []
    n = cfg.model.encoder.num_patches
    tokens, all_complexity = material["tokens"], material["all_complexity"]
    atomic_write_text(folder / "tokens_per_image.csv", token_histogram_csv(tokens, all_complexity, n))
    written.append("tokens_per_image.csv")
    figures = {"tokens_per_image.png": draw_token_histogram(tokens, all_complexity, n, cfg.loss.rho)}
    images, keep, codes = material["images"], material["keep"], material["codes"]
    if images is not None and cfg.eval.figure_images:
        idx = _figure_order(material["complexity"], cfg.eval.figure_images, len(images))
        cx = material["complexity"]
        labels = [(f"c={int(cx[i])} " if cx is not None else "") + f"T={int(keep[i].sum())}/{n}" for i in idx]
        figures["kept_patches.png"] = draw_kept_patches(images[idx], keep[idx], labels)
    if images is not None and cfg.eval.figure_codes and bool(keep.any()):
        figures["code_groups.png"] = draw_code_groups(images, keep, codes, cfg.eval.figure_codes, cfg.eval.patches_per_code)
    for name, image in figures.items():
        path = folder / name
        with_suffix = path.with_name(f".{name}.tmp.png")
        image.save(with_suffix)  # PIL picks the format from the suffix; rename makes it atomic
        with_suffix.replace(path)
        written.append(name)
    return written


def unsharded_copy(module: Any, cfg: Any) -> Any:
    """A plain TokenizerModule on CPU holding ``module.full_state`` (strict load)."""
    from lavit_pl.modules.tokenizer_module import TokenizerModule

    copy = TokenizerModule(cfg)
    copy.tokenizer = DynamicVisualTokenizer(cfg.model)
    load_strict(copy.tokenizer, module.full_state, "the gathered FSDP2 state")
    return copy


def export_tokenizer(module: Any, cfg: Any, run_dir: str | Path) -> dict[str, Any]:
    out = Path(run_dir) / "export"
    step = int(module.global_step)
    if getattr(module, "full_state", None) is not None:
        # FSDP2: the sharded module cannot run on rank 0 alone; evaluate an unsharded copy instead
        module = unsharded_copy(module, cfg)
    state = {k: v.detach().cpu().contiguous() for k, v in module.tokenizer.state_dict().items()}
    for name, sd in release_state_dicts(state).items():
        atomic_torch_save(sd, out / RELEASE_DIR / name)
    atomic_write_bytes(out / SAFETENSORS_FILE, save(state))
    atomic_write_json(out / CONFIG_FILE, exported_config(cfg.model))
    metrics, material = validation_pass(module, cfg) if cfg.eval.full_pass_at_export else ({}, None)
    metrics = {
        **metrics,
        "rho": cfg.loss.rho,
        "keep_ratio_minus_rho": metrics.get("keep_ratio", float("nan")) - cfg.loss.rho,
        "codebook_size": cfg.model.quantizer.codebook_size,
        "tokens_over_10K": metrics.get("tokens", 0.0) / (10 * cfg.model.quantizer.codebook_size),
        "ratio_penalty": "per_image" if cfg.loss.ratio_per_image else "batch_mean",
        "schedule": cfg.schedule.mode,
        "global_step": step,
    }
    metrics = {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in metrics.items()}  # JSON has no NaN
    atomic_write_json(out / "metrics.json", metrics)
    figures = write_figures(material, cfg, out / "figures") if material is not None else []
    return {"export_dir": str(out), "figures": figures, **{k: metrics[k] for k in (
        "keep_ratio", "spearman_complexity_tokens", "codebook_usage", "perplexity", "rec_cosine", "tokens") if k in metrics}}
