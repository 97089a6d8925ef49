"""Stage 0 (tiny world only): pre-train a small LLaMA on the text corpus; it stands in for LLaMA-7B.

Before training, global rank 0 trains the text tokenizer (``prepare_data``; skipped when
``<run>/tokenizer/`` is complete) on the corpus' training documents plus the training captions
of the image shards, so stage 2's captions tokenize well too. Documents are packed into rows of
``context_length`` tokens with position ids restarting per document (attention stays inside a
document). The export is a HF LLaMA folder (``config.json``, safetensors, tokenizer files) that
``load_llama`` / ``load_text_tokenizer`` read exactly as they read a real LLaMA-7B folder, plus the
held-out perplexity of that exported folder.
"""
from __future__ import annotations

import math
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import lightning as L
import torch
import torch.nn.functional as F
from transformers import LlamaForCausalLM, get_cosine_with_min_lr_schedule_with_warmup

from lavit_pl.data.shard_list import expand_shard_specs
from lavit_pl.data.text_datamodules import TextCorpusDataConfig, TextCorpusDataModule
from lavit_pl.data.text_lm_data import (
    caption_texts, corpus_texts, letter_texts, missing_letter_pieces, pack_texts, prepare_text_tokenizer,
    select_documents,
)
from lavit_pl.models.llm import (
    ATTN_IMPLEMENTATIONS, IGNORE_INDEX, LlamaShape, build_random_llama, load_llama, load_text_tokenizer,
)
from lavit_pl.models.packed_attention import document_boundaries
from lavit_pl.models.text_tokenizer import TextTokenizerConfig
from lavit_pl.modules.stage import RunConfig, Stage
from lavit_pl.utils.atomic import atomic_write_json

TOKENIZER_DIR = "tokenizer"
EXPORT_DIR = "export/llama"


@dataclass
class TokenizerDataConfig:
    """What the text tokenizer is trained on; specs (globs, brace ranges) under ``data.data_root``."""

    corpus_files: list[str] = field(default_factory=lambda: ["corpus/corpus_*.jsonl"])
    caption_shards: list[str] = field(default_factory=lambda: ["train/shards/*.tar"],
                                      metadata={"help": "img2dataset shards whose captions join the corpus ([] = none)"})
    whole_letters: str = field(default="ABCD", metadata={"help": "letters made single pieces '▁X' (MMLU answers)"})

    def __post_init__(self) -> None:
        if isinstance(self.corpus_files, str) or not self.corpus_files:
            raise ValueError(f"tokenizer_data.corpus_files must be a non-empty list of specs, got {self.corpus_files!r}")
        if isinstance(self.caption_shards, str):
            raise ValueError(f"tokenizer_data.caption_shards must be a list of specs, got the string {self.caption_shards!r}")


@dataclass
class TextLMOptimConfig:
    """AdamW with linear warm-up then cosine decay to ``min_lr_ratio * lr`` at ``trainer.max_steps``."""

    lr: float = 1e-3
    min_lr_ratio: float = 0.1
    weight_decay: float = 0.1  # on matrices only; norms' gains are not decayed
    betas: list[float] = field(default_factory=lambda: [0.9, 0.95])
    eps: float = 1e-8
    warmup_steps: int = 50

    def __post_init__(self) -> None:
        if self.lr <= 0:
            raise ValueError(f"optim.lr must be > 0, got {self.lr}")
        if not 0.0 <= self.min_lr_ratio <= 1.0:
            raise ValueError(f"optim.min_lr_ratio must be in [0, 1], got {self.min_lr_ratio}")
        if self.weight_decay < 0:
            raise ValueError(f"optim.weight_decay must be >= 0, got {self.weight_decay}")
        if len(self.betas) != 2 or not all(0.0 <= b < 1.0 for b in self.betas):
            raise ValueError(f"optim.betas must be two values in [0, 1), got {list(self.betas)}")
        if self.warmup_steps < 0:
            raise ValueError(f"optim.warmup_steps must be >= 0, got {self.warmup_steps}")


@dataclass
class TextLMRunConfig(RunConfig):
    model: LlamaShape = field(default_factory=LlamaShape)
    context_length: int = field(default=512, metadata={"help": "S: tokens per packed row (<= model.max_positions)"})
    heldout_fraction: float = field(default=0.02, metadata={
        "help": "documents held out by key hash: never trained on, validated on (0: val_files are all held out)"})
    tokenizer: TextTokenizerConfig = field(default_factory=TextTokenizerConfig)
    tokenizer_data: TokenizerDataConfig = field(default_factory=TokenizerDataConfig)
    optim: TextLMOptimConfig = field(default_factory=TextLMOptimConfig)
    data: TextCorpusDataConfig = field(default_factory=TextCorpusDataConfig)
    attn_implementation: str = "sdpa"

    def __post_init__(self) -> None:
        if not 2 <= self.context_length <= self.model.max_positions:
            raise ValueError(f"context_length must be in [2, model.max_positions={self.model.max_positions}], "
                             f"got {self.context_length}")
        if not 0.0 <= self.heldout_fraction < 1.0:
            raise ValueError(f"heldout_fraction must be in [0, 1), got {self.heldout_fraction}")
        if self.heldout_fraction > 0 and not self.data.val_files:
            raise ValueError("heldout_fraction > 0 validates on the held-out documents of data.val_files, which is "
                             "empty: list the corpus files there (usually the same specs as data.train_files)")
        if self.attn_implementation not in ATTN_IMPLEMENTATIONS:
            raise ValueError(f"attn_implementation must be one of {ATTN_IMPLEMENTATIONS}, "
                             f"got {self.attn_implementation!r}")


