"""The stage-2 export folder (docs/stage2_export.md): write it, and load it back for evaluation.

Layout (the evaluation-folder format ``lavit-pl-eval`` v1 of docs/eval_model_folder.md, plus the
release's names)::

    lavit_eval.json                 manifest, written last (its presence marks a complete folder)
    language_model/                 HF LLaMA folder with the extended vocabulary (V = V_text + 2 + K)
                                    and the text tokenizer files
    language_model/visual_weight.bin   merger copy (release keys ``causal_encoder.*``) + ``vit_proj.*``
    visual_tokenizer/               the frozen stage-1 files: tokenizer_encoder.bin,
                                    tokenizer_decoder.bin and the encoder weights file

``load_stage2_export(path) -> (UnifiedLM, tokenizer, encode_images)``; ``encode_images(images)``
takes a list of PIL images / paths (or a preprocessed (B, 3, H, W) tensor) and returns a list of
B (T_b, D) tensors: encoder -> selector (eval, argmax) -> the stage-2 merger copy. The LM applies
vit_proj. For Table 7a's quantized input the folder holds no merger: ``encode_images`` returns the
LLM's own embedding rows of the codes (T_b, W) and ``vit_proj`` is the identity (D = W), so the
same LM call feeds exactly those rows.
"""
from __future__ import annotations

import json
import shutil
from dataclasses import asdict
from pathlib import Path
from typing import Any, Mapping, Sequence

import torch
from omegaconf import OmegaConf
from PIL import Image
from torch import Tensor

from lavit_pl.data.image_shards import ShardReaderConfig, image_transform
from lavit_pl.models.convert import LAVIT_TOKENIZER_ENCODER_KEY_MAP, invert, rename_keys
from lavit_pl.models.llm import DTYPES, UnifiedLM, UnifiedVocab, load_llama, load_text_tokenizer
from lavit_pl.models.stage2_visual import frozen_visual_targets, merge_kept
from lavit_pl.models.tokenizer.merger import TokenMerger
from lavit_pl.models.tokenizer.tokenizer import DynamicVisualTokenizerConfig
from lavit_pl.utils.atomic import atomic_torch_save, atomic_write_json
from lavit_pl.utils.stage1_io import load_stage1_tokenizer, stage1_files

MANIFEST, FORMAT, FORMAT_VERSION = "lavit_eval.json", "lavit-pl-eval", 1
LANGUAGE_MODEL_DIR, VISUAL_TOKENIZER_DIR = "language_model", "visual_tokenizer"
VISUAL_WEIGHT = f"{LANGUAGE_MODEL_DIR}/visual_weight.bin"
FACTORY = "lavit_pl.generation.stage2_export:build_stage2_image_encoder"
MERGER_PREFIX = "token_merger."


