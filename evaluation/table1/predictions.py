"""Results files that are written once: official format, atomic, with a record of what made them.

For a (group, split) pair -- group = a protocol run such as ``release`` or a baseline -- three files
sit under ``<out>/predictions/<group>/``:

- ``<split>.json``: the official results file (``[{"question_id", "answer"}]`` ...);
- ``<split>.trace.json``: per record, the prompt after ``[/IMG]`` and the processed output of every
  protocol step (model groups only);
- ``<split>.meta.json``: what produced the predictions (task fingerprint, model, example count),
  written last. A split is complete when its meta matches the current run and its results file
  holds exactly the split's ids; a complete split is never regenerated.
"""
from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from tqdm.auto import tqdm

from evaluation.benchmarks.errors import BenchmarkFileError
from evaluation.benchmarks.results import read_results
from evaluation.protocols import GenerationRequest, Task, fingerprint, run_task
from evaluation.table1.splits import PreparedSplit
from lavit_pl.utils.atomic import atomic_write_json

log = logging.getLogger("evaluation.table1")
Generator = Callable[[list[GenerationRequest]], list[str]]


@dataclass(frozen=True)
class SplitFiles:
    predictions: Path
    trace: Path
    meta: Path

    @classmethod
    def at(cls, out_dir: str | Path, group: str, split: str) -> "SplitFiles":
        base = Path(out_dir) / "predictions" / group
        return cls(base / f"{split}.json", base / f"{split}.trace.json", base / f"{split}.meta.json")


def is_complete(files: SplitFiles, split: PreparedSplit, meta: dict[str, Any]) -> bool:
    """True when ``files`` hold a finished results file of ``split`` made as ``meta`` describes."""
    if not files.predictions.is_file() or not files.meta.is_file():
        return False
    try:
        stored = json.loads(files.meta.read_text())
    except json.JSONDecodeError:
        return False
    if stored != meta:
        log.info("%s: made by a different run (%s); regenerating", files.predictions, files.meta)
        return False
    try:
        predictions = read_results(files.predictions, split.kind)
    except BenchmarkFileError as err:
        log.info("%s: unreadable (%s); regenerating", files.predictions, err)
        return False
    return len(predictions) == len(split.ids) and set(predictions) == set(split.ids)


def ensure_results(files: SplitFiles, split: PreparedSplit, meta: dict[str, Any],
                   produce: Callable[[], None]) -> bool:
    """Run ``produce`` (which writes ``files.predictions``) unless the split is complete; then check
    the file and write ``meta``. Returns True when ``produce`` ran."""
    if is_complete(files, split, meta):
        return False
    files.meta.unlink(missing_ok=True)
    produce()
    predictions = read_results(files.predictions, split.kind)
    if set(predictions) != set(split.ids):
        raise BenchmarkFileError(files.predictions, f"expected predictions for the {len(split.ids)} ids of split "
                                 f"{split.name}, got {len(predictions)}")
    atomic_write_json(files.meta, meta)
    return True


def task_meta(task: Task, split: PreparedSplit, model: str) -> dict[str, Any]:
    return {"task": task.key, "version": task.version, "fingerprint": fingerprint(task), "model": model,
            "split": split.name, "num_examples": len(split.records), "subset": split.subset}


def predict_split(task: Task, split: PreparedSplit, generate: Generator, batch_size: int, files: SplitFiles,
                  meta: dict[str, Any], progress: bool = True) -> bool:
    """Generate ``split`` under ``task`` unless complete; returns True when it generated.

    The progress bar counts answered (record, step) pairs; its total assumes every step runs for
    every record (an exit rule, e.g. VizWiz's answerability question, ends some records early).
    """
    def produce() -> None:
        bar = tqdm(total=len(split.records) * len(task.steps), desc=f"{task.key}", unit="step", disable=not progress)
        try:
            outputs = run_task(task, split.records, generate, batch_size, on_batch=bar.update)
        finally:
            bar.close()
        trace = [{"id": i, "prompts": o.prompts, "outputs": o.outputs, "exited_at": o.exited_at,
                  "prediction": o.prediction} for i, o in zip(split.ids, outputs)]
        atomic_write_json(files.trace, trace)
        atomic_write_json(files.predictions, split.results([o.prediction for o in outputs]))

    return ensure_results(files, split, meta, produce)
