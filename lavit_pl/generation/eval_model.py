"""The model side of evaluation: ``load_lavit_for_eval(path) -> EvalModel`` and its folder layout.

An evaluation folder (``docs/eval_model_folder.md``) holds::

    lavit_eval.json          manifest (written last: its presence marks a complete folder)
    language_model/          HF LLaMA folder, vocabulary already extended to V = V_text + 2 + K
                             (config.json, safetensors or .bin shards, tokenizer files)
    visual.safetensors       vit_proj.weight (W, D), vit_proj.bias (W,) and whatever the visual
                             factory reads (e.g. token_merger.*); a pickled visual.pt also loads
                             (torch.load weights_only=True)

The manifest names the visual side as a factory, ``"module:function"`` inside ``lavit_pl``,
called as ``factory(model_dir, args, device) -> encode_images``. The stage-2 export names its own
(frozen encoder -> selector -> merger copy); :mod:`lavit_pl.generation.pixel_encoder` is the
parameter-free one used for wiring checks. Another model family plugs in as another loader with
the same signature (``eval`` config key ``model.loader``).
"""
from __future__ import annotations

import importlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping

import torch
from safetensors.torch import load_file, save_file
from transformers import PreTrainedTokenizerBase

from lavit_pl.generation.lavit_generator import EncodeImages
from lavit_pl.models.llm import DTYPES, UnifiedLM, UnifiedVocab, load_llama, load_text_tokenizer
from lavit_pl.utils.atomic import atomic_write_json

MANIFEST = "lavit_eval.json"
FORMAT = "lavit-pl-eval"
FORMAT_VERSION = 1
FACTORY_PACKAGE = "lavit_pl."  # factories named by a folder may only come from this package
VIT_PROJ_KEYS = ("vit_proj.weight", "vit_proj.bias")


@dataclass
class EvalModel:
    """What the evaluation harness needs: the LM with vit_proj, its tokenizer and the visual side."""

    lm: UnifiedLM
    tokenizer: PreTrainedTokenizerBase
    encode_images: EncodeImages  # list of B images (PIL or paths) -> list of B tensors (T_b, D)
    manifest: dict[str, Any] = field(default_factory=dict)


EvalModelLoader = Callable[..., EvalModel]  # (path, device="cpu", dtype="float32") -> EvalModel


def _need(manifest: Mapping, key: str, kind: type, path: Path) -> Any:
    if key not in manifest:
        raise ValueError(f"{path}: missing key '{key}'")
    value = manifest[key]
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise ValueError(f"{path}: key '{key}' must be a {kind.__name__}, got {value!r}")
    return value


def resolve_factory(name: str, where: str) -> Callable:
    """``"lavit_pl.x.y:function"`` -> the function; anything outside ``lavit_pl`` is refused."""
    module_name, sep, attr = name.partition(":")
    if not sep or not module_name.startswith(FACTORY_PACKAGE) or not attr.isidentifier():
        raise ValueError(f"{where}: expected 'lavit_pl.<module>:<function>', got {name!r}")
    try:
        return getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as err:
        raise ValueError(f"{where}: cannot import {name!r}: {err}") from err


def load_visual_weights(path: Path) -> dict[str, torch.Tensor]:
    if not path.is_file():
        raise FileNotFoundError(f"{path}: visual weights not found")
    if path.suffix == ".safetensors":
        return load_file(path)
    state = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ValueError(f"{path}: expected a flat state dict of tensors")
    return state


def read_manifest(model_dir: str | Path) -> dict[str, Any]:
    model_dir = Path(model_dir)
    path = model_dir / MANIFEST
    if not path.is_file():
        raise FileNotFoundError(f"{model_dir}: no {MANIFEST}; not a complete evaluation folder "
                                f"(see docs/eval_model_folder.md)")
    try:
        manifest = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise ValueError(f"{path}: not valid JSON: {err}") from err
    if not isinstance(manifest, dict):
        raise ValueError(f"{path}: top level must be an object")
    if manifest.get("format") != FORMAT or manifest.get("version") != FORMAT_VERSION:
        raise ValueError(f"{path}: expected format {FORMAT!r} version {FORMAT_VERSION}, got "
                         f"{manifest.get('format')!r} version {manifest.get('version')!r}")
    return manifest


