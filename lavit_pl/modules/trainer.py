"""Trainer settings shared by every stage, and the one place a ``lightning.Trainer`` is built.

Scale is a config value: the same code runs a 2-core CPU preset and a multi-node bf16 FSDP2 job
(``strategy: fsdp2`` -> Lightning's ``ModelParallelStrategy``; modules shard themselves in
``configure_model`` using ``self.device_mesh``).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import lightning as L
from lightning.pytorch.callbacks import LearningRateMonitor, ModelCheckpoint, TQDMProgressBar
from lightning.pytorch.loggers import CSVLogger

from lavit_pl.data.skipped_metric import SkippedSamplesLogger

STRATEGIES = ("auto", "ddp", "fsdp2")


@dataclass
class TrainerConfig:
    max_steps: int = field(default=1000, metadata={"help": "optimizer steps"})
    max_minutes: Optional[float] = field(default=None, metadata={"help": "wall-clock budget; the run stops (and can resume) after it"})
    accelerator: str = field(default="auto", metadata={"help": "cpu | gpu | auto"})
    devices: str = field(default="auto", metadata={"help": "'auto' or a number of devices per node"})
    num_nodes: int = 1
    strategy: str = field(default="auto", metadata={"help": "auto | ddp | fsdp2 (ModelParallelStrategy)"})
    precision: str = field(default="32-true", metadata={"help": "32-true on CPU, bf16-mixed on GPU"})
    gradient_clip_val: float = 1.0
    accumulate_grad_batches: int = 1
    log_every_n_steps: int = 10
    val_check_interval: int = field(default=500, metadata={"help": "validate every this many training batches"})
    limit_val_batches: float = 1.0
    checkpoint_every_n_steps: int = 200
    progress_bar: bool = True
    deterministic: bool = False

    def __post_init__(self) -> None:
        if self.strategy not in STRATEGIES:
            raise ValueError(f"trainer.strategy must be one of {STRATEGIES}, got '{self.strategy}'")
        if self.max_steps < 1:
            raise ValueError(f"trainer.max_steps must be >= 1, got {self.max_steps}")
        if self.devices != "auto" and not self.devices.isdigit():
            raise ValueError(f"trainer.devices must be 'auto' or an integer, got '{self.devices}'")
        if self.max_minutes is not None and self.max_minutes <= 0:
            raise ValueError(f"trainer.max_minutes must be > 0, got {self.max_minutes}")


def _devices_per_node(cfg: TrainerConfig) -> int:
    if cfg.devices.isdigit():
        return int(cfg.devices)
    import torch

    gpu = cfg.accelerator in ("gpu", "cuda", "auto") and torch.cuda.is_available()
    return max(1, torch.cuda.device_count()) if gpu else 1  # Lightning's "auto" on CPU is one device


def _strategy(cfg: TrainerConfig) -> Any:
    if cfg.strategy == "fsdp2":
        from lightning.pytorch.strategies import ModelParallelStrategy

        # Pure FSDP2: every process is a data-parallel shard. (Lightning's "auto" data_parallel_size
        # is the number of nodes, which with tensor_parallel_size=1 fails for > 1 device per node.)
        return ModelParallelStrategy(data_parallel_size=cfg.num_nodes * _devices_per_node(cfg), tensor_parallel_size=1)
    return cfg.strategy


def build_trainer(cfg: TrainerConfig, run_dir: str | Path, extra_callbacks: list[Any] = ()) -> L.Trainer:
    """A Trainer writing checkpoints to ``run_dir/checkpoints`` (``last.ckpt`` for resuming)."""
    run_dir = Path(run_dir)
    callbacks: list[Any] = [
        ModelCheckpoint(
            dirpath=run_dir / "checkpoints",
            save_last=True,
            save_top_k=0,
            every_n_train_steps=cfg.checkpoint_every_n_steps,
            save_on_train_epoch_end=False,
        ),
        LearningRateMonitor(logging_interval="step"),
        SkippedSamplesLogger(),  # data/skipped_samples: corrupt samples are counted, never silent
        *extra_callbacks,
    ]
    if cfg.progress_bar:
        callbacks.append(TQDMProgressBar(refresh_rate=max(1, cfg.log_every_n_steps)))
    max_time = None
    if cfg.max_minutes is not None:
        max_time = {"minutes": cfg.max_minutes}
    return L.Trainer(
        default_root_dir=str(run_dir),
        max_steps=cfg.max_steps,
        max_epochs=-1,
        max_time=max_time,
        accelerator=cfg.accelerator,
        devices=int(cfg.devices) if cfg.devices.isdigit() else "auto",
        num_nodes=cfg.num_nodes,
        strategy=_strategy(cfg),
        precision=cfg.precision,
        gradient_clip_val=cfg.gradient_clip_val if cfg.strategy != "fsdp2" else None,
        accumulate_grad_batches=cfg.accumulate_grad_batches,
        log_every_n_steps=cfg.log_every_n_steps,
        val_check_interval=cfg.val_check_interval,
        check_val_every_n_epoch=None,
        limit_val_batches=cfg.limit_val_batches,
        # One folder per session (logs/version_N/metrics.csv): a resumed run keeps its earlier logs.
        logger=CSVLogger(str(run_dir), name="logs"),
        callbacks=callbacks,
        enable_progress_bar=cfg.progress_bar,
        enable_model_summary=False,
        deterministic=cfg.deterministic,
    )
