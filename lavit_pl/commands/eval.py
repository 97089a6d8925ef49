"""``python -m lavit_pl eval -c experiments/eval/table1_tiny.yaml``: Table 1 for one model folder.

For every split and protocol: official-format predictions (resumable: a complete split is not
regenerated), scores from the standalone scorers' code, the model-free baselines on the same
examples, ``<output_dir>/metrics/<row>.json`` and ``<output_dir>/reports/table1.{json,md}`` (plus
``report.breakdowns``: ``table1_vqa_types`` by default, VQAv2 per question type).
With ``retrieval.enabled`` the run makes the ``retrieval`` row instead of a model's rows (the
stage-0 CLIP's nearest training caption / answer: ``evaluation/table1/retrieval.py``).
Folder layout: ``evaluation/table1/run.py``; model folder layout: ``docs/eval_model_folder.md``.
"""
from __future__ import annotations

import hashlib
import importlib
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

from evaluation.benchmarks.errors import BenchmarkFileError
from evaluation.benchmarks.nocaps import NOCAPS_DOMAINS
from evaluation.protocols import all_tasks, protocols_for
from evaluation.table1.baselines import BaselineSettings
from evaluation.table1.paths import Table1Paths
from evaluation.table1.report import table1_report
from evaluation.table1.retrieval import RetrievalSettings, run_retrieval_rows
from evaluation.table1.run import ModelRun, run_baseline_rows, run_model_rows, write_row_metrics
from evaluation.table1.splits import SPLITS, prepare_split
from lavit_pl.config import to_yaml
from lavit_pl.utils.atomic import atomic_write_text
from lavit_pl.utils.clip_export import ClipExportError

DESCRIPTION = (
    "Zero-shot Table 1: caption / VQA predictions of a LaVIT evaluation folder in the official results "
    "formats, scored with the official metrics (and the release-style number), beside the answer-prior "
    "and constant-caption baselines and the paper's rows. Re-running skips finished splits."
)
DEFAULT_LOADER = "lavit_pl.generation.eval_model:load_lavit_for_eval"


def _help(text: str) -> dict[str, str]:
    return {"help": text}


@dataclass
class EvalModelConfig:
    path: str = field(default="???", metadata=_help("evaluation folder (docs/eval_model_folder.md)"))
    loader: str = field(default=DEFAULT_LOADER, metadata=_help("'module:function' (path, device, dtype) -> EvalModel"))
    device: str = "cpu"
    dtype: str = field(default="float32", metadata=_help("float32 | bfloat16 | float16"))
    blind: bool = field(default=False, metadata=_help("seeded noise images instead of the images (blind rows)"))
    noise_seed: int = 0
    cache_size: int = field(default=256, metadata=_help("images whose features are kept between requests"))

    def __post_init__(self) -> None:
        if self.loader.count(":") != 1:
            raise ValueError(f"model.loader: expected 'module:function', got {self.loader!r}")
        if self.dtype not in ("float32", "bfloat16", "float16"):
            raise ValueError(f"model.dtype: expected float32, bfloat16 or float16, got {self.dtype!r}")
        if self.cache_size < 0:
            raise ValueError(f"model.cache_size: expected >= 0, got {self.cache_size}")


@dataclass
class ReportConfig:
    table: str = field(default="table1", metadata=_help("report spec (evaluation/reports/tables/<name>.json)"))
    breakdowns: List[str] = field(default_factory=lambda: ["table1_vqa_types"], metadata=_help(
        "further report specs written from the same rows (e.g. VQAv2 per question type)"))
    external_rows: Dict[str, str] = field(default_factory=dict, metadata=_help(
        "row -> metrics file of another run (blind, retrieval); missing files are shown as missing"))


@dataclass
class EvalConfig:
    output_dir: str = field(default="???", metadata=_help("predictions, scores, metrics and reports"))
    data: Table1Paths = field(default_factory=Table1Paths)
    splits: List[str] = field(default_factory=lambda: list(SPLITS), metadata=_help(f"some of {list(SPLITS)}"))
    nocaps_domains: List[str] = field(default_factory=lambda: list(NOCAPS_DOMAINS))
    protocols: List[str] = field(default_factory=lambda: ["release", "describe_then_answer"],
                                 metadata=_help("release | paper | describe_then_answer"))
    report_protocol: str = field(default="release", metadata=_help("the protocol of the 'ours' row"))
    max_examples: Optional[int] = field(default=None, metadata=_help("first n examples of every split (None: all)"))
    split_max_examples: Dict[str, int] = field(default_factory=dict, metadata=_help("per-split override"))
    batch_size: int = 16
    progress: bool = True
    model: EvalModelConfig = field(default_factory=EvalModelConfig)
    baselines: BaselineSettings = field(default_factory=BaselineSettings)
    retrieval: RetrievalSettings = field(default_factory=RetrievalSettings)
    report: ReportConfig = field(default_factory=ReportConfig)

    def __post_init__(self) -> None:
        for name in ("splits", "protocols"):
            values = getattr(self, name)
            if not values or len(set(values)) != len(values):
                raise ValueError(f"{name}: expected a non-empty list without repeats, got {list(values)}")
        unknown = [s for s in self.splits if s not in SPLITS]
        if unknown:
            raise ValueError(f"splits: unknown {unknown}; expected some of {list(SPLITS)}")
        protocols = sorted({t.protocol for t in all_tasks()})
        if any(p not in protocols for p in self.protocols):
            raise ValueError(f"protocols: expected some of {protocols}, got {list(self.protocols)}")
        if self.report_protocol not in self.protocols:
            raise ValueError(f"report_protocol: {self.report_protocol!r} is not in protocols {list(self.protocols)}")
        for split in self.splits:  # else the split would be read, counted and never predicted
            covering = protocols_for(split)
            if not set(self.protocols) & set(covering):
                raise ValueError(f"splits: {split!r} has no task under protocols {list(self.protocols)}; "
                                 f"add one of {covering} to protocols or drop the split")
        if any(d not in NOCAPS_DOMAINS for d in self.nocaps_domains) or not self.nocaps_domains:
            raise ValueError(f"nocaps_domains: expected some of {list(NOCAPS_DOMAINS)}, got {list(self.nocaps_domains)}")
        bad = {k: v for k, v in self.split_max_examples.items() if k not in SPLITS or v < 1}
        if bad or (self.max_examples is not None and self.max_examples < 1):
            raise ValueError(f"max_examples / split_max_examples: expected splits of {list(SPLITS)} with n >= 1, "
                             f"got {self.max_examples} / {bad}")
        if self.batch_size < 1:
            raise ValueError(f"batch_size: expected >= 1, got {self.batch_size}")

    def max_for(self, split: str) -> int | None:
        return self.split_max_examples.get(split, self.max_examples)


