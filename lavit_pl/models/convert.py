"""Checkpoint converters: pure ``state_dict -> state_dict`` functions (no I/O; see
``lavit_pl.utils.checkpoint_io`` for reading files).

Vision encoders are converted to the timm layout that :class:`VisionEncoder` wraps (its ``vit``):
- ``lavit_eva``: the LaVIT release's ``visual_tokenizer/eva_vitg_psz14.bin``. Its 528 keys equal
  timm's ``eva_giant_patch14_clip_224(num_classes=1024)`` state dict; the CLIP head is dropped.
- ``eva_clip``: the EVA-CLIP release (``visual.*`` = timm Eva keys; text tower ignored).
- ``open_clip``: open_clip models with a timm tower (``visual.trunk.*``).
  These three go through timm's own ``eva.checkpoint_filter_fn`` (prefixes, pos-embed resampling).
- ``openai_clip``: OpenAI CLIP / open_clip OpenAI-architecture towers (``visual.conv1.weight``,
  ``visual.transformer.resblocks.i.attn.in_proj_weight`` ...) -> timm ``VisionTransformer``; our own
  key map below, with an inverse for saving tiny models in that format.
- ``timm``: already in our layout.

The LaVIT release's tokenizer files (``tokenizer_encoder.bin``, ``tokenizer_decoder.bin``) map onto
:class:`DynamicVisualTokenizer` with the template key maps below (``{i}`` block index,
``{p}`` weight or bias). Keys we deliberately drop are listed by name in ``*_DROPPED``.
"""
from __future__ import annotations

import re
from typing import Callable, Mapping

import torch
from torch import Tensor, nn

StateDict = dict[str, Tensor]

# --- vision encoders --------------------------------------------------------------------------------
OPENAI_CLIP_KEY_MAP = {  # theirs -> timm VisionTransformer
    "visual.conv1.weight": "patch_embed.proj.weight",
    "visual.class_embedding": "cls_token",
    "visual.positional_embedding": "pos_embed",
    "visual.ln_pre.{p}": "norm_pre.{p}",
    "visual.ln_post.{p}": "norm.{p}",
    "visual.transformer.resblocks.{i}.ln_1.{p}": "blocks.{i}.norm1.{p}",
    "visual.transformer.resblocks.{i}.attn.in_proj_weight": "blocks.{i}.attn.qkv.weight",
    "visual.transformer.resblocks.{i}.attn.in_proj_bias": "blocks.{i}.attn.qkv.bias",
    "visual.transformer.resblocks.{i}.attn.out_proj.{p}": "blocks.{i}.attn.proj.{p}",
    "visual.transformer.resblocks.{i}.ln_2.{p}": "blocks.{i}.norm2.{p}",
    "visual.transformer.resblocks.{i}.mlp.c_fc.{p}": "blocks.{i}.mlp.fc1.{p}",
    "visual.transformer.resblocks.{i}.mlp.c_proj.{p}": "blocks.{i}.mlp.fc2.{p}",
}
OPENAI_CLIP_DROPPED = ("visual.proj",)  # image -> joint embedding projection; patch features precede it
EVA_HEAD_DROPPED = ("head.weight", "head.bias")  # the EVA-CLIP projection head, likewise unused
EVA_FORMAT_PREFIXES = {"lavit_eva": "", "eva_clip": "visual.", "open_clip": "visual.trunk."}

