"""A LLaMA-layout text tokenizer for the tiny world, trained with the `tokenizers` library.

LLaMA's tokenizer is a SentencePiece BPE with byte fallback: ids 0, 1, 2 are ``<unk>``, ``<s>``,
``</s>``; ids 3..258 are the byte pieces ``<0x00>``..``<0xFF>``; learned pieces follow. Spaces are
replaced by ``▁`` (prepended to the first word only, i.e. transformers' non-legacy mode) and no
normaliser runs. We train a BPE with exactly that pipeline, so the saved ``tokenizer.json`` loads
through transformers' own ``LlamaTokenizer`` (``AutoTokenizer.from_pretrained(dir)``): in
transformers 5 that class rebuilds its backend from the file's vocab and merges with the LLaMA
pipeline, which is the pipeline we trained with, so both encode identically (tested).
A real LLaMA folder with only ``tokenizer.model`` loads through the same ``AutoTokenizer`` call.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator

from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers, processors, trainers

from lavit_pl.utils.atomic import atomic_write_json, atomic_write_text

UNK, BOS, EOS = "<unk>", "<s>", "</s>"
SPECIAL_TOKENS = (UNK, BOS, EOS)  # ids 0, 1, 2 as in LLaMA
BYTE_PIECES = tuple(f"<0x{b:02X}>" for b in range(256))  # ids 3..258 as in LLaMA
NUM_RESERVED = len(SPECIAL_TOKENS) + len(BYTE_PIECES)
SPACE = "\u2581"  # '▁', SentencePiece's word-boundary marker


@dataclass
class TextTokenizerConfig:
    """How to train the tiny world's text tokenizer.

    ``vocab_size`` is V_text, the exact size of the saved vocabulary (specials and the 256 byte
    pieces included); LLaMA-7B has 32000.
    """

    vocab_size: int = 1024
    min_frequency: int = 2
    limit_alphabet: int = 200  # rarer characters fall back to byte pieces
    model_max_length: int = 2048

    def __post_init__(self) -> None:
        if self.vocab_size <= NUM_RESERVED:
            raise ValueError(
                f"TextTokenizerConfig.vocab_size must exceed the {NUM_RESERVED} reserved ids "
                f"(3 specials + 256 bytes), got {self.vocab_size}"
            )
        if self.min_frequency < 1:
            raise ValueError(f"TextTokenizerConfig.min_frequency must be >= 1, got {self.min_frequency}")
        if self.limit_alphabet < 1:
            raise ValueError(f"TextTokenizerConfig.limit_alphabet must be >= 1, got {self.limit_alphabet}")
        if self.model_max_length < 1:
            raise ValueError(
                f"TextTokenizerConfig.model_max_length must be >= 1, got {self.model_max_length}"
            )


def _llama_pipeline(tokenizer: Tokenizer, split: bool) -> Tokenizer:
    tokenizer.normalizer = None
    tokenizer.pre_tokenizer = pre_tokenizers.Metaspace(replacement=SPACE, prepend_scheme="first", split=split)
    tokenizer.decoder = decoders.Sequence(
        [decoders.Replace(SPACE, " "), decoders.ByteFallback(), decoders.Fuse(), decoders.Strip(" ", 1, 0)]
    )
    return tokenizer


def train_text_tokenizer(texts: Iterable[str], config: TextTokenizerConfig) -> Tokenizer:
    """Train a LLaMA-style BPE (byte fallback, ``▁`` word marker) on ``texts``.

    Returns a ``tokenizers.Tokenizer`` with exactly ``config.vocab_size`` ids that adds ``<s>`` in
    front of every encoded text (LLaMA's ``add_bos_token=True``). Raises ``ValueError`` when the
    corpus is too small to learn that many pieces.
    """
    # Training splits at word boundaries (SentencePiece's split_by_whitespace), so no piece has a
    # '▁' inside it; encoding then runs unsplit as LLaMA does, which gives the same pieces.
    learner = _llama_pipeline(Tokenizer(models.BPE(unk_token=UNK)), split=True)
    trainer = trainers.BpeTrainer(
        vocab_size=config.vocab_size - NUM_RESERVED,
        min_frequency=config.min_frequency,
        limit_alphabet=config.limit_alphabet,
        special_tokens=[],
        show_progress=False,
    )
    learner.train_from_iterator(_checked(texts), trainer=trainer)
    learned = json.loads(learner.to_str())["model"]
    pieces = sorted(learned["vocab"].items(), key=lambda item: item[1])
    vocab = {token: i for i, token in enumerate((*SPECIAL_TOKENS, *BYTE_PIECES))}
    for piece, _ in pieces:
        vocab.setdefault(piece, len(vocab))
    if len(vocab) != config.vocab_size:
        raise ValueError(
            f"TextTokenizerConfig.vocab_size={config.vocab_size} cannot be met on this corpus: training "
            f"gave {len(vocab)} ids (with the {NUM_RESERVED} reserved); too few pieces: lower vocab_size or "
            f"min_frequency or give more text; too many: raise vocab_size or lower limit_alphabet"
        )
    merges = [tuple(m.split(" ")) if isinstance(m, str) else tuple(m) for m in learned["merges"]]
    bpe = models.BPE(vocab=vocab, merges=merges, unk_token=UNK, fuse_unk=True, byte_fallback=True)
    tokenizer = _llama_pipeline(Tokenizer(bpe), split=False)
    tokenizer.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in SPECIAL_TOKENS])
    tokenizer.post_processor = processors.TemplateProcessing(
        single=f"{BOS} $A", pair=f"{BOS} $A {BOS} $B", special_tokens=[(BOS, 1)]
    )
    return tokenizer


def _checked(texts: Iterable[str]) -> Iterator[str]:
    for i, text in enumerate(texts):
        if not isinstance(text, str):
            raise TypeError(f"train_text_tokenizer: text #{i} is {type(text).__name__}, expected str")
        yield text


def save_llama_tokenizer(tokenizer: Tokenizer, directory: str | Path, model_max_length: int = 2048) -> None:
    """Write ``tokenizer.json``, ``tokenizer_config.json`` and ``special_tokens_map.json``.

    The layout of a HF LLaMA folder: ``AutoTokenizer.from_pretrained(directory)`` returns a
    ``LlamaTokenizer`` (transformers 5's fast, tokenizers-backed class). Files are written atomically.
    """
    directory = Path(directory)
    for i, token in enumerate(SPECIAL_TOKENS):
        if tokenizer.token_to_id(token) != i:
            raise ValueError(f"save_llama_tokenizer: {token!r} must have id {i} (LLaMA layout)")
    atomic_write_text(directory / "tokenizer.json", tokenizer.to_str(pretty=True))

    def added(token: str) -> dict:
        return {"content": token, "lstrip": False, "normalized": False, "rstrip": False,
                "single_word": False, "special": True}

    atomic_write_json(
        directory / "tokenizer_config.json",
        {
            "tokenizer_class": "LlamaTokenizer",
            "add_bos_token": True,
            "add_eos_token": False,
            "legacy": False,
            "bos_token": BOS,
            "eos_token": EOS,
            "unk_token": UNK,
            "pad_token": None,
            "clean_up_tokenization_spaces": False,
            "model_max_length": model_max_length,
            "padding_side": "left",
            "added_tokens_decoder": {str(i): added(t) for i, t in enumerate(SPECIAL_TOKENS)},
        },
    )
    atomic_write_json(directory / "special_tokens_map.json", {"bos_token": BOS, "eos_token": EOS, "unk_token": UNK})
