"""sdpa_packed: varlen boundaries by hand; same numbers as transformers' sdpa with and without packing."""
from __future__ import annotations

import pytest
import torch

from lavit_pl.models.llm import LlamaShape, build_random_llama
from lavit_pl.models import packed_attention
from lavit_pl.models.packed_attention import PACKED_SDPA, document_boundaries, per_document_attention

SHAPE = LlamaShape(hidden_size=32, num_heads=4, num_kv_heads=2, intermediate_size=64, max_positions=64)


def test_document_boundaries_by_hand():
    positions = torch.tensor([[0, 1, 2, 0, 1], [0, 1, 0, 1, 2]])
    bounds = document_boundaries(positions)
    assert bounds["cu_seq_lens_q"].tolist() == [0, 3, 5, 7, 10]
    assert bounds["cu_seq_lens_q"].dtype == torch.int32
    assert bounds["max_length_q"] == bounds["max_length_k"] == 3
    with pytest.raises(ValueError, match="every row starting at 0"):
        document_boundaries(torch.tensor([[1, 2, 0]]))


def models() -> tuple[torch.nn.Module, torch.nn.Module]:
    return (build_random_llama(SHAPE, 50, seed=0, attn_implementation="sdpa").train(),
            build_random_llama(SHAPE, 50, seed=0, attn_implementation=PACKED_SDPA).train())


def test_packed_rows_match_the_block_diagonal_mask_in_values_and_gradients():
    reference, packed = models()
    ids = torch.randint(0, 50, (2, 9), generator=torch.Generator().manual_seed(0))
    positions = torch.tensor([[0, 1, 2, 3, 0, 1, 2, 0, 1], [0, 1, 2, 3, 4, 5, 0, 1, 2]])
    out_ref = reference(input_ids=ids, position_ids=positions, use_cache=False).logits
    out = packed(input_ids=ids, position_ids=positions, use_cache=False, **document_boundaries(positions)).logits
    torch.testing.assert_close(out, out_ref, rtol=0, atol=1e-5)
    # the boundaries, not a mask, confine attention: one "document" per row leaks across documents
    whole_rows = {"cu_seq_lens_q": torch.tensor([0, 9, 18], dtype=torch.int32)}
    with torch.no_grad():
        leaky = packed(input_ids=ids, position_ids=positions, use_cache=False, **whole_rows).logits
    assert float((leaky - out_ref.detach()).abs().max()) > 1e-2
    out_ref.square().sum().backward()
    out.square().sum().backward()
    for (name, a), b in zip(reference.named_parameters(), packed.parameters()):
        torch.testing.assert_close(b.grad, a.grad, rtol=1e-4, atol=1e-5, msg=name)


def test_without_boundaries_it_is_transformers_sdpa():
    """Generation and padded batches carry no varlen arguments: the mask path is used unchanged."""
    reference, packed = models()
    ids = torch.randint(0, 50, (2, 6), generator=torch.Generator().manual_seed(1))
    mask = torch.tensor([[0, 0, 1, 1, 1, 1], [1, 1, 1, 1, 1, 1]])
    with torch.no_grad():
        a = reference(input_ids=ids, attention_mask=mask).logits
        b = packed(input_ids=ids, attention_mask=mask).logits
    torch.testing.assert_close(b, a, rtol=0, atol=0)
    with torch.no_grad():
        greedy_a = reference.eval().generate(ids, attention_mask=mask, max_new_tokens=4, do_sample=False)
        greedy_b = packed.eval().generate(ids, attention_mask=mask, max_new_tokens=4, do_sample=False)
    assert greedy_b.tolist() == greedy_a.tolist()


def test_the_gpu_route_is_the_block_diagonal_mask_with_the_same_numbers(monkeypatch):
    """On a GPU packed rows go to transformers' SDPA with the mask built from the position ids; forced
    here on the CPU, values and gradients equal the per-document path's."""
    assert per_document_attention(torch.zeros(1, 1, 2, 8))
    ids = torch.randint(0, 50, (2, 9), generator=torch.Generator().manual_seed(0))
    positions = torch.tensor([[0, 1, 2, 3, 0, 1, 2, 0, 1], [0, 1, 2, 3, 4, 5, 0, 1, 2]])
    _, per_document = models()
    out_doc = per_document(input_ids=ids, position_ids=positions, use_cache=False, **document_boundaries(positions)).logits
    monkeypatch.setattr(packed_attention, "per_document_attention", lambda query: False)
    _, masked = models()
    out_mask = masked(input_ids=ids, position_ids=positions, use_cache=False, **document_boundaries(positions)).logits
    torch.testing.assert_close(out_mask, out_doc, rtol=0, atol=1e-5)
    # the boundaries are ignored on this route: the mask alone confines attention
    whole_rows = {"cu_seq_lens_q": torch.tensor([0, 9, 18], dtype=torch.int32)}
    with torch.no_grad():
        same = masked(input_ids=ids, position_ids=positions, use_cache=False, **whole_rows).logits
    torch.testing.assert_close(same, out_mask.detach(), rtol=0, atol=1e-5)
    out_doc.square().sum().backward()
    out_mask.square().sum().backward()
    for (name, a), b in zip(per_document.named_parameters(), masked.parameters()):
        torch.testing.assert_close(b.grad, a.grad, rtol=1e-4, atol=1e-5, msg=name)
    # packed rows without the mask (a caller that kept a KV cache) would attend across documents: refused
    q = torch.zeros(1, 2, 4, 8)
    with pytest.raises(ValueError, match="without the block-diagonal mask"):
        packed_attention.packed_sdpa_attention(torch.nn.Module(), q, q, q, None,
                                               cu_seq_lens_q=torch.tensor([0, 2, 4], dtype=torch.int32))
