"""Vector quantizer: equation (3) by brute force, straight-through gradients, the EMA update rule,
k-means init and dead-code restarts on hand-checkable inputs."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from lavit_pl.models.tokenizer.quantizer import VectorQuantizer, VectorQuantizerConfig, nearest_code, spherical_kmeans


def make_quantizer(**kw) -> VectorQuantizer:
    torch.manual_seed(0)
    base = dict(width=12, code_dim=4, codebook_size=9, recent_buffer_size=64)
    return VectorQuantizer(VectorQuantizerConfig(**{**base, **kw}))


def test_indices_equal_brute_force_argmin_of_equation_3():
    vq = make_quantizer(codebook_size=50).eval()  # eval: no codebook update inside the call
    x = torch.randn(3, 7, 12, generator=torch.Generator().manual_seed(1))
    out = vq(x)
    z = F.normalize(vq.encode_task_layer(x), dim=-1).double()
    c = F.normalize(vq.codebook, dim=-1).double()
    for idx in torch.cartesian_prod(torch.arange(3), torch.arange(7)):
        b, t = idx.tolist()
        dists = [((z[b, t] - c[j]) ** 2).sum().item() for j in range(50)]
        assert out.indices[b, t].item() == min(range(50), key=dists.__getitem__)
    torch.testing.assert_close(out.quantized.detach(), vq.codebook[out.indices])
    torch.testing.assert_close(out.latent, z.float())


def test_nearest_code_chunks_agree_with_cdist():
    g = torch.Generator().manual_seed(2)
    z = F.normalize(torch.randn(9000, 8, generator=g), dim=1)  # > one 4096-row chunk
    c = F.normalize(torch.randn(33, 8, generator=g), dim=1)
    assert torch.equal(nearest_code(z, c), torch.cdist(z, c).argmin(dim=1))


def test_straight_through_gradient_and_commitment_loss():
    vq = make_quantizer(commitment_weight=0.25)
    x = torch.randn(2, 5, 12, generator=torch.Generator().manual_seed(3), requires_grad=True)
    out = vq.eval()(x)
    # d(quantized)/d(latent) is the identity: the decoder's gradient reaches the encoder side.
    (g_q,) = torch.autograd.grad((out.quantized * torch.arange(4.0)).sum(), out.latent, retain_graph=True)
    torch.testing.assert_close(g_q, torch.arange(4.0).expand(2, 5, 4))
    codes = vq.codebook[out.indices]
    expected = 0.25 * ((out.latent.detach() - codes) ** 2).sum(-1).mean()
    torch.testing.assert_close(out.commitment_loss, expected)
    out.commitment_loss.backward()
    assert x.grad.abs().sum() > 0 and vq.encode_task_layer[0].weight.grad.abs().sum() > 0


def test_weights_select_counted_tokens_for_loss_and_statistics():
    vq = make_quantizer().eval()
    x = torch.randn(2, 6, 12, generator=torch.Generator().manual_seed(4))
    keep = torch.tensor([[1, 0, 1, 0, 0, 0], [0, 0, 0, 1, 1, 1]], dtype=torch.float32)
    out = vq(x, weights=keep)
    sel = keep.bool()
    codes = vq.codebook[out.indices]
    expected = 0.25 * ((out.latent - codes) ** 2).sum(-1)[sel].mean()
    torch.testing.assert_close(out.commitment_loss, expected)
    hist = torch.bincount(out.indices[sel], minlength=9).float() / sel.sum()
    nz = hist[hist > 0]
    torch.testing.assert_close(out.perplexity, torch.exp(-(nz * nz.log()).sum()))
    torch.testing.assert_close(out.usage, torch.tensor((hist > 0).sum().item() / 9))


def test_ema_update_on_a_hand_example():
    # K = 2 unit codes e1, e2; decay 0.5; four tokens: three near e1, one exactly e2.
    vq = make_quantizer(codebook_size=2, code_dim=2, kmeans_init=False, ema_decay=0.5, dead_code_threshold=0.0)
    with torch.no_grad():
        vq.codebook.copy_(torch.eye(2))
        vq.ema_sum.copy_(torch.eye(2))
        vq.ema_count.fill_(1.0)
    z = F.normalize(torch.tensor([[1.0, 0.2], [1.0, -0.2], [1.0, 0.1], [0.0, 1.0]]), dim=1)
    vq.train()
    vq._update(z, torch.tensor([0, 0, 0, 1]))
    # n = 0.5 * 1 + 0.5 * count; s = 0.5 * e_k + 0.5 * sum of its tokens; c = s / |s|
    torch.testing.assert_close(vq.ema_count, torch.tensor([0.5 + 1.5, 0.5 + 0.5]))
    s0 = 0.5 * torch.tensor([1.0, 0.0]) + 0.5 * z[:3].sum(0)
    torch.testing.assert_close(vq.ema_sum[0], s0)
    torch.testing.assert_close(vq.codebook[0], s0 / s0.norm())
    torch.testing.assert_close(vq.codebook[1], torch.tensor([0.0, 1.0]))


def test_kmeans_init_from_the_first_batch_finds_the_clusters():
    centres = F.normalize(torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]]), dim=1)
    g = torch.Generator().manual_seed(5)
    pts = F.normalize(centres.repeat_interleave(40, 0) + 0.05 * torch.randn(120, 3, generator=g), dim=1)
    torch.manual_seed(0)
    found, counts = spherical_kmeans(pts, 3, iters=10)
    order = found.argmax(dim=1).argsort()
    assert torch.allclose(found[order], centres, atol=0.02)
    assert counts.tolist() == [40.0, 40.0, 40.0]

    vq = make_quantizer(code_dim=3, codebook_size=3, kmeans_iters=10, recent_buffer_size=256).train()
    assert not bool(vq.initialized)
    vq._update(pts, torch.zeros(120, dtype=torch.long))
    assert bool(vq.initialized)
    assert torch.allclose(vq.codebook[vq.codebook.argmax(dim=1).argsort()], centres, atol=0.02)
    torch.testing.assert_close(vq.ema_count.sort().values, torch.full((3,), 40.0))


def test_kmeans_waits_for_the_configured_number_of_batches():
    vq = make_quantizer(kmeans_init_batches=2).train()
    before = vq.codebook.clone()
    x = torch.randn(2, 5, 12, generator=torch.Generator().manual_seed(6))
    vq(x)
    assert not bool(vq.initialized) and torch.equal(vq.codebook, before)
    vq(x)
    assert bool(vq.initialized) and not torch.equal(vq.codebook, before)


def test_dead_codes_restart_from_recent_outputs():
    vq = make_quantizer(codebook_size=4, code_dim=2, kmeans_init=False, ema_decay=0.5, dead_code_threshold=0.3)
    with torch.no_grad():
        vq.codebook.copy_(F.normalize(torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0], [0.0, -1.0]]), dim=1))
        vq.ema_sum.copy_(vq.codebook)
        vq.ema_count.copy_(torch.tensor([1.0, 1.0, 0.2, 1.0]))  # code 2 is nearly dead
    z = F.normalize(torch.tensor([[1.0, 0.1], [0.1, 1.0], [0.2, -1.0]]), dim=1)
    vq.train()._update(z, torch.tensor([0, 1, 3]))
    # code 2: count 0.5 * 0.2 = 0.1 < 0.3 -> replaced by one of the recent outputs, count reset to 1
    assert any(torch.allclose(vq.codebook[2], r) for r in z)
    assert vq.ema_count[2] == 1.0
    assert vq.dead_code_count() == 0
    torch.testing.assert_close(vq.ema_count[[0, 1, 3]], torch.tensor([1.0, 1.0, 1.0]))


def test_eval_mode_and_update_false_leave_the_codebook_alone():
    vq = make_quantizer(kmeans_init=False)
    state = {k: v.clone() for k, v in vq.state_dict().items()}
    x = torch.randn(2, 5, 12, generator=torch.Generator().manual_seed(7))
    vq.eval()(x)
    vq.train()(x, update=False)
    for k, v in vq.state_dict().items():
        assert torch.equal(v, state[k]), k
    vq(x)
    assert not torch.equal(vq.ema_count, state["ema_count"])


def test_uniform_usage_has_perplexity_k():
    vq = make_quantizer(codebook_size=4, code_dim=2, width=2).eval()
    with torch.no_grad():
        vq.codebook.copy_(torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0], [0.0, -1.0]]))
        vq.encode_task_layer[0].weight.copy_(torch.eye(2))
        vq.encode_task_layer[0].bias.zero_()
        vq.encode_task_layer[2].weight.copy_(torch.eye(2))
        vq.encode_task_layer[2].bias.zero_()
    # tanh keeps signs, so the four axis directions map to the four codes
    x = torch.tensor([[[2.0, 0.0], [0.0, 2.0], [-2.0, 0.0], [0.0, -2.0]]])
    out = vq(x)
    assert out.indices.tolist() == [[0, 1, 2, 3]]
    assert math.isclose(out.perplexity.item(), 4.0, rel_tol=1e-6) and out.usage.item() == 1.0


def test_distributed_update_reduces_statistics_and_broadcasts(tmp_path):
    # A one-process gloo group exercises the all-reduce / broadcast calls of the update rule.
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'pg'}", rank=0, world_size=1)
    try:
        vq = make_quantizer(codebook_size=2, code_dim=2, kmeans_init=False, ema_decay=0.5, dead_code_threshold=0.0)
        with torch.no_grad():
            vq.codebook.copy_(torch.eye(2))
            vq.ema_sum.copy_(torch.eye(2))
        vq.train()._update(torch.eye(2), torch.tensor([0, 1]))
        torch.testing.assert_close(vq.codebook, torch.eye(2))
        torch.testing.assert_close(vq.ema_count, torch.ones(2))
    finally:
        dist.destroy_process_group()


def test_config_checks_name_the_field():
    with pytest.raises(ValueError, match="ema_decay"):
        VectorQuantizerConfig(ema_decay=1.0)
    with pytest.raises(ValueError, match="codebook_size"):
        VectorQuantizerConfig(codebook_size=0)
