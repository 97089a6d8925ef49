"""What every trainable stage shares: the run config's common keys and the stage descriptor."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

from lavit_pl.modules.trainer import TrainerConfig


@dataclass
class RunConfig:
    """Keys every ``fit`` YAML has; each stage's config extends this dataclass."""

    stage: str = field(default="???", metadata={"help": "which stage to train (picks the schema)"})
    name: str = field(default="run", metadata={"help": "run name (logs, reports)"})
    seed: int = 0
    output_dir: str = field(default="???", metadata={"help": "run folder: config, checkpoints, exports"})
    trainer: TrainerConfig = field(default_factory=TrainerConfig)


@dataclass(frozen=True)
class Stage:
    """A trainable stage: its config schema, how to build (module, datamodule), what to export.

    ``export(module, cfg, run_dir)`` writes the stage's final artefacts (weights in the release
    formats, figures, metrics) once training ends; later stages read only those.
    """

    config: type
    build: Callable[[Any], tuple[Any, Any]]
    export: Callable[[Any, Any, Any], dict[str, Any]]
