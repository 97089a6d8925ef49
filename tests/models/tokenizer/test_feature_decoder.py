"""Feature decoder: the masked training path equals decoding the compacted code lists; padding and
absent positions are invisible; the keep mask receives gradients."""
from __future__ import annotations

import pytest
import torch

from lavit_pl.models.tokenizer.decoder import FeatureDecoder, FeatureDecoderConfig

B, N, C = 4, 9, 5
TOL = dict(rtol=1e-10, atol=1e-10)  # float64, same arithmetic up to summation order


def make_decoder() -> FeatureDecoder:
    torch.manual_seed(0)
    dec = FeatureDecoder(FeatureDecoderConfig(width=16, out_dim=12, code_dim=C, num_patches=N, depth=2, num_heads=4, mlp_dim=24))
    for name, p in dec.named_parameters():
        # The init (std 0.02, zero biases) makes attention nearly uniform, which would hide order and
        # position effects; larger random parameters make every term visible.
        p.data.add_(0.3 * torch.randn_like(p))
    return dec.double()


def inputs():
    g = torch.Generator().manual_seed(1)
    codes = torch.randn(B, N, C, generator=g, dtype=torch.float64)
    keep = torch.rand(B, N, generator=g) < 0.4
    keep[0] = True
    keep[1] = False
    keep[1, 4] = True
    keep[2, 0] = True
    return codes, keep


def test_masked_path_equals_compacted_lists():
    dec = make_decoder()
    codes, keep = inputs()
    with torch.no_grad():
        masked = dec.forward_masked(codes, keep.double())
        listed = dec.decode_lists([codes[b][keep[b]] for b in range(B)])
    assert masked.shape == (B, N, 12)
    torch.testing.assert_close(masked, listed, **TOL)


def test_position_embedding_follows_the_compacted_index():
    # Same codes at different raster positions but the same list order decode identically.
    dec = make_decoder()
    codes, _ = inputs()
    a = torch.zeros(1, N, dtype=torch.bool)
    a[0, [1, 2]] = True
    b = torch.zeros(1, N, dtype=torch.bool)
    b[0, [5, 8]] = True
    x = torch.zeros(1, N, C, dtype=torch.float64)
    x[0, [1, 2]] = codes[0, :2]
    y = torch.zeros(1, N, C, dtype=torch.float64)
    y[0, [5, 8]] = codes[0, :2]
    with torch.no_grad():
        torch.testing.assert_close(dec.forward_masked(x, a.double()), dec.forward_masked(y, b.double()), **TOL)
        swapped = dec.decode_lists([codes[0, [1, 0]]])
        assert (swapped - dec.decode_lists([codes[0, :2]])).abs().max() > 1e-3  # order matters


def test_padding_is_invisible():
    dec = make_decoder()
    codes, _ = inputs()
    with torch.no_grad():
        alone = dec.decode_lists([codes[0, :3]])
        batched = dec.decode_lists([codes[0, :3], codes[1, :8]])
    torch.testing.assert_close(batched[:1], alone, **TOL)


def test_keep_mask_gets_gradients_at_dropped_positions():
    dec = make_decoder()
    codes, keep = inputs()
    soft = torch.full((B, N), 0.5, dtype=torch.float64, requires_grad=True)
    out = dec.forward_masked(codes, keep.double() + (soft - soft.detach()))
    out.sum().backward()
    assert torch.isfinite(soft.grad).all()
    assert soft.grad[~keep].abs().min() > 0


def test_rejects_too_many_codes_and_empty_lists():
    dec = make_decoder()
    with pytest.raises(ValueError, match="num_patches"):
        dec.decode_lists([torch.zeros(N + 1, C, dtype=torch.float64)])
    with pytest.raises(ValueError, match="at least one code"):
        dec.decode_lists([torch.zeros(0, C, dtype=torch.float64)])


def test_backward_is_bit_reproducible_on_multithreaded_cpu():
    # Indexing the position table (table[positions]) accumulated its gradient with atomic adds on
    # two or more CPU threads, so two identical tokenizer fits drifted apart in the last bits.
    torch.manual_seed(0)
    n = 64
    dec = FeatureDecoder(FeatureDecoderConfig(width=32, out_dim=8, code_dim=C, num_patches=n, depth=1, num_heads=4, mlp_dim=32))
    codes = torch.randn(64, n, C)
    keep = (torch.rand(64, n) < 0.6).float()
    threads = torch.get_num_threads()
    torch.set_num_threads(max(2, threads))
    try:
        grads = []
        for _ in range(8):
            dec.zero_grad(set_to_none=True)
            dec.forward_masked(codes, keep).square().sum().backward()
            grads.append({k: p.grad.clone() for k, p in dec.named_parameters()})
    finally:
        torch.set_num_threads(threads)
    for g in grads[1:]:
        assert all(torch.equal(g[k], grads[0][k]) for k in g), [k for k in g if not torch.equal(g[k], grads[0][k])]