class TextLMModule(L.LightningModule):
    """Next-token pre-training of ``model``: a transformers ``LlamaForCausalLM`` built in ``configure_model``."""

    def __init__(self, cfg: TextLMRunConfig):
        super().__init__()
        self.cfg = cfg  # a dataclass: kept out of hparams so checkpoints load with weights_only=True
        self.prepare_data_per_node = False  # the run folder is shared: one rank trains the tokenizer
        self.tokenizer_dir = Path(cfg.output_dir) / TOKENIZER_DIR
        self.model: LlamaForCausalLM | None = None
        self.tokenizer = None
        self._step_start = 0.0
        self._step_tokens = 0
        self._val_sums = torch.zeros(2, dtype=torch.float64)  # (summed NLL, target tokens)

    # -- set-up -----------------------------------------------------------------------------
    def prepare_data(self) -> None:
        cfg = self.cfg
        root = cfg.data.data_root

        def texts():  # read only when the tokenizer is missing
            files = expand_shard_specs(root, cfg.tokenizer_data.corpus_files, "tokenizer_data.corpus_files")
            yield from corpus_texts(files, cfg.data.reader, cfg.heldout_fraction, "train")
            if cfg.tokenizer_data.caption_shards:
                yield from caption_texts(expand_shard_specs(root, cfg.tokenizer_data.caption_shards,
                                                            "tokenizer_data.caption_shards"))
            yield from letter_texts(cfg.tokenizer_data.whole_letters)

        prepare_text_tokenizer(self.tokenizer_dir, texts(), cfg.tokenizer)

    def setup(self, stage: str) -> None:
        self.tokenizer = load_text_tokenizer(self.tokenizer_dir)
        if len(self.tokenizer) != self.cfg.tokenizer.vocab_size:
            raise ValueError(f"{self.tokenizer_dir}: the tokenizer has {len(self.tokenizer)} ids but "
                             f"tokenizer.vocab_size is {self.cfg.tokenizer.vocab_size}; delete the folder to retrain it")
        missing = missing_letter_pieces(self.tokenizer, self.cfg.tokenizer_data.whole_letters)
        if missing:
            raise ValueError(f"{self.tokenizer_dir}: letters {missing} of tokenizer_data.whole_letters are not single "
                             f"pieces after 'Answer:'; delete the folder to retrain the tokenizer")

    def configure_model(self) -> None:
        if self.model is not None:
            return
        # V_text is known from the config (the trained tokenizer has exactly that many ids),
        # so the model can be built before, and independently of, the tokenizer files.
        self.model = build_random_llama(self.cfg.model, self.cfg.tokenizer.vocab_size, seed=self.cfg.seed,
                                        attn_implementation=self.cfg.attn_implementation)
        self.model.train()

    def configure_optimizers(self) -> dict[str, Any]:
        o = self.cfg.optim
        decay = [p for p in self.model.parameters() if p.requires_grad and p.ndim >= 2]
        no_decay = [p for p in self.model.parameters() if p.requires_grad and p.ndim < 2]
        optimizer = torch.optim.AdamW(
            [{"params": decay, "weight_decay": o.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
            lr=o.lr, betas=tuple(o.betas), eps=o.eps,
        )
        scheduler = get_cosine_with_min_lr_schedule_with_warmup(
            optimizer, num_warmup_steps=o.warmup_steps, num_training_steps=self.cfg.trainer.max_steps,
            min_lr_rate=o.min_lr_ratio,
        )
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

    # -- steps ------------------------------------------------------------------------------
    def _nll(self, texts: list[str]) -> tuple[torch.Tensor, int, int]:
        """(summed next-token NLL, target tokens, input tokens) of ``texts`` packed into rows."""
        packed = pack_texts(self.tokenizer, texts, self.cfg.context_length)
        input_ids = packed.input_ids.to(self.device)  # (R, S')
        position_ids = packed.position_ids.to(self.device)  # (R, S')
        targets = packed.targets.to(self.device)  # (R, S')
        # attention_mask=None with restarting position ids: attention stays within each document
        logits = self.model(input_ids=input_ids, position_ids=position_ids, attention_mask=None,
                            use_cache=False, **document_boundaries(position_ids)).logits  # (R, S', V)
        nll = F.cross_entropy(logits.flatten(0, 1).float(), targets.flatten(), ignore_index=IGNORE_INDEX,
                              reduction="sum")
        inputs = int((packed.document_index >= 0).sum())
        return nll, packed.num_targets, inputs

    def on_train_batch_start(self, batch: Any, batch_idx: int) -> None:
        self._step_start = time.perf_counter()

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor | None:
        texts = select_documents(batch["text"], batch["key"], self.cfg.heldout_fraction, "train")
        if not texts:  # every document of the batch is held out: nothing to learn from
            return None
        nll, targets, inputs = self._nll(texts)
        loss = nll / max(targets, 1)
        self._step_tokens = inputs
        self.log("train/loss", loss, prog_bar=True, batch_size=targets)
        self.log("train/perplexity", torch.exp(loss.detach()), batch_size=targets)
        self.log("train/documents", float(len(texts)), batch_size=1)
        return loss

    def on_train_batch_end(self, outputs: Any, batch: Any, batch_idx: int) -> None:
        seconds = time.perf_counter() - self._step_start  # tokenise + forward + backward + optimizer step
        if self._step_tokens and seconds > 0:
            self.log("train/tokens_per_s", self._step_tokens / seconds, prog_bar=True, batch_size=1)
        self._step_tokens = 0

    def on_validation_epoch_start(self) -> None:
        self._val_sums = torch.zeros(2, dtype=torch.float64, device=self.device)

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        texts = select_documents(batch["text"], batch["key"], self.cfg.heldout_fraction, "val")
        if not texts:
            return
        nll, targets, _ = self._nll(texts)
        self._val_sums += torch.stack([nll.detach().double(), torch.tensor(float(targets), device=self.device,
                                                                             dtype=torch.float64)])

    def on_validation_epoch_end(self) -> None:
        sums = self.trainer.strategy.reduce(self._val_sums.clone(), reduce_op="sum")
        if sums[1] > 0:
            loss = (sums[0] / sums[1]).float()
            self.log("val/loss", loss)
            self.log("val/perplexity", torch.exp(loss))
            self.log("val/tokens", sums[1].float())


# -- evaluation of an exported folder ---------------------------------------------------------
@torch.no_grad()
def heldout_perplexity(model: LlamaForCausalLM, tokenizer, texts: list[str], context_length: int,
                       documents_per_batch: int = 16) -> dict[str, float]:
    """Token-mean next-token loss and perplexity of ``model`` on ``texts`` (packed as in training)."""
    if not texts:
        raise ValueError("heldout_perplexity: no held-out documents")
    model.eval()
    device = next(model.parameters()).device
    nll, count = 0.0, 0
    for start in range(0, len(texts), documents_per_batch):
        packed = pack_texts(tokenizer, texts[start:start + documents_per_batch], context_length)
        position_ids = packed.position_ids.to(device)
        logits = model(input_ids=packed.input_ids.to(device), position_ids=position_ids, attention_mask=None,
                       use_cache=False, **document_boundaries(position_ids)).logits  # (R, S', V)
        nll += float(F.cross_entropy(logits.flatten(0, 1).float(), packed.targets.to(device).flatten(),
                                     ignore_index=IGNORE_INDEX, reduction="sum"))
        count += packed.num_targets
    loss = nll / count
    return {"val_loss": loss, "val_perplexity": math.exp(loss), "val_tokens": count, "val_documents": len(texts)}


def heldout_texts(cfg: TextLMRunConfig) -> list[str]:
    """The validation documents: held-out documents of ``data.val_files`` (all of them if the fraction is 0)."""
    files = expand_shard_specs(cfg.data.data_root, cfg.data.val_files, "data.val_files")
    return corpus_texts(files, cfg.data.reader, cfg.heldout_fraction, "val")


def build(cfg: TextLMRunConfig) -> tuple[TextLMModule, TextCorpusDataModule]:
    return TextLMModule(cfg), TextCorpusDataModule(cfg.data)


def export(module: TextLMModule, cfg: TextLMRunConfig, run_dir: Path) -> dict[str, Any]:
    """``<run>/export/llama/``: config.json + model.safetensors + tokenizer files; then reload that
    folder with ``load_llama`` and measure its held-out perplexity (``<run>/export/metrics.json``)."""
    run_dir = Path(run_dir)
    out = run_dir / EXPORT_DIR
    partial = out.with_name(out.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    module.model.save_pretrained(partial)
    for name in os.listdir(module.tokenizer_dir):
        shutil.copy2(module.tokenizer_dir / name, partial / name)
    shutil.rmtree(out, ignore_errors=True)
    os.replace(partial, out)

    model, tokenizer = load_llama(out), load_text_tokenizer(out)
    texts = heldout_texts(cfg) if cfg.data.val_files else []
    metrics: dict[str, Any] = heldout_perplexity(model, tokenizer, texts, cfg.context_length) if texts else {}
    metrics["parameters"] = sum(p.numel() for p in model.parameters())
    metrics["global_step"] = module.trainer.global_step if module._trainer is not None else None
    atomic_write_json(run_dir / "export" / "metrics.json", metrics)
    return {"llama": str(out), **{k: v for k, v in metrics.items() if k in ("val_loss", "val_perplexity")}}


STAGE = Stage(config=TextLMRunConfig, build=build, export=export)

__all__ = ["TextLMRunConfig", "TextLMModule", "TokenizerDataConfig", "TextLMOptimConfig", "build", "export",
           "heldout_perplexity", "heldout_texts", "STAGE"]
