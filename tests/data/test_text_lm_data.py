"""Held-out split, corpus reading, tokenizer preparation and packing of the stage-0 text LM."""
from __future__ import annotations

import json
import logging
import zlib

import pytest
import torch

from lavit_pl.data.text_corpus import TextCorpusReaderConfig
from lavit_pl.data.text_lm_data import (
    corpus_texts, in_split, is_heldout, iter_corpus_documents, letter_texts, missing_letter_pieces, pack_texts,
    prepare_text_tokenizer, select_documents,
)
from lavit_pl.models.llm import IGNORE_INDEX, load_text_tokenizer
from lavit_pl.models.text_tokenizer import TextTokenizerConfig

TEXTS = [f"the {c} guild trades {g} in the city of {t}." for c in ("red", "blue", "green", "black")
         for g in ("salt", "silk", "tin") for t in ("arnholt", "bexley", "corvane")] * 3


def test_heldout_rule_by_hand():
    key = "corpus_00000.jsonl:17"
    bucket = zlib.crc32(key.encode()) % 10_000  # the rule: held out iff bucket < fraction * 10000
    assert is_heldout(key, (bucket + 1) / 10_000)
    assert not is_heldout(key, bucket / 10_000)
    assert not is_heldout(key, 0.0)
    with pytest.raises(ValueError, match=r"\[0, 1\)"):
        is_heldout(key, 1.0)


def test_heldout_share_and_split_semantics():
    keys = [f"corpus_{f:05d}.jsonl:{line}" for f in range(4) for line in range(1, 2501)]
    held = sum(is_heldout(k, 0.02) for k in keys)
    # 10000 keys, p = 0.02: mean 200, sd 14; 4 sd either side
    assert 144 <= held <= 256
    assert all(in_split(k, 0.02, "train") != in_split(k, 0.02, "val") for k in keys[:500])
    assert all(in_split(k, 0.0, "train") and in_split(k, 0.0, "val") for k in keys[:10])  # fraction 0: val files are all held out
    texts = [f"t{i}" for i in range(len(keys))]
    train, val = select_documents(texts, keys, 0.02, "train"), select_documents(texts, keys, 0.02, "val")
    assert len(val) == held and sorted(train + val) == sorted(texts)


def test_corpus_reading_skips_and_names_bad_lines(tmp_path, caplog):
    path = tmp_path / "corpus_00000.jsonl"
    path.write_text(json.dumps({"text": "first"}) + "\n\nnot json\n" + json.dumps({"text": 3}) + "\n"
                    + json.dumps({"text": "last", "meta": {"source": "x"}}) + "\n")
    with caplog.at_level(logging.WARNING):
        docs = list(iter_corpus_documents([str(path)], TextCorpusReaderConfig()))
    assert docs == [("corpus_00000.jsonl:1", "first"), ("corpus_00000.jsonl:5", "last")]
    assert "corpus_00000.jsonl:3" in caplog.text and "corpus_00000.jsonl:4" in caplog.text
    assert corpus_texts([str(path)], TextCorpusReaderConfig(), 0.0, "train") == ["first", "last"]


def test_tokenizer_is_trained_once(tmp_path):
    directory = tmp_path / "tokenizer"
    cfg = TextTokenizerConfig(vocab_size=300, model_max_length=64)
    assert prepare_text_tokenizer(directory, iter(TEXTS), cfg) is True
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tokenizer"]  # no .partial left behind
    before = (directory / "tokenizer.json").read_bytes()

    def never():
        raise AssertionError("texts read although the tokenizer exists")
        yield  # pragma: no cover

    assert prepare_text_tokenizer(directory, never(), cfg) is False
    assert (directory / "tokenizer.json").read_bytes() == before
    assert len(load_text_tokenizer(directory)) == 300


def test_pack_texts_layout(tmp_path):
    prepare_text_tokenizer(tmp_path / "tok", iter(TEXTS), TextTokenizerConfig(vocab_size=300, model_max_length=64))
    tokenizer = load_text_tokenizer(tmp_path / "tok")
    docs = ["the red guild trades salt.", "the blue guild trades tin in the city of bexley."]
    ids = [tokenizer(d, add_special_tokens=False)["input_ids"] for d in docs]
    n0, n1 = len(ids[0]) + 2, len(ids[1]) + 2  # <s> doc </s>
    packed = pack_texts(tokenizer, docs, context_length=n0 + n1)
    assert packed.input_ids.shape == (1, n0 + n1)
    assert n1 > n0 and packed.placements == [(0, n1), (0, 0)]  # balanced packing: longest first
    assert packed.input_ids[0].tolist() == [1, *ids[1], 2, 1, *ids[0], 2]
    assert packed.position_ids[0].tolist() == [*range(n1), *range(n0)]
    # target at i is token i + 1 of the same document; the last token of each document predicts nothing
    assert packed.targets[0].tolist() == [*ids[1], 2, IGNORE_INDEX, *ids[0], 2, IGNORE_INDEX]
    # a context shorter than a document cuts it; every piece is a document of its own
    short = pack_texts(tokenizer, docs[1:], context_length=4)
    assert short.input_ids.shape[1] == 4 and int((short.position_ids == 0).sum()) >= (n1 + 3) // 4
    assert torch.equal(short.input_ids[short.document_index >= 0][:n1],
                       torch.tensor([1, *ids[1], 2])[:n1])


def test_answer_letters_become_single_pieces(tmp_path):
    cfg = TextTokenizerConfig(vocab_size=300, model_max_length=64)
    texts = TEXTS + ["Question: which guild? Answer: red"] * 5
    prepare_text_tokenizer(tmp_path / "plain", iter(texts), cfg)
    plain = load_text_tokenizer(tmp_path / "plain")
    # no stand-alone capital in the text: " C" is '▁' + 'C' (bytes), which MMLU scoring refuses
    assert missing_letter_pieces(plain, "ABCD") == list("ABCD")
    prepare_text_tokenizer(tmp_path / "letters", iter(texts + letter_texts("ABCD")), cfg)
    letters = load_text_tokenizer(tmp_path / "letters")
    assert missing_letter_pieces(letters, "ABCD") == []
    assert letters.convert_ids_to_tokens(letters("Answer: C", add_special_tokens=False)["input_ids"])[-1] == "\u2581C"
    assert letter_texts("") == []
