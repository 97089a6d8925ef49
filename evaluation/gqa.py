"""Score a GQA results file with the official GQA exact-match accuracy.

    python -m evaluation.gqa --questions testdev_balanced_questions.json --results R.json \
        [--release-postprocess] [--image-root DIR]

Results: ``[{"questionId": str, "prediction": str}]``, exactly one per question of the file
(as the official script, it scores only the ``isBalanced`` ones). Prints one JSON object:
``accuracy``, ``binary``, ``open`` and per structural / semantic / detailed type, in percent
rounded to 2 decimals; with ``--release-postprocess`` also the LaVIT release's number (processed
prediction against lemmatised answer) under ``release_postprocessed``.
"""
from __future__ import annotations

import argparse
import logging
import sys

from evaluation.benchmarks.gqa import read_gqa
from evaluation.benchmarks.results import align_predictions, read_results
from evaluation.cli_common import add_release_postprocess_flag, cli_main, new_parser, release_entry
from evaluation.metrics.gqa import gqa_accuracy
from evaluation.metrics.release_postprocess import release_gqa_accuracy

log = logging.getLogger("evaluation.gqa")


def build_parser() -> argparse.ArgumentParser:
    parser = new_parser("python -m evaluation.gqa", __doc__)
    parser.add_argument("--questions", required=True, help="GQA questions JSON (dict keyed by questionId)")
    parser.add_argument("--results", required=True, help='results JSON: [{"questionId", "prediction"}]')
    add_release_postprocess_flag(parser)
    parser.add_argument("--image-root", help="if given, check that every scored question's image exists there")
    return parser


def evaluate(args: argparse.Namespace) -> dict:
    every = read_gqa(args.questions, balanced_only=False)
    predictions = read_results(args.results, "gqa")
    align_predictions(predictions, [r.question_id for r in every], args.results, "questionId")
    records = read_gqa(args.questions, balanced_only=True, image_root=args.image_root)
    preds = [predictions[r.question_id] for r in records]
    log.info("scoring %d balanced of %d questions of %s", len(records), len(every), args.questions)
    fields = ([r.answer for r in records], [r.structural for r in records], [r.semantic for r in records],
              [r.detailed for r in records])
    out = {"metric": "exact_match_accuracy (official GQA eval.py)", **gqa_accuracy(preds, *fields)}
    if args.release_postprocess:
        out["release_postprocessed"] = release_entry(release_gqa_accuracy(preds, *fields))
    return out


def main(argv: list[str] | None = None) -> int:
    return cli_main(build_parser, evaluate, argv)


if __name__ == "__main__":
    sys.exit(main())
