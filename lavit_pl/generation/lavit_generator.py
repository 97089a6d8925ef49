"""Answer zero-shot protocol requests with a LaVIT model: ``[IMG] x̂_1 … x̂_T [/IMG] prompt`` -> text.

The protocol runner (``evaluation.protocols.run_task``) hands over batches of requests, each with
``image`` (whatever the benchmark record holds: here an image path), ``text`` (the text after
``[/IMG]``; "" for captioning) and ``generation`` (the step's decoding settings). This module turns
them into :class:`~lavit_pl.data.sequences.Example` prompts and decodes them with
:func:`lavit_pl.generation.text.generate_text` (visual ids suppressed, left padding, KV cache).

The visual side is an injected callable ``encode_images(images) -> list of (T_b, D)`` tensors: the
stage-2 export supplies frozen encoder -> selector -> its merger copy; ``vit_proj`` (D -> LLM width)
is part of :class:`UnifiedLM`. A blind model is the same generator with another encoder callable
(:func:`noise_image_encoder`), not a different code path.

Release facts kept here: no BOS anywhere (not before ``[IMG]``, not before the text after
``[/IMG]``); the prompt text is tokenised without special tokens.
"""
from __future__ import annotations

import hashlib
from collections import OrderedDict
from pathlib import Path
from typing import Any, Callable, Protocol, Sequence

import torch
from PIL import Image
from transformers import PreTrainedTokenizerBase

from lavit_pl.data.sequences import Example, assemble, image_part, text_part
from lavit_pl.generation.text import TextGenerationConfig, generate_text
from lavit_pl.models.llm import UnifiedLM, UnifiedVocab

ImageInput = Any  # a PIL.Image.Image or a path (str / Path)
EncodeImages = Callable[[Sequence[ImageInput]], list[torch.Tensor]]  # B images -> B tensors (T_b, D)


class SettingsLike(Protocol):
    """What is read from a step's decoding settings (``evaluation.protocols.GenerationSettings``)."""

    num_beams: int
    min_new_tokens: int
    max_new_tokens: int
    length_penalty: float
    early_stopping: bool
    do_sample: bool


class RequestLike(Protocol):
    """One generation request (``evaluation.protocols.GenerationRequest``)."""

    image: Any
    text: str
    generation: SettingsLike


def text_config(settings: SettingsLike) -> TextGenerationConfig:
    """Protocol decoding settings -> :class:`TextGenerationConfig` (sampling is not supported)."""
    if settings.do_sample:
        raise ValueError("generation.do_sample: zero-shot protocols decode deterministically (greedy / beam); "
                         "sampling is not supported here")
    return TextGenerationConfig(num_beams=settings.num_beams, min_new_tokens=settings.min_new_tokens,
                                max_new_tokens=settings.max_new_tokens, length_penalty=settings.length_penalty,
                                early_stopping=settings.early_stopping)


def build_prompt(vocab: UnifiedVocab, tokenizer: PreTrainedTokenizerBase, num_features: int, text: str) -> Example:
    """``[IMG] <num_features slots> [/IMG] text`` with the text tokenised without BOS / EOS (release)."""
    parts = [image_part(vocab, num_features=num_features)]
    if text:
        ids = tokenizer(text, add_special_tokens=False)["input_ids"]
        if ids:
            parts.append(text_part(ids, loss=False))
    return assemble(*parts)


def _cache_key(image: ImageInput) -> str | None:
    return str(Path(image).resolve()) if isinstance(image, (str, Path)) else None


