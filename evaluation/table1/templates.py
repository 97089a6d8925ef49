"""VQAv2-like accuracy per Shapes-world question template, beside each template's own answer prior.

A VQA type mixes templates whose answers have very different priors: most "How many <kind>s are
there?" answers are 1, while "How many shapes are there?" has no dominant answer. A model can match
the first without reading anything. Splitting by template (``lavit_pl.data.shapes.questions``) and
setting each beside "always the template's most common answer" shows which templates are read.

    python -m evaluation.table1.templates --eval-dir runs/tiny/eval_table1 runs/tiny/eval_table1_blind
"""
from __future__ import annotations

import argparse
from collections import Counter
from pathlib import Path
from typing import Sequence

from evaluation.benchmarks.results import read_results
from evaluation.benchmarks.vqa import VQAQuestion, read_vqa
from evaluation.metrics.vqa import vqa_question_accuracy
from evaluation.table1.paths import Table1Paths
from evaluation.table1.predictions import SplitFiles
from lavit_pl.data.shapes.questions import question_template


def by_template(questions: Sequence[VQAQuestion], scores: Sequence[float]) -> list[dict]:
    """Per template, sorted by name: ``num_questions``, ``accuracy`` (the mean of ``scores``, each in
    [0, 1], as a percent), ``prior_answer`` (the template's most common answer on these questions) and
    ``prior_accuracy`` (always answering it, official rule, percent). Where the two accuracies agree,
    the template is answered from its prior, not read."""
    if len(scores) != len(questions):
        raise ValueError(f"by_template: {len(scores)} scores for {len(questions)} questions")
    groups: dict[str, list[int]] = {}
    for i, q in enumerate(questions):
        groups.setdefault(question_template(q.question), []).append(i)
    rows = []
    for name in sorted(groups):
        members = [questions[i] for i in groups[name]]
        prior, _ = Counter(q.multiple_choice_answer for q in members).most_common(1)[0]
        rows.append({
            "template": name, "num_questions": len(members),
            "accuracy": 100 * sum(scores[i] for i in groups[name]) / len(members),
            "prior_answer": prior,
            "prior_accuracy": 100 * sum(vqa_question_accuracy(prior, q.answers) for q in members) / len(members),
        })
    return rows


def eval_dir_scores(eval_dir: Path, questions: Sequence[VQAQuestion], protocol: str) -> list[float]:
    """Official per-question accuracy of ``eval_dir``'s VQAv2-like predictions under ``protocol``."""
    path = SplitFiles.at(eval_dir, protocol, "vqav2").predictions
    if not path.is_file():
        raise FileNotFoundError(f"{path}: not found (run the {protocol} evaluation of vqav2 first)")
    predictions = read_results(path, "vqa")
    missing = [q.question_id for q in questions if q.question_id not in predictions]
    if missing:
        raise ValueError(f"{path}: no answer for {len(missing)} questions, e.g. question_id {missing[0]}")
    return [vqa_question_accuracy(predictions[q.question_id], q.answers) for q in questions]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--eval-dir", type=Path, nargs="+", default=[Path("runs/tiny/eval_table1")])
    parser.add_argument("--data", type=Path, default=Path("data/shapes/tiny"))
    parser.add_argument("--protocol", default="describe_then_answer", help="predictions/<protocol>/vqav2.json")
    args = parser.parse_args(argv)
    paths = Table1Paths(root=str(args.data))
    questions = read_vqa(paths.resolve("vqav2_questions"), paths.resolve("vqav2_annotations"))
    columns = [by_template(questions, eval_dir_scores(d, questions, args.protocol)) for d in args.eval_dir]
    print("| template | questions | prior answer | prior | " + " | ".join(str(d) for d in args.eval_dir) + " |")
    print("| --- | ---: | --- | ---: | " + " | ".join("---:" for _ in args.eval_dir) + " |")
    for i, row in enumerate(columns[0]):
        cells = " | ".join(f"{col[i]['accuracy']:.1f}" for col in columns)
        print(f"| {row['template']} | {row['num_questions']} | {row['prior_answer']} | {row['prior_accuracy']:.1f} | {cells} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
