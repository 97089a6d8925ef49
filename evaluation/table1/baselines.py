"""Model-free baseline predictions for a prepared split, through ``python -m evaluation.baselines``'s
own functions (same arguments as on the command line), written in the split's official results format.

- VQAv2 / OK-VQA: answer prior per question type from the VQA *train* split;
- GQA: answer prior per detailed type from GQA train;
- VizWiz: answer prior per answer type (or overall) from VizWiz train;
- NoCaps / Flickr30k: the best constant caption, chosen by CIDEr-D on training captions only.

Each baseline reads the same (possibly subset) benchmark files as the model, so it is scored on the
same examples.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from evaluation import baselines
from evaluation.table1.paths import Table1Paths
from evaluation.table1.splits import PreparedSplit


@dataclass
class BaselineSettings:
    enabled: bool = field(default=True, metadata={"help": "compute the answer-prior and constant-caption rows"})
    num_candidates: int = field(default=100, metadata={"help": "constant caption: training captions tried"})
    num_reference_images: int = field(default=200, metadata={"help": "constant caption: training images scored"})
    seed: int = 0
    vizwiz_group_by: str = field(default="answer_type", metadata={"help": "VizWiz prior groups: answer_type | none"})

    def __post_init__(self) -> None:
        if self.num_candidates < 1:
            raise ValueError(f"baselines.num_candidates: expected >= 1, got {self.num_candidates}")
        if self.num_reference_images < 2:
            raise ValueError(f"baselines.num_reference_images: expected >= 2, got {self.num_reference_images}")
        if self.vizwiz_group_by not in ("answer_type", "none"):
            raise ValueError(f"baselines.vizwiz_group_by: expected 'answer_type' or 'none', got {self.vizwiz_group_by!r}")


def baseline_name(split: PreparedSplit) -> str:
    """The report row a split's baseline fills: ``constant_caption`` or ``prior``."""
    return "constant_caption" if split.kind == "caption" else "prior"


def baseline_argv(split: PreparedSplit, paths: Table1Paths, settings: BaselineSettings, out: Path) -> list[str]:
    f = {k: str(v) for k, v in split.files.items()}
    if split.kind == "caption":
        if paths.train_caption_shards:
            source = ["--train-shards", *[str(p) for p in paths.train_shards()]]
        else:
            source = ["--train-annotations", str(paths.resolve("train_caption_annotations"))]
            if paths.train_caption_karpathy_split:
                source += ["--train-karpathy-split", paths.train_caption_karpathy_split]
        argv = ["constant-caption", *source, "--annotations", f["annotations"],
                "--num-candidates", str(settings.num_candidates),
                "--num-reference-images", str(settings.num_reference_images), "--seed", str(settings.seed)]
        return argv + (["--karpathy-split", "test"] if split.name == "flickr30k" else []) + ["--out", str(out)]
    if split.kind == "vqa":
        return ["prior-vqa", "--train-questions", str(paths.resolve(f"{split.name}_train_questions")),
                "--train-annotations", str(paths.resolve(f"{split.name}_train_annotations")),
                "--questions", f["questions"], "--out", str(out)]
    if split.kind == "gqa":
        return ["prior-gqa", "--train-questions", str(paths.resolve("gqa_train_questions")),
                "--questions", f["questions"], "--out", str(out)]
    return ["prior-vizwiz", "--train", str(paths.resolve("vizwiz_train")), "--annotations", f["annotations"],
            "--group-by", settings.vizwiz_group_by, "--out", str(out)]


def write_baseline(split: PreparedSplit, paths: Table1Paths, settings: BaselineSettings, out: str | Path) -> dict[str, Any]:
    """Write the baseline's results file ``out``; returns the baseline's JSON summary."""
    args = baselines.build_parser().parse_args(baseline_argv(split, paths, settings, Path(out)))
    return args.fn(args)
