"""Token merger: the parallel masked path and the gathered padded path against an explicit per-image
partition X -> (X_r, X_d) with equation (2), float64 (tolerance 1e-10: only summation order differs)."""
from __future__ import annotations

import math

import pytest
import torch

from lavit_pl.models.tokenizer.attention import policy_attention, policy_attention_explicit
from lavit_pl.models.tokenizer.merger import TokenMerger, TokenMergerConfig

B, N, D, H = 6, 12, 32, 4
TOL = dict(rtol=1e-10, atol=1e-10)


def make_merger(**kw) -> TokenMerger:
    torch.manual_seed(0)
    merger = TokenMerger(TokenMergerConfig(width=D, depth=2, num_heads=H, mlp_dim=48, **kw)).double()
    # Non-zero biases and LayerNorm affines (the init zeroes them) so a swapped norm or a stray
    # projection bias on an image with nothing dropped would show.
    for name, p in merger.named_parameters():
        if "norm" in name or name.endswith("bias"):
            p.data.add_(0.1 * torch.randn_like(p))
    return merger


def random_inputs(seed: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(B, N, D, generator=g, dtype=torch.float64)
    keep = torch.rand(B, N, generator=g) < 0.4
    keep[0] = True  # nothing dropped -> zero cross-attention update
    keep[1] = False
    keep[1, 5] = True  # exactly one kept
    keep[2] = False
    keep[2, 0] = True  # the one kept token is the first (sees only itself)
    keep[3, :] = torch.arange(N) % 2 == 1  # alternate
    return x, keep


def _attend(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, causal: bool) -> torch.Tensor:
    """Explicit multi-head softmax(QK^T / sqrt(E)) V for one image: (L, D), (S, D), (S, D) -> (L, D)."""
    e = D // H
    q, k, v = (t.view(t.shape[0], H, e).transpose(0, 1) for t in (q, k, v))  # (H, L, E)
    scores = q @ k.transpose(-1, -2) / math.sqrt(e)
    if causal:
        scores = scores.masked_fill(~torch.ones_like(scores, dtype=torch.bool).tril(), float("-inf"))
    return (scores.softmax(dim=-1) @ v).transpose(0, 1).reshape(q.shape[1], D)


def reference_one_image(merger: TokenMerger, x: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
    """Partition one image and apply the blocks literally: X_r self-attends (causal among kept),
    then Delta X_r = softmax(Q K^T / sqrt(E)) V with Q from X_r and K, V from LayerNorm(raw X_d)."""
    cfg = merger.cfg
    x_r = x[keep]  # (T, D)
    x_d = merger.norm_memory(x[~keep])  # (N - T, D)
    for blk in merger.blocks:
        a = blk.norm_self(x_r)
        q, k, v = blk.self_attn.qkv(a).chunk(3, dim=-1)
        x_r = x_r + blk.self_attn.proj(_attend(q, k, v, causal=cfg.self_attention == "causal"))
        if cfg.merge_dropped and len(x_d) > 0:
            a = blk.norm_cross(x_r)
            ca = blk.cross_attn
            x_r = x_r + ca.proj(_attend(ca.q(a), ca.k(x_d), ca.v(x_d), causal=False))
        x_r = x_r + blk.mlp(blk.norm_mlp(x_r))
    return merger.norm_out(x_r)


@pytest.mark.parametrize(
    "variant", [{}, {"self_attention": "bidirectional"}, {"merge_dropped": False}], ids=["causal", "bidirectional", "no_merger"]
)
def test_masked_and_padded_paths_equal_per_image_partition(variant):
    merger = make_merger(**variant)
    x, keep = random_inputs()
    with torch.no_grad():
        masked = merger(x, keep)  # (B, N, D)
        padded, valid = merger.forward_padded(x, keep)
        listed = merger.merge(x, keep)
        for b in range(B):
            expected = reference_one_image(merger, x[b], keep[b])
            torch.testing.assert_close(masked[b][keep[b]], expected, **TOL)
            t = int(keep[b].sum())
            assert valid[b].sum() == t and valid[b, :t].all()
            torch.testing.assert_close(padded[b, :t], expected, **TOL)
            torch.testing.assert_close(listed[b], expected, **TOL)
            assert (padded[b, t:] == 0).all()


def test_nothing_dropped_gives_zero_cross_update():
    merger = make_merger()
    x, keep = random_inputs()
    blk = merger.blocks[0]
    a = blk.norm_cross(x)
    memory = merger.norm_memory(x)
    with torch.no_grad():
        update = blk.cross_attn(a, memory, keep.double())
    assert (update[0] == 0).all()  # image 0 keeps every token
    assert update[1].abs().sum() > 0


def test_dropped_positions_do_not_change_kept_outputs():
    # Kept outputs depend on dropped tokens only through LayerNorm(raw) keys/values, never through the
    # dropped positions' own residual streams: perturbing a dropped token's features changes kept outputs
    # exactly as the partition reference says, and perturbing nothing leaves them bit-identical.
    merger = make_merger()
    x, keep = random_inputs()
    x2 = x.clone()
    x2[4][~keep[4]] += 1.0
    with torch.no_grad():
        out1, out2 = merger(x, keep), merger(x2, keep)
        torch.testing.assert_close(out2[4][keep[4]], reference_one_image(merger, x2[4], keep[4]), **TOL)
        torch.testing.assert_close(out1[:4], out2[:4], rtol=0, atol=0)


def test_sdpa_policy_attention_equals_multiplicative_softmax_including_gradients():
    # Fractional weights: the value-augmented SDPA call must equal exp(s) * w / sum(exp(s) * w), the
    # DynamicViT formula, in value and in its gradient with respect to every weight.
    g = torch.Generator().manual_seed(3)
    q, k, v = (torch.randn(2, 3, 5, 4, generator=g, dtype=torch.float64) for _ in range(3))
    w = torch.rand(2, 5, generator=g, dtype=torch.float64).requires_grad_(True)
    mask = torch.ones(5, 5, dtype=torch.bool).tril()
    ours = policy_attention(q, k, v, w, attn_mask=mask)
    ref = policy_attention_explicit(q, k, v, w[:, None, None, :] * mask, eps=0.0)
    torch.testing.assert_close(ours, ref, **TOL)
    (g_ours,) = torch.autograd.grad(ours.sum(), w)
    (g_ref,) = torch.autograd.grad(ref.sum(), w)
    torch.testing.assert_close(g_ours, g_ref, **TOL)


def test_masked_path_is_differentiable_in_the_keep_mask():
    merger = make_merger()
    x, keep = random_inputs()
    soft = torch.full((B, N), 0.5, dtype=torch.float64, requires_grad=True)
    mask = keep.double() + (soft - soft.detach())  # straight-through: values exactly 0/1
    out = merger(x, mask)
    (out * keep[..., None]).sum().backward()
    grad = soft.grad
    assert torch.isfinite(grad).all()
    dropped_and_merging = (~keep) & keep.any(dim=1, keepdim=True)
    assert grad[dropped_and_merging].abs().min() > 0  # dropped tokens get a learning signal too


def test_masked_path_matches_release_formula_everywhere_with_gradients():
    # The release computes exp(s - max) * P / sum(...) with P_ij = causal * (M_j + (1 - M_j) [i == j])
    # for self-attention and P_ij = 1 - M_j for cross-attention. Our SDPA path must agree at every
    # position (dropped rows included: they carry the selector's gradient) and in d/dM. The explicit
    # path with eps = 1e-30 is that formula up to ~1e-30 (float64).
    sdpa, explicit = make_merger(), make_merger(softmax_eps=1e-30)
    explicit.load_state_dict(sdpa.state_dict())
    x, keep = random_inputs()
    grads = []
    for merger in (sdpa, explicit):
        soft = torch.full((B, N), 0.5, dtype=torch.float64, requires_grad=True)
        out = merger(x, keep.double() + (soft - soft.detach()))
        grads.append((out, torch.autograd.grad((out * torch.linspace(-1, 1, D, dtype=torch.float64)).sum(), soft)[0]))
    torch.testing.assert_close(grads[0][0], grads[1][0], **TOL)
    torch.testing.assert_close(grads[0][1], grads[1][1], **TOL)


def test_gradcheck_against_finite_differences():
    merger = TokenMerger(TokenMergerConfig(width=8, depth=1, num_heads=2, mlp_dim=8)).double()
    g = torch.Generator().manual_seed(5)
    x = torch.randn(2, 4, 8, generator=g, dtype=torch.float64)
    m = torch.tensor([[0.9, 0.2, 0.7, 0.1], [0.3, 0.8, 0.95, 0.6]], dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda mm: merger(x, mm), (m,))


def test_no_nan_for_all_kept_and_one_kept_with_gradients():
    merger = make_merger().float()
    x, keep = random_inputs()
    x = x.float().requires_grad_(True)
    out = merger(x, keep.float())
    out.sum().backward()
    assert torch.isfinite(out).all() and torch.isfinite(x.grad).all()
    padded, _ = merger.forward_padded(x.detach(), keep)
    assert torch.isfinite(padded).all()


def test_all_images_keep_everything_padded_path_skips_cross_attention():
    merger = make_merger()
    x, _ = random_inputs()
    keep = torch.ones(B, N, dtype=torch.bool)
    with torch.no_grad():
        torch.testing.assert_close(merger.forward_padded(x, keep)[0], merger(x, keep), **TOL)
        torch.testing.assert_close(merger(x, keep)[0], reference_one_image(merger, x[0], keep[0]), **TOL)


def test_release_eps_smoothing_is_a_small_perturbation():
    # eps = 1e-6 (release) adds eps/N to every weight; on images that drop something the result moves by
    # O(eps) relative to the exact partition (measured ~1e-7 here; bound 1e-5).
    exact, smoothed = make_merger(), make_merger(softmax_eps=1e-6)
    smoothed.load_state_dict(exact.state_dict())
    x, keep = random_inputs()
    rows = keep.any(dim=1) & (~keep).any(dim=1)
    with torch.no_grad():
        a, b = exact(x, keep)[rows], smoothed(x, keep)[rows]
    diff = (a - b).abs().max()
    assert 0 < diff < 1e-5


def test_bad_shapes_are_named():
    merger = make_merger()
    with pytest.raises(ValueError, match="keep_mask must be"):
        merger(torch.zeros(2, N, D, dtype=torch.float64), torch.ones(2, N + 1, dtype=torch.bool))
    with pytest.raises(ValueError, match="self_attention"):
        TokenMergerConfig(self_attention="sideways")