# --- LaVIT release tokenizer -------------------------------------------------------------------------
LAVIT_TOKENIZER_ENCODER_KEY_MAP = {  # tokenizer_encoder.bin -> DynamicVisualTokenizer
    "token_predictor.in_conv.0.{p}": "token_selector.in_mlp.0.{p}",
    "token_predictor.in_conv.1.{p}": "token_selector.in_mlp.1.{p}",
    "token_predictor.out_conv.0.{p}": "token_selector.out_mlp.0.{p}",
    "token_predictor.out_conv.2.{p}": "token_selector.out_mlp.2.{p}",
    "token_predictor.out_conv.4.{p}": "token_selector.out_mlp.4.{p}",
    "causal_encoder.ln_vision.{p}": "token_merger.norm_memory.{p}",
    "causal_encoder.norm.{p}": "token_merger.norm_out.{p}",
    "causal_encoder.blocks.{i}.norm0.{p}": "token_merger.blocks.{i}.norm_self.{p}",
    "causal_encoder.blocks.{i}.token_causal_attn.qkv.{p}": "token_merger.blocks.{i}.self_attn.qkv.{p}",
    "causal_encoder.blocks.{i}.token_causal_attn.proj.{p}": "token_merger.blocks.{i}.self_attn.proj.{p}",
    "causal_encoder.blocks.{i}.norm1.{p}": "token_merger.blocks.{i}.norm_cross.{p}",
    "causal_encoder.blocks.{i}.token_cross_attn.query.{p}": "token_merger.blocks.{i}.cross_attn.q.{p}",
    "causal_encoder.blocks.{i}.token_cross_attn.key.{p}": "token_merger.blocks.{i}.cross_attn.k.{p}",
    "causal_encoder.blocks.{i}.token_cross_attn.value.{p}": "token_merger.blocks.{i}.cross_attn.v.{p}",
    "causal_encoder.blocks.{i}.token_cross_attn.proj.{p}": "token_merger.blocks.{i}.cross_attn.proj.{p}",
    "causal_encoder.blocks.{i}.norm2.{p}": "token_merger.blocks.{i}.norm_mlp.{p}",
    "causal_encoder.blocks.{i}.mlp.fc1.{p}": "token_merger.blocks.{i}.mlp.fc1.{p}",
    "causal_encoder.blocks.{i}.mlp.fc2.{p}": "token_merger.blocks.{i}.mlp.fc2.{p}",
    "encode_task_layer.0.{p}": "quantizer.encode_task_layer.0.{p}",
    "encode_task_layer.2.{p}": "quantizer.encode_task_layer.2.{p}",
    "quantize.embedding.weight": "quantizer.codebook",
}
LAVIT_TOKENIZER_ENCODER_DROPPED = ("vit_proj.weight", "vit_proj.bias")  # stage 2's projection to the LLM
LAVIT_TOKENIZER_DECODER_KEY_MAP = {  # tokenizer_decoder.bin -> DynamicVisualTokenizer
    "in_proj.{p}": "decoder.in_proj.{p}",
    "pos_embed": "decoder.code_pos_embed",
    "query_embed": "decoder.query_embed",
    "blocks.{i}.norm0.{p}": "decoder.blocks.{i}.norm_self.{p}",
    "blocks.{i}.self_attn.qkv.{p}": "decoder.blocks.{i}.self_qkv.{p}",
    "blocks.{i}.self_attn.proj.{p}": "decoder.blocks.{i}.self_proj.{p}",
    "blocks.{i}.norm1.{p}": "decoder.blocks.{i}.norm_cross.{p}",
    "blocks.{i}.cross_attn.query.{p}": "decoder.blocks.{i}.cross_q.{p}",
    "blocks.{i}.cross_attn.key.{p}": "decoder.blocks.{i}.cross_k.{p}",
    "blocks.{i}.cross_attn.value.{p}": "decoder.blocks.{i}.cross_v.{p}",
    "blocks.{i}.cross_attn.proj.{p}": "decoder.blocks.{i}.cross_proj.{p}",
    "blocks.{i}.norm2.{p}": "decoder.blocks.{i}.norm_mlp.{p}",
    "blocks.{i}.mlp.fc1.{p}": "decoder.blocks.{i}.mlp.fc1.{p}",
    "blocks.{i}.mlp.fc2.{p}": "decoder.blocks.{i}.mlp.fc2.{p}",
    "norm.{p}": "decoder.norm_out.{p}",
    "decode_task_layer.0.{p}": "decoder.out_head.0.{p}",
    "decode_task_layer.2.{p}": "decoder.out_head.2.{p}",
}
LAVIT_TOKENIZER_DECODER_DROPPED = ("unet_proj.weight", "unet_proj.bias")  # stage 1b's projection to the UNet
# Our quantizer's EMA state has no release counterpart; it is synthesised from the codebook.
QUANTIZER_EMA_KEYS = ("quantizer.ema_count", "quantizer.ema_sum", "quantizer.initialized")


class ConversionError(ValueError):
    """A state dict that does not fit the expected layout; the message names the key."""


# --- named tensor helpers ----------------------------------------------------------------------------
def class_embedding_to_cls_token(v: Tensor) -> Tensor:
    return v.reshape(1, 1, -1)  # (D,) -> (1, 1, D)


def cls_token_to_class_embedding(v: Tensor) -> Tensor:
    return v.reshape(-1)  # (1, 1, D) -> (D,)


