"""Stage-2 batches -> packed training rows with a modality label on every target (DESIGN.md section 4).

A training batch holds text documents (token ids) and image-text pairs (caption ids, the frozen
tokenizer's codes and the number T_b of kept tokens). Every pair becomes ONE document, drawn 1 : 1
(``image_to_text_share``) between

- image -> text: ``[IMG] x_1..x_T [/IMG] caption </s>`` (continuous slots, or the code ids for
  Table 7a's quantized input); loss on the caption only;
- text -> image: ``<s> caption [IMG] v_1..v_T [/IMG]``; loss on caption, codes and [/IMG].

The draw is a hash of (seed, step, key), so it is reproducible, resume-safe, and the same whether
the frozen side was computed on the fly or read from the cache. Validation uses both directions
of every pair. Documents are packed with :func:`lavit_pl.data.sequences.pack_examples`; the
returned ``target_kind`` (R, S') labels each target position so the loss can be split by modality.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Sequence

import torch

from lavit_pl.data.sequences import (
    Example, PackedBatch, image_to_text_example, pack_examples, text_examples, text_to_image_example,
)
from lavit_pl.models.llm import IGNORE_INDEX, UnifiedVocab

# target kinds (no target: -1)
TEXT, IMAGE_TO_TEXT, TEXT_TO_IMAGE_CAPTION, TEXT_TO_IMAGE_VISUAL = 0, 1, 2, 3
KIND_NAMES = {TEXT: "text", IMAGE_TO_TEXT: "image_to_text", TEXT_TO_IMAGE_CAPTION: "text_to_image_caption",
              TEXT_TO_IMAGE_VISUAL: "text_to_image_visual"}
DIRECTIONS = ("image_to_text", "text_to_image")


@dataclass
class SequenceConfig:
    """How documents are built and packed. ``context_length`` is S (paper 2048); a pair document
    longer than S is skipped and counted; text documents are cut into chunks of at most S."""

    context_length: int = 2048
    image_to_text_share: float = 0.5  # P(image -> text) per pair; paper: the two directions 1 : 1
    caption_eos: bool = True  # close image -> text captions with </s>
    direction_seed: int = 0
    pad_to_context: bool = False  # True: fixed (R, S) shapes (compiled / sharded steps)
    balance_rows: bool = True  # fewest rows, then the narrowest (balanced_fit); False: greedy first-fit

    def __post_init__(self) -> None:
        if self.context_length < 8:
            raise ValueError(f"sequences.context_length must be >= 8, got {self.context_length}")
        if not 0.0 <= self.image_to_text_share <= 1.0:
            raise ValueError(f"sequences.image_to_text_share must be in [0, 1], got {self.image_to_text_share}")


@dataclass
class PairDocument:
    """One image-text pair: ``caption_ids`` (no BOS/EOS), ``codes`` (T_b,) in [0, K), ``key``."""

    caption_ids: list[int]
    codes: torch.Tensor
    key: str


@dataclass
class Stage2Batch:
    """``packed``: the rows; ``target_kind``: (R, S') long, a kind above at target positions, else -1;
    ``feature_images``: for the continuous input, the pair index whose T_b merger features fill the
    slots, in slot order (concatenate those images' features to get ``features``);
    ``documents``: documents per kind name; ``skipped``: pair documents longer than S."""

    packed: PackedBatch
    target_kind: torch.Tensor
    feature_images: list[int]
    documents: dict[str, int] = field(default_factory=dict)
    skipped: int = 0

    @property
    def input_tokens(self) -> int:
        """Tokens that belong to a document (padding excluded)."""
        return int((self.packed.document_index >= 0).sum())


def draw_direction(seed: int, step: int, key: str, image_to_text_share: float) -> str:
    """'image_to_text' with probability ``image_to_text_share``, from a hash of (seed, step, key)."""
    digest = hashlib.blake2b(f"{seed}:{step}:{key}".encode(), digest_size=8).digest()
    u = int.from_bytes(digest, "little") / 2.0 ** 64  # uniform in [0, 1)
    return "image_to_text" if u < image_to_text_share else "text_to_image"


def _kinds(example: Example, vocab: UnifiedVocab, direction: str | None) -> torch.Tensor:
    """(L,) kind of each label of ``example`` (-1 where no loss)."""
    has_loss = example.labels != IGNORE_INDEX
    if direction is None:
        kind = torch.full_like(example.labels, TEXT)
    elif direction == "image_to_text":
        kind = torch.full_like(example.labels, IMAGE_TO_TEXT)
    else:
        visual = vocab.is_visual(example.labels) | (example.labels == vocab.image_end_id)
        kind = torch.where(visual, TEXT_TO_IMAGE_VISUAL, TEXT_TO_IMAGE_CAPTION)
    return torch.where(has_loss, kind, -1)


def pair_example(vocab: UnifiedVocab, pair: PairDocument, direction: str, quantized_input: bool,
                 caption_eos: bool) -> Example:
    if direction == "image_to_text":
        if quantized_input:
            return image_to_text_example(vocab, pair.caption_ids, codes=pair.codes, add_eos=caption_eos)
        return image_to_text_example(vocab, pair.caption_ids, num_features=len(pair.codes), add_eos=caption_eos)
    if direction == "text_to_image":
        return text_to_image_example(vocab, pair.caption_ids, pair.codes)
    raise ValueError(f"unknown direction {direction!r}; expected one of {DIRECTIONS}")


def build_stage2_batch(vocab: UnifiedVocab, cfg: SequenceConfig, texts: Sequence[Sequence[int]],
                       pairs: Sequence[PairDocument], directions: Sequence[Sequence[str]],
                       quantized_input: bool) -> Stage2Batch:
    """Documents of one step, packed. ``texts``: token ids of each text document (no BOS/EOS);
    ``directions[i]``: the direction(s) pair i is used in (one when training, both in validation).

    Order: pair documents (pair order, then direction order), then text chunks; ``feature_images``
    follows that order, which is the order :func:`pack_examples` numbers feature slots in.
    """
    if len(directions) != len(pairs):
        raise ValueError(f"build_stage2_batch: {len(pairs)} pairs but {len(directions)} direction lists")
    examples: list[Example] = []
    kinds: list[torch.Tensor] = []
    feature_images: list[int] = []
    documents = {name: 0 for name in ("text", *DIRECTIONS)}
    skipped = 0
    for index, (pair, wanted) in enumerate(zip(pairs, directions)):
        if not pair.caption_ids:
            skipped += len(wanted)
            continue
        for direction in wanted:
            example = pair_example(vocab, pair, direction, quantized_input, cfg.caption_eos)
            if len(example) > cfg.context_length:
                skipped += 1
                continue
            examples.append(example)
            kinds.append(_kinds(example, vocab, direction))
            documents[direction] += 1
            if example.num_features:
                feature_images.append(index)
    for ids in texts:
        for chunk in text_examples(vocab, ids, max_length=cfg.context_length):
            examples.append(chunk)
            kinds.append(_kinds(chunk, vocab, None))
            documents["text"] += 1
    if not examples:
        raise ValueError("build_stage2_batch: the batch holds no usable document")
    packed = pack_examples(examples, cfg.context_length, pad_to_context=cfg.pad_to_context,
                           balance=cfg.balance_rows)
    target_kind = torch.full_like(packed.targets, -1)
    for kind, example, (row, start) in zip(kinds, examples, packed.placements):
        # the same shift as the targets: position i predicts label i + 1 of its document
        target_kind[row, start:start + len(example) - 1] = kind[1:]
    return Stage2Batch(packed, target_kind, feature_images, documents, skipped)
