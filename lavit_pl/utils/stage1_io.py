"""Load a trained stage-1 tokenizer (frozen) from its exported files.

A stage-1 export (and the LaVIT release) has a ``visual_tokenizer/`` folder with
``tokenizer_encoder.bin`` (selector, merger, quantizer) and ``tokenizer_decoder.bin``. The encoder
weights are either the release's ``visual_tokenizer/eva_vitg_psz14.bin`` or a file named by
``encoder.weights_path`` in the tokenizer config (e.g. the stage-0 CLIP's
``open_clip_pytorch_model.bin``, format ``encoder.weights_format``). Everything loads strictly,
with ``weights_only=True``.
"""
from __future__ import annotations

import hashlib
from pathlib import Path

from lavit_pl.models.convert import lavit_tokenizer_decoder_to_ours, lavit_tokenizer_encoder_to_ours
from lavit_pl.models.tokenizer.tokenizer import DynamicVisualTokenizer, DynamicVisualTokenizerConfig
from lavit_pl.utils.checkpoint_io import (
    LAVIT_EVA_FILE,
    LAVIT_TOKENIZER_DECODER_FILE,
    LAVIT_TOKENIZER_ENCODER_FILE,
    load_lavit_tokenizer,
    load_strict,
    load_vision_encoder_weights,
    read_state_dict,
)


def stage1_files(cfg: DynamicVisualTokenizerConfig, tokenizer_dir: str | Path) -> dict[str, Path]:
    """The files a frozen stage-1 tokenizer is read from: ``encoder``, ``tokenizer_encoder``, ``tokenizer_decoder``."""
    folder = Path(tokenizer_dir)
    encoder = Path(cfg.encoder.weights_path) if cfg.encoder.weights_path else folder / LAVIT_EVA_FILE
    files = {"encoder": encoder, "tokenizer_encoder": folder / LAVIT_TOKENIZER_ENCODER_FILE,
             "tokenizer_decoder": folder / LAVIT_TOKENIZER_DECODER_FILE}
    for name, path in files.items():
        if not path.is_file():
            hint = " (set visual.tokenizer.encoder.weights_path)" if name == "encoder" else ""
            raise FileNotFoundError(f"stage-1 tokenizer: {name} file {path} not found{hint}")
    return files


def load_stage1_tokenizer(cfg: DynamicVisualTokenizerConfig, tokenizer_dir: str | Path) -> DynamicVisualTokenizer:
    """Build ``cfg``'s tokenizer and load the stage-1 files strictly; returned frozen, in eval mode."""
    files = stage1_files(cfg, tokenizer_dir)
    tokenizer = DynamicVisualTokenizer(cfg)
    if cfg.encoder.weights_path:
        load_vision_encoder_weights(tokenizer.encoder, files["encoder"])
        encoder_sd = {f"encoder.vit.{k}": v for k, v in tokenizer.encoder.vit.state_dict().items()}
        enc, _ = lavit_tokenizer_encoder_to_ours(read_state_dict(files["tokenizer_encoder"]))
        dec, _ = lavit_tokenizer_decoder_to_ours(read_state_dict(files["tokenizer_decoder"]))
        load_strict(tokenizer, encoder_sd | enc | dec, str(tokenizer_dir))
    else:  # the release layout: the EVA file sits beside the tokenizer files
        load_lavit_tokenizer(tokenizer, tokenizer_dir)
    tokenizer.requires_grad_(False)
    return tokenizer.eval()


def file_digest(path: str | Path, chunk: int = 1 << 22) -> str:
    """sha256 of a file's bytes (cache fingerprints, export provenance)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(chunk), b""):
            digest.update(block)
    return digest.hexdigest()
