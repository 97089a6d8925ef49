"""Text generation through transformers generate with spliced image features, against hand loops."""
from __future__ import annotations

import pytest
import torch

from lavit_pl.data.sequences import assemble, image_part, text_part
from lavit_pl.generation.text import (
    SuppressIdsProcessor, TextGenerationConfig, generate_text, generate_text_ids,
)
from lavit_pl.models.llm import LlamaShape, UnifiedLM, UnifiedVocab, build_random_llama, extend_vocabulary
from lavit_pl.models.text_tokenizer import TextTokenizerConfig, train_text_tokenizer
from transformers import PreTrainedTokenizerFast

V_TEXT, K, D_VIS = 300, 16, 8
VOCAB = UnifiedVocab(V_TEXT, K)


@pytest.fixture(scope="module", params=[1.0, 4.0], ids=["eos-plain", "eos-boosted"])
def rigged_lm(request) -> UnifiedLM:
    """Visual rows of lm_head scaled x20 so that, unsuppressed, a visual id wins every step; the
    </s> row scaled x4 in the second variant so that rows stop early (1-3 tokens) without a minimum."""
    shape = LlamaShape(hidden_size=32, num_heads=4, num_kv_heads=2, intermediate_size=64, max_positions=128)
    llm = build_random_llama(shape, V_TEXT, seed=1)
    extend_vocabulary(llm, VOCAB, seed=1)
    with torch.no_grad():
        llm.lm_head.weight[V_TEXT:] *= 20
        llm.lm_head.weight[VOCAB.eos_id] *= request.param
    lm = UnifiedLM(llm, VOCAB, D_VIS, seed=1).eval()
    lm.eos_boost = request.param  # read by the tests
    return lm


def prompts_and_features():
    """Three prompt lengths (10, 3, 7): left padding differs per row."""
    g = torch.Generator().manual_seed(0)
    prompts = [
        assemble(image_part(VOCAB, num_features=5), text_part([40, 41, 42], False)),  # VQA-like
        assemble(text_part([1, 50, 51], False)),  # text only
        assemble(image_part(VOCAB, num_features=5)),  # captioning: nothing after [/IMG]
    ]
    feats = [torch.randn(5, D_VIS, generator=g), None, torch.randn(5, D_VIS, generator=g)]
    return prompts, feats


def hand_greedy(lm, prompt, feat, max_new, min_new):
    """Full forward over the whole sequence each step (no cache, no padding), text ids only."""
    ids, slot, out, unsuppressed = prompt.input_ids, prompt.feature_slot, [], []
    for step in range(max_new):
        with torch.no_grad():
            logits = lm(ids[None], None, slot[None], feat)[0, -1]
        unsuppressed.append(int(logits.argmax()))
        logits[V_TEXT:] = float("-inf")
        if step < min_new:
            logits[VOCAB.eos_id] = float("-inf")
        token = int(logits.argmax())
        out.append(token)
        if token == VOCAB.eos_id:
            break
        ids, slot = torch.cat([ids, torch.tensor([token])]), torch.cat([slot, torch.tensor([-1])])
    return out, unsuppressed


def strip_after_eos(row):
    row = row.tolist()
    return row[: row.index(VOCAB.eos_id) + 1] if VOCAB.eos_id in row else row


@pytest.mark.parametrize("min_new", [0, 4])
def test_greedy_equals_hand_loop_and_never_emits_visual_ids(rigged_lm, min_new):
    prompts, feats = prompts_and_features()
    features = torch.cat([f for f in feats if f is not None])
    config = TextGenerationConfig(num_beams=1, min_new_tokens=min_new, max_new_tokens=8)
    got = generate_text_ids(rigged_lm, prompts, features, config)
    assert got.shape[0] == 3 and got.shape[1] <= 8
    assert bool((got < V_TEXT).all())
    for row, prompt, feat in zip(got, prompts, feats):
        expected, unsuppressed = hand_greedy(rigged_lm, prompt, feat, 8, min_new)
        assert unsuppressed[0] >= V_TEXT + 2  # the rig works: a visual code is the raw argmax
        assert strip_after_eos(row) == expected
        assert VOCAB.eos_id not in row.tolist()[:min_new]
    lengths = [len(strip_after_eos(row)) for row in got]
    if rigged_lm.eos_boost > 1 and min_new == 0:
        assert min(lengths) < 4  # the boosted </s> stops rows early, so min_new_tokens=4 is exercised


def test_beam_of_one_is_greedy(rigged_lm):
    prompts, feats = prompts_and_features()
    features = torch.cat([f for f in feats if f is not None])
    greedy = generate_text_ids(rigged_lm, prompts, features, TextGenerationConfig(max_new_tokens=6))
    beam1 = generate_text_ids(rigged_lm, prompts, features,
                              TextGenerationConfig(num_beams=1, length_penalty=0.0, max_new_tokens=6))
    assert torch.equal(greedy, beam1)


def test_batched_beam_search_equals_one_prompt_at_a_time(rigged_lm):
    """Left padding, spliced features and the cache must not change beam search per prompt."""
    prompts, feats = prompts_and_features()
    features = torch.cat([f for f in feats if f is not None])
    config = TextGenerationConfig(num_beams=3, min_new_tokens=2, max_new_tokens=7, length_penalty=0.0)
    batched = generate_text_ids(rigged_lm, prompts, features, config)
    assert bool((batched < V_TEXT).all())
    for row, prompt, feat in zip(batched, prompts, feats):
        alone = generate_text_ids(rigged_lm, [prompt], feat, config)[0]
        assert strip_after_eos(row) == strip_after_eos(alone)


def test_suppress_processor_masks_exactly_the_banned_ids():
    banned = ~VOCAB.text_mask()
    scores = torch.randn(2, VOCAB.size, generator=torch.Generator().manual_seed(0))
    out = SuppressIdsProcessor(banned)(torch.zeros(2, 1, dtype=torch.long), scores)
    assert bool(torch.isinf(out[:, V_TEXT:]).all()) and torch.equal(out[:, :V_TEXT], scores[:, :V_TEXT])


def test_generate_text_decodes_strings(rigged_lm):
    words = "a red blue circle square left of the two".split()
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=train_text_tokenizer([" ".join(words[i:] + words[:i]) for i in range(9)] * 5,
                                              TextTokenizerConfig(vocab_size=V_TEXT, min_frequency=1)),
        bos_token="<s>", eos_token="</s>", unk_token="<unk>")
    prompts, feats = prompts_and_features()
    features = torch.cat([f for f in feats if f is not None])
    config = TextGenerationConfig(max_new_tokens=5)
    texts = generate_text(rigged_lm, tokenizer, prompts, features, config)
    ids = generate_text_ids(rigged_lm, prompts, features, config)
    assert texts == [tokenizer.decode(r, skip_special_tokens=True) for r in ids.tolist()]
    assert all(isinstance(t, str) for t in texts) and any(texts)


def test_config_checks_name_the_field():
    with pytest.raises(ValueError, match="TextGenerationConfig.min_new_tokens"):
        TextGenerationConfig(min_new_tokens=9, max_new_tokens=8)
    with pytest.raises(ValueError, match="TextGenerationConfig.num_beams"):
        TextGenerationConfig(num_beams=0)
