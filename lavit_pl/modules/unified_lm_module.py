"""Stage 2: unified generative pre-training (DESIGN.md section 4), ``stage: unified``.

Trains the LLaMA (full unlock; ``lm.freeze_llm`` for Table 7b), a COPY of the stage-1 merger
(initialised from stage 1) and ``vit_proj`` on packed rows of three document kinds
(:mod:`lavit_pl.data.stage2_documents`): text-only, ``[IMG] x [/IMG] caption`` and
``caption [IMG] v [/IMG]``. The frozen stage-1 tokenizer (encoder, selector, merger, quantizer,
eval mode) gives keep masks and code targets; with ``cache.enabled`` those and the encoder
features come precomputed from :mod:`lavit_pl.data.stage2_cache`. The frozen tokenizer is held
outside the module tree, so checkpoints hold only what trains (LLM, vit_proj, merger copy).
Optimiser and the new rows' learning rate: :mod:`lavit_pl.modules.unified_lm_optim`.
"""
from __future__ import annotations

import copy
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import lightning as L
import torch
import torch.nn.functional as F
from transformers import get_cosine_with_min_lr_schedule_with_warmup

from lavit_pl.data.shard_list import expand_shard_specs
from lavit_pl.data.stage2_cache import build_split_cache
from lavit_pl.data.stage2_datamodule import TRAIN_SPLIT, VAL_SPLIT, Stage2DataModule

from lavit_pl.data.stage2_documents import KIND_NAMES, DIRECTIONS, PairDocument, Stage2Batch, build_stage2_batch, draw_direction
from lavit_pl.models.llm import IGNORE_INDEX, UnifiedLM, build_unified_lm
from lavit_pl.models.stage2_visual import FrozenTargets, blind_pixels, frozen_visual_targets
from lavit_pl.models.unified_stage2 import UnifiedStage2Model
from lavit_pl.models.tokenizer.tokenizer import DynamicVisualTokenizer
from lavit_pl.modules.sharded_state import gather_full_state
from lavit_pl.modules.stage import Stage
from lavit_pl.modules.unified_lm_config import Stage2VisualConfig, UnifiedRunConfig
from lavit_pl.modules.unified_lm_optim import NewRowLearningRate, unified_param_groups, zero_rows_below
from lavit_pl.utils.stage1_io import file_digest, load_stage1_tokenizer, stage1_files


def targets_from_pixels(tokenizer: DynamicVisualTokenizer, visual: Stage2VisualConfig, pixels: torch.Tensor,
                        keys: list[str]) -> FrozenTargets:
    """Reader pixels (B, 3, H, W) -> frozen targets (on the fly and in the cache alike); the blind
    baseline replaces the pixels by per-key noise first."""
    if visual.blind:
        enc = visual.tokenizer.encoder
        pixels = blind_pixels(keys, enc.image_size, enc.mean, enc.std, visual.blind_seed).to(pixels)
    return frozen_visual_targets(tokenizer, pixels=pixels)


