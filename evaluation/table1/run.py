"""Table 1 end to end, for any text generator: predictions per (protocol, split), scores, baselines,
metric files per report row.

Output folder::

    <out>/predictions/<protocol>/<split>.json        official results file (+ .trace.json, .meta.json)
    <out>/predictions/<baseline>/<split>.json        prior / constant_caption (+ .summary.json, .meta.json)
    <out>/predictions/retrieval/<split>.json         the retrieval row (retrieval.py; + .summary, .prior, .meta)
    <out>/benchmark/<split>/...                      official-layout subsets when not every example is used
    <out>/scores/<group>/<split>.json                the scorer's full output (as the standalone CLI prints it)
    <out>/metrics/<row>.json                         {split: {metric: value}} per report row
    <out>/reports/table1.{json,md}                   the report (report.py)
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from evaluation.protocols import get_task, protocols_for
from evaluation.table1.baselines import BaselineSettings, baseline_name, write_baseline
from evaluation.table1.paths import Table1Paths
from evaluation.table1.predictions import Generator, SplitFiles, ensure_results, predict_split, task_meta
from evaluation.table1.scoring import headline, release_view, score_results
from evaluation.table1.splits import PreparedSplit
from lavit_pl.utils.atomic import atomic_write_json

RowMetrics = dict[str, dict[str, Any]]  # split -> {metric: value}
RELEASE_POSTPROCESSED = "release_postprocessed"


def row_name(prefix: str, protocol: str, report_protocol: str) -> str:
    """``ours`` for the reported protocol, ``ours_<protocol>`` for the others (``blind``... alike)."""
    return prefix if protocol == report_protocol else f"{prefix}_{protocol}"


def score_split(split: PreparedSplit, results: Path, out_dir: Path, group: str) -> dict[str, Any]:
    """Score ``results`` with the standalone scorer's code; keep its full output under
    ``<out>/scores/<group>/<split>.json`` and return the report numbers (:func:`headline`)."""
    scores = score_results(split, results)
    atomic_write_json(out_dir / "scores" / group / f"{split.name}.json", scores)
    return headline(split, scores)


@dataclass
class ModelRun:
    """Which protocol tasks to run for a model, and how its rows are named."""

    protocols: list[str]
    report_protocol: str
    row_prefix: str  # "ours", or "blind" for the noise-image run
    model_id: str  # recorded in each .meta.json: a change regenerates
    batch_size: int
    progress: bool = True

    def tasks_for(self, split: PreparedSplit) -> list[tuple[str, Any]]:
        covering = protocols_for(split.name)
        return [(p, get_task(f"{p}/{split.name}")) for p in self.protocols if p in covering]


def run_model_rows(run: ModelRun, splits: list[PreparedSplit], generate: Generator, out_dir: str | Path,
                   ) -> tuple[dict[str, RowMetrics], list[str]]:
    """Predict and score every (protocol, split) with a registered task. Returns the rows' metrics
    (the reported protocol's release post-processed numbers as ``<prefix>_release_postprocessed``)
    and the keys ``protocol/split`` that were generated in this call (the others were complete)."""
    out_dir = Path(out_dir)
    rows: dict[str, RowMetrics] = {}
    generated = []
    for split in splits:
        for protocol, task in run.tasks_for(split):
            files = SplitFiles.at(out_dir, protocol, split.name)
            meta = task_meta(task, split, run.model_id)
            if predict_split(task, split, generate, run.batch_size, files, meta, run.progress):
                generated.append(task.key)
            entry = score_split(split, files.predictions, out_dir, protocol)
            rows.setdefault(row_name(run.row_prefix, protocol, run.report_protocol), {})[split.name] = entry
            if protocol == run.report_protocol and release_view(entry):
                rows.setdefault(f"{run.row_prefix}_{RELEASE_POSTPROCESSED}", {})[split.name] = release_view(entry)
    return rows, generated


def run_baseline_rows(splits: list[PreparedSplit], paths: Table1Paths, settings: BaselineSettings,
                      out_dir: str | Path) -> dict[str, RowMetrics]:
    """Answer-prior and constant-caption results per split (resumable like the model's), scored."""
    out_dir = Path(out_dir)
    rows: dict[str, RowMetrics] = {}
    for split in splits:
        name = baseline_name(split)
        files = SplitFiles.at(out_dir, name, split.name)
        summary = files.predictions.with_name(f"{split.name}.summary.json")
        meta = {"baseline": name, "settings": dataclasses.asdict(settings), "paths": dataclasses.asdict(paths),
                "split": split.name, "num_examples": len(split.records), "subset": split.subset}

        def produce(split=split, files=files, summary=summary) -> None:
            atomic_write_json(summary, write_baseline(split, paths, settings, files.predictions))

        ensure_results(files, split, meta, produce)
        rows.setdefault(name, {})[split.name] = score_split(split, files.predictions, out_dir, name)
    return rows


def write_row_metrics(rows: dict[str, RowMetrics], out_dir: str | Path) -> dict[str, Path]:
    """``<out>/metrics/<row>.json`` per row; returns row -> path."""
    paths = {}
    for name, metrics in rows.items():
        path = Path(out_dir) / "metrics" / f"{name}.json"
        atomic_write_json(path, metrics)
        paths[name] = path
    return paths