def visual_weight_state(merger: Mapping[str, Tensor] | None, vit_proj: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """The release's ``visual_weight.bin`` from state dicts: merger (our keys) as ``causal_encoder.*``
    + ``vit_proj.weight/bias``."""
    state = {f"vit_proj.{k}": v.detach().cpu().float().contiguous() for k, v in vit_proj.items()}
    if merger is not None:
        ours = {MERGER_PREFIX + k: v.detach().cpu().float().contiguous() for k, v in merger.items()}
        state |= rename_keys(ours, invert(LAVIT_TOKENIZER_ENCODER_KEY_MAP), "token_merger")
    return state


def _sub(state: Mapping[str, Tensor], prefix: str) -> dict[str, Tensor]:
    return {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}


def merger_state_from_visual_weight(state: Mapping[str, Tensor], source: str) -> dict[str, Tensor]:
    """``causal_encoder.*`` of a visual_weight.bin -> :class:`TokenMerger` keys."""
    merger = {k: v for k, v in state.items() if k.startswith("causal_encoder.")}
    if not merger:
        raise ValueError(f"{source}: no causal_encoder.* keys (a continuous-input export holds the merger copy)")
    return {k[len(MERGER_PREFIX):]: v for k, v in rename_keys(merger, LAVIT_TOKENIZER_ENCODER_KEY_MAP, source).items()}


def write_stage2_export(folder: str | Path, lm: UnifiedLM, text_tokenizer: Any, state: Mapping[str, Tensor],
                        tokenizer_cfg: DynamicVisualTokenizerConfig, tokenizer_dir: str | Path,
                        extra: Mapping[str, Any] | None = None) -> Path:
    """Write the folder (layout above) next to ``folder`` and swap it in.

    ``state``: the full state dict of :class:`UnifiedStage2Model` (``lm.llm.*``, ``lm.vit_proj.*``,
    ``token_merger.*`` (absent = quantized input)), gathered on this rank when training was sharded;
    ``lm`` provides the LLaMA config and ``save_pretrained``.
    """
    folder = Path(folder)
    partial = folder.with_name(folder.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    lm_dir = partial / LANGUAGE_MODEL_DIR
    lm.llm.save_pretrained(lm_dir, state_dict={k: v.detach().cpu().contiguous() for k, v in _sub(state, "lm.llm.").items()})
    text_tokenizer.save_pretrained(lm_dir)
    merger = _sub(state, "token_merger.") or None
    if merger is None:  # quantized input: features are embedding rows already; vit_proj = identity
        vit_proj = {"weight": torch.eye(lm.width), "bias": torch.zeros(lm.width)}
    else:
        vit_proj = _sub(state, "lm.vit_proj.")
    atomic_torch_save(visual_weight_state(merger, vit_proj), partial / VISUAL_WEIGHT)
    files = stage1_files(tokenizer_cfg, tokenizer_dir)
    (partial / VISUAL_TOKENIZER_DIR).mkdir(parents=True)
    for path in files.values():
        shutil.copy2(path, partial / VISUAL_TOKENIZER_DIR / path.name)
    cfg = asdict(tokenizer_cfg)
    if tokenizer_cfg.encoder.weights_path:
        cfg["encoder"]["weights_path"] = f"{VISUAL_TOKENIZER_DIR}/{files['encoder'].name}"
    args = {"tokenizer": cfg, "tokenizer_dir": VISUAL_TOKENIZER_DIR, "visual_weights": VISUAL_WEIGHT,
            "input": "continuous" if merger is not None else "quantized"}
    atomic_write_json(partial / MANIFEST, {
        "format": FORMAT, "version": FORMAT_VERSION, "language_model": LANGUAGE_MODEL_DIR,
        "codebook_size": lm.vocab.codebook_size, "visual_dim": vit_proj["weight"].shape[1], "visual_weights": VISUAL_WEIGHT,
        "visual_encoder": {"factory": FACTORY, "args": args}, **dict(extra or {}),
    })
    shutil.rmtree(folder, ignore_errors=True)
    partial.rename(folder)
    return folder


def _tokenizer_config(raw: Mapping[str, Any]) -> DynamicVisualTokenizerConfig:
    return OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(DynamicVisualTokenizerConfig), dict(raw)))


def _embedding_rows(lm_dir: Path, first: int, count: int) -> Tensor:
    """Rows ``first..first+count`` of the saved ``model.embed_tokens.weight`` (safetensors, read lazily)."""
    from safetensors import safe_open

    key = "model.embed_tokens.weight"
    index = lm_dir / "model.safetensors.index.json"
    name = json.loads(index.read_text())["weight_map"][key] if index.is_file() else "model.safetensors"
    with safe_open(str(lm_dir / name), framework="pt") as handle:
        return handle.get_slice(key)[first:first + count].float()  # (K, W)


