"""Read back a stage-0 CLIP export (``lavit_pl/modules/clip_module.py``'s ``export``).

The folder holds ``open_clip_pytorch_model.bin`` (open_clip/OpenAI state-dict layout) and
``open_clip_config.json``: ``{"model_cfg": <TinyClipConfig.to_open_clip()>, "preprocess_cfg":
{"size", "mean", "std", "interpolation", "resize_mode"}}``. The model is rebuilt from
``model_cfg`` with :func:`lavit_pl.models.clip.build_clip` and loaded strictly (``weights_only``);
images are preprocessed as the data readers do (bicubic squash to ``size``, then mean/std), which
is the only preprocessing the export records. Exports written before ``vision_cfg.pool_type``
existed pooled with the class token, its default.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from open_clip.model import CLIP

from lavit_pl.data.image_shards import ShardReaderConfig
from lavit_pl.models.clip import OPEN_CLIP_VOCAB_SIZE, TinyClipConfig, build_clip
from lavit_pl.utils.checkpoint_io import load_strict, read_state_dict

CLIP_WEIGHTS_FILE = "open_clip_pytorch_model.bin"
CLIP_CONFIG_FILE = "open_clip_config.json"
# TinyClipConfig field <- (model_cfg section, key); None: top level
_FIELDS = {
    "embed_dim": (None, "embed_dim"), "image_size": ("vision_cfg", "image_size"),
    "patch_size": ("vision_cfg", "patch_size"), "vision_width": ("vision_cfg", "width"),
    "vision_layers": ("vision_cfg", "layers"), "vision_head_width": ("vision_cfg", "head_width"),
    "text_width": ("text_cfg", "width"), "text_layers": ("text_cfg", "layers"), "text_heads": ("text_cfg", "heads"),
    "context_length": ("text_cfg", "context_length"),
}


class ClipExportError(ValueError):
    """A stage-0 CLIP export whose config cannot be used; the message names the file and key."""


@dataclass
class ClipExport:
    model: CLIP  # frozen, eval mode, on CPU
    config: TinyClipConfig
    preprocess: ShardReaderConfig  # image_size, mean, std of the export's preprocess_cfg
    folder: Path


def export_files(folder: str | Path) -> dict[str, Path]:
    """``{"weights", "config"}`` paths of a CLIP export; FileNotFoundError naming the missing one."""
    folder = Path(folder)
    files = {"config": folder / CLIP_CONFIG_FILE, "weights": folder / CLIP_WEIGHTS_FILE}
    for name, path in files.items():
        if not path.is_file():
            raise FileNotFoundError(f"stage-0 CLIP export: {name} file {path} not found (written by "
                                    f"`python -m lavit_pl fit -c experiments/stage0/clip_<preset>.yaml`)")
    return files


def _get(mapping: Any, key: str, path: Path, where: str, kind: type | tuple[type, ...]) -> Any:
    if not isinstance(mapping, dict) or key not in mapping:
        raise ClipExportError(f"{path}: missing key {where}{key}")
    value = mapping[key]
    if not isinstance(value, kind) or isinstance(value, bool):
        raise ClipExportError(f"{path}: {where}{key} must be {getattr(kind, '__name__', kind)}, got {value!r}")
    return value


def clip_config_from_json(data: Any, path: Path) -> tuple[TinyClipConfig, ShardReaderConfig]:
    """(model config, image preprocessing) of an ``open_clip_config.json`` object read from ``path``."""
    model_cfg = _get(data, "model_cfg", path, "", dict)
    values = {}
    for name, (section, key) in _FIELDS.items():
        parent = model_cfg if section is None else _get(model_cfg, section, path, "model_cfg.", dict)
        values[name] = _get(parent, key, path, "model_cfg." + (f"{section}." if section else ""), int)
    vision = model_cfg["vision_cfg"]
    values["pool_type"] = vision.get("pool_type", "tok")
    vocab = _get(model_cfg["text_cfg"], "vocab_size", path, "model_cfg.text_cfg.", int)
    if vocab != OPEN_CLIP_VOCAB_SIZE:
        raise ClipExportError(f"{path}: model_cfg.text_cfg.vocab_size must be {OPEN_CLIP_VOCAB_SIZE} "
                              f"(open_clip's BPE tokenizer), got {vocab}")
    try:
        config = TinyClipConfig(**values)
    except ValueError as err:
        raise ClipExportError(f"{path}: model_cfg: {err}") from err
    pre = _get(data, "preprocess_cfg", path, "", dict)
    size = _get(pre, "size", path, "preprocess_cfg.", int)
    if size != config.image_size:
        raise ClipExportError(f"{path}: preprocess_cfg.size ({size}) must equal model_cfg.vision_cfg.image_size "
                              f"({config.image_size})")
    for key, expected in (("interpolation", "bicubic"), ("resize_mode", "squash")):
        if pre.get(key, expected) != expected:
            raise ClipExportError(f"{path}: preprocess_cfg.{key} must be {expected!r} (the readers' resize), "
                                  f"got {pre[key]!r}")
    stats = {key: _get(pre, key, path, "preprocess_cfg.", list) for key in ("mean", "std")}
    try:
        reader = ShardReaderConfig(image_size=size, mean=tuple(stats["mean"]), std=tuple(stats["std"]))
    except (TypeError, ValueError) as err:
        raise ClipExportError(f"{path}: preprocess_cfg.mean/std: {err}") from err
    return config, reader


def load_clip_export(folder: str | Path) -> ClipExport:
    """Rebuild and strictly load the exported CLIP (frozen, eval mode, CPU)."""
    files = export_files(folder)
    try:
        data = json.loads(files["config"].read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise ClipExportError(f"{files['config']}: not valid JSON: {err}") from err
    config, reader = clip_config_from_json(data, files["config"])
    model = build_clip(config)
    load_strict(model, read_state_dict(files["weights"]), str(files["weights"]))
    model.requires_grad_(False)
    return ClipExport(model.eval(), config, reader, Path(folder))
