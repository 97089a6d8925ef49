"""CFG visual-code sampler: cache vs full forward, cfg=1 vs conditional only, id constraints."""
from __future__ import annotations

import pytest
import torch

from lavit_pl.data.sequences import assemble, image_part, text_part
from lavit_pl.generation.image_tokens import ImageSamplingConfig, _top_k_filter, sample_image_tokens
from lavit_pl.models.llm import LlamaShape, UnifiedLM, UnifiedVocab, build_random_llama, extend_vocabulary

V_TEXT, K, D_VIS = 300, 32, 8
VOCAB = UnifiedVocab(V_TEXT, K)
IMG, END = VOCAB.image_start_id, VOCAB.image_end_id


def tiny_lm(text_bonus: float = 0.0, end_bonus: float = 0.0) -> UnifiedLM:
    """A tiny LM; the rig adds constants to lm_head's output (a bias it does not have) on the text
    ids and on [/IMG]: the same in both streams, so guidance keeps them in full."""
    shape = LlamaShape(hidden_size=32, num_heads=4, num_kv_heads=2, intermediate_size=64, max_positions=128)
    llm = build_random_llama(shape, V_TEXT, seed=2)
    extend_vocabulary(llm, VOCAB, seed=2)
    bonus = torch.zeros(VOCAB.size)
    bonus[:V_TEXT], bonus[END] = text_bonus, end_bonus
    if bonus.any():
        llm.lm_head.register_forward_hook(lambda module, args, out: out + bonus)
    return UnifiedLM(llm, VOCAB, D_VIS, seed=2).eval()


def text_prompts():
    """Captions of different lengths (left padding differs), BOS first as in training."""
    return [assemble(text_part([1, 20, 21, 22, 23, 24], False)), assemble(text_part([1, 30], False)),
            assemble(text_part([1, 40, 41, 42], False))]


def full_forward_last(lm, example, feat=None):
    with torch.no_grad():
        return lm(example.input_ids[None], None, example.feature_slot[None], feat)[0, -1]


@pytest.mark.parametrize("cfg", [3.0, None])
def test_cached_step_logits_equal_full_forward(cfg):
    """Each step's guided logits from the batched, left-padded, cached run equal those from a fresh
    full forward over each stream alone. fp32: only summation order differs -> 1e-4 (|l| ~ 1..10)."""
    lm = tiny_lm()
    g = torch.Generator().manual_seed(0)
    feats = torch.randn(3, D_VIS, generator=g)
    prompts = text_prompts() + [assemble(image_part(VOCAB, num_features=3), text_part([50, 51], False))]
    config = ImageSamplingConfig(top_k=8, cfg_scale=cfg, max_new_tokens=6, min_new_tokens=2)
    out = sample_image_tokens(lm, prompts, feats, config, return_logits=True)
    assert out.ids.shape == (4, len(out.step_logits))
    for b, prompt in enumerate(prompts):
        feat = feats if prompt.num_features else None
        for step, recorded in enumerate(out.step_logits):
            if step > 0 and out.ids[b, step - 1] == END:
                break
            sampled = text_part(out.ids[b, :step], False)
            cond = full_forward_last(lm, assemble(prompt, text_part([IMG], False), sampled), feat)
            if cfg is None:
                guided = cond
            else:
                uncond = full_forward_last(lm, assemble(text_part([IMG], False), sampled))
                guided = uncond + cfg * (cond - uncond)
            allowed = VOCAB.visual_mask()
            allowed[END] = step >= 2
            torch.testing.assert_close(recorded[b][allowed], guided[allowed], rtol=0, atol=1e-4)
            assert bool(torch.isinf(recorded[b][~allowed]).all())


def test_cfg_one_equals_conditional_only_sampling():
    lm = tiny_lm()
    base = dict(top_k=10, max_new_tokens=12, min_new_tokens=3, seed=7)
    guided = sample_image_tokens(lm, text_prompts(), None, ImageSamplingConfig(cfg_scale=1.0, **base))
    plain = sample_image_tokens(lm, text_prompts(), None, ImageSamplingConfig(cfg_scale=None, **base))
    assert torch.equal(guided.ids, plain.ids)
    assert [c.tolist() for c in guided.codes] == [c.tolist() for c in plain.codes]
    other = sample_image_tokens(lm, text_prompts(), None, ImageSamplingConfig(cfg_scale=4.0, **base))
    assert not torch.equal(other.ids, guided.ids)  # guidance does change the samples
    again = sample_image_tokens(lm, text_prompts(), None, ImageSamplingConfig(cfg_scale=1.0, **base))
    assert torch.equal(again.ids, guided.ids)  # seeded


def test_no_text_id_is_ever_sampled_even_when_most_likely():
    lm = tiny_lm(text_bonus=100.0)
    with torch.no_grad():
        first = full_forward_last(lm, assemble(text_prompts()[0], text_part([IMG], False)))
    assert int(first.argmax()) < V_TEXT  # the rig works
    config = ImageSamplingConfig(top_k=VOCAB.size, cfg_scale=1.5, max_new_tokens=20, min_new_tokens=0, seed=1)
    out = sample_image_tokens(lm, text_prompts(), None, config)
    assert bool((VOCAB.is_visual(out.ids) | (out.ids == END)).all())
    for codes, row in zip(out.codes, out.ids):
        assert bool(((codes >= 0) & (codes < K)).all())
        assert torch.equal(VOCAB.code_to_id(codes), row[: len(codes)])


def test_end_token_waits_for_min_and_stops_rows():
    lm = tiny_lm(end_bonus=100.0)  # [/IMG] dominates as soon as it is allowed
    out = sample_image_tokens(lm, text_prompts(), None,
                              ImageSamplingConfig(top_k=5, max_new_tokens=10, min_new_tokens=4))
    assert out.ids.shape == (3, 5)  # all rows stop together: 4 codes then [/IMG]
    assert bool(out.finished.all()) and [len(c) for c in out.codes] == [4, 4, 4]
    assert bool((out.ids[:, 4] == END).all())
    capped = sample_image_tokens(tiny_lm(), text_prompts(), None,
                                 ImageSamplingConfig(top_k=5, max_new_tokens=6, min_new_tokens=6))
    assert capped.ids.shape == (3, 6) and not capped.finished.any()
    assert [len(c) for c in capped.codes] == [6, 6, 6]


def test_top_k_filter_by_hand():
    logits = torch.tensor([[0.1, 3.0, -1.0, 2.0, float("-inf")]])
    kept = _top_k_filter(logits, 2)
    assert torch.isfinite(kept).tolist() == [[False, True, False, True, False]]
    assert torch.equal(_top_k_filter(logits, 99), logits)


def test_config_checks_name_the_field():
    with pytest.raises(ValueError, match="ImageSamplingConfig.temperature"):
        ImageSamplingConfig(temperature=0)
    with pytest.raises(ValueError, match="ImageSamplingConfig.min_new_tokens"):
        ImageSamplingConfig(max_new_tokens=3, min_new_tokens=4)
