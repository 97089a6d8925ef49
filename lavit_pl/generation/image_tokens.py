"""Visual-code sampling with classifier-free guidance (DESIGN.md section 4, "Generation").

After the prompt and ``[IMG]``, codes are sampled one at a time with top-k and temperature from
l = l_uncond + cfg * (l_cond - l_uncond), the unconditional stream being ``[IMG]`` alone (release).
Both streams run as one batch of 2B rows through ``LlamaForCausalLM`` with a transformers
``DynamicCache``: a prefill over the left-padded prompts, then one single-token forward per step.
Only visual ids may be sampled, plus ``[/IMG]`` once ``min_new_tokens`` codes exist; a row stops at
``[/IMG]`` or after ``max_new_tokens`` codes.

Guidance on raw logits equals the release's guidance on log-softmaxed logits: log_softmax shifts each
row by a constant, and l_u + cfg (l_c - l_u) maps per-row constants to a per-row constant, which
softmax ignores.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch
from transformers import DynamicCache

from lavit_pl.data.sequences import Example, assemble, collate_prompts, text_part
from lavit_pl.models.llm import UnifiedLM


@dataclass
class ImageSamplingConfig:
    """Paper/DESIGN defaults: top-k 300, temperature 1, cfg 1.5; release: at most 200 new tokens."""

    top_k: int = 300
    temperature: float = 1.0
    cfg_scale: float | None = 1.5  # None: conditional stream only (no guidance, half the batch)
    max_new_tokens: int = 200  # at most this many codes per image
    min_new_tokens: int = 1  # [/IMG] is allowed once this many codes exist
    seed: int = 0  # used when no generator is passed

    def __post_init__(self) -> None:
        if self.top_k < 1:
            raise ValueError(f"ImageSamplingConfig.top_k must be >= 1, got {self.top_k}")
        if self.temperature <= 0:
            raise ValueError(f"ImageSamplingConfig.temperature must be > 0, got {self.temperature}")
        if self.max_new_tokens < 1:
            raise ValueError(f"ImageSamplingConfig.max_new_tokens must be >= 1, got {self.max_new_tokens}")
        if not 0 <= self.min_new_tokens <= self.max_new_tokens:
            raise ValueError(f"ImageSamplingConfig.min_new_tokens must be in [0, max_new_tokens], "
                             f"got {self.min_new_tokens}")


@dataclass
class SampledImages:
    """codes[b]: (T_b,) codes in [0, K); finished: (B,) True where [/IMG] was sampled;
    ids: (B, n) sampled ids ([/IMG] repeated after a row stops); step_logits: n tensors (B, V) of
    guided, masked logits before temperature and top-k (only if requested)."""

    codes: list[torch.Tensor]
    finished: torch.Tensor
    ids: torch.Tensor
    step_logits: list[torch.Tensor] | None = None


def _top_k_filter(logits: torch.Tensor, k: int) -> torch.Tensor:
    """Keep the k largest entries of each row (B, V); the rest become -inf."""
    k = min(k, logits.shape[-1])
    kth = torch.topk(logits, k, dim=-1).values[:, -1:]  # (B, 1)
    return logits.masked_fill(logits < kth, float("-inf"))


@torch.no_grad()
def sample_image_tokens(lm: UnifiedLM, prompts: Sequence[Example], features: torch.Tensor | None,
                        config: ImageSamplingConfig, generator: torch.Generator | None = None,
                        return_logits: bool = False) -> SampledImages:
    """Sample visual codes after each prompt (the sampler appends ``[IMG]``).

    prompts: B examples, e.g. ``<s> caption`` (labels ignored); features: (F, D_visual) for the
    prompts' feature slots in prompt order, or None. Returns :class:`SampledImages`.
    """
    vocab, llm = lm.vocab, lm.llm
    device = lm.vit_proj.weight.device
    if generator is None:
        generator = torch.Generator(device=device).manual_seed(config.seed)
    n_prompts = len(prompts)
    start = text_part([vocab.image_start_id], False)
    streams = [assemble(p, start) for p in prompts]
    if config.cfg_scale is not None:
        streams += [assemble(start)] * n_prompts  # unconditional: [IMG] alone
    batch = {k: v.to(device) for k, v in collate_prompts(streams, pad_id=vocab.eos_id).items()}
    mask = batch["attention_mask"]  # (R, L), R = 2B with guidance else B
    embeds = lm.embed_sequence(batch["input_ids"], batch["feature_slot"],
                               None if features is None else features.to(device))  # (R, L, D)
    positions = (mask.cumsum(-1) - 1).clamp(min=0)  # left padding: real tokens count from 0
    cache = DynamicCache(config=llm.config)
    logits = llm(inputs_embeds=embeds, attention_mask=mask, position_ids=positions,
                 past_key_values=cache, use_cache=True, logits_to_keep=1).logits[:, -1].float()  # (R, V)

    visual = vocab.visual_mask(device)
    with_end = visual.clone()
    with_end[vocab.image_end_id] = True
    finished = torch.zeros(n_prompts, dtype=torch.bool, device=device)
    sampled, recorded = [], []
    next_pos = positions[:, -1:] + 1  # (R, 1)
    for step in range(config.max_new_tokens):
        if config.cfg_scale is None:
            guided = logits
        else:
            cond, uncond = logits[:n_prompts], logits[n_prompts:]
            guided = uncond + config.cfg_scale * (cond - uncond)  # (B, V)
        allowed = with_end if step >= config.min_new_tokens else visual
        guided = guided.masked_fill(~allowed, float("-inf"))
        if return_logits:
            recorded.append(guided.clone())
        probs = torch.softmax(_top_k_filter(guided / config.temperature, config.top_k), dim=-1)
        token = torch.multinomial(probs, 1, generator=generator).squeeze(1)  # (B,)
        token = torch.where(finished, torch.full_like(token, vocab.image_end_id), token)
        sampled.append(token)
        finished |= token == vocab.image_end_id
        if bool(finished.all()) or step + 1 == config.max_new_tokens:
            break
        feed = token if config.cfg_scale is None else torch.cat([token, token])  # (R,)
        mask = torch.cat([mask, torch.ones_like(mask[:, :1])], dim=1)
        logits = llm(input_ids=feed.unsqueeze(1), attention_mask=mask, position_ids=next_pos,
                     past_key_values=cache, use_cache=True).logits[:, -1].float()
        next_pos = next_pos + 1

    ids = torch.stack(sampled, dim=1)  # (B, n)
    codes = []
    for row in ids:
        stop = (row == vocab.image_end_id).nonzero()
        length = int(stop[0]) if len(stop) else row.shape[0]
        codes.append(vocab.id_to_code(row[:length]).cpu())
    return SampledImages(codes, finished.cpu(), ids.cpu(), recorded if return_logits else None)
