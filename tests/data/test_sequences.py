"""Stage-2 sequences: hand-checked layouts and labels; packing proven against documents run alone."""
from __future__ import annotations

import pytest
import torch

from lavit_pl.data.sequences import (
    Example, assemble, balanced_fit, collate_prompts, first_fit, image_part, image_to_text_example, pack_examples,
    text_examples, text_part, text_to_image_example,
)
from lavit_pl.models.llm import (
    LlamaShape, UnifiedLM, UnifiedVocab, build_random_llama, extend_vocabulary, packed_lm_loss,
)

V_TEXT, K, D_VIS = 300, 16, 8
VOCAB = UnifiedVocab(V_TEXT, K)
IMG, END, X = 300, 301, -100  # [IMG], [/IMG], no loss


def test_image_to_text_layout():
    e = image_to_text_example(VOCAB, [5, 6, 7], num_features=3)
    assert e.input_ids.tolist() == [IMG, 0, 0, 0, END, 5, 6, 7, 2]  # no BOS anywhere; </s> closes
    assert e.feature_slot.tolist() == [-1, 0, 1, 2, -1, -1, -1, -1, -1]
    assert e.labels.tolist() == [X, X, X, X, X, 5, 6, 7, 2]  # loss starts at the first caption token
    assert e.num_features == 3 and len(e) == 9
    quantized = image_to_text_example(VOCAB, [5], codes=torch.tensor([0, 15]), add_eos=False)  # Table 7a
    assert quantized.input_ids.tolist() == [IMG, 302, 317, END, 5]
    assert quantized.feature_slot.tolist() == [-1] * 5 and quantized.labels.tolist() == [X, X, X, X, 5]


def test_text_to_image_layout():
    e = text_to_image_example(VOCAB, [9, 10], torch.tensor([3, 4, 5]))
    assert e.input_ids.tolist() == [1, 9, 10, IMG, 305, 306, 307, END]
    # loss on caption, codes and [/IMG]; predicting [IMG] is not trained; BOS is never a target
    assert e.labels.tolist() == [X, 9, 10, X, 305, 306, 307, END]
    assert e.num_features == 0


def test_text_documents_and_chunking():
    (e,) = text_examples(VOCAB, [20, 21, 22], max_length=8)
    assert e.input_ids.tolist() == [1, 20, 21, 22, 2] and e.labels.tolist() == [X, 20, 21, 22, 2]
    chunks = text_examples(VOCAB, list(range(20, 30)), max_length=5)  # 12 tokens -> 5 + 5 + 2
    assert [c.input_ids.tolist() for c in chunks] == [[1, 20, 21, 22, 23], [24, 25, 26, 27, 28], [29, 2]]
    assert [c.labels.tolist() for c in chunks] == [[X, 20, 21, 22, 23], [24, 25, 26, 27, 28], [29, 2]]


def test_multimodal_prompt_numbers_slots_across_images():
    e = assemble(image_part(VOCAB, num_features=2), image_part(VOCAB, num_features=1), text_part([4], False))
    assert e.feature_slot.tolist() == [-1, 0, 1, -1, -1, 2, -1, -1]
    with pytest.raises(ValueError, match="inputs only"):
        image_part(VOCAB, num_features=2, loss=True)
    with pytest.raises(ValueError, match="exactly one"):
        image_part(VOCAB)
    with pytest.raises(ValueError, match="0..T-1 in order"):
        Example(torch.zeros(2, dtype=torch.long), torch.tensor([1, 0]), torch.zeros(2, dtype=torch.long))


def test_first_fit_placements_by_hand():
    # capacity 10: 6 -> row0@0; 5 -> row1@0; 4 -> row0@6; 3 -> row1@5; 2 -> row1@8; 1 -> row2@0? no: row1 full
    # (5+3+2=10), row0 full (6+4) -> new row2.
    assert first_fit([6, 5, 4, 3, 2, 1], 10) == [(0, 0), (1, 0), (0, 6), (1, 5), (1, 8), (2, 0)]
    with pytest.raises(ValueError, match="example #1 has length 11"):
        first_fit([3, 11], 10)


def test_balanced_fit_by_hand():
    # First-fit-decreasing needs 3 rows at capacity 10 (6+4 | 5+3+2 | 1); 21 tokens over 3 rows need
    # W >= 7, and at W = 7 FFD places 6 | 5 | 4 | 3 -> row2 | 2 -> row1 | 1 -> row0: three rows of 7.
    assert balanced_fit([6, 5, 4, 3, 2, 1], 10) == [(0, 0), (1, 0), (2, 0), (2, 4), (1, 5), (0, 6)]
    with pytest.raises(ValueError, match="example #1 has length 11"):
        balanced_fit([3, 11], 10)
    docs = [text_examples(VOCAB, list(range(3, 3 + n)), max_length=64)[0] for n in (6, 5, 4, 3, 2, 1)]
    # with BOS and EOS: 8+7+6+5+4+3 = 33 tokens; first-fit fills 8+4 | 7+5 | 6+3 (width 12), balanced
    # packing 8+3 | 7+4 | 6+5 (width 11)
    assert [len(d) for d in docs] == [8, 7, 6, 5, 4, 3]
    assert pack_examples(docs, context_length=12).input_ids.shape == (3, 11)
    assert pack_examples(docs, context_length=12, balance=False).input_ids.shape == (3, 12)