def load_lavit_for_eval(path: str | Path, device: str = "cpu", dtype: str = "float32") -> EvalModel:
    """Load an evaluation folder (layout in the module docstring) onto ``device`` in ``dtype``."""
    model_dir = Path(path)
    manifest = read_manifest(model_dir)
    where = model_dir / MANIFEST
    if dtype not in DTYPES:
        raise ValueError(f"dtype must be one of {sorted(DTYPES)}, got {dtype!r}")
    lm_dir = model_dir / _need(manifest, "language_model", str, where)
    codebook_size = _need(manifest, "codebook_size", int, where)
    visual_dim = _need(manifest, "visual_dim", int, where)
    tokenizer = load_text_tokenizer(lm_dir)
    vocab = UnifiedVocab(text_size=len(tokenizer), codebook_size=codebook_size,
                         bos_id=tokenizer.bos_token_id, eos_id=tokenizer.eos_token_id)
    llm = load_llama(lm_dir, dtype)
    rows = llm.get_input_embeddings().weight.shape[0]
    if rows != vocab.size:
        raise ValueError(f"{lm_dir}: the LLM has {rows} embedding rows; an evaluation folder holds the extended "
                         f"LLM with V = {vocab.text_size} text + 2 + {codebook_size} codes = {vocab.size}")
    lm = UnifiedLM(llm, vocab, visual_dim)
    weights_path = model_dir / _need(manifest, "visual_weights", str, where)
    weights = load_visual_weights(weights_path)
    missing = [k for k in VIT_PROJ_KEYS if k not in weights]
    if missing:
        raise ValueError(f"{weights_path}: missing {missing}")
    lm.vit_proj.load_state_dict({k.split(".", 1)[1]: weights[k] for k in VIT_PROJ_KEYS}, strict=True)
    lm = lm.to(device=device, dtype=DTYPES[dtype]).eval()
    visual = _need(manifest, "visual_encoder", dict, where)
    factory = resolve_factory(_need(visual, "factory", str, where), f"{where}: visual_encoder.factory")
    encode_images = factory(model_dir, dict(visual.get("args", {})), device)
    return EvalModel(lm, tokenizer, encode_images, manifest)


def save_lavit_for_eval(folder: str | Path, lm: UnifiedLM, tokenizer: PreTrainedTokenizerBase, factory: str,
                        factory_args: Mapping[str, Any] | None = None,
                        visual_state: Mapping[str, torch.Tensor] | None = None) -> Path:
    """Write an evaluation folder; ``visual_state`` holds the factory's own tensors (prefixed keys).

    The manifest is written last and atomically, so a folder without it is known to be partial.
    """
    folder = Path(folder)
    resolve_factory(factory, "save_lavit_for_eval: factory")
    extra = dict(visual_state or {})
    clash = [k for k in extra if k in VIT_PROJ_KEYS]
    if clash:
        raise ValueError(f"save_lavit_for_eval: visual_state must not hold {clash} (taken from lm.vit_proj)")
    (folder / MANIFEST).unlink(missing_ok=True)
    lm.llm.save_pretrained(folder / "language_model")
    tokenizer.save_pretrained(folder / "language_model")
    tensors = {**{k: v.detach().cpu().contiguous() for k, v in extra.items()},
               "vit_proj.weight": lm.vit_proj.weight.detach().cpu().contiguous(),
               "vit_proj.bias": lm.vit_proj.bias.detach().cpu().contiguous()}
    save_file(tensors, str(folder / "visual.safetensors"))
    atomic_write_json(folder / MANIFEST, {
        "format": FORMAT, "version": FORMAT_VERSION, "language_model": "language_model",
        "codebook_size": lm.vocab.codebook_size, "visual_dim": lm.vit_proj.in_features,
        "visual_weights": "visual.safetensors",
        "visual_encoder": {"factory": factory, "args": dict(factory_args or {})},
    })
    return folder
