"""Stage 1 LightningModule: trains LaVIT's dynamic visual tokenizer on images (paper section 3.1).

- **Model.** ``configure_model`` builds :class:`DynamicVisualTokenizer` and loads the frozen encoder
  from ``model.encoder.weights_path`` with ``load_vision_encoder_weights``, the loader used for the
  real EVA-CLIP / CLIP checkpoints; the encoder never trains and its ViT stays in eval mode.
  Batches arrive already resized and CLIP-normalised by the reader, so the encoder's ``features``
  is called directly (``build`` checks that the reader's size/mean/std are the encoder's).
- **Loss.** Equation (4): ``mean(1 - cos(x, x_rec)) + ratio_weight * (rho - keep)^2`` with the
  penalty per image or on the batch mean (``loss.ratio_per_image``), plus the quantizer's commitment
  term (``model.quantizer.commitment_weight``; not part of equation 4).
- **Schedule.** ``schedule.mode = "joint"`` (default; every part trains from step 0) or
  ``"two_phase"`` (the authors' recipe): for ``phase1_steps`` the selector, merger and decoder train
  without quantisation (l2-normalised latents go to the decoder; codebook untouched, no commitment
  term); afterwards the selector is frozen (no gradients, eval-mode selection, i.e. the masks the
  tokenizer will produce at inference) and the quantizer (k-means initialised on its first
  batch) trains with the rest. The phase is a function of ``global_step``, so resuming restores it.
- **Optimiser.** AdamW (betas, eps, weight decay on matrices only) and cosine decay with linear
  warm-up to ``min_lr_ratio * lr`` at ``trainer.max_steps``.
- **Validation** (eval mode: deterministic selection): keep ratio, tokens-per-image percentiles,
  reconstruction cosine, codebook usage/perplexity over all kept tokens of the pass, and Spearman
  correlation between ``eval.complexity_field`` and tokens kept (see ``tokenizer_metrics``).
- **Checkpoints** hold plain containers only (``torch.load(weights_only=True)``); the frozen
  encoder is left out of them and re-inserted from its own file on resume.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any, Optional

import lightning as L
import torch
import torch.nn.functional as F
from torch import Tensor

from lavit_pl.data.image_datamodules import ImagesDataConfig, ImagesDataModule
from lavit_pl.models.tokenizer import DynamicVisualTokenizer, DynamicVisualTokenizerConfig, TokenizerLossConfig, tokenizer_loss
from lavit_pl.modules.lr_schedule import cosine_with_warmup
from lavit_pl.modules.sharded_state import gather_full_state
from lavit_pl.modules.stage import RunConfig, Stage
from lavit_pl.modules.tokenizer_metrics import TokenizerStats
from lavit_pl.utils.checkpoint_io import load_vision_encoder_weights

SCHEDULE_MODES = ("joint", "two_phase")
ENCODER_PREFIX = "tokenizer.encoder."


@dataclass
class TokenizerOptimConfig:
    lr: float = 2e-4
    betas: list[float] = field(default_factory=lambda: [0.9, 0.99])
    eps: float = 1e-6
    weight_decay: float = 0.01
    warmup_steps: int = 4000
    min_lr_ratio: float = field(default=0.0, metadata={"help": "cosine floor as a fraction of lr"})

    def __post_init__(self) -> None:
        if self.lr <= 0:
            raise ValueError(f"optim.lr must be > 0, got {self.lr}")
        if len(self.betas) != 2 or not all(0.0 <= b < 1.0 for b in self.betas):
            raise ValueError(f"optim.betas must be two values in [0, 1), got {self.betas}")
        if self.eps <= 0 or self.weight_decay < 0 or self.warmup_steps < 0:
            raise ValueError(f"optim.eps must be > 0, weight_decay and warmup_steps >= 0; got {self.eps}, {self.weight_decay}, {self.warmup_steps}")
        if not 0.0 <= self.min_lr_ratio <= 1.0:
            raise ValueError(f"optim.min_lr_ratio must be in [0, 1], got {self.min_lr_ratio}")


@dataclass
class TokenizerScheduleConfig:
    mode: str = field(default="joint", metadata={"help": "joint | two_phase (selector first, then frozen)"})
    phase1_steps: int = field(default=0, metadata={"help": "two_phase: steps without quantisation"})

    def __post_init__(self) -> None:
        if self.mode not in SCHEDULE_MODES:
            raise ValueError(f"schedule.mode must be one of {SCHEDULE_MODES}, got {self.mode!r}")
        if self.phase1_steps < 0:
            raise ValueError(f"schedule.phase1_steps must be >= 0, got {self.phase1_steps}")
        if self.mode == "two_phase" and self.phase1_steps == 0:
            raise ValueError("schedule.phase1_steps must be > 0 when schedule.mode is two_phase")


@dataclass
class TokenizerEvalConfig:
    complexity_field: str = field(default="complexity", metadata={"help": "KEY.json field for Spearman; '' = none"})
    figure_images: int = field(default=8, metadata={"help": "validation images drawn with their kept patches"})
    figure_codes: int = field(default=8, metadata={"help": "frequent codes shown with their patches"})
    patches_per_code: int = 12
    figure_pool_images: int = field(default=512, metadata={"help": "validation images the figures draw from"})
    full_pass_at_export: bool = field(default=True, metadata={"help": "export metrics from every validation image"})

    def __post_init__(self) -> None:
        for name in ("figure_images", "figure_codes", "patches_per_code", "figure_pool_images"):
            if getattr(self, name) < 0:
                raise ValueError(f"eval.{name} must be >= 0, got {getattr(self, name)}")


@dataclass
class TokenizerRunConfig(RunConfig):
    model: DynamicVisualTokenizerConfig = field(default_factory=DynamicVisualTokenizerConfig)
    loss: TokenizerLossConfig = field(default_factory=TokenizerLossConfig)
    schedule: TokenizerScheduleConfig = field(default_factory=TokenizerScheduleConfig)
    optim: TokenizerOptimConfig = field(default_factory=TokenizerOptimConfig)
    data: ImagesDataConfig = field(default_factory=ImagesDataConfig)
    eval: TokenizerEvalConfig = field(default_factory=TokenizerEvalConfig)


class TokenizerModule(L.LightningModule):
    def __init__(self, cfg: TokenizerRunConfig):
        super().__init__()
        self.cfg = cfg
        self.tokenizer: Optional[DynamicVisualTokenizer] = None
        # plain containers only, so checkpoints load with weights_only=True
        self.save_hyperparameters({"config": dataclasses.asdict(cfg)})
        self._stats: Optional[TokenizerStats] = None
        self.full_state: Optional[dict[str, Tensor]] = None  # gathered at the end of sharded training

    # --- model ---------------------------------------------------------------------------------------
    def configure_model(self) -> None:
        if self.tokenizer is not None:
            return
        enc = self.cfg.model.encoder
        if not enc.frozen:
            raise ValueError("model.encoder.frozen must be true: stage 1 never trains the encoder")
        if enc.weights_path is None:
            raise ValueError("model.encoder.weights_path must name the frozen encoder's checkpoint (stage 1 does not train it)")
        tokenizer = DynamicVisualTokenizer(self.cfg.model)
        load_vision_encoder_weights(tokenizer.encoder)
        tokenizer.encoder.requires_grad_(False)
        tokenizer.encoder.eval()
        self.tokenizer = tokenizer
        mesh = self.device_mesh
        if mesh is not None:
            self._shard(mesh)

    def on_train_end(self) -> None:
        """Sharded (FSDP2) training: gather the tokenizer's full state on every rank (a collective);
        rank 0 keeps it for ``export``, which it runs alone on an unsharded copy."""
        if self.device_mesh is not None:
            self.full_state = gather_full_state(self.tokenizer)

    def _shard(self, mesh: Any) -> None:
        """FSDP2 (``strategy: fsdp2``): one shard group per transformer block, the frozen encoder's
        remaining weights (patch embedding, positions), then the rest. ``encode_patches`` runs the
        encoder outside the root's forward: ``patch_features`` (root) and ``encoder.features`` get
        FSDP's forward hooks, so the root initialises first and each unit gathers its weights."""
        from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard, register_fsdp_forward_method

        dp = mesh["data_parallel"]
        policy = MixedPrecisionPolicy(param_dtype=torch.bfloat16, reduce_dtype=torch.float32) if "bf16" in self.cfg.trainer.precision else MixedPrecisionPolicy()
        tok = self.tokenizer
        for block in [*tok.encoder.vit.blocks, *tok.token_merger.blocks, *tok.decoder.blocks]:
            fully_shard(block, mesh=dp, mp_policy=policy)
        fully_shard(tok.encoder, mesh=dp, mp_policy=policy)
        register_fsdp_forward_method(tok.encoder, "features")
        fully_shard(tok, mesh=dp, mp_policy=policy)
        register_fsdp_forward_method(tok, "patch_features")

    def encode_patches(self, images: Tensor) -> Tensor:
        """Reader-normalised images (B, 3, H, W) -> frozen patch features X (B, N, D)."""
        return self.tokenizer.patch_features(images)

    def phase(self) -> int:
        """0: joint training; 1: two-phase, selector phase (no quantisation); 2: selector frozen."""
        s = self.cfg.schedule
        if s.mode == "joint":
            return 0
        return 1 if self.global_step < s.phase1_steps else 2

    def _apply_phase(self, phase: int) -> None:
        selector = self.tokenizer.token_selector
        if selector is None:
            return
        frozen = phase == 2
        selector.requires_grad_(not frozen)
        if frozen:
            selector.eval()  # Lightning puts the module back in train mode after each validation
            for p in selector.parameters():
                p.grad = None

    # --- steps -----------------------------------------------------------------------------------------
    def _loss(self, out: Any) -> tuple[Tensor, dict[str, Tensor]]:
        lc = self.cfg.loss
        parts = tokenizer_loss(out.target, out.reconstruction, out.keep_mask, lc.rho, lc.ratio_weight, lc.ratio_per_image)
        total = parts.total
        prob = out.keep_prob.detach()
        # argmax_keep_ratio: what eval-mode (deterministic) selection would keep; it meets keep_ratio
        # only once the selector's probabilities have polarised
        logs = {"loss": total, "rec_loss": parts.reconstruction, "rec_cosine": 1.0 - parts.reconstruction,
                "ratio_loss": parts.ratio, "keep_ratio": parts.keep_ratio, "argmax_keep_ratio": (prob > 0.5).float().mean(),
                "keep_prob_std": prob.std(dim=1).mean() if prob.shape[1] > 1 else prob.new_zeros(())}
        if out.quantizer is not None:
            total = total + out.quantizer.commitment_loss
            logs.update(loss=total, commitment=out.quantizer.commitment_loss, usage=out.quantizer.usage,
                        perplexity=out.quantizer.perplexity)
        return total, logs

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> Tensor:
        phase = self.phase()
        self._apply_phase(phase)
        x = self.encode_patches(batch["image"])  # (B, N, D)
        out = self.tokenizer(patch_features=x, quantize=phase != 1)
        loss, logs = self._loss(out)
        b = x.shape[0]
        for name, value in logs.items():
            self.log(f"train/{name}", value, prog_bar=name in ("loss", "keep_ratio"), batch_size=b)
        self.log("train/phase", float(phase), batch_size=b)
        if out.quantizer is not None:
            self.log("train/dead_codes", float(self.tokenizer.quantizer.dead_code_count()), batch_size=b)
        return loss

    def on_validation_epoch_start(self) -> None:
        self._stats = TokenizerStats(self.cfg.model.quantizer.codebook_size, self.cfg.model.encoder.num_patches)

    @torch.no_grad()
    def evaluate_batch(self, images: Tensor) -> tuple[Any, Tensor, Tensor]:
        """Eval-mode tokenizer on images (B, 3, H, W) -> (TokenizerOutput, keep (B, N) bool, per-patch
        reconstruction cosine (B, N)). Kept codes are ``out.quantizer.indices[keep]``."""
        out = self.tokenizer(patch_features=self.encode_patches(images), quantize=True)
        keep = out.keep_mask > 0.5
        cosine = F.cosine_similarity(out.reconstruction.float(), out.target.float(), dim=-1)
        return out, keep, cosine

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        out, keep, cosine = self.evaluate_batch(batch["image"])
        _, logs = self._loss(out)
        self.log("val/loss", logs["loss"], batch_size=keep.shape[0], sync_dist=True)
        self._stats.update(keep, out.quantizer.indices, cosine, complexity_of(batch, self.cfg.eval.complexity_field))

    def on_validation_epoch_end(self) -> None:
        gather = self.all_gather if self.trainer.world_size > 1 else None
        for name, value in self._stats.compute(gather).items():
            if not math.isnan(value):
                self.log(f"val/{name}", value, rank_zero_only=True)

    # --- checkpoints -------------------------------------------------------------------------------------
    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        sd = checkpoint.get("state_dict", {})
        for key in [k for k in sd if k.startswith(ENCODER_PREFIX)]:
            del sd[key]  # the frozen encoder is re-read from model.encoder.weights_path

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        sd = checkpoint.get("state_dict")
        if sd is not None and self.tokenizer is not None:
            for key, value in self.tokenizer.encoder.state_dict().items():
                sd.setdefault(ENCODER_PREFIX + key, value)

    # --- optimisation ------------------------------------------------------------------------------------
    def on_before_optimizer_step(self, optimizer: Any) -> None:
        # Lightning does not clip under FSDP2 (build_trainer passes None); clip_grad_norm_ handles the
        # sharded (DTensor) gradients, so the paper's clip 1.0 still applies there.
        t = self.cfg.trainer
        if t.strategy == "fsdp2" and t.gradient_clip_val > 0:
            params = [p for p in self.tokenizer.parameters() if p.grad is not None]
            torch.nn.utils.clip_grad_norm_(params, t.gradient_clip_val)

    def configure_optimizers(self) -> Any:
        o = self.cfg.optim
        named = [(n, p) for n, p in self.tokenizer.named_parameters() if not n.startswith("encoder.")]
        decay = [p for n, p in named if p.ndim >= 2 and "embed" not in n]
        no_decay = [p for n, p in named if not (p.ndim >= 2 and "embed" not in n)]
        opt = torch.optim.AdamW(
            [{"params": decay, "weight_decay": o.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
            lr=o.lr, betas=(o.betas[0], o.betas[1]), eps=o.eps,
        )
        total = self.cfg.trainer.max_steps
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: cosine_with_warmup(s, o.warmup_steps, total, o.min_lr_ratio))
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}