def add_batch_dim(v: Tensor) -> Tensor:
    return v.unsqueeze(0)  # (L, D) -> (1, L, D): positional embeddings, decoder queries


def drop_batch_dim(v: Tensor) -> Tensor:
    if v.dim() != 3 or v.shape[0] != 1:
        raise ConversionError(f"expected a (1, L, D) embedding, got {tuple(v.shape)}")
    return v[0]  # (1, L, D) -> (L, D)


def codebook_ema_state(codebook: Tensor) -> StateDict:
    """EMA buffers for a trained codebook: count 1 per code, sum = the code, initialised."""
    return {
        "quantizer.ema_count": torch.ones(codebook.shape[0], dtype=codebook.dtype),
        "quantizer.ema_sum": codebook.clone(),
        "quantizer.initialized": torch.tensor(True),
    }


# --- key-map machinery -------------------------------------------------------------------------------
def _pattern(template: str) -> re.Pattern:
    escaped = re.escape(template).replace(r"\{i\}", r"(?P<i>\d+)").replace(r"\{p\}", r"(?P<p>weight|bias)")
    return re.compile(escaped + "$")


def rename_keys(sd: Mapping[str, Tensor], key_map: Mapping[str, str], source: str) -> StateDict:
    """Rename every key of ``sd`` through ``key_map`` (templates with {i}, {p}); an unmapped key
    raises :class:`ConversionError` naming it and ``source``."""
    compiled = [(_pattern(theirs), ours) for theirs, ours in key_map.items()]
    out: StateDict = {}
    for key, value in sd.items():
        for pattern, target in compiled:
            m = pattern.match(key)
            if m:
                out[target.format(**m.groupdict())] = value
                break
        else:
            raise ConversionError(f"{source}: unexpected key '{key}'")
    return out


def invert(key_map: Mapping[str, str]) -> dict[str, str]:
    return {ours: theirs for theirs, ours in key_map.items()}


def unwrap_state_dict(obj: object, source: str = "checkpoint") -> StateDict:
    """Accept a bare state dict or one nested under 'state_dict' / 'model' / 'module' (with or without
    a DDP 'module.' prefix on every key)."""
    while isinstance(obj, Mapping) and len(obj) == 1 and next(iter(obj)) in ("state_dict", "model", "module"):
        obj = next(iter(obj.values()))
    if isinstance(obj, Mapping) and "state_dict" in obj and isinstance(obj["state_dict"], Mapping):
        obj = obj["state_dict"]
    if not isinstance(obj, Mapping):
        raise ConversionError(f"{source}: expected a mapping of tensors, got {type(obj).__name__}")
    sd = {k: v for k, v in obj.items() if isinstance(v, Tensor)}
    if not sd:
        raise ConversionError(f"{source}: no tensors found (keys: {list(obj)[:5]})")
    if all(k.startswith("module.") for k in sd):
        sd = {k[len("module."):]: v for k, v in sd.items()}
    return sd


# --- vision encoder converters -------------------------------------------------------------------------
def openai_clip_to_timm(sd: Mapping[str, Tensor]) -> tuple[StateDict, list[str]]:
    """OpenAI-layout CLIP -> timm VisionTransformer keys. Non-visual keys (text tower, logit_scale) are
    ignored; returns (state dict, dropped visual keys)."""
    visual = {k: v for k, v in sd.items() if k.startswith("visual.")}
    if "visual.class_embedding" not in visual:
        raise ConversionError("openai_clip: no 'visual.class_embedding' key: not an OpenAI-layout CLIP checkpoint")
    dropped = [k for k in OPENAI_CLIP_DROPPED if k in visual]
    out = rename_keys({k: v for k, v in visual.items() if k not in OPENAI_CLIP_DROPPED}, OPENAI_CLIP_KEY_MAP, "openai_clip")
    out["cls_token"] = class_embedding_to_cls_token(out["cls_token"])
    out["pos_embed"] = add_batch_dim(out["pos_embed"])
    return out, dropped


def timm_to_openai_clip(sd: Mapping[str, Tensor]) -> StateDict:
    """Inverse of :func:`openai_clip_to_timm` (without the dropped projection)."""
    sd = dict(sd)
    sd["cls_token"] = cls_token_to_class_embedding(sd["cls_token"])
    sd["pos_embed"] = drop_batch_dim(sd["pos_embed"])
    return rename_keys(sd, invert(OPENAI_CLIP_KEY_MAP), "timm")


