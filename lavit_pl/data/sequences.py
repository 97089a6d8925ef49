"""Stage-2 training sequences and their packing (DESIGN.md section 4). Pure: tensors in, tensors out.

An :class:`Example` is one document: ``input_ids`` (L,), a parallel ``feature_slot`` (L,) that is
-1 at token positions and j at the position of the example's j-th continuous visual feature, and
``labels`` (L,) in the transformers convention (``labels[i] = input_ids[i]`` where predicting token
i is trained, -100 elsewhere). The three document kinds:

- image as condition: ``[IMG] x_1..x_T [/IMG] caption [</s>]``; the image part is input only, the
  loss starts at the first caption token; no BOS before [IMG] or before the caption (release).
  Table 7a's "quantized" input puts the code ids v_1..v_T where the features were.
- text-to-image: ``<s> caption [IMG] v_1..v_T [/IMG]``; loss on every caption token, every code and
  [/IMG]; none on predicting [IMG] (the sampler appends it).
- text only: ``<s> text </s>``, loss on every token after ``<s>``.

:func:`pack_examples` puts documents side by side in rows of S tokens; position ids restart at 0 for
each document, which is how transformers' LLaMA (attention_mask=None, no cache) confines attention to
each document with SDPA, eager or flex attention, and flash-attention's varlen path on GPU.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch

from lavit_pl.models.llm import IGNORE_INDEX, UnifiedVocab

FEATURE_PLACEHOLDER_ID = 0  # input id stored at feature slots; UnifiedLM.embed_sequence replaces it


@dataclass
class Example:
    """One document: input_ids, feature_slot, labels, all (L,) long."""

    input_ids: torch.Tensor
    feature_slot: torch.Tensor
    labels: torch.Tensor

    def __post_init__(self) -> None:
        for name in ("input_ids", "feature_slot", "labels"):
            value = getattr(self, name)
            if value.dim() != 1 or value.dtype != torch.long:
                raise ValueError(f"Example.{name} must be a 1-D long tensor, got {value.dtype} {tuple(value.shape)}")
        if not self.input_ids.shape == self.feature_slot.shape == self.labels.shape:
            raise ValueError("Example: input_ids, feature_slot and labels must have the same length")
        slots = self.feature_slot[self.feature_slot >= 0]
        if not torch.equal(slots, torch.arange(len(slots))):
            raise ValueError("Example.feature_slot must number the feature positions 0..T-1 in order")

    def __len__(self) -> int:
        return self.input_ids.shape[0]

    @property
    def num_features(self) -> int:
        return int((self.feature_slot >= 0).sum())


Part = tuple[torch.Tensor, torch.Tensor, torch.Tensor]  # (ids, slot, labels), each (n,)


def text_part(ids: Sequence[int] | torch.Tensor, loss: bool) -> Part:
    ids = torch.as_tensor(ids, dtype=torch.long).reshape(-1)
    labels = ids.clone() if loss else torch.full_like(ids, IGNORE_INDEX)
    return ids, torch.full_like(ids, -1), labels


def image_part(vocab: UnifiedVocab, num_features: int | None = None, codes: torch.Tensor | None = None,
               loss: bool = False) -> Part:
    """``[IMG] content [/IMG]``: content is ``num_features`` continuous slots or the ``codes`` (T,) as ids.

    ``loss`` trains the codes and [/IMG] (text-to-image); predicting [IMG] is never trained here.
    """
    if (num_features is None) == (codes is None):
        raise ValueError("image_part: give exactly one of num_features (continuous) or codes (discrete)")
    if num_features is not None:
        if num_features < 1:
            raise ValueError(f"image_part: num_features must be >= 1, got {num_features}")
        if loss:
            raise ValueError("image_part: continuous features are inputs only (loss=False)")
        content = (torch.full((num_features,), FEATURE_PLACEHOLDER_ID, dtype=torch.long),
                   torch.arange(num_features), torch.full((num_features,), IGNORE_INDEX, dtype=torch.long))
    else:
        if codes.dim() != 1 or len(codes) < 1:
            raise ValueError(f"image_part: codes must be (T,) with T >= 1, got {tuple(codes.shape)}")
        content = text_part(vocab.code_to_id(codes), loss)
    parts = [text_part([vocab.image_start_id], False), content, text_part([vocab.image_end_id], loss)]
    return concat_parts(parts)


def concat_parts(parts: Sequence[Part | Example]) -> Part:
    """Concatenate parts (or whole examples), renumbering feature slots 0..T-1 across the result."""
    ids, slots, labels, offset = [], [], [], 0
    for part in parts:
        part_ids, part_slot, part_labels = (
            (part.input_ids, part.feature_slot, part.labels) if isinstance(part, Example) else part)
        shifted = torch.where(part_slot >= 0, part_slot + offset, part_slot)
        offset += int((part_slot >= 0).sum())
        ids.append(part_ids), slots.append(shifted), labels.append(part_labels)
    return torch.cat(ids), torch.cat(slots), torch.cat(labels)


def assemble(*parts: Part | Example) -> Example:
    """One document from parts and/or examples in order (e.g. a prompt followed by ``[IMG]``)."""
    return Example(*concat_parts(parts))


def _int_list(ids: Sequence[int] | torch.Tensor) -> list[int]:
    return torch.as_tensor(ids, dtype=torch.long).reshape(-1).tolist()


def image_to_text_example(vocab: UnifiedVocab, caption_ids: Sequence[int], num_features: int | None = None,
                          codes: torch.Tensor | None = None, add_eos: bool = True) -> Example:
    """``[IMG] x_1..x_T [/IMG] caption [</s>]``; caption ids without BOS; loss on caption (and </s>)."""
    caption = _int_list(caption_ids) + ([vocab.eos_id] if add_eos else [])
    if not caption:
        raise ValueError("image_to_text_example: empty caption")
    return assemble(image_part(vocab, num_features, codes, loss=False), text_part(caption, True))


def text_to_image_example(vocab: UnifiedVocab, caption_ids: Sequence[int], codes: torch.Tensor,
                          add_bos: bool = True) -> Example:
    """``<s> caption [IMG] v_1..v_T [/IMG]``; loss on caption, codes and [/IMG], not on [IMG]."""
    caption = _int_list(caption_ids)
    if not caption:
        raise ValueError("text_to_image_example: empty caption")
    bos = text_part([vocab.bos_id] if add_bos else [], False)  # nothing precedes <s>: never a target
    return assemble(bos, text_part(caption, True), image_part(vocab, codes=codes, loss=True))


def text_examples(vocab: UnifiedVocab, ids: Sequence[int], max_length: int, add_bos: bool = True,
                  add_eos: bool = True) -> list[Example]:
    """``<s> text </s>`` cut into documents of at most ``max_length`` tokens; loss on every token."""
    if max_length < 2:
        raise ValueError(f"text_examples: max_length must be >= 2, got {max_length}")
    full = ([vocab.bos_id] if add_bos else []) + _int_list(ids) + ([vocab.eos_id] if add_eos else [])
    chunks = [assemble(text_part(full[i:i + max_length], True)) for i in range(0, len(full), max_length)
              if len(full[i:i + max_length]) > 1]
    if add_bos and chunks:
        chunks[0].labels[0] = IGNORE_INDEX  # nothing precedes <s>: never a target
    return chunks


@dataclass
class PackedBatch:
    """Documents packed into R rows of width S' (S' = S, or the longest row if not padded to S).

    input_ids, feature_slot, position_ids, targets, document_index: (R, S') long.
    ``feature_slot`` indexes the features of all packed examples concatenated in INPUT order.
    ``targets[r, i]`` is the token to predict at (r, i), within its document only (-100 elsewhere);
    ``document_index`` is the example's input index (-1 on padding); ``placements[e]`` = (row, start).
    """

    input_ids: torch.Tensor
    feature_slot: torch.Tensor
    position_ids: torch.Tensor
    targets: torch.Tensor
    document_index: torch.Tensor
    placements: list[tuple[int, int]]

    @property
    def num_targets(self) -> int:
        return int((self.targets != IGNORE_INDEX).sum())


def check_lengths(lengths: Sequence[int], capacity: int) -> None:
    """Every document must fit one row: raises naming the first that does not."""
    for index, length in enumerate(lengths):
        if not 1 <= length <= capacity:
            raise ValueError(f"pack_examples: example #{index} has length {length}; "
                             f"must be in [1, context_length={capacity}]")


def first_fit(lengths: Sequence[int], capacity: int) -> list[tuple[int, int]]:
    """Greedy first-fit in input order: (row, start) of each length; raises on one over capacity."""
    check_lengths(lengths, capacity)
    free: list[int] = []
    placements = []
    for length in lengths:
        row = next((r for r, room in enumerate(free) if room >= length), None)
        if row is None:
            free.append(capacity)
            row = len(free) - 1
        placements.append((row, capacity - free[row]))
        free[row] -= length
    return placements


def balanced_fit(lengths: Sequence[int], capacity: int) -> list[tuple[int, int]]:
    """(row, start) of each length: as few rows as first-fit-decreasing needs at ``capacity``, then
    the narrowest width W <= capacity at which first-fit-decreasing still fills only that many rows.

    Rows come out nearly equal in length, so trimming the batch to its longest row leaves little
    tail padding: 24 tiny-mixture documents (1622 tokens) take 4 rows of 407 instead of 4 x 507.
    """
    check_lengths(lengths, capacity)
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])

    def fit(width: int) -> list[tuple[int, int]]:
        sorted_placements = first_fit([lengths[i] for i in order], width)
        placements = [(0, 0)] * len(lengths)
        for i, placement in zip(order, sorted_placements):
            placements[i] = placement
        return placements

    def rows(placements: list[tuple[int, int]]) -> int:
        return 1 + max(r for r, _ in placements)

    best = fit(capacity)
    target = rows(best)
    low, high = max(max(lengths), -(-sum(lengths) // target)), capacity  # feasible width in (low-1, high]
    while low < high:  # first-fit-decreasing is not strictly monotone in W: any feasible W found is kept
        mid = (low + high) // 2
        candidate = fit(mid)
        if rows(candidate) <= target:
            best, high = candidate, mid
        else:
            low = mid + 1
    return best


def pack_examples(examples: Sequence[Example], context_length: int, pad_id: int = 0,
                  pad_to_context: bool = False, balance: bool = True) -> PackedBatch:
    """Pack documents into rows of at most ``context_length`` (S) tokens.

    ``balance``: :func:`balanced_fit` (fewest rows, then the narrowest); else greedy
    :func:`first_fit` in input order. Padding sits only at the tail of a row: it gets position ids
    0, 1, ... (its own "document", attending only to itself), feature_slot -1 and no target. Rows
    are trimmed to the longest row unless ``pad_to_context`` (fixed shapes, e.g. for compiled or
    sharded steps).
    """
    if not examples:
        raise ValueError("pack_examples: no examples")
    lengths = [len(e) for e in examples]
    placements = balanced_fit(lengths, context_length) if balance else first_fit(lengths, context_length)
    rows = 1 + max(r for r, _ in placements)
    used = [0] * rows
    for example, (row, start) in zip(examples, placements):
        used[row] = max(used[row], start + len(example))
    width = context_length if pad_to_context else max(used)
    input_ids = torch.full((rows, width), pad_id, dtype=torch.long)
    feature_slot = torch.full((rows, width), -1, dtype=torch.long)
    targets = torch.full((rows, width), IGNORE_INDEX, dtype=torch.long)
    document_index = torch.full((rows, width), -1, dtype=torch.long)
    # Tail padding counts 0, 1, ... from its first position: a new "document" for the mask.
    position_ids = (torch.arange(width) - torch.tensor(used).unsqueeze(1)).clamp(min=0)  # (R, S')
    feature_offset = 0
    for index, (example, (row, start)) in enumerate(zip(examples, placements)):
        span = slice(start, start + len(example))
        input_ids[row, span] = example.input_ids
        slots = example.feature_slot
        feature_slot[row, span] = torch.where(slots >= 0, slots + feature_offset, slots)
        feature_offset += example.num_features
        position_ids[row, span] = torch.arange(len(example))
        # Shift within the document: position i predicts labels[i + 1]; the last predicts nothing.
        targets[row, start:start + len(example) - 1] = example.labels[1:]
        document_index[row, span] = index
    return PackedBatch(input_ids, feature_slot, position_ids, targets, document_index, placements)


def collate_prompts(prompts: Sequence[Example], pad_id: int = 0) -> dict[str, torch.Tensor]:
    """Left-pad prompts for generation: input_ids, feature_slot, attention_mask, each (B, L) long.

    feature_slot indexes the prompts' features concatenated in input order (-1 on tokens and padding).
    """
    if not prompts:
        raise ValueError("collate_prompts: no prompts")
    width = max(len(p) for p in prompts)
    input_ids = torch.full((len(prompts), width), pad_id, dtype=torch.long)
    feature_slot = torch.full((len(prompts), width), -1, dtype=torch.long)
    attention_mask = torch.zeros((len(prompts), width), dtype=torch.long)
    offset = 0
    for b, prompt in enumerate(prompts):
        span = slice(width - len(prompt), width)
        input_ids[b, span] = prompt.input_ids
        slots = prompt.feature_slot
        feature_slot[b, span] = torch.where(slots >= 0, slots + offset, slots)
        offset += prompt.num_features
        attention_mask[b, span] = 1
    return {"input_ids": input_ids, "feature_slot": feature_slot, "attention_mask": attention_mask}