def complexity_of(batch: dict[str, Any], field_name: str) -> Optional[Tensor]:
    """(B,) complexity labels from ``batch["meta"]``, or None when not configured."""
    if not field_name:
        return None
    meta = batch.get("meta", {})
    if field_name not in meta:
        raise ValueError(f"eval.complexity_field '{field_name}' is not in the batch metadata: add it to data.reader.metadata_fields")
    return torch.as_tensor(meta[field_name])


def check_reader_matches_encoder(cfg: TokenizerRunConfig) -> None:
    """The reader does the encoder's preprocessing; a mismatch would silently feed wrong pixels."""
    reader, enc = cfg.data.reader, cfg.model.encoder
    if reader.image_size != enc.image_size:
        raise ValueError(f"data.reader.image_size={reader.image_size} must equal model.encoder.image_size={enc.image_size}")
    for name in ("mean", "std"):
        if [round(v, 6) for v in getattr(reader, name)] != [round(v, 6) for v in getattr(enc, name)]:
            raise ValueError(f"data.reader.{name}={list(getattr(reader, name))} must equal model.encoder.{name}={list(getattr(enc, name))}")
    field_name = cfg.eval.complexity_field
    if field_name and field_name not in reader.metadata_fields:
        raise ValueError(f"eval.complexity_field '{field_name}' must be listed in data.reader.metadata_fields")


def build(cfg: TokenizerRunConfig) -> tuple[TokenizerModule, ImagesDataModule]:
    check_reader_matches_encoder(cfg)
    return TokenizerModule(cfg), ImagesDataModule(cfg.data)


def export(module: TokenizerModule, cfg: TokenizerRunConfig, run_dir: Any) -> dict[str, Any]:
    from lavit_pl.modules.tokenizer_export import export_tokenizer

    return export_tokenizer(module, cfg, run_dir)


STAGE = Stage(config=TokenizerRunConfig, build=build, export=export)