def eva_to_timm(sd: Mapping[str, Tensor], fmt: str, model: nn.Module) -> tuple[StateDict, list[str]]:
    """``lavit_eva`` / ``eva_clip`` / ``open_clip`` -> timm Eva keys via timm's own filter (strips the
    prefix, skips other towers, resamples pos-embed if the grid differs); the head is dropped."""
    from timm.models.eva import checkpoint_filter_fn

    prefix = EVA_FORMAT_PREFIXES[fmt]
    if prefix + "pos_embed" not in sd:
        raise ConversionError(f"{fmt}: no '{prefix}pos_embed' key: not a {fmt} checkpoint")
    out = checkpoint_filter_fn(dict(sd), model)
    other_visual = [k for k in sd if prefix and k.startswith("visual.") and not k.startswith(prefix)]  # e.g. visual.head.proj
    dropped = other_visual + [prefix + k for k in EVA_HEAD_DROPPED if k in out]
    return {k: v for k, v in out.items() if k not in EVA_HEAD_DROPPED}, dropped


def timm_to_eva_format(sd: Mapping[str, Tensor], fmt: str) -> StateDict:
    """timm Eva keys -> ``lavit_eva`` / ``eva_clip`` / ``open_clip`` naming (inverse of the prefix)."""
    return {EVA_FORMAT_PREFIXES[fmt] + k: v for k, v in sd.items()}


def vision_encoder_state_dict(sd: Mapping[str, Tensor], fmt: str, model: nn.Module) -> tuple[StateDict, list[str]]:
    """Any supported format -> state dict for ``model`` (a timm ViT/Eva) and the dropped keys."""
    if fmt == "timm":
        return dict(sd), []
    if fmt == "openai_clip":
        return openai_clip_to_timm(sd)
    if fmt in EVA_FORMAT_PREFIXES:
        return eva_to_timm(sd, fmt, model)
    raise ConversionError(f"unknown vision encoder weights format '{fmt}'")


# --- LaVIT release tokenizer ---------------------------------------------------------------------------
def _convert(sd: Mapping[str, Tensor], key_map: Mapping[str, str], dropped_names: tuple[str, ...], source: str,
             fixes: Mapping[str, Callable[[Tensor], Tensor]]) -> tuple[StateDict, list[str]]:
    dropped = [k for k in dropped_names if k in sd]
    out = rename_keys({k: v for k, v in sd.items() if k not in dropped_names}, key_map, source)
    for key, fix in fixes.items():
        if key in out:
            out[key] = fix(out[key])
    return out, dropped


def lavit_tokenizer_encoder_to_ours(sd: Mapping[str, Tensor]) -> tuple[StateDict, list[str]]:
    """``tokenizer_encoder.bin`` -> selector, merger, quantizer keys (EMA state synthesised)."""
    out, dropped = _convert(sd, LAVIT_TOKENIZER_ENCODER_KEY_MAP, LAVIT_TOKENIZER_ENCODER_DROPPED, "tokenizer_encoder", {})
    if "quantizer.codebook" not in out:
        raise ConversionError("tokenizer_encoder: missing 'quantize.embedding.weight'")
    out.update(codebook_ema_state(out["quantizer.codebook"]))
    return out, dropped


def ours_to_lavit_tokenizer_encoder(sd: Mapping[str, Tensor]) -> StateDict:
    ours = {k: v for k, v in sd.items() if k not in QUANTIZER_EMA_KEYS}
    return rename_keys(ours, invert(LAVIT_TOKENIZER_ENCODER_KEY_MAP), "ours")


def lavit_tokenizer_decoder_to_ours(sd: Mapping[str, Tensor]) -> tuple[StateDict, list[str]]:
    """``tokenizer_decoder.bin`` -> decoder keys."""
    fixes = {"decoder.code_pos_embed": drop_batch_dim, "decoder.query_embed": drop_batch_dim}
    return _convert(sd, LAVIT_TOKENIZER_DECODER_KEY_MAP, LAVIT_TOKENIZER_DECODER_DROPPED, "tokenizer_decoder", fixes)


def ours_to_lavit_tokenizer_decoder(sd: Mapping[str, Tensor]) -> StateDict:
    sd = dict(sd)
    for key in ("decoder.code_pos_embed", "decoder.query_embed"):
        sd[key] = add_batch_dim(sd[key])
    return rename_keys(sd, invert(LAVIT_TOKENIZER_DECODER_KEY_MAP), "ours")