class UnifiedLMModule(L.LightningModule):
    def __init__(self, cfg: UnifiedRunConfig):
        super().__init__()
        self.cfg = cfg  # a dataclass, kept out of hparams: checkpoints load with weights_only=True
        self.model: UnifiedStage2Model | None = None  # what trains: LLM + vit_proj + merger copy
        self.text_tokenizer = None
        self._frozen: list[DynamicVisualTokenizer] = []  # a list: not a registered submodule
        self.row_lr: NewRowLearningRate | None = None
        self._step_start, self._step_tokens = 0.0, 0
        self._val_sums: torch.Tensor | None = None
        self.full_state: dict[str, torch.Tensor] | None = None  # gathered at the end of sharded training

    # -- building -------------------------------------------------------------------------------
    def configure_model(self) -> None:
        if self.model is not None:
            return
        cfg = self.cfg
        lm, self.text_tokenizer = build_unified_lm(cfg.lm)
        lm.train()  # load_llama returns eval mode; LLaMA has no dropout, but checkpointing needs train mode
        tokenizer = load_stage1_tokenizer(cfg.visual.tokenizer, cfg.visual.tokenizer_dir)
        self._frozen = [tokenizer]
        merger = None
        if cfg.visual.input == "continuous":
            merger = copy.deepcopy(tokenizer.token_merger).requires_grad_(True).train()
        else:  # Table 7a: code ids through the LLM's rows; vit_proj is unused
            lm.vit_proj.requires_grad_(False)
        if cfg.activation_checkpointing:
            lm.llm.gradient_checkpointing_enable()
        self.model = UnifiedStage2Model(lm, merger, cfg.visual.tokenizer.inference_path,
                                        cfg.visual.tokenizer.encoder.num_patches)
        self._apply_fsdp2()

    @property
    def lm(self) -> UnifiedLM:
        return self.model.lm

    @property
    def token_merger(self):
        return self.model.token_merger

    def _apply_fsdp2(self) -> None:
        """FSDP2 (``trainer.strategy: fsdp2``): shard each LLaMA block, then the whole trainable model
        (root unit: embeddings, lm_head, vit_proj, merger copy; see :class:`UnifiedStage2Model`)."""
        mesh = self.device_mesh
        if mesh is None:
            return
        from torch.distributed.fsdp import fully_shard

        dp = mesh["data_parallel"]
        for layer in self.lm.llm.model.layers:
            fully_shard(layer, mesh=dp)
        fully_shard(self.model, mesh=dp)

    def on_train_end(self) -> None:
        """Sharded (FSDP2) training: gather the full trainable state on every rank's call (a collective),
        kept on CPU by rank 0 for ``export``, which only rank 0 runs."""
        if self.device_mesh is not None:
            self.full_state = gather_full_state(self.model)

    def on_before_optimizer_step(self, optimizer: torch.optim.Optimizer) -> None:
        """Frozen LLM: text rows get no update. Under FSDP2 Lightning does not clip (``build_trainer``
        passes None): clip the global norm here."""
        if self.cfg.lm.freeze_llm:  # sharded grads bypass freeze_llm's tensor hooks: zero the text rows here too
            zero_rows_below(self._row_matrices(), self.lm.vocab.text_size)
        max_norm = self.cfg.trainer.gradient_clip_val
        if self.device_mesh is not None and max_norm:
            torch.nn.utils.clip_grad_norm_([p for p in self.parameters() if p.grad is not None], max_norm)

    @property
    def frozen_tokenizer(self) -> DynamicVisualTokenizer:
        tokenizer = self._frozen[0]
        if next(tokenizer.parameters()).device != self.device:
            tokenizer.to(self.device)
        return tokenizer

    def _row_matrices(self) -> list[torch.Tensor]:
        """The embedding and lm_head matrices (once if tied) that hold the new rows."""
        llm = self.lm.llm
        found = [m.weight for m in (llm.get_input_embeddings(), llm.get_output_embeddings()) if m.weight.requires_grad]
        return list({id(w): w for w in found}.values())

    def configure_optimizers(self) -> dict[str, Any]:
        o = self.cfg.optim
        visual = [("vit_proj", self.lm.vit_proj)]
        if self.token_merger is not None:
            visual.insert(0, ("token_merger", self.token_merger))
        groups = unified_param_groups(self.lm.llm, visual, o.lr_llm, o.lr_visual, o.weight_decay)
        optimizer = torch.optim.AdamW(groups, lr=o.lr_llm, betas=tuple(o.betas), eps=o.eps)
        self.row_lr = NewRowLearningRate(optimizer, self._row_matrices(), self.lm.vocab.text_size, o.lr_llm, o.lr_visual)
        scheduler = get_cosine_with_min_lr_schedule_with_warmup(
            optimizer, num_warmup_steps=o.warmup_steps, num_training_steps=self.cfg.trainer.max_steps,
            min_lr_rate=o.min_lr_ratio)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

    # -- batches -> documents ---------------------------------------------------------------------
    def frozen_targets(self, pairs: dict[str, Any]) -> FrozenTargets:
        """An image-text sub-batch (images, or cached features/masks/codes) -> the frozen targets."""
        if "patch_features" in pairs:  # from the cache
            return FrozenTargets(pairs["patch_features"].to(self.device).float(), pairs["keep_mask"].to(self.device).bool(),
                                 [c.to(self.device) for c in pairs["codes"]])
        return self.compute_frozen_targets(pairs["image"].to(self.device), list(pairs["key"]))

    def compute_frozen_targets(self, pixels: torch.Tensor, keys: list[str]) -> FrozenTargets:
        return targets_from_pixels(self.frozen_tokenizer, self.cfg.visual, pixels, keys)

    def build_documents(self, batch: dict[str, Any], step: int, both_directions: bool) -> tuple[Stage2Batch, FrozenTargets | None]:
        seq, vocab = self.cfg.sequences, self.lm.vocab
        texts = []
        if "text" in batch:
            texts = self.text_tokenizer(list(batch["text"]["text"]), add_special_tokens=False)["input_ids"]
        pairs, directions, targets = [], [], None
        if "image_text" in batch:
            sub = batch["image_text"]
            targets = self.frozen_targets(sub)
            captions = self.text_tokenizer(list(sub["caption"]), add_special_tokens=False)["input_ids"]
            for key, caption, codes in zip(sub["key"], captions, targets.codes):
                pairs.append(PairDocument(list(caption), codes.cpu(), key))
                directions.append(DIRECTIONS if both_directions else
                                  (draw_direction(seq.direction_seed, step, key, seq.image_to_text_share),))
        quantized = self.cfg.visual.input == "quantized"
        return build_stage2_batch(vocab, seq, texts, pairs, directions, quantized), targets

    def forward_documents(self, docs: Stage2Batch, targets: FrozenTargets | None) -> tuple[torch.Tensor, torch.Tensor]:
        """-> (per-target NLL (R, S') fp32, 0 where no target; targets (R, S'))."""
        packed = docs.packed
        logits, zero = self.model(
            packed.input_ids.to(self.device), packed.position_ids.to(self.device), packed.feature_slot.to(self.device),
            targets.patch_features if targets is not None else None, targets.keep_mask if targets is not None else None,
            docs.feature_images)  # (R, S', V), 0
        goal = packed.targets.to(self.device)
        nll = F.cross_entropy(logits.flatten(0, 1).float(), goal.flatten(), ignore_index=IGNORE_INDEX,
                              reduction="none").view_as(goal)
        return nll + zero, goal  # + exactly 0 (see UnifiedStage2Model.idle)

    def visual_features(self, docs: Stage2Batch, targets: FrozenTargets | None) -> torch.Tensor | None:
        """(F, D) merger-copy features of the slots, in slot order (None without slots)."""
        if not docs.feature_images:
            return None
        return self.model.visual_features(targets.patch_features, targets.keep_mask, docs.feature_images)

    @staticmethod
    def kind_sums(nll: torch.Tensor, kinds: torch.Tensor) -> torch.Tensor:
        """(len(KIND_NAMES), 2): summed NLL and target count of each kind."""
        rows = [torch.stack([nll[kinds == k].sum(), (kinds == k).sum().to(nll.dtype)]) for k in KIND_NAMES]
        return torch.stack(rows)

    # -- steps ------------------------------------------------------------------------------------
    def on_train_batch_start(self, batch: Any, batch_idx: int) -> None:
        self._step_start = time.perf_counter()

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor:
        docs, targets = self.build_documents(batch, self.global_step, both_directions=False)
        nll, goal = self.forward_documents(docs, targets)
        count = (goal != IGNORE_INDEX).sum()
        loss = nll.sum() / count.clamp(min=1)
        self._step_tokens = docs.input_tokens
        sums = self.kind_sums(nll.detach(), docs.target_kind.to(self.device))
        self.log("train/loss", loss, prog_bar=True, batch_size=1)
        for k, name in KIND_NAMES.items():  # nan when the step has no target of that kind (Lightning
            # would otherwise repeat the previous step's value for a key not logged this step)
            self.log(f"train/loss_{name}", sums[k, 0] / sums[k, 1] if sums[k, 1] > 0 else torch.nan, batch_size=1)
        for name, n in docs.documents.items():
            self.log(f"train/documents_{name}", float(n), batch_size=1)
        self.log("train/skipped_documents", float(docs.skipped), batch_size=1, reduce_fx="sum")
        self.log("train/padding_fraction", 1.0 - docs.input_tokens / docs.packed.input_ids.numel(), batch_size=1)
        if targets is not None and targets.codes:
            self.log("train/visual_tokens_per_image", sum(len(c) for c in targets.codes) / len(targets.codes), batch_size=1)
        return loss

    def on_train_batch_end(self, outputs: Any, batch: Any, batch_idx: int) -> None:
        seconds = time.perf_counter() - self._step_start
        if self._step_tokens and seconds > 0:
            self.log("train/tokens_per_s", self._step_tokens / seconds, prog_bar=True, batch_size=1)
        self._step_tokens = 0

    def on_validation_epoch_start(self) -> None:
        self._val_sums = torch.zeros(len(KIND_NAMES), 2, dtype=torch.float64, device=self.device)

    def validation_step(self, batch: dict[str, Any], batch_idx: int, dataloader_idx: int = 0) -> None:
        if "text" in batch and isinstance(batch["text"], list):  # a text-corpus validation batch
            batch = {"text": batch}
        elif "text" not in batch and "image_text" not in batch:  # an image-text validation batch
            batch = {"image_text": batch}
        docs, targets = self.build_documents(batch, 0, both_directions=True)
        nll, _ = self.forward_documents(docs, targets)
        self._val_sums += self.kind_sums(nll.double(), docs.target_kind.to(self.device))

    def on_validation_epoch_end(self) -> None:
        sums = self.trainer.strategy.reduce(self._val_sums.clone(), reduce_op="sum")
        for k, name in KIND_NAMES.items():
            if sums[k, 1] > 0:
                self.log(f"val/loss_{name}", (sums[k, 0] / sums[k, 1]).float())
        if sums[:, 1].sum() > 0:
            self.log("val/loss", (sums[:, 0].sum() / sums[:, 1].sum()).float())


