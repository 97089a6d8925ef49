"""Gather a masked subset of tokens of every image into one packed (S, C) tensor and back into a
padded (B, L_max, C) batch, without a Python loop over images.

Token-wise work (norms, projections, MLPs) runs on the packed tensor, so padding costs nothing there;
only attention sees the padded layout. Order within an image is raster order, which is what the
causal merger and the compacted code lists (positions 0..T_b-1) rely on.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor


@dataclass
class TokenGroup:
    """Where the selected tokens of a (B, N) mask live.

    flat_index: (S,) positions in the flattened (B*N) source; pad_index: (S,) slots in the flattened
    (B*L_max) padded batch; valid: (B, L_max) bool; lengths: (B,) long; max_len: L_max.
    """

    flat_index: Tensor
    pad_index: Tensor
    valid: Tensor
    lengths: Tensor
    max_len: int

    @property
    def batch_size(self) -> int:
        return self.valid.shape[0]


def group_tokens(mask: Tensor) -> TokenGroup:
    """mask: (B, N) bool -> the :class:`TokenGroup` of its True entries (raster order per image)."""
    if mask.dtype != torch.bool or mask.dim() != 2:
        raise ValueError(f"mask must be a (B, N) bool tensor, got {tuple(mask.shape)} {mask.dtype}")
    b, n = mask.shape
    lengths = mask.sum(dim=1)
    max_len = int(lengths.max()) if b > 0 else 0
    image, pos = mask.nonzero(as_tuple=True)  # row-major: image by image, raster order inside
    slot = (mask.cumsum(dim=1) - 1)[image, pos]  # index of each token within its own image
    valid = torch.arange(max_len, device=mask.device)[None, :] < lengths[:, None]
    return TokenGroup(image * n + pos, image * max_len + slot, valid, lengths, max_len)


def pack(x: Tensor, group: TokenGroup) -> Tensor:
    """(B, N, C) -> (S, C): the group's tokens, image after image."""
    return x.reshape(-1, x.shape[-1])[group.flat_index]


def to_padded(flat: Tensor, group: TokenGroup) -> Tensor:
    """(S, C) -> (B, L_max, C) with zeros in padded slots (differentiable in ``flat``)."""
    out = flat.new_zeros(group.batch_size * group.max_len, flat.shape[-1])
    out = out.index_copy(0, group.pad_index, flat)
    return out.view(group.batch_size, group.max_len, flat.shape[-1])


def from_padded(padded: Tensor, group: TokenGroup) -> Tensor:
    """(B, L_max, C) -> (S, C), dropping padded slots."""
    return padded.reshape(-1, padded.shape[-1])[group.pad_index]


def split_packed(flat: Tensor, group: TokenGroup) -> list[Tensor]:
    """(S, ...) -> list of B tensors (T_b, ...)."""
    return list(torch.split(flat, group.lengths.tolist(), dim=0))


def pad_sequences(seqs: list[Tensor]) -> tuple[Tensor, Tensor]:
    """list of B tensors (T_b, ...) -> (padded (B, T_max, ...), valid (B, T_max) bool)."""
    if not seqs:
        raise ValueError("pad_sequences needs at least one sequence")
    lengths = torch.tensor([len(s) for s in seqs], device=seqs[0].device)
    padded = torch.nn.utils.rnn.pad_sequence(seqs, batch_first=True)
    valid = torch.arange(padded.shape[1], device=padded.device)[None, :] < lengths[:, None]
    return padded, valid
