"""The tiny world's text tokenizer: LLaMA id layout, AutoTokenizer round trip, byte fallback."""
from __future__ import annotations

import json
import random

import pytest
import sentencepiece as spm
from transformers import AutoTokenizer, LlamaTokenizer

from lavit_pl.models.llm import load_text_tokenizer
from lavit_pl.models.text_tokenizer import (
    BYTE_PIECES, NUM_RESERVED, TextTokenizerConfig, save_llama_tokenizer, train_text_tokenizer,
)

WORDS = ("a red blue green yellow circle square triangle star small large big is left right of the "
         "above below two three there are shapes on grey background").split()
PROBES = [
    "a red circle is left of the blue square.",
    "There are two  shapes",  # double space is kept (LLaMA: no whitespace normalisation)
    "héllo 日本 \n new line",  # characters never seen in training: byte fallback
    "Question: what color is the star? Answer:",
]


def corpus(n: int = 400, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    return [" ".join(rng.choice(WORDS) for _ in range(rng.randint(3, 12))) + "." for _ in range(n)]


@pytest.fixture(scope="module")
def trained():
    return train_text_tokenizer(corpus(), TextTokenizerConfig(vocab_size=320))


def test_llama_id_layout_and_exact_size(trained):
    vocab = trained.get_vocab()
    assert trained.get_vocab_size() == 320 == len(vocab)
    assert [vocab[t] for t in ("<unk>", "<s>", "</s>")] == [0, 1, 2]
    assert [vocab[b] for b in BYTE_PIECES] == list(range(3, NUM_RESERVED))
    assert vocab["<0x0A>"] == 13  # LLaMA's id of the newline byte


def test_autotokenizer_is_llama_tokenizer_and_encodes_identically(trained, tmp_path):
    save_llama_tokenizer(trained, tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "special_tokens_map.json", "tokenizer.json", "tokenizer_config.json"]
    hf = AutoTokenizer.from_pretrained(tmp_path, local_files_only=True)
    assert isinstance(hf, LlamaTokenizer)  # transformers 5's fast LLaMA class (alias LlamaTokenizerFast)
    assert (len(hf), hf.unk_token_id, hf.bos_token_id, hf.eos_token_id) == (320, 0, 1, 2)
    for text in PROBES:
        ours = trained.encode(text).ids
        assert ours[0] == 1  # <s> prepended
        assert hf(text).input_ids == ours
        assert hf(text, add_special_tokens=False).input_ids == ours[1:]
        assert 0 not in ours  # byte fallback: never <unk>
    assert hf.decode(hf(PROBES[2]).input_ids, skip_special_tokens=True) == PROBES[2]
    assert hf.decode(hf(PROBES[0]).input_ids, skip_special_tokens=True) == PROBES[0]


def test_unseen_characters_become_utf8_bytes(trained):
    ids = trained.encode("日", add_special_tokens=False).ids
    # '▁' is learned; '日' = e6 97 a5 in UTF-8 -> byte pieces 3 + 0xe6, ...
    assert ids[-3:] == [3 + 0xE6, 3 + 0x97, 3 + 0xA5]


def test_unreachable_vocab_size_is_a_clear_error():
    with pytest.raises(ValueError, match="vocab_size=5000 cannot be met"):
        train_text_tokenizer(corpus(50), TextTokenizerConfig(vocab_size=5000))


def test_config_checks_name_the_field():
    with pytest.raises(ValueError, match="TextTokenizerConfig.vocab_size"):
        TextTokenizerConfig(vocab_size=100)
    with pytest.raises(TypeError, match="text #1"):
        train_text_tokenizer(["ok", 3], TextTokenizerConfig(vocab_size=300))


def test_sentencepiece_model_folder_loads_through_the_same_call(tmp_path):
    """A real LLaMA folder ships tokenizer.model (SentencePiece) and tokenizer_config.json only."""
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(corpus()), model_prefix=str(tmp_path / "tokenizer"), model_type="bpe",
        vocab_size=300, byte_fallback=True, unk_id=0, bos_id=1, eos_id=2, pad_id=-1,
        character_coverage=1.0, normalization_rule_name="identity", remove_extra_whitespaces=False,
        minloglevel=2,
    )
    (tmp_path / "tokenizer.vocab").unlink()
    (tmp_path / "tokenizer_config.json").write_text(json.dumps(
        {"tokenizer_class": "LlamaTokenizer", "add_bos_token": True, "add_eos_token": False, "legacy": False}))
    hf = load_text_tokenizer(tmp_path)
    reference = spm.SentencePieceProcessor(model_file=str(tmp_path / "tokenizer.model"))
    assert len(hf) == 300
    for text in PROBES:
        assert hf(text).input_ids == [1] + reference.encode(text)


def test_missing_tokenizer_files_name_the_folder(tmp_path):
    with pytest.raises(FileNotFoundError, match=str(tmp_path)):
        load_text_tokenizer(tmp_path)