class Stage2ImageEncoder:
    """``encode(images) -> list of (T_b, D)``: frozen encoder -> selector -> merger copy (or code rows)."""

    def __init__(self, tokenizer: Any, merger: TokenMerger | None, code_rows: Tensor | None, device: str | torch.device):
        self.device = torch.device(device)
        self.tokenizer = tokenizer.to(self.device).eval()
        self.merger = merger.to(self.device).eval() if merger is not None else None
        self.code_rows = code_rows.to(self.device) if code_rows is not None else None
        enc = tokenizer.cfg.encoder
        self.transform = image_transform(ShardReaderConfig(image_size=enc.image_size, mean=tuple(enc.mean), std=tuple(enc.std)))

    def pixels(self, images: Sequence[Any] | Tensor) -> Tensor:
        """PIL images / paths -> (B, 3, S, S) exactly as the training reader makes them; tensors pass."""
        if isinstance(images, Tensor):
            return images.to(self.device)
        out = []
        for image in images:
            if isinstance(image, (str, Path)):
                with Image.open(image) as opened:
                    image = opened.convert("RGB")
            elif not isinstance(image, Image.Image):
                raise TypeError(f"encode_images: expected PIL images or paths, got {type(image).__name__}")
            out.append(self.transform(image.convert("RGB")))
        return torch.stack(out).to(self.device)

    @torch.no_grad()
    def __call__(self, images: Sequence[Any] | Tensor) -> list[Tensor]:
        targets = frozen_visual_targets(self.tokenizer, pixels=self.pixels(images))
        if self.merger is None:
            return [self.code_rows[c] for c in targets.codes]
        return merge_kept(self.merger, targets.patch_features, targets.keep_mask, self.tokenizer.cfg.inference_path)


def build_stage2_image_encoder(model_dir: Path, args: Mapping[str, Any], device: str | torch.device) -> Stage2ImageEncoder:
    """The factory named in ``lavit_eval.json`` (``visual_encoder.factory``)."""
    model_dir = Path(model_dir)
    cfg = _tokenizer_config(args["tokenizer"])
    if cfg.encoder.weights_path:
        cfg.encoder.weights_path = str(model_dir / cfg.encoder.weights_path)
    tokenizer = load_stage1_tokenizer(cfg, model_dir / args["tokenizer_dir"])
    if args.get("input", "continuous") == "quantized":
        manifest = json.loads((model_dir / MANIFEST).read_text())
        lm_dir = model_dir / manifest["language_model"]
        text_size = int(json.loads((lm_dir / "config.json").read_text())["vocab_size"]) - 2 - cfg.quantizer.codebook_size
        rows = _embedding_rows(lm_dir, UnifiedVocab(text_size, cfg.quantizer.codebook_size).visual_offset,
                               cfg.quantizer.codebook_size)
        return Stage2ImageEncoder(tokenizer, None, rows, device)
    source = model_dir / args["visual_weights"]
    state = torch.load(source, map_location="cpu", weights_only=True)
    merger = TokenMerger(cfg.merger)
    merger.load_state_dict(merger_state_from_visual_weight(state, str(source)), strict=True)
    return Stage2ImageEncoder(tokenizer, merger, None, device)


def load_stage2_export(path: str | Path, device: str = "cpu", dtype: str = "float32") -> tuple[UnifiedLM, Any, Stage2ImageEncoder]:
    """A stage-2 export folder -> (UnifiedLM with vit_proj, text tokenizer, encode_images)."""
    model_dir = Path(path)
    manifest_path = model_dir / MANIFEST
    if not manifest_path.is_file():
        raise FileNotFoundError(f"{model_dir}: no {MANIFEST}; not a complete stage-2 export")
    manifest = json.loads(manifest_path.read_text())
    if manifest.get("format") != FORMAT or manifest.get("version") != FORMAT_VERSION:
        raise ValueError(f"{manifest_path}: expected format {FORMAT!r} v{FORMAT_VERSION}")
    lm_dir = model_dir / manifest["language_model"]
    tokenizer = load_text_tokenizer(lm_dir)
    vocab = UnifiedVocab(len(tokenizer), int(manifest["codebook_size"]), tokenizer.bos_token_id, tokenizer.eos_token_id)
    lm = UnifiedLM(load_llama(lm_dir, dtype), vocab, int(manifest["visual_dim"]))
    weights = torch.load(model_dir / manifest["visual_weights"], map_location="cpu", weights_only=True)
    lm.vit_proj.load_state_dict({"weight": weights["vit_proj.weight"], "bias": weights["vit_proj.bias"]}, strict=True)
    lm = lm.to(device=device, dtype=DTYPES[dtype]).eval()
    visual = manifest["visual_encoder"]
    return lm, tokenizer, build_stage2_image_encoder(model_dir, visual["args"], device)
