"""Read checkpoint files and load them into models through the pure converters of
``lavit_pl.models.convert``. Pickled files load with ``weights_only=True``; ``.safetensors`` too."""
from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from lavit_pl.models.convert import (
    StateDict,
    lavit_tokenizer_decoder_to_ours,
    lavit_tokenizer_encoder_to_ours,
    unwrap_state_dict,
    vision_encoder_state_dict,
)

# The LaVIT release's visual_tokenizer/ folder.
LAVIT_EVA_FILE = "eva_vitg_psz14.bin"
LAVIT_TOKENIZER_ENCODER_FILE = "tokenizer_encoder.bin"
LAVIT_TOKENIZER_DECODER_FILE = "tokenizer_decoder.bin"


def read_state_dict(path: str | Path) -> StateDict:
    """A state dict from a pickled (``torch.save``) or safetensors file, unwrapped from common
    containers ('state_dict', 'model', 'module.' prefixes)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: checkpoint file not found")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        obj = load_file(str(path), device="cpu")
    else:
        try:
            obj = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as err:  # unpickling errors come in many types
            raise ValueError(f"{path}: cannot be read as a weights-only torch checkpoint: {err}") from err
    return unwrap_state_dict(obj, str(path))


def load_strict(model: nn.Module, sd: StateDict, source: str) -> None:
    """``load_state_dict(strict=True)`` whose error names ``source`` and the missing/unexpected keys."""
    try:
        model.load_state_dict(sd, strict=True)
    except RuntimeError as err:
        raise ValueError(f"{source}: does not match {type(model).__name__}: {err}") from err


def load_vision_encoder_weights(encoder: nn.Module, path: str | Path | None = None) -> list[str]:
    """Load ``encoder.cfg.weights_path`` (or ``path``) in ``encoder.cfg.weights_format`` into a
    :class:`VisionEncoder`; returns the checkpoint keys deliberately dropped (e.g. the CLIP head)."""
    path = path if path is not None else encoder.cfg.weights_path
    if path is None:
        raise ValueError("VisionEncoderConfig.weights_path is not set: nothing to load")
    sd, dropped = vision_encoder_state_dict(read_state_dict(path), encoder.cfg.weights_format, encoder.vit)
    load_strict(encoder.vit, sd, str(path))
    return dropped


def load_lavit_tokenizer(tokenizer: nn.Module, visual_tokenizer_dir: str | Path) -> list[str]:
    """Load the LaVIT release's ``visual_tokenizer/`` folder (EVA encoder, tokenizer encoder and
    decoder files) into a :class:`DynamicVisualTokenizer`; returns the dropped keys."""
    folder = Path(visual_tokenizer_dir)
    eva, dropped_eva = vision_encoder_state_dict(read_state_dict(folder / LAVIT_EVA_FILE), "lavit_eva", tokenizer.encoder.vit)
    enc, dropped_enc = lavit_tokenizer_encoder_to_ours(read_state_dict(folder / LAVIT_TOKENIZER_ENCODER_FILE))
    dec, dropped_dec = lavit_tokenizer_decoder_to_ours(read_state_dict(folder / LAVIT_TOKENIZER_DECODER_FILE))
    sd = {f"encoder.vit.{k}": v for k, v in eva.items()} | enc | dec
    load_strict(tokenizer, sd, str(folder))
    return dropped_eva + dropped_enc + dropped_dec