def export(module: UnifiedLMModule, cfg: UnifiedRunConfig, run_dir: Path) -> dict[str, Any]:
    """``<run>/export/``: the evaluation folder of :mod:`lavit_pl.generation.stage2_export`."""
    from lavit_pl.generation.stage2_export import write_stage2_export
    from lavit_pl.utils.atomic import atomic_write_json

    metrics = {k: float(v) for k, v in module.trainer.callback_metrics.items() if k.startswith("val/")}
    step = module.trainer.global_step if module._trainer is not None else None
    extra = {"stage": "unified", "global_step": step, "visual_input": cfg.visual.input, "blind": cfg.visual.blind,
             "freeze_llm": cfg.lm.freeze_llm,
             "sources": {"llm_path": cfg.lm.llm_path, "tokenizer_dir": cfg.visual.tokenizer_dir,
                         "encoder_weights": cfg.visual.tokenizer.encoder.weights_path}}
    state = module.full_state if module.full_state is not None else module.model.state_dict()
    folder = write_stage2_export(Path(run_dir) / "export", module.lm, module.text_tokenizer, state,
                                 cfg.visual.tokenizer, cfg.visual.tokenizer_dir, extra)
    atomic_write_json(folder / "metrics.json", {"global_step": step, **metrics})
    return {"export": str(folder), **metrics}


