"""UnifiedLM: vocabulary maps, offline loading (safetensors / .bin shards, weights_only), resizing,
freezing and the visual input path, on a tiny random LLaMA."""
from __future__ import annotations

import json
import os

import pytest
import torch
from safetensors.torch import load_file

from lavit_pl.models.llm import (
    LlamaShape, UnifiedLM, UnifiedLMConfig, UnifiedVocab, build_random_llama, build_unified_lm,
    extend_vocabulary, freeze_llm, load_llama, packed_lm_loss,
)
from lavit_pl.models.text_tokenizer import TextTokenizerConfig, save_llama_tokenizer, train_text_tokenizer

V_TEXT, K, D_VIS = 300, 16, 8
SHAPE = LlamaShape(hidden_size=32, num_heads=4, num_kv_heads=2, intermediate_size=64, max_positions=128)


def tiny_llama(seed: int = 0):
    return build_random_llama(SHAPE, V_TEXT, seed=seed)


def ids(*shape, seed=0, high=V_TEXT):
    return torch.randint(0, high, shape, generator=torch.Generator().manual_seed(seed))


def save_bin_shards(model, folder, max_shard_bytes: int) -> list[str]:
    """The release / LLaMA-7B layout: pickled pytorch_model-0000i-of-0000n.bin + index json."""
    model.config.save_pretrained(folder)
    shards, current, size = [], {}, 0
    for key, tensor in model.state_dict().items():
        nbytes = tensor.numel() * tensor.element_size()
        if current and size + nbytes > max_shard_bytes:
            shards.append(current)
            current, size = {}, 0
        current[key], size = tensor.clone(), size + nbytes
    shards.append(current)
    weight_map, names = {}, []
    for i, shard in enumerate(shards):
        name = f"pytorch_model-{i + 1:05d}-of-{len(shards):05d}.bin"
        torch.save(shard, folder / name)
        names.append(name)
        weight_map.update({key: name for key in shard})
    total = sum(t.numel() * t.element_size() for t in model.state_dict().values())
    (folder / "pytorch_model.bin.index.json").write_text(
        json.dumps({"metadata": {"total_size": total}, "weight_map": weight_map}))
    return names


def test_vocab_release_numbers_for_llama_7b():
    vocab = UnifiedVocab(text_size=32000, codebook_size=16384)
    assert (vocab.image_start_id, vocab.image_end_id, vocab.visual_offset, vocab.size) == (32000, 32001, 32002, 48386)
    assert vocab.code_to_id(torch.tensor([0, 16383])).tolist() == [32002, 48385]
    assert vocab.id_to_code(torch.tensor([32002, 48385])).tolist() == [0, 16383]
    assert int(vocab.text_mask().sum()) == 32000 and int(vocab.visual_mask().sum()) == 16384
    assert not vocab.visual_mask()[32000:32002].any() and not vocab.text_mask()[32000:].any()
    with pytest.raises(ValueError, match=r"\[0, 16384\)"):
        vocab.code_to_id(torch.tensor([16384]))
    with pytest.raises(ValueError, match="visual range"):
        vocab.id_to_code(torch.tensor([32001]))
    with pytest.raises(ValueError, match="UnifiedVocab.codebook_size"):
        UnifiedVocab(text_size=32000, codebook_size=0)


def test_safetensors_and_sharded_bin_folders_load_to_the_same_logits(tmp_path):
    model = tiny_llama()
    x = ids(2, 9)
    with torch.no_grad():
        reference = model(x).logits
    st_dir, bin_dir = tmp_path / "st", tmp_path / "bin"
    model.save_pretrained(st_dir, max_shard_size="20KB")
    assert (st_dir / "model.safetensors.index.json").is_file()
    assert len(list(st_dir.glob("*.safetensors"))) > 1
    bin_dir.mkdir()
    names = save_bin_shards(model, bin_dir, max_shard_bytes=20_000)
    assert len(names) > 1
    for folder in (st_dir, bin_dir):
        loaded = load_llama(folder)
        assert not loaded.training
        with torch.no_grad():
            # Same weights, same code: bit-identical.
            torch.testing.assert_close(loaded(x).logits, reference, rtol=0, atol=0)
    # and the shards hold what the model holds, key for key
    saved = {k: v for f in st_dir.glob("*.safetensors") for k, v in load_file(f).items()}
    assert saved.keys() == model.state_dict().keys()


