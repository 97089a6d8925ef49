"""``python -m lavit_pl fit -c experiments/<stage>/<name>.yaml``: train one stage, resumably."""
from __future__ import annotations

import importlib
import json
import sys
import time
from pathlib import Path
from typing import Any, Sequence

import lightning as L

from lavit_pl.config import ConfigError, peek_key, to_yaml
from lavit_pl.modules.stage import RunConfig, Stage
from lavit_pl.modules.trainer import build_trainer
from lavit_pl.utils.atomic import atomic_write_json, atomic_write_text

DESCRIPTION = (
    "Train one stage. The YAML's 'stage' key picks the schema. Re-running a finished run does "
    "nothing; re-running an interrupted one resumes from <output_dir>/checkpoints/last.ckpt."
)
SCHEMA = RunConfig
DONE_FILE = "DONE.json"

# stage name -> module defining ``STAGE: Stage`` (imported only when used)
STAGES: dict[str, str] = {
    "clip": "lavit_pl.modules.clip_module",
    "text_lm": "lavit_pl.modules.text_lm_module",
    "unified": "lavit_pl.modules.unified_lm_module",
    "tokenizer": "lavit_pl.modules.tokenizer_module",
}


def stage_for(name: Any, source: str) -> Stage:
    if name not in STAGES:
        raise ConfigError(f"{source}: key 'stage' must be one of {sorted(STAGES)}, got {name!r}")
    return importlib.import_module(STAGES[name]).STAGE


def schema_for(config_path: str | None, overrides: Sequence[str]) -> type:
    if config_path is None:
        raise ConfigError("fit needs a config: -c experiments/<stage>/<name>.yaml")
    return stage_for(peek_key(config_path, "stage", overrides), str(config_path)).config


def run(cfg: RunConfig) -> int:
    stage = stage_for(cfg.stage, "config")
    run_dir = Path(cfg.output_dir)
    done = run_dir / DONE_FILE
    if done.is_file():
        print(f"[fit] {run_dir} is finished ({done}); nothing to do", file=sys.stderr)
        return 0
    run_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(run_dir / "config.yaml", to_yaml(cfg))
    L.seed_everything(cfg.seed, workers=True, verbose=False)
    module, datamodule = stage.build(cfg)
    trainer = build_trainer(cfg.trainer, run_dir)
    last = run_dir / "checkpoints" / "last.ckpt"
    resume = str(last) if last.is_file() else None
    if resume:
        print(f"[fit] resuming from {resume}", file=sys.stderr)
    start = time.time()
    trainer.fit(module, datamodule=datamodule, ckpt_path=resume, weights_only=True)
    if trainer.interrupted:
        print("[fit] interrupted; re-run the same command to resume", file=sys.stderr)
        return 1
    exported = stage.export(module, cfg, run_dir) if trainer.is_global_zero else {}
    if trainer.is_global_zero:
        atomic_write_json(
            done,
            {
                "stage": cfg.stage,
                "global_step": trainer.global_step,
                "max_steps": cfg.trainer.max_steps,
                "stopped_by_time_budget": trainer.global_step < cfg.trainer.max_steps,
                "seconds_this_session": round(time.time() - start, 1),
                "exported": exported,
            },
        )
        print(json.dumps({"run_dir": str(run_dir), "global_step": trainer.global_step, **exported}))
    return 0