# -- the cache and the stage descriptor ---------------------------------------------------------------
def cache_dir(cfg: UnifiedRunConfig) -> Path:
    return Path(cfg.cache.dir) if cfg.cache.dir else Path(cfg.output_dir) / "cache"


def cache_fingerprint(cfg: UnifiedRunConfig) -> dict[str, Any]:
    """Everything the cached tensors depend on: the frozen files' digests and the settings."""
    visual, reader = cfg.visual, cfg.data.image_text.reader
    files = stage1_files(visual.tokenizer, visual.tokenizer_dir)
    return {"tokenizer": asdict(visual.tokenizer), "files": {k: file_digest(p) for k, p in files.items()},
            "blind": visual.blind, "blind_seed": visual.blind_seed,
            "reader": {"image_size": reader.image_size, "mean": list(reader.mean), "std": list(reader.std)}}


def build_cache(cfg: UnifiedRunConfig) -> dict[str, Any]:
    """Build the missing cache splits (train, and val if ``val_shards``); the frozen tokenizer is
    loaded only when some shard has to be computed."""
    device = torch.device(cfg.cache.device if cfg.cache.device != "auto" else
                          ("cuda" if torch.cuda.is_available() else "cpu"))
    loaded: list[DynamicVisualTokenizer] = []

    def compute(pixels: torch.Tensor, keys: list[str]) -> FrozenTargets:
        if not loaded:
            loaded.append(load_stage1_tokenizer(cfg.visual.tokenizer, cfg.visual.tokenizer_dir).to(device))
        return targets_from_pixels(loaded[0], cfg.visual, pixels.to(device), keys)

    data, fingerprint, manifests = cfg.data.image_text, cache_fingerprint(cfg), {}
    for split, specs in ((TRAIN_SPLIT, data.train_shards), (VAL_SPLIT, data.val_shards)):
        if specs:
            shards = expand_shard_specs(data.data_root, specs, f"data.image_text.{split}_shards")
            manifests[split] = build_split_cache(shards, data.reader, cache_dir(cfg) / split, compute, fingerprint,
                                                 cfg.cache.feature_dtype, cfg.cache.batch_size)
    return manifests


def build(cfg: UnifiedRunConfig) -> tuple[UnifiedLMModule, Stage2DataModule]:
    if not cfg.lm.llm_path or not cfg.visual.tokenizer_dir:
        raise ValueError("unified stage: set lm.llm_path (stage-0 LLaMA / LLaMA-7B folder) and visual.tokenizer_dir "
                         "(stage-1 export's visual_tokenizer/)")
    if cfg.cache.enabled:
        datamodule = Stage2DataModule(cfg.data, cache_dir(cfg), lambda: build_cache(cfg))
    else:
        datamodule = Stage2DataModule(cfg.data)
    return UnifiedLMModule(cfg), datamodule


STAGE = Stage(config=UnifiedRunConfig, build=build, export=export)
