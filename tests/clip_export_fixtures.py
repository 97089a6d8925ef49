"""A seeded tiny CLIP written in the stage-0 export layout (``clip_module.export``'s two files), and
open_clip's own loader for the same files (the reference the retrieval tests compare with)."""
from __future__ import annotations

import json
from pathlib import Path

import open_clip
import torch

from lavit_pl.data.image_shards import CLIP_MEAN, CLIP_STD
from lavit_pl.models.clip import TinyClipConfig, build_clip

SMALL_CLIP = TinyClipConfig(image_size=16, patch_size=8, vision_width=32, vision_layers=1, vision_head_width=16,
                            text_width=32, text_layers=1, text_heads=2, context_length=24, embed_dim=16)


def write_clip_export(folder: Path, cfg: TinyClipConfig = SMALL_CLIP, seed: int = 0) -> Path:
    """``open_clip_pytorch_model.bin`` (seeded random weights) + ``open_clip_config.json``."""
    folder.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    model = build_clip(cfg)
    torch.save({k: v.contiguous() for k, v in model.state_dict().items()}, folder / "open_clip_pytorch_model.bin")
    config = {"model_cfg": cfg.to_open_clip(), "preprocess_cfg": {
        "size": cfg.image_size, "mean": list(CLIP_MEAN), "std": list(CLIP_STD), "interpolation": "bicubic",
        "resize_mode": "squash"}}
    (folder / "open_clip_config.json").write_text(json.dumps(config))
    return folder


def open_clip_reference(folder: Path, name: str):
    """(model, image transform, tokenizer) built by open_clip itself from the export's files:
    ``model_cfg`` registered under ``name``, the weights as its ``pretrained`` checkpoint."""
    config = json.loads((folder / "open_clip_config.json").read_text())
    cfg_file = folder.parent / f"{name}.json"
    cfg_file.write_text(json.dumps(config["model_cfg"]))
    open_clip.add_model_config(cfg_file)
    pre = config["preprocess_cfg"]
    model, _, transform = open_clip.create_model_and_transforms(
        name, pretrained=str(folder / "open_clip_pytorch_model.bin"), image_mean=pre["mean"], image_std=pre["std"],
        image_resize_mode=pre["resize_mode"], image_interpolation=pre["interpolation"])
    return model.eval(), transform, open_clip.get_tokenizer(name)