def test_pack_layout_targets_and_feature_offsets():
    a = image_to_text_example(VOCAB, [5, 6], num_features=2)  # len 7, 2 features
    b = text_to_image_example(VOCAB, [9], torch.tensor([1]))  # len 5
    c = image_to_text_example(VOCAB, [7], num_features=3)  # len 7, 3 features
    packed = pack_examples([a, b, c], context_length=12)
    assert packed.placements == [(0, 0), (0, 7), (1, 0)]
    assert packed.input_ids.shape == (2, 12)
    assert packed.position_ids.tolist() == [list(range(7)) + list(range(5)), list(range(7)) + list(range(5))]
    assert packed.document_index.tolist() == [[0] * 7 + [1] * 5, [2] * 7 + [-1] * 5]
    # targets shift within each document; the last token of a document predicts nothing
    assert packed.targets[0].tolist() == [X, X, X, 5, 6, 2, X, 9, X, 303, END, X]
    assert packed.targets[1].tolist() == [X, X, X, X, 7, 2, X, X, X, X, X, X]
    # features of c come after a's in input order
    assert packed.feature_slot.tolist() == [[-1, 0, 1] + [-1] * 9, [-1, 2, 3, 4] + [-1] * 8]
    assert packed.num_targets == 8
    trimmed = pack_examples([b], context_length=12)
    assert trimmed.input_ids.shape == (1, 5)  # no row wider than its contents
    assert pack_examples([b], context_length=12, pad_to_context=True).input_ids.shape == (1, 12)


def test_collate_prompts_left_pads():
    p1 = assemble(image_part(VOCAB, num_features=2), text_part([4, 5], False))
    p2 = assemble(text_part([1, 9], False))
    batch = collate_prompts([p2, p1], pad_id=2)
    assert batch["input_ids"].tolist() == [[2, 2, 2, 2, 1, 9], [IMG, 0, 0, END, 4, 5]]
    assert batch["attention_mask"].tolist() == [[0, 0, 0, 0, 1, 1], [1] * 6]
    assert batch["feature_slot"].tolist() == [[-1] * 6, [-1, 0, 1, -1, -1, -1]]


def tiny_lm(attn: str) -> UnifiedLM:
    shape = LlamaShape(hidden_size=32, num_heads=4, num_kv_heads=2, intermediate_size=64, max_positions=128)
    llm = build_random_llama(shape, V_TEXT, seed=0, attn_implementation=attn)
    extend_vocabulary(llm, VOCAB, seed=0)
    return UnifiedLM(llm, VOCAB, D_VIS, seed=0).eval()


def mixed_documents():
    g = torch.Generator().manual_seed(0)

    def caption(n):
        return torch.randint(3, V_TEXT, (n,), generator=g).tolist()

    def codes(n):
        return torch.randint(0, K, (n,), generator=g)

    docs = [
        (image_to_text_example(VOCAB, caption(6), num_features=5), torch.randn(5, D_VIS, generator=g)),
        (text_to_image_example(VOCAB, caption(4), codes(7)), None),
        *[(e, None) for e in text_examples(VOCAB, caption(9), max_length=64)],
        (image_to_text_example(VOCAB, caption(3), num_features=2), torch.randn(2, D_VIS, generator=g)),
        (image_to_text_example(VOCAB, caption(5), codes=codes(4)), None),
        (text_to_image_example(VOCAB, caption(1), codes(1)), None),
    ]
    return [d for d, _ in docs], [f for _, f in docs]


@pytest.mark.parametrize("attn,balance", [("sdpa", True), ("eager", True), ("sdpa_packed", True),
                                          ("sdpa_packed", False)])
def test_packed_rows_equal_documents_run_alone(attn, balance):
    """sdpa/eager: transformers' LLaMA derives a block-diagonal causal mask from position ids that
    restart per document (attention_mask=None, no cache); sdpa_packed: SDPA per document from the
    varlen boundaries. fp32: the packed and single runs differ only in summation order and masked
    (exp -> 0) terms, so 1e-5 absolute is generous for |logits| ~ 1."""
    lm = tiny_lm(attn)
    docs, feats = mixed_documents()
    packed = pack_examples(docs, context_length=24, balance=balance)
    assert packed.input_ids.shape[0] < len(docs)  # real packing happened
    assert (packed.document_index[:, :-1] != packed.document_index[:, 1:]).any()
    features = torch.cat([f for f in feats if f is not None])
    with torch.no_grad():
        logits = lm(packed.input_ids, packed.position_ids, packed.feature_slot, features)  # (R, S', V)
        # Negative control: the same rows with plain causal attention differ.
        leaky = lm(packed.input_ids, None, packed.feature_slot, features)
    assert float((leaky - logits).abs().max()) > 1e-2
    weighted, counted = 0.0, 0
    for doc, feat, (row, start) in zip(docs, feats, packed.placements):
        with torch.no_grad():
            embeds = lm.embed_sequence(doc.input_ids[None], doc.feature_slot[None], feat)
            alone = lm.llm(inputs_embeds=embeds, labels=doc.labels[None], use_cache=False)
        torch.testing.assert_close(logits[row, start:start + len(doc)], alone.logits[0], rtol=0, atol=1e-5)
        n = int((doc.labels[1:] != -100).sum())  # transformers shifts labels inside the model
        weighted, counted = weighted + float(alone.loss) * n, counted + n
    assert counted == packed.num_targets
    # packed loss = token-weighted mean of the separate documents' own transformers losses
    loss = packed_lm_loss(logits, packed.targets)
    torch.testing.assert_close(loss, torch.tensor(weighted / counted), rtol=1e-5, atol=0)


def test_packed_gradients_reach_the_projection():
    lm = tiny_lm("sdpa")
    docs, feats = mixed_documents()
    packed = pack_examples(docs, context_length=24)
    features = torch.cat([f for f in feats if f is not None])
    packed_lm_loss(lm(packed.input_ids, packed.position_ids, packed.feature_slot, features), packed.targets).backward()
    assert float(lm.vit_proj.weight.grad.abs().sum()) > 0
