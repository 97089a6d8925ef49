"""Token selector: Gumbel straight-through sampling, deterministic inference, >= 1 kept token."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from lavit_pl.models.tokenizer.selector import TokenSelector, TokenSelectorConfig, expected_topk_mask

B, N, D = 4, 10, 16


def make_selector(**kw) -> TokenSelector:
    torch.manual_seed(0)
    sel = TokenSelector(TokenSelectorConfig(width=D, **kw))
    for p in sel.parameters():  # the init zeroes biases; make the distribution non-uniform
        p.data.add_(0.3 * torch.randn_like(p))
    return sel


def features(seed: int = 1) -> torch.Tensor:
    return torch.randn(B, N, D, generator=torch.Generator().manual_seed(seed))


def test_gumbel_straight_through_values_and_gradient():
    sel = make_selector(tau=0.7).train()
    x = features()
    with torch.random.fork_rng():
        torch.manual_seed(123)
        out = sel(x)
    # Re-draw the same Gumbel noise and build the soft sample by hand (equation 1).
    log_probs = sel.log_probs(x)
    with torch.random.fork_rng():
        torch.manual_seed(123)
        soft = F.gumbel_softmax(log_probs, tau=0.7, hard=False)[..., 0]
    assert set(out.keep_mask.detach().unique().tolist()) <= {0.0, 1.0}
    hard = (soft >= 0.5).float()
    assert hard.sum(dim=1).min() > 0, "pick a seed where no image needs the >= 1 rule"
    torch.testing.assert_close(out.keep_mask.detach(), hard, rtol=0, atol=0)
    w = torch.randn(B, N, generator=torch.Generator().manual_seed(2))
    params = [sel.out_mlp[4].weight, sel.in_mlp[1].weight]
    g_st = torch.autograd.grad((out.keep_mask * w).sum(), params)
    g_soft = torch.autograd.grad((soft * w).sum(), params)
    for a, b in zip(g_st, g_soft):
        assert a.abs().sum() > 0
        torch.testing.assert_close(a, b)  # straight-through: gradient of the soft sample


def test_training_samples_vary_with_the_noise():
    sel = make_selector().train()
    x = features()
    torch.manual_seed(0)
    a = sel(x).keep_mask
    b = sel(x).keep_mask
    assert not torch.equal(a, b)


def test_eval_argmax_is_deterministic_and_equals_argmax_of_log_probs():
    sel = make_selector().eval()
    x = features()
    a, b = sel(x), sel(x)
    torch.testing.assert_close(a.keep_mask, b.keep_mask, rtol=0, atol=0)
    expected = (a.log_probs.argmax(dim=-1) == 0).float()
    torch.testing.assert_close(a.keep_mask.detach(), expected, rtol=0, atol=0)
    torch.testing.assert_close(a.keep_prob, a.log_probs[..., 0].exp())


def test_release_style_gumbel_sampling_at_inference():
    sel = make_selector(inference="gumbel").eval()
    x = features()
    torch.manual_seed(0)
    masks = [sel(x).keep_mask for _ in range(3)]
    assert not all(torch.equal(masks[0], m) for m in masks[1:])


def test_expected_topk_keeps_round_sum_p_most_probable_patches():
    p = torch.tensor([[0.30, 0.35, 0.32, 0.34, 0.33, 0.31],   # sum 1.95 -> 2: indices 1 and 3
                      [0.90, 0.10, 0.95, 0.05, 0.80, 0.05],   # sum 2.85 -> 3: indices 2, 0, 4
                      [0.05, 0.05, 0.05, 0.05, 0.05, 0.05],   # sum 0.30 -> 0, at least 1: the tie goes to index 0
                      [0.50, 0.50, 0.50, 0.50, 0.50, 0.50]])  # sum 3 -> ties: lowest indices 0, 1, 2
    expected = torch.tensor([[0, 1, 0, 1, 0, 0], [1, 0, 1, 0, 1, 0], [1, 0, 0, 0, 0, 0], [1, 1, 1, 0, 0, 0]], dtype=torch.bool)
    assert torch.equal(expected_topk_mask(p), expected)


def test_expected_topk_equals_argmax_for_a_confident_selector_and_is_deterministic():
    sel = make_selector(inference="expected_topk").eval()
    x = features()
    a, b = sel(x), sel(x)
    torch.testing.assert_close(a.keep_mask, b.keep_mask, rtol=0, atol=0)
    counts = a.keep_mask.sum(dim=1)
    torch.testing.assert_close(counts, a.keep_prob.sum(dim=1).round().clamp(min=1))
    confident = (a.keep_prob > 0.5).float()  # the same selection, made certain
    torch.testing.assert_close(expected_topk_mask(confident).float(), confident.clamp_min(0) + (confident.sum(1, keepdim=True) == 0) * F.one_hot(torch.zeros(B, dtype=torch.long), N))


@pytest.mark.parametrize("training", [True, False])
def test_at_least_one_token_is_kept(training):
    sel = make_selector().train(training)
    with torch.no_grad():
        sel.out_mlp[4].bias.copy_(torch.tensor([-50.0, 50.0]))  # every patch prefers "drop"
    x = features()
    torch.manual_seed(0)
    out = sel(x)
    assert (out.keep_mask.detach().sum(dim=1) == 1).all()
    if not training:  # the forced token is the most probable keep
        forced = out.keep_mask.detach().argmax(dim=1)
        assert torch.equal(forced, out.keep_prob.argmax(dim=1))


def test_global_pooling_uses_all_ones_policy_by_default():
    sel = make_selector()
    x = features()
    torch.testing.assert_close(sel.log_probs(x), sel.log_probs(x, policy=torch.ones(B, N)))
    half = torch.zeros(B, N)
    half[:, :3] = 1
    assert not torch.allclose(sel.log_probs(x), sel.log_probs(x, policy=half))
    # With a policy the global half only averages the weighted patches: appending ignored ones is a no-op.
    x_extra = torch.cat([x[:, :3], torch.randn(B, 4, D)], dim=1)
    pol_extra = torch.cat([torch.ones(B, 3), torch.zeros(B, 4)], dim=1)
    torch.testing.assert_close(sel.log_probs(x_extra, pol_extra)[:, :3], sel.log_probs(x[:, :3]))


def test_config_checks_name_the_field():
    with pytest.raises(ValueError, match="tau"):
        TokenSelectorConfig(tau=0)
    with pytest.raises(ValueError, match="inference"):
        TokenSelectorConfig(inference="topk")
