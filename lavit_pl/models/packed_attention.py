"""Attention confined to each packed document without a block-diagonal mask.

transformers' ``sdpa`` path turns restarting position ids into an (S x S) block-diagonal mask per
row, so every row pays for all S^2 query-key pairs although a document only sees its own prefix.
Variable-length kernels (flash-attention's varlen, used by ``flash_attention_2``) read document
boundaries instead, from the ``cu_seq_lens_*`` keyword arguments transformers passes down to the
attention function. On the CPU ``sdpa_packed`` reads the same arguments and runs SDPA once per
document, so the attention cost is the sum of the documents' own squares. On a GPU it is transformers'
``sdpa`` with the block-diagonal mask (see ``per_document_attention``); without those arguments
(generation, padded batches) it is exactly transformers' ``sdpa``. Importing this module registers it.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from transformers import AttentionInterface
from transformers.integrations.sdpa_attention import sdpa_attention_forward
from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

PACKED_SDPA = "sdpa_packed"


def document_boundaries(position_ids: torch.Tensor) -> dict[str, torch.Tensor | int]:
    """Varlen keyword arguments of packed rows whose position ids restart at 0 per document.

    position_ids: (R, S) long, every row starting at 0 (tail padding counts as one more document).
    Returns transformers' names: ``cu_seq_lens_q`` = ``cu_seq_lens_k`` (int32 (n_docs + 1,), offsets
    into the R*S flattened tokens) and ``max_length_q`` = ``max_length_k`` (longest document).
    """
    if position_ids.ndim != 2 or not bool((position_ids[:, 0] == 0).all()):
        raise ValueError(f"document_boundaries: position_ids must be (R, S) with every row starting at 0, "
                         f"got shape {tuple(position_ids.shape)}")
    flat = position_ids.reshape(-1)
    starts = torch.nonzero(flat == 0).flatten()
    cu = torch.cat([starts, starts.new_tensor([flat.numel()])]).to(torch.int32)
    longest = int((cu[1:] - cu[:-1]).max())
    return {"cu_seq_lens_q": cu, "cu_seq_lens_k": cu, "max_length_q": longest, "max_length_k": longest}


def per_document_attention(query: torch.Tensor) -> bool:
    """Whether packed rows take one SDPA call per document (the CPU) or the block-diagonal mask (a GPU).

    On a GPU a kernel launch per document and layer costs more than the masked S x S work: on an H100
    in bf16, transformers' SDPA with the block-diagonal mask ran 6.6x (4 x 256 LLaMA, S = 512) and 5.5x
    (8 x 2048, S = 2048) the non-padding tokens/s of the per-document loop (benchmarks/packing.py).
    A flash varlen kernel (one launch, no mask) would beat both; it is not wired in: untested here.
    """
    return not query.is_cuda


def packed_sdpa_attention(module: torch.nn.Module, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                          attention_mask: torch.Tensor | None, dropout: float = 0.0,
                          scaling: float | None = None, **kwargs) -> tuple[torch.Tensor, None]:
    """transformers attention function: query (R, H, S, d), key/value (R, H_kv, S, d) -> ((R, S, H, d), None).

    With ``cu_seq_lens_q`` (and no KV cache: query and key of equal length) on the CPU, causal SDPA per
    document of the flattened rows; otherwise transformers' own SDPA with ``attention_mask`` (for
    packed rows, the block-diagonal mask transformers builds from the restarting position ids).
    """
    cu = kwargs.get("cu_seq_lens_q")
    per_document = per_document_attention(query)
    if cu is not None and attention_mask is None and not per_document and cu.numel() - 1 > query.shape[0]:
        raise ValueError("sdpa_packed on CUDA: packed rows (cu_seq_lens_q) came without the block-diagonal mask; "
                         "call the model with use_cache=False so transformers builds it from the position ids")
    if cu is None or query.shape[2] != key.shape[2] or not per_document:
        return sdpa_attention_forward(module, query, key, value, attention_mask, dropout=dropout,
                                      scaling=scaling, **kwargs)
    rows, heads, length, head_dim = query.shape
    groups = heads // key.shape[1]

    def flatten(t: torch.Tensor) -> torch.Tensor:  # (R, H', S, d) -> (H, R*S, d)
        t = t.transpose(0, 1).reshape(t.shape[1], rows * length, head_dim)
        return t.repeat_interleave(groups, dim=0) if t.shape[0] != heads else t

    q, k, v = flatten(query), flatten(key), flatten(value)
    p = dropout if module.training else 0.0
    bounds = cu.tolist()
    if bounds[-1] != rows * length:
        raise ValueError(f"sdpa_packed: cu_seq_lens_q ends at {bounds[-1]}, the rows hold {rows * length} tokens")
    sizes = [b - a for a, b in zip(bounds[:-1], bounds[1:])]
    # split, not slicing: its backward is one cat instead of a zero-filled full-size gradient per piece
    outputs = [F.scaled_dot_product_attention(qd, kd, vd, dropout_p=p, is_causal=True, scale=scaling)
               for qd, kd, vd in zip(q.split(sizes, dim=1), k.split(sizes, dim=1), v.split(sizes, dim=1))]
    out = torch.cat(outputs, dim=1).view(heads, rows, length, head_dim)
    return out.permute(1, 2, 0, 3), None


AttentionInterface.register(PACKED_SDPA, packed_sdpa_attention)
AttentionMaskInterface.register(PACKED_SDPA, sdpa_mask)