class _Payload:
    """A pickle that runs os.mkdir when unpickled without weights_only."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return os.mkdir, (self.marker,)


def test_pickled_shards_load_with_weights_only(tmp_path):
    model = tiny_llama()
    names = save_bin_shards(model, tmp_path, max_shard_bytes=20_000)
    marker = tmp_path / "payload_ran"
    shard = torch.load(tmp_path / names[0], weights_only=True)
    shard["evil"] = _Payload(marker)
    torch.save(shard, tmp_path / names[0])
    with pytest.raises(Exception, match="(?i)weights.only|unpickl"):
        load_llama(tmp_path)
    assert not marker.exists()
    # The payload is live: an unsafe load would have run it (so the check above can fail).
    torch.load(tmp_path / names[0], weights_only=False)
    assert marker.exists()


def test_missing_folder_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="no config.json"):
        load_llama(tmp_path / "nowhere")


def make_llama_folder(folder, seed=0):
    words = "a red blue green circle square triangle left right of the above below two three".split()
    texts = [" ".join(words[(i * 7 + j * 3) % len(words)] for j in range(2 + i % 9)) for i in range(300)]
    tokenizer = train_text_tokenizer(texts, TextTokenizerConfig(vocab_size=V_TEXT))
    model = tiny_llama(seed)
    model.save_pretrained(folder)
    save_llama_tokenizer(tokenizer, folder)
    return model


def test_build_unified_lm_extends_the_vocabulary(tmp_path):
    base = make_llama_folder(tmp_path)
    config = UnifiedLMConfig(llm_path=str(tmp_path), codebook_size=K, visual_dim=D_VIS, new_row_seed=3)
    lm, tokenizer = build_unified_lm(config)
    vocab = lm.vocab
    assert (vocab.text_size, vocab.size, vocab.bos_id, vocab.eos_id) == (V_TEXT, V_TEXT + 2 + K, 1, 2)
    assert len(tokenizer) == V_TEXT
    emb, head = lm.llm.get_input_embeddings().weight, lm.llm.get_output_embeddings().weight
    assert emb.shape == head.shape == (vocab.size, SHAPE.hidden_size) and lm.llm.config.vocab_size == vocab.size
    # Text rows untouched, so text logits are unchanged.
    x = ids(2, 7)
    with torch.no_grad():
        torch.testing.assert_close(lm(x)[..., :V_TEXT], base(x).logits, rtol=0, atol=0)
    # New rows: mean + std * z with the text rows' per-dimension statistics; z drawn from
    # Generator(new_row_seed), embeddings first, then the (untied) head.
    generator = torch.Generator().manual_seed(3)
    for weight in (emb.detach(), head.detach()):
        text = weight[:V_TEXT]
        z = torch.randn(2 + K, SHAPE.hidden_size, generator=generator)
        torch.testing.assert_close(weight[V_TEXT:], text.mean(0) + text.std(0) * z, rtol=0, atol=1e-6)
    assert not torch.equal(emb[V_TEXT:], head[V_TEXT:])  # untied head: its own draw
    again, _ = build_unified_lm(config)
    torch.testing.assert_close(again.llm.get_input_embeddings().weight, emb, rtol=0, atol=0)
    torch.testing.assert_close(again.vit_proj.weight, lm.vit_proj.weight, rtol=0, atol=0)
    # An extended checkpoint loads as is (no second resize).
    lm.llm.save_pretrained(tmp_path / "ext")
    reloaded = load_llama_and_extend(tmp_path / "ext", vocab)
    torch.testing.assert_close(reloaded.get_input_embeddings().weight, emb, rtol=0, atol=0)


def load_llama_and_extend(folder, vocab):
    model = load_llama(folder)
    extend_vocabulary(model, vocab)
    return model


def test_extend_vocabulary_rejects_a_foreign_size():
    model = build_random_llama(SHAPE, V_TEXT + 5)
    with pytest.raises(ValueError, match="305 embedding rows"):
        extend_vocabulary(model, UnifiedVocab(V_TEXT, K))


def unified(seed=0, tied=False):
    shape = LlamaShape(**{**SHAPE.__dict__, "tie_word_embeddings": tied})
    llm = build_random_llama(shape, V_TEXT, seed=seed)
    vocab = UnifiedVocab(V_TEXT, K)
    extend_vocabulary(llm, vocab, seed=seed)
    return UnifiedLM(llm, vocab, D_VIS, seed=seed)


@pytest.mark.parametrize("tied", [False, True])
def test_freeze_llm_keeps_only_the_new_rows_trainable(tied):
    lm = unified(tied=tied)
    handles = freeze_llm(lm.llm, lm.vocab, train_new_rows=True)
    assert len(handles) == (1 if tied else 2)
    x = torch.cat([ids(1, 6), lm.vocab.code_to_id(torch.tensor([[1, 2, 3]]))], dim=1)
    targets = torch.cat([x[:, 1:], torch.full((1, 1), -100)], dim=1)
    packed_lm_loss(lm(x), targets).backward()
    trainable = {n for n, p in lm.llm.named_parameters() if p.requires_grad}
    expected = {"model.embed_tokens.weight"} | (set() if tied else {"lm_head.weight"})
    assert trainable == expected
    for name in expected:
        grad = lm.llm.get_parameter(name).grad
        assert float(grad[:V_TEXT].abs().max()) == 0 and float(grad[V_TEXT:].abs().max()) > 0
    assert lm.vit_proj.weight.requires_grad  # the projection is not part of the LLM
    frozen = unified()
    assert freeze_llm(frozen.llm, frozen.vocab, train_new_rows=False) == []
    assert not any(p.requires_grad for p in frozen.llm.parameters())


def test_embed_sequence_splices_projected_features():
    lm = unified()
    vocab = lm.vocab
    x = torch.tensor([[vocab.image_start_id, 0, 0, vocab.image_end_id, 5],
                      [7, vocab.image_start_id, 0, vocab.image_end_id, 6]])
    slot = torch.tensor([[-1, 0, 1, -1, -1], [-1, -1, 2, -1, -1]])
    feats = torch.randn(3, D_VIS, generator=torch.Generator().manual_seed(0))
    out = lm.embed_sequence(x, slot, feats)
    table = lm.llm.get_input_embeddings().weight
    proj = feats @ lm.vit_proj.weight.T + lm.vit_proj.bias
    torch.testing.assert_close(out[0, 1], proj[0], rtol=0, atol=1e-6)
    torch.testing.assert_close(out[0, 2], proj[1], rtol=0, atol=1e-6)
    torch.testing.assert_close(out[1, 2], proj[2], rtol=0, atol=1e-6)
    keep = slot < 0
    torch.testing.assert_close(out[keep], table[x[keep]], rtol=0, atol=0)
    # Table 7a "quantized" input: the LLM's own rows of the visual code ids.
    codes = torch.tensor([4, 0, 15])
    torch.testing.assert_close(lm.embed_visual_codes(codes), table[V_TEXT + 2 + codes], rtol=0, atol=0)
    with pytest.raises(ValueError, match="3 feature slots"):
        lm.embed_sequence(x, slot, feats[:2])
    with pytest.raises(ValueError, match="no feature slot"):
        lm.embed_sequence(x, None, feats)


def test_packed_lm_loss_is_the_token_mean():
    logits = torch.randn(2, 3, 5, generator=torch.Generator().manual_seed(0))
    targets = torch.tensor([[1, -100, 4], [-100, -100, 0]])
    logp = logits.log_softmax(-1)
    expected = -(logp[0, 0, 1] + logp[0, 2, 4] + logp[1, 2, 0]) / 3
    torch.testing.assert_close(packed_lm_loss(logits, targets), expected)


def test_config_checks_name_the_field():
    with pytest.raises(ValueError, match="UnifiedLMConfig.dtype"):
        UnifiedLMConfig(dtype="float8")
    with pytest.raises(ValueError, match="UnifiedLMConfig.codebook_size"):
        UnifiedLMConfig(codebook_size=0)
