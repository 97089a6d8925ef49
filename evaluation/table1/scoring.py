"""Score a results file of a prepared split exactly as the standalone scorers do, and pick the
numbers a report row shows.

Scoring goes through each benchmark CLI's own ``evaluate`` (``evaluation.caption``, ``.vqa``,
``.gqa``, ``.vizwiz``) with the arguments one would type, so a number in a report is the number
``python -m evaluation.<benchmark> ...`` prints for the same files. VQA-type splits are scored
with ``--release-postprocess``: the official number and, separately, the release-style one.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from evaluation import caption, gqa, vizwiz, vqa
from evaluation.table1.splits import PreparedSplit


def scorer_argv(split: PreparedSplit, results: str | Path) -> tuple[Any, list[str]]:
    """(CLI module, argv) that scores ``results`` against ``split``'s benchmark files."""
    f = {k: str(v) for k, v in split.files.items()}
    if split.kind == "caption":
        argv = ["--annotations", f["annotations"], "--results", str(results)]
        return caption, argv + (["--karpathy-split", "test"] if split.name == "flickr30k" else [])
    if split.kind == "vqa":
        return vqa, ["--questions", f["questions"], "--annotations", f["annotations"], "--results", str(results),
                     "--release-postprocess"]
    if split.kind == "gqa":
        return gqa, ["--questions", f["questions"], "--results", str(results), "--release-postprocess"]
    return vizwiz, ["--annotations", f["annotations"], "--results", str(results), "--release-postprocess"]


def score_results(split: PreparedSplit, results: str | Path) -> dict[str, Any]:
    """The scorer's full JSON object (what ``python -m evaluation.<benchmark>`` prints)."""
    module, argv = scorer_argv(split, results)
    return module.evaluate(module.build_parser().parse_args(argv))


def headline(split: PreparedSplit, scores: dict[str, Any]) -> dict[str, Any]:
    """The report numbers of one split: ``cider`` (pycocoevalcap scale) for captions, plus
    ``cider_<domain>`` for NoCaps; ``vqa_accuracy`` / ``gqa_accuracy`` (percent, official) and the
    release post-processed ``*_release`` for VQA-type splits; VQA splits also keep the official
    evaluator's ``per_question_type`` accuracies (percent) when it reports them."""
    if split.kind == "caption":
        out = {"cider": scores["CIDEr"], "bleu4": scores["Bleu_4"], "num_images": scores["num_images"]}
        for domain, values in scores.get("perDomain", {}).items():
            out[f"cider_{domain.replace('-', '_')}"] = values["CIDEr"]
        return out
    if split.kind == "gqa":
        return {"gqa_accuracy": scores["accuracy"], "gqa_accuracy_release": scores["release_postprocessed"]["accuracy"],
                "num_questions": scores["num_questions"]}
    out = {"vqa_accuracy": scores["overall"], "vqa_accuracy_release": scores["release_postprocessed"]["overall"],
           "num_questions": scores["num_questions"]}
    if scores.get("perQuestionType"):
        out["per_question_type"] = dict(scores["perQuestionType"])
        out["per_question_type_release"] = dict(scores["release_postprocessed"]["perQuestionType"])
    return out


RELEASE_KEYS = {"vqa_accuracy": "vqa_accuracy_release", "gqa_accuracy": "gqa_accuracy_release",
                "per_question_type": "per_question_type_release"}


def release_view(entry: dict[str, Any]) -> dict[str, Any]:
    """A split entry whose ``vqa_accuracy`` / ``gqa_accuracy`` are the release post-processed
    numbers, per question type too (for the report row that shows them under the table's columns);
    {} for captions."""
    return {key: entry[release] for key, release in RELEASE_KEYS.items() if release in entry}
