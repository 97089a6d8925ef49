"""LaVIT's unified language model: a transformers ``LlamaForCausalLM`` with the visual vocabulary.

Release facts (DESIGN.md sections 2 and 4): text ids [0, V_text); ``[IMG]`` = V_text; ``[/IMG]`` =
V_text + 1; visual code k = V_text + 2 + k (LLaMA-7B: 32000, 32001, 32002..48385; 48386 in all).
One output head (the LLM's ``lm_head``, resized) covers all of them. Understanding input is
``emb([IMG]), vit_proj(merger features), emb([/IMG]), text`` with ``vit_proj`` a Linear D -> width.
LLaMA itself is transformers' model, never re-written here; loading is the library's
``from_pretrained`` (offline, ``weights_only=True`` for pickled shards).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerBase

from lavit_pl.models.packed_attention import PACKED_SDPA, document_boundaries

IGNORE_INDEX = -100  # label of positions without loss (torch / transformers convention)
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
# transformers' names, plus ours (registered on import of lavit_pl.models.packed_attention)
ATTN_IMPLEMENTATIONS = ("sdpa", "eager", "flash_attention_2", "flex_attention", PACKED_SDPA)


@dataclass(frozen=True)
class UnifiedVocab:
    """Id maps of the unified vocabulary, in the release order. V = text_size + 2 + codebook_size."""

    text_size: int  # V_text (LLaMA-7B: 32000)
    codebook_size: int  # K (paper: 16384)
    bos_id: int = 1  # LLaMA's <s>
    eos_id: int = 2  # LLaMA's </s>

    def __post_init__(self) -> None:
        if self.text_size < 3:
            raise ValueError(f"UnifiedVocab.text_size must be >= 3, got {self.text_size}")
        if self.codebook_size < 1:
            raise ValueError(f"UnifiedVocab.codebook_size must be >= 1, got {self.codebook_size}")
        for name in ("bos_id", "eos_id"):
            if not 0 <= getattr(self, name) < self.text_size:
                raise ValueError(f"UnifiedVocab.{name} must be a text id in [0, {self.text_size})")

    @property
    def image_start_id(self) -> int:  # [IMG]
        return self.text_size

    @property
    def image_end_id(self) -> int:  # [/IMG]
        return self.text_size + 1

    @property
    def visual_offset(self) -> int:  # id of code 0
        return self.text_size + 2

    @property
    def size(self) -> int:  # V
        return self.text_size + 2 + self.codebook_size

    def code_to_id(self, codes: torch.Tensor) -> torch.Tensor:
        """codes in [0, K) (any shape) -> visual ids in [V_text + 2, V)."""
        if codes.numel() and (int(codes.min()) < 0 or int(codes.max()) >= self.codebook_size):
            raise ValueError(f"visual codes must lie in [0, {self.codebook_size}), got "
                             f"[{int(codes.min())}, {int(codes.max())}]")
        return codes.long() + self.visual_offset

    def id_to_code(self, ids: torch.Tensor) -> torch.Tensor:
        """visual ids -> codes in [0, K); any non-visual id is an error."""
        if ids.numel() and not bool(self.is_visual(ids).all()):
            raise ValueError(f"id_to_code: ids outside the visual range [{self.visual_offset}, {self.size})")
        return ids.long() - self.visual_offset

    def is_text(self, ids: torch.Tensor) -> torch.Tensor:
        return (ids >= 0) & (ids < self.text_size)

    def is_visual(self, ids: torch.Tensor) -> torch.Tensor:
        """True for visual code ids only ([IMG] and [/IMG] are not codes)."""
        return (ids >= self.visual_offset) & (ids < self.size)

    def text_mask(self, device: torch.device | str | None = None) -> torch.Tensor:
        """(V,) bool, True on text ids."""
        return self.is_text(torch.arange(self.size, device=device))

    def visual_mask(self, device: torch.device | str | None = None) -> torch.Tensor:
        """(V,) bool, True on visual code ids."""
        return self.is_visual(torch.arange(self.size, device=device))


@dataclass
class UnifiedLMConfig:
    """The stage-2 LM: a LLaMA folder on disk plus the visual vocabulary and input projection."""

    llm_path: str = ""  # HF LLaMA folder: config.json, tokenizer files, safetensors or .bin shards
    codebook_size: int = 16384  # K
    visual_dim: int = 1408  # D of the merger features (EVA-CLIP g/14: 1408)
    new_row_seed: int = 0  # seeds the new embedding rows and vit_proj
    dtype: str = "float32"
    attn_implementation: str = "sdpa"
    freeze_llm: bool = False  # Table 7b
    train_new_rows_when_frozen: bool = True  # frozen LLM still learns the [IMG]/[/IMG]/code rows

    def __post_init__(self) -> None:
        if self.codebook_size < 1:
            raise ValueError(f"UnifiedLMConfig.codebook_size must be >= 1, got {self.codebook_size}")
        if self.visual_dim < 1:
            raise ValueError(f"UnifiedLMConfig.visual_dim must be >= 1, got {self.visual_dim}")
        if self.dtype not in DTYPES:
            raise ValueError(f"UnifiedLMConfig.dtype must be one of {sorted(DTYPES)}, got {self.dtype!r}")
        if self.attn_implementation not in ATTN_IMPLEMENTATIONS:
            raise ValueError(f"UnifiedLMConfig.attn_implementation must be one of {ATTN_IMPLEMENTATIONS}, "
                             f"got {self.attn_implementation!r}")


@dataclass
class LlamaShape:
    """Sizes of a randomly initialised LLaMA (stage 0 tiny model, tests)."""

    hidden_size: int = 64
    num_layers: int = 2
    num_heads: int = 4
    num_kv_heads: int = 4
    intermediate_size: int = 128
    max_positions: int = 2048
    tie_word_embeddings: bool = False  # LLaMA-7B unties lm_head
    rope_theta: float = 10000.0

    def __post_init__(self) -> None:
        if self.hidden_size % self.num_heads:
            raise ValueError(f"LlamaShape.hidden_size {self.hidden_size} not divisible by num_heads {self.num_heads}")
        if self.num_heads % self.num_kv_heads:
            raise ValueError(f"LlamaShape.num_heads {self.num_heads} not divisible by num_kv_heads")


def build_random_llama(shape: LlamaShape, vocab_size: int, seed: int = 0,
                       attn_implementation: str = "sdpa") -> LlamaForCausalLM:
    """A freshly initialised ``LlamaForCausalLM`` (deterministic for a seed)."""
    config = LlamaConfig(
        vocab_size=vocab_size, hidden_size=shape.hidden_size, num_hidden_layers=shape.num_layers,
        num_attention_heads=shape.num_heads, num_key_value_heads=shape.num_kv_heads,
        intermediate_size=shape.intermediate_size, max_position_embeddings=shape.max_positions,
        tie_word_embeddings=shape.tie_word_embeddings, bos_token_id=1, eos_token_id=2,
        rope_parameters={"rope_type": "default", "rope_theta": shape.rope_theta},
    )
    config._attn_implementation = attn_implementation
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return LlamaForCausalLM(config).eval()


def _check_llama_dir(path: str | Path) -> Path:
    path = Path(path)
    if not (path / "config.json").is_file():
        raise FileNotFoundError(f"{path}: not a HF LLaMA folder (no config.json)")
    return path


def load_llama(path: str | Path, dtype: str = "float32", attn_implementation: str = "sdpa") -> LlamaForCausalLM:
    """Load a HF LLaMA folder (safetensors, or pickled .bin shards + ``pytorch_model.bin.index.json``).

    Offline (``local_files_only``); pickled shards go through ``torch.load(weights_only=True)``,
    which refuses anything but tensors and plain containers (transformers 5's default; we pass it
    explicitly so a library default change cannot loosen it).
    """
    path = _check_llama_dir(path)
    model = LlamaForCausalLM.from_pretrained(
        path, local_files_only=True, weights_only=True, dtype=DTYPES[dtype],
        attn_implementation=attn_implementation,
    )
    return model.eval()


def load_text_tokenizer(path: str | Path) -> PreTrainedTokenizerBase:
    """``AutoTokenizer`` on a LLaMA folder (tokenizer.model and/or tokenizer.json), offline."""
    path = Path(path)
    if not (path / "tokenizer.json").is_file() and not (path / "tokenizer.model").is_file():
        raise FileNotFoundError(f"{path}: no tokenizer.json or tokenizer.model")
    return AutoTokenizer.from_pretrained(path, local_files_only=True)


def extend_vocabulary(model: LlamaForCausalLM, vocab: UnifiedVocab, seed: int = 0) -> None:
    """Resize embeddings and lm_head from V_text to V rows; a no-op if already V.

    New rows are ``mean + std * z`` with the per-dimension mean and std of the existing text
    rows and z ~ N(0, 1) from a generator seeded with ``seed`` (untied heads get their own draw).
    """
    current = model.get_input_embeddings().weight.shape[0]
    if current == vocab.size:
        return
    if current != vocab.text_size:
        raise ValueError(f"extend_vocabulary: the LLM has {current} embedding rows; expected V_text="
                         f"{vocab.text_size} (text only) or V={vocab.size} (already extended)")
    model.resize_token_embeddings(vocab.size, mean_resizing=False)
    generator = torch.Generator().manual_seed(seed)
    weights = [model.get_input_embeddings().weight]
    head = model.get_output_embeddings().weight
    if head is not weights[0]:
        weights.append(head)
    with torch.no_grad():
        for weight in weights:  # (V, D)
            text_rows = weight[: vocab.text_size].float()
            mean, std = text_rows.mean(0), text_rows.std(0)
            z = torch.randn(vocab.size - vocab.text_size, weight.shape[1], generator=generator)
            weight[vocab.text_size:] = (mean + std * z).to(weight.dtype)


def freeze_llm(model: LlamaForCausalLM, vocab: UnifiedVocab, train_new_rows: bool = True) -> list:
    """Table 7b: freeze every LLaMA weight; optionally keep the rows of [IMG], [/IMG] and codes trainable.

    Row-wise freezing is a gradient hook that zeroes the text rows' gradients; returns the hook
    handles. Put the embedding and lm_head in a group with weight_decay=0, since AdamW's decoupled
    decay would otherwise still shrink the frozen text rows.
    """
    for param in model.parameters():
        param.requires_grad_(False)
    handles = []
    if train_new_rows:
        seen = set()
        for weight in (model.get_input_embeddings().weight, model.get_output_embeddings().weight):
            if id(weight) in seen:
                continue
            seen.add(id(weight))
            weight.requires_grad_(True)
            keep = torch.zeros(weight.shape[0], 1, dtype=weight.dtype, device=weight.device)
            keep[vocab.text_size:] = 1
            handles.append(weight.register_hook(lambda grad, keep=keep: grad * keep))
    return handles


class UnifiedLM(nn.Module):
    """LLaMA over the unified vocabulary plus ``vit_proj`` (merger features -> LLM width).

    ``llm``: transformers ``LlamaForCausalLM`` with V rows; ``vit_proj``: Linear(D_visual, D).
    """

    def __init__(self, llm: LlamaForCausalLM, vocab: UnifiedVocab, visual_dim: int, seed: int = 0):
        super().__init__()
        rows = llm.get_input_embeddings().weight.shape[0]
        if rows != vocab.size:
            raise ValueError(f"UnifiedLM: the LLM has {rows} rows, the vocabulary needs {vocab.size}; "
                             f"call extend_vocabulary first")
        self.llm = llm
        self.vocab = vocab
        width = llm.config.hidden_size
        self.vit_proj = nn.Linear(visual_dim, width, dtype=llm.get_input_embeddings().weight.dtype)
        generator = torch.Generator().manual_seed(seed)
        with torch.no_grad():  # nn.Linear's default init, drawn from a seeded generator
            nn.init.kaiming_uniform_(self.vit_proj.weight, a=math.sqrt(5), generator=generator)
            bound = 1.0 / math.sqrt(visual_dim)
            nn.init.uniform_(self.vit_proj.bias, -bound, bound, generator=generator)

    @property
    def width(self) -> int:
        return self.llm.config.hidden_size

    def embed_sequence(self, input_ids: torch.Tensor, feature_slot: torch.Tensor | None = None,
                       features: torch.Tensor | None = None) -> torch.Tensor:
        """Input embeddings with continuous visual features spliced in.

        input_ids: (B, S) long; any valid id at feature slots (it is replaced).
        feature_slot: (B, S) long, -1 at token positions, else a row index into ``features``.
        features: (F, D_visual) merger features, F = number of feature slots (each row used once).
        Returns (B, S, D): ``embed_tokens(input_ids)`` with ``vit_proj(features)[feature_slot]`` at slots.
        Table 7a's "quantized" input needs no features: visual code ids embed through the LLM's rows.
        """
        embeds = self.llm.get_input_embeddings()(input_ids)  # (B, S, D)
        if feature_slot is None or not bool((feature_slot >= 0).any()):
            if features is not None and features.shape[0]:
                raise ValueError(f"embed_sequence: {features.shape[0]} features given but no feature slot")
            return embeds
        if feature_slot.shape != input_ids.shape:
            raise ValueError(f"embed_sequence: feature_slot {tuple(feature_slot.shape)} must match "
                             f"input_ids {tuple(input_ids.shape)}")
        slots = feature_slot >= 0
        n_slots = int(slots.sum())
        if features is None or features.shape[0] != n_slots or int(feature_slot.max()) >= n_slots:
            got = None if features is None else tuple(features.shape)
            raise ValueError(f"embed_sequence: {n_slots} feature slots (indices 0..{n_slots - 1}) need "
                             f"features of shape ({n_slots}, {self.vit_proj.in_features}), got {got}")
        projected = self.vit_proj(features.to(self.vit_proj.weight.dtype)).to(embeds.dtype)  # (F, D)
        gathered = projected[feature_slot.clamp(min=0)]  # (B, S, D)
        return torch.where(slots.unsqueeze(-1), gathered, embeds)

    def embed_visual_codes(self, codes: torch.Tensor) -> torch.Tensor:
        """codes (...,) in [0, K) -> the LLM's own embedding rows (..., D) (Table 7a "quantized")."""
        return self.llm.get_input_embeddings()(self.vocab.code_to_id(codes))

    def forward(self, input_ids: torch.Tensor, position_ids: torch.Tensor | None = None,
                feature_slot: torch.Tensor | None = None, features: torch.Tensor | None = None,
                attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        """Training forward, no KV cache: (B, S) ids -> logits (B, S, V).

        Packed rows: leave ``attention_mask`` None and give ``position_ids`` that restart at 0 for
        each document; attention is then confined to each document: ``sdpa``/``eager`` through the
        block-diagonal mask transformers derives from the position ids (``use_cache=False`` matters:
        with a cache present transformers skips that detection), ``sdpa_packed`` through the
        document boundaries passed as varlen arguments on the CPU and that mask on CUDA, and
        ``flash_attention_2`` through the boundaries.
        """
        embeds = self.embed_sequence(input_ids, feature_slot, features)
        varlen = document_boundaries(position_ids) if attention_mask is None and position_ids is not None else {}
        out = self.llm(inputs_embeds=embeds, position_ids=position_ids, attention_mask=attention_mask,
                       use_cache=False, **varlen)
        return out.logits


def packed_lm_loss(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Token-mean next-token cross-entropy: logits (B, S, V), targets (B, S) already shifted
    (target at position i is the token that follows i; -100 where no loss). fp32 reduction."""
    flat = targets.reshape(-1)
    count = (flat != IGNORE_INDEX).sum()
    total = F.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(), flat,
                            ignore_index=IGNORE_INDEX, reduction="sum")
    return total / count.clamp(min=1)


def build_unified_lm(config: UnifiedLMConfig) -> tuple[UnifiedLM, PreTrainedTokenizerBase]:
    """Load ``config.llm_path`` (a real LLaMA-7B folder or our tiny one; same code) and extend it.

    V_text is the tokenizer's length (LLaMA-7B: 32000). A folder already extended to V rows (a
    stage-2 export) loads as is; vit_proj is then freshly initialised (its weights live elsewhere).
    """
    tokenizer = load_text_tokenizer(config.llm_path)
    vocab = UnifiedVocab(text_size=len(tokenizer), codebook_size=config.codebook_size,
                         bos_id=tokenizer.bos_token_id, eos_id=tokenizer.eos_token_id)
    llm = load_llama(config.llm_path, config.dtype, config.attn_implementation)
    extend_vocabulary(llm, vocab, seed=config.new_row_seed)
    if config.freeze_llm:
        freeze_llm(llm, vocab, train_new_rows=config.train_new_rows_when_frozen)
    return UnifiedLM(llm, vocab, config.visual_dim, seed=config.new_row_seed), tokenizer