SCHEMA = EvalConfig


def schema_for(config_path: str | None, overrides: Sequence[str]) -> type:
    return SCHEMA


def model_id(cfg: EvalModelConfig) -> str:
    """What identifies the predictions' source: loader, folder, dtype, blindness, and a digest of
    the folder's files (relative path, size, mtime), so a re-export at the same path regenerates."""
    folder = Path(cfg.path)
    if not folder.exists():
        raise FileNotFoundError(f"model.path: {folder} not found (an evaluation folder: docs/eval_model_folder.md)")
    digest = hashlib.sha256()
    for file in sorted(p for p in folder.rglob("*") if p.is_file()):
        stat = file.stat()
        digest.update(f"{file.relative_to(folder)}:{stat.st_size}:{stat.st_mtime_ns};".encode())
    blind = f":blind(noise_seed={cfg.noise_seed})" if cfg.blind else ""
    return f"{cfg.loader}:{folder.resolve()}:{cfg.dtype}{blind}:files={digest.hexdigest()[:16]}"


def resolve_loader(name: str) -> Any:
    module_name, _, attr = name.partition(":")
    try:
        return getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as err:
        raise ValueError(f"model.loader: cannot import {name!r}: {err}") from err


class LazyModelGenerator:
    """The protocol runner's ``generate``; loads the model on the first request only, so a run whose
    splits are all complete never loads it."""

    def __init__(self, cfg: EvalModelConfig, batch_size: int):
        self.cfg = cfg
        self.batch_size = batch_size
        self.generator: Any = None

    def load(self) -> Any:
        from lavit_pl.generation.lavit_generator import LavitGenerator, noise_image_encoder

        model = resolve_loader(self.cfg.loader)(self.cfg.path, device=self.cfg.device, dtype=self.cfg.dtype)
        encode = model.encode_images
        if self.cfg.blind:
            encode = noise_image_encoder(encode, seed=self.cfg.noise_seed)
        return LavitGenerator(model.lm, model.tokenizer, encode, self.batch_size, self.cfg.cache_size)

    def __call__(self, requests: list) -> list[str]:
        if self.generator is None:
            self.generator = self.load()
        return self.generator(requests)


def run(cfg: EvalConfig) -> int:
    try:
        return _run(cfg)
    except (FileNotFoundError, BenchmarkFileError, ClipExportError) as err:  # bad data root, model, benchmark file
        print(f"[eval] error: {err}", file=sys.stderr)
        return 2


def _run(cfg: EvalConfig) -> int:
    out = Path(cfg.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "config.yaml", to_yaml(cfg))
    splits = [prepare_split(name, cfg.data, cfg.max_for(name), out / "benchmark", cfg.nocaps_domains)
              for name in cfg.splits]
    if cfg.retrieval.enabled:  # the retrieval baseline's row; model.path is not read
        rows, generated = run_retrieval_rows(splits, cfg.data, cfg.retrieval, cfg.baselines, out)
    else:
        prefix = "blind" if cfg.model.blind else "ours"
        model_run = ModelRun(list(cfg.protocols), cfg.report_protocol, prefix, model_id(cfg.model), cfg.batch_size,
                             cfg.progress)
        rows, generated = run_model_rows(model_run, splits, LazyModelGenerator(cfg.model, cfg.batch_size), out)
    notes = {}
    if cfg.baselines.enabled:
        rows.update(run_baseline_rows(splits, cfg.data, cfg.baselines, out))
    else:
        notes = {"prior": "baselines.enabled is false", "constant_caption": "baselines.enabled is false"}
    produced = write_row_metrics(rows, out)
    report = [path for table in (cfg.report.table, *cfg.report.breakdowns)
              for path in table1_report(produced, cfg.report.external_rows, cfg.report_protocol, out / "reports",
                                        table, notes)]
    summary = {"output_dir": str(out), "generated": generated, "metrics": {k: str(v) for k, v in produced.items()},
               "report": [str(p) for p in report],
               "examples": {s.name: f"{len(s.records)} of {s.num_in_file}" for s in splits}}
    print(json.dumps(summary))
    print(f"[eval] report: {report[1]}", file=sys.stderr)
    return 0
