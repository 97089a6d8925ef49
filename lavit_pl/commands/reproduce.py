"""``python -m lavit_pl reproduce -c experiments/pipeline/table1_tiny.yaml``: a whole pipeline.

Runs the steps of a pipeline YAML in order, each as its own ``python -m lavit_pl <command>``
process (so memory is returned between stages), skipping a step whose ``done`` file exists.
An interrupted pipeline resumes: finished steps are skipped and an interrupted ``fit`` resumes
from its last checkpoint. Per-step wall time is written to ``<log_dir>/pipeline.json``.
"""
from __future__ import annotations

import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

from lavit_pl.utils.atomic import atomic_write_json

DESCRIPTION = (
    "Run a pipeline of lavit_pl commands (world, fit, eval...) in order, skipping finished steps "
    "and resuming interrupted ones. Paths are relative to the working directory; step configs "
    "are relative to config_root."
)


@dataclass
class PipelineStep:
    name: str = field(default="???", metadata={"help": "label shown in logs and pipeline.json"})
    command: str = field(default="???", metadata={"help": "a lavit_pl command: world | fit | eval"})
    config: str = field(default="???", metadata={"help": "the step's YAML, relative to config_root"})
    overrides: list[str] = field(default_factory=list)
    done: str = field(default="???", metadata={"help": "file whose existence means the step is finished"})
    budget_minutes: float = field(default=0.0, metadata={"help": "expected wall time (reported, not enforced here; fit stages enforce trainer.max_minutes)"})


@dataclass
class PipelineConfig:
    name: str = "pipeline"
    log_dir: str = field(default="runs/pipeline", metadata={"help": "where pipeline.json goes"})
    config_root: str = field(default="experiments", metadata={"help": "folder the step configs are relative to"})
    steps: list[PipelineStep] = field(default_factory=list)

    def __post_init__(self) -> None:
        from lavit_pl.cli import COMMANDS

        names = [s.name for s in self.steps]
        if len(set(names)) != len(names):
            raise ValueError(f"steps: names must be unique, got {names}")
        for i, step in enumerate(self.steps):
            if step.command not in COMMANDS or step.command == "reproduce":
                raise ValueError(f"steps[{i}].command must be one of {sorted(set(COMMANDS) - {'reproduce'})}, got '{step.command}'")


SCHEMA = PipelineConfig


def schema_for(config_path: str | None, overrides: Sequence[str]) -> type:
    return SCHEMA


def run(cfg: PipelineConfig) -> int:
    root = Path(cfg.config_root)
    log = Path(cfg.log_dir) / "pipeline.json"
    record: dict = {"pipeline": cfg.name, "steps": []}
    total_start = time.time()
    for i, step in enumerate(cfg.steps, 1):
        entry = {"name": step.name, "budget_minutes": step.budget_minutes}
        if Path(step.done).exists():
            print(f"[reproduce] {i}/{len(cfg.steps)} {step.name}: done ({step.done}), skipped", file=sys.stderr)
            entry["status"] = "skipped (already done)"
            record["steps"].append(entry)
            continue
        argv = [sys.executable, "-m", "lavit_pl", step.command, "-c", str(root / step.config), *step.overrides]
        print(f"[reproduce] {i}/{len(cfg.steps)} {step.name}: {' '.join(argv[1:])}", file=sys.stderr, flush=True)
        start = time.time()
        proc = subprocess.run(argv, env=os.environ.copy())
        entry["minutes"] = round((time.time() - start) / 60, 2)
        entry["status"] = "ok" if proc.returncode == 0 else f"failed (exit {proc.returncode})"
        record["steps"].append(entry)
        record["total_minutes"] = round((time.time() - total_start) / 60, 2)
        atomic_write_json(log, record)
        if proc.returncode != 0:
            print(f"[reproduce] step '{step.name}' failed; fix and re-run: finished steps are skipped", file=sys.stderr)
            return proc.returncode
        if not Path(step.done).exists():
            print(f"[reproduce] step '{step.name}' exited 0 but did not write {step.done}", file=sys.stderr)
            return 1
        print(f"[reproduce] {step.name}: {entry['minutes']} min (budget {step.budget_minutes})", file=sys.stderr)
    record["total_minutes"] = round((time.time() - total_start) / 60, 2)
    atomic_write_json(log, record)
    for e in record["steps"]:
        print(f"  {e['name']:<22} {e['status']:<24} {e.get('minutes', '-')} min", file=sys.stderr)
    return 0
