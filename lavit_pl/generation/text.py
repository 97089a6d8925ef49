"""Text generation from multimodal prompts: transformers ``generate`` over spliced input embeddings.

Prompts are :class:`lavit_pl.data.sequences.Example` s (``[IMG] x_1..x_T [/IMG] text`` with
continuous feature slots, or plain text); they are left-padded, embedded by
``UnifiedLM.embed_sequence`` and handed to ``LlamaForCausalLM.generate(inputs_embeds=...)``, which
runs greedy or beam search with its KV cache. Every non-text id ([IMG], [/IMG], the K codes) is
suppressed (release: visual ids are suppressed when decoding text). Cutting a caption at its first
'.' is the caller's post-processing.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch
from transformers import LogitsProcessor, LogitsProcessorList, PreTrainedTokenizerBase

from lavit_pl.data.sequences import Example, collate_prompts
from lavit_pl.models.llm import UnifiedLM


@dataclass
class TextGenerationConfig:
    """Release values: captioning beam 2, 8-36 new tokens; VQA beam 5, 2-10 tokens, length penalty 0."""

    num_beams: int = 1  # 1: greedy
    min_new_tokens: int = 0
    max_new_tokens: int = 36
    length_penalty: float = 1.0  # beam scores are sum log p / length ** length_penalty
    early_stopping: bool = False  # beam search stops once num_beams finished candidates exist (release VQA)

    def __post_init__(self) -> None:
        if self.num_beams < 1:
            raise ValueError(f"TextGenerationConfig.num_beams must be >= 1, got {self.num_beams}")
        if self.max_new_tokens < 1:
            raise ValueError(f"TextGenerationConfig.max_new_tokens must be >= 1, got {self.max_new_tokens}")
        if not 0 <= self.min_new_tokens <= self.max_new_tokens:
            raise ValueError(f"TextGenerationConfig.min_new_tokens must be in [0, max_new_tokens], "
                             f"got {self.min_new_tokens}")


class SuppressIdsProcessor(LogitsProcessor):
    """Sets the scores of a fixed id set to -inf.

    One precomputed (V,) mask and a ``masked_fill`` per step: O(V) whatever the number of banned
    ids, where ``bad_words_ids`` would carry 16k one-token lists and ``suppress_tokens`` a 16k-long
    list in the generation config plus an ``isin`` per step.
    """

    def __init__(self, banned: torch.Tensor):
        if banned.dim() != 1 or banned.dtype != torch.bool:
            raise ValueError("SuppressIdsProcessor: banned must be a (V,) bool mask")
        self.banned = banned

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        banned = self.banned.to(scores.device)
        if scores.shape[-1] != banned.shape[0]:
            raise ValueError(f"SuppressIdsProcessor: scores have {scores.shape[-1]} ids, mask {banned.shape[0]}")
        return scores.masked_fill(banned, float("-inf"))


@torch.no_grad()
def generate_text_ids(lm: UnifiedLM, prompts: Sequence[Example], features: torch.Tensor | None,
                      config: TextGenerationConfig) -> torch.Tensor:
    """Generate text ids for a batch of prompts.

    prompts: B examples (labels ignored); features: (F, D_visual), the prompts' continuous features
    concatenated in prompt order (None if no prompt has feature slots).
    Returns (B, N) long, N <= max_new_tokens new ids only; after </s> rows hold </s> (the pad).
    """
    vocab = lm.vocab
    device = lm.vit_proj.weight.device
    batch = {k: v.to(device) for k, v in collate_prompts(prompts, pad_id=vocab.eos_id).items()}
    embeds = lm.embed_sequence(batch["input_ids"], batch["feature_slot"],
                               None if features is None else features.to(device))  # (B, L, D)
    suppress = SuppressIdsProcessor(~vocab.text_mask(device))
    out = lm.llm.generate(
        inputs_embeds=embeds,
        attention_mask=batch["attention_mask"],
        do_sample=False,
        num_beams=config.num_beams,
        num_return_sequences=1,
        min_new_tokens=config.min_new_tokens,
        max_new_tokens=config.max_new_tokens,
        length_penalty=config.length_penalty,
        early_stopping=config.early_stopping,
        logits_processor=LogitsProcessorList([suppress]),
        bos_token_id=vocab.bos_id,
        eos_token_id=vocab.eos_id,
        pad_token_id=vocab.eos_id,
        use_cache=True,
    )
    # With inputs_embeds and no input_ids, decoder-only generate returns only the new ids.
    return out if not hasattr(out, "sequences") else out.sequences


def generate_text(lm: UnifiedLM, tokenizer: PreTrainedTokenizerBase, prompts: Sequence[Example],
                  features: torch.Tensor | None, config: TextGenerationConfig) -> list[str]:
    """:func:`generate_text_ids` decoded with special tokens skipped: one string per prompt."""
    ids = generate_text_ids(lm, prompts, features, config)
    return tokenizer.batch_decode(ids.tolist(), skip_special_tokens=True)
