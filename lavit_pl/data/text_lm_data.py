"""Inputs of the stage-0 text LM: a held-out split of a JSONL corpus, the text its tokenizer is
trained on, and raw documents -> packed LLaMA rows.

Held-out documents are picked by their reader key ``"<file name>:<line>"`` (see
:mod:`lavit_pl.data.text_corpus`): a document is held out when ``crc32(key) mod 10000`` falls
below ``fraction * 10000``. The rule needs no extra file, gives the same split in every process
and every run, and works on a corpus written as a single file (the Shapes world's tiny preset).
Held-out documents are kept out of training and out of the tokenizer's training text.
"""
from __future__ import annotations

import logging
import os
import shutil
import zlib
from pathlib import Path
from typing import Iterable, Iterator, Sequence

from evaluation.benchmarks.img2dataset_captions import read_shard_captions
from lavit_pl.data.pipeline_stages import BadSample
from lavit_pl.data.sequences import PackedBatch, pack_examples, text_examples
from lavit_pl.data.text_corpus import JsonlDocumentDecoder, TextCorpusReaderConfig, iter_jsonl_lines
from lavit_pl.models.llm import UnifiedVocab
from lavit_pl.models.text_tokenizer import TextTokenizerConfig, save_llama_tokenizer, train_text_tokenizer

log = logging.getLogger(__name__)

HELDOUT_BUCKETS = 10_000
SPLITS = ("train", "val")


def is_heldout(key: str, fraction: float) -> bool:
    """True if the document with reader key ``key`` belongs to the held-out split."""
    if not 0.0 <= fraction < 1.0:
        raise ValueError(f"held-out fraction must be in [0, 1), got {fraction}")
    return zlib.crc32(key.encode("utf-8")) % HELDOUT_BUCKETS < round(fraction * HELDOUT_BUCKETS)


def in_split(key: str, fraction: float, split: str) -> bool:
    """Whether a document belongs to ``split``: "train" = not held out; "val" = held out, or
    every document when ``fraction`` is 0 (validation files are then a separate held-out set)."""
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    if fraction == 0.0:
        return True
    return is_heldout(key, fraction) == (split == "val")


def select_documents(texts: Sequence[str], keys: Sequence[str], fraction: float, split: str) -> list[str]:
    """The texts of a batch that belong to ``split`` (see :func:`in_split`)."""
    if len(texts) != len(keys):
        raise ValueError(f"select_documents: {len(texts)} texts but {len(keys)} keys")
    return [t for t, k in zip(texts, keys) if in_split(k, fraction, split)]


def iter_corpus_documents(files: Sequence[str], reader: TextCorpusReaderConfig) -> Iterator[tuple[str, str]]:
    """``(key, text)`` of every readable document of ``files``, in file and line order.

    A single-process read of every file (no rank split, unlike the training pipeline), for work
    done once on rank 0: training the tokenizer, the export's held-out perplexity. Bad lines and
    unreadable files are skipped with a warning naming them, as the training reader does.
    """
    decode = JsonlDocumentDecoder(reader)
    for url in files:
        def handler(err: BaseException, url: str = url) -> bool:
            log.warning("%s: unreadable corpus file, the rest of it is skipped: %s", url, err)
            return True

        for key, line in iter_jsonl_lines(url, handler):
            try:
                sample = decode(url, key, line)
            except BadSample as err:
                log.warning("%s (%s): document skipped: %s", url, key, err)
                continue
            yield sample["key"], sample["text"]


def corpus_texts(files: Sequence[str], reader: TextCorpusReaderConfig, fraction: float, split: str) -> list[str]:
    """Texts of the documents of ``files`` that belong to ``split`` (see :func:`in_split`)."""
    return [t for k, t in iter_corpus_documents(files, reader) if in_split(k, fraction, split)]


def caption_texts(shards: Sequence[str]) -> list[str]:
    """Every caption of img2dataset shards (all references a sample's ``KEY.json`` stores)."""
    return [c for record in read_shard_captions(shards) for c in record.captions]


LETTER_REPEATS = 1000  # ranks the '▁X' merges with the corpus' common ones, so vocab_size never drops them


def letter_texts(letters: str) -> list[str]:
    """Training lines that make each of ``letters`` a whole piece ``'▁X'``.

    LLaMA's vocabulary has every capital letter as a piece; MMLU scores the answer letter as the
    single token after ``"Answer:"``. A small corpus without stand-alone capitals (the Shapes
    world's) would otherwise split ``" C"`` into ``'▁'`` + ``'C'``.
    """
    return [" ".join(letters)] * LETTER_REPEATS if letters else []


def missing_letter_pieces(tokenizer, letters: str) -> list[str]:
    """The letters among ``letters`` that ``"Answer: X"`` does not end in as one piece ``'▁X'``."""
    base = tokenizer("Answer:", add_special_tokens=False)["input_ids"]
    missing = []
    for letter in letters:
        ids = tokenizer(f"Answer: {letter}", add_special_tokens=False)["input_ids"]
        if ids[:len(base)] != base or len(ids) != len(base) + 1:
            missing.append(letter)
    return missing


def prepare_text_tokenizer(directory: str | Path, texts: Iterable[str], cfg: TextTokenizerConfig) -> bool:
    """Train the tokenizer on ``texts`` and save it in the LLaMA layout under ``directory``.

    Idempotent: returns False without reading ``texts`` when ``directory/tokenizer.json``
    exists. The files are written to a sibling ``.partial`` folder first and renamed into place,
    so an interrupted run leaves either no tokenizer or a complete one.
    """
    directory = Path(directory)
    if (directory / "tokenizer.json").is_file():
        return False
    partial = directory.with_name(directory.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    tokenizer = train_text_tokenizer(texts, cfg)
    save_llama_tokenizer(tokenizer, partial, cfg.model_max_length)
    if directory.exists():  # a folder without tokenizer.json: not ours to keep
        shutil.rmtree(directory)
    os.replace(partial, directory)
    return True


def text_vocab(tokenizer) -> UnifiedVocab:
    """The ids :func:`text_examples` needs (BOS, EOS) for a text-only tokenizer.

    Stage 0 has no visual codes; the vocabulary object is only read for ``bos_id``/``eos_id``,
    and its one code slot is never produced.
    """
    return UnifiedVocab(text_size=len(tokenizer), codebook_size=1,
                        bos_id=tokenizer.bos_token_id, eos_id=tokenizer.eos_token_id)


def pack_texts(tokenizer, texts: Sequence[str], context_length: int) -> PackedBatch:
    """Raw documents -> ``<s> text </s>`` cut to ``context_length`` and packed into rows of S tokens.

    Returns a :class:`PackedBatch` (R, S') with position ids restarting per document; loss on
    every token after ``<s>`` (see :func:`lavit_pl.data.sequences.text_examples`).
    """
    if not texts:
        raise ValueError("pack_texts: no documents")
    vocab = text_vocab(tokenizer)
    # documents longer than S are cut by text_examples; verbose=False silences the length warning
    ids = tokenizer(list(texts), add_special_tokens=False, verbose=False)["input_ids"]
    examples = [e for doc in ids for e in text_examples(vocab, doc, context_length)]
    return pack_examples(examples, context_length)