class LavitGenerator:
    """``generator(requests) -> list[str]``: one raw generation per request, in request order.

    Requests are grouped by their decoding settings (the runner sends one step per call, so there
    is usually one group) and decoded ``batch_size`` at a time. Features of images given as paths
    are kept in a small LRU cache (``cache_size`` images), since a VQA image has several questions
    and describe-then-answer visits each image twice.
    """

    def __init__(self, lm: UnifiedLM, tokenizer: PreTrainedTokenizerBase, encode_images: EncodeImages,
                 batch_size: int = 16, cache_size: int = 256):
        if batch_size < 1:
            raise ValueError(f"LavitGenerator.batch_size must be >= 1, got {batch_size}")
        if cache_size < 0:
            raise ValueError(f"LavitGenerator.cache_size must be >= 0, got {cache_size}")
        self.lm = lm.eval()
        self.tokenizer = tokenizer
        self.encode_images = encode_images
        self.batch_size = batch_size
        self.cache_size = cache_size
        self._cache: OrderedDict[str, torch.Tensor] = OrderedDict()

    def features(self, images: Sequence[ImageInput]) -> list[torch.Tensor]:
        """Visual features per image, (T_b, D) each: cached ones, the rest from one ``encode_images`` call
        over the distinct images (a batch often asks several questions about one image)."""
        keys: list[Any] = [_cache_key(im) or ("object", i) for i, im in enumerate(images)]
        missing: dict[Any, int] = {}
        for i, key in enumerate(keys):
            if key not in self._cache:
                missing.setdefault(key, i)
        fresh: dict[Any, torch.Tensor] = {}
        if missing:
            encoded = self.encode_images([images[i] for i in missing.values()])
            if len(encoded) != len(missing):
                raise ValueError(f"encode_images returned {len(encoded)} tensors for {len(missing)} images")
            for (key, i), feats in zip(missing.items(), encoded):
                self._check(feats, images[i])
                fresh[key] = feats.detach()
        out = [fresh[key] if key in fresh else self._cache[key] for key in keys]
        for key in keys:
            if isinstance(key, str) and self.cache_size:
                self._cache[key] = fresh.get(key, self._cache.get(key))
                self._cache.move_to_end(key)
        while len(self._cache) > self.cache_size:
            self._cache.popitem(last=False)
        return out

    def _check(self, feats: Any, image: ImageInput) -> None:
        dim = self.lm.vit_proj.in_features
        if not isinstance(feats, torch.Tensor) or feats.dim() != 2 or feats.shape[0] < 1 or feats.shape[1] != dim:
            got = tuple(feats.shape) if isinstance(feats, torch.Tensor) else type(feats).__name__
            name = image if isinstance(image, (str, Path)) else type(image).__name__
            raise ValueError(f"encode_images: features of image {name} must be (T_b >= 1, D={dim}), got {got}")

    @torch.no_grad()
    def __call__(self, requests: Sequence[RequestLike]) -> list[str]:
        outputs: list[str | None] = [None] * len(requests)
        groups: dict[Any, list[int]] = {}
        for i, request in enumerate(requests):
            groups.setdefault(request.generation, []).append(i)
        for settings, indices in groups.items():
            config = text_config(settings)
            for start in range(0, len(indices), self.batch_size):
                chunk = indices[start:start + self.batch_size]
                feats = self.features([requests[i].image for i in chunk])  # B x (T_b, D)
                prompts = [build_prompt(self.lm.vocab, self.tokenizer, f.shape[0], requests[i].text)
                           for f, i in zip(feats, chunk)]
                texts = generate_text(self.lm, self.tokenizer, prompts, torch.cat(feats), config)
                for i, text in zip(chunk, texts):
                    outputs[i] = text
        return outputs  # type: ignore[return-value]


def noise_image(image: ImageInput, seed: int) -> Image.Image:
    """Uniform RGB noise of ``image``'s size, seeded by ``seed`` and the image's file name (paths) or
    its pixels (PIL images): the same image always gets the same noise, different images differ."""
    if isinstance(image, Image.Image):
        size, name = image.size, hashlib.sha256(image.tobytes()).hexdigest()
    else:
        with Image.open(image) as opened:
            size = opened.size
        name = Path(image).name
    digest = hashlib.sha256(f"{seed}:{name}".encode()).digest()
    generator = torch.Generator().manual_seed(int.from_bytes(digest[:8], "big"))
    pixels = torch.randint(0, 256, (size[1], size[0], 3), generator=generator, dtype=torch.uint8)  # (H, W, C)
    return Image.fromarray(pixels.numpy(), mode="RGB")


def noise_image_encoder(encode_images: EncodeImages, seed: int = 0) -> EncodeImages:
    """The blind model's visual side: ``encode_images`` applied to :func:`noise_image` of each input."""
    def encode(images: Sequence[ImageInput]) -> list[torch.Tensor]:
        return encode_images([noise_image(image, seed) for image in images])

    return encode
