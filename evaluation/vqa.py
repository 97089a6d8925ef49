"""Score a VQAv2 / OK-VQA results file with the official VQA accuracy.

    python -m evaluation.vqa --questions Q.json --annotations A.json --results R.json \
        [--release-postprocess] [--image-root DIR]

Results: ``[{"question_id": int, "answer": str}]``, exactly one per question of Q.json.
Prints one JSON object: ``overall``, ``perQuestionType``, ``perAnswerType`` (percent, rounded to
2 decimals as the official evaluator) and, with ``--release-postprocess``, the LaVIT release's
post-processed number under the separate key ``release_postprocessed``.
"""
from __future__ import annotations

import argparse
import logging
import sys

from evaluation.benchmarks.results import align_predictions, read_results
from evaluation.benchmarks.vqa import read_vqa
from evaluation.cli_common import add_release_postprocess_flag, cli_main, new_parser, release_entry
from evaluation.metrics.release_postprocess import release_vqa_accuracy
from evaluation.metrics.vqa import vqa_accuracy

log = logging.getLogger("evaluation.vqa")


def build_parser() -> argparse.ArgumentParser:
    parser = new_parser("python -m evaluation.vqa", __doc__)
    parser.add_argument("--questions", required=True, help="official questions JSON (VQAv2 or OK-VQA layout)")
    parser.add_argument("--annotations", required=True, help="official annotations JSON (10 answers per question)")
    parser.add_argument("--results", required=True, help='results JSON: [{"question_id", "answer"}]')
    add_release_postprocess_flag(parser)
    parser.add_argument("--image-root", help="if given, check that every question's COCO image exists there")
    return parser


def evaluate(args: argparse.Namespace) -> dict:
    records = read_vqa(args.questions, args.annotations, image_root=args.image_root)
    predictions = align_predictions(read_results(args.results, "vqa"), [r.question_id for r in records],
                                    args.results, "question_id")
    log.info("scoring %d questions of %s", len(records), args.questions)
    references = [r.answers for r in records]
    qtypes = [r.question_type for r in records]
    atypes = [r.answer_type for r in records]
    out = {"metric": "vqa_accuracy (official vqaEval.py)", **vqa_accuracy(predictions, references, qtypes, atypes)}
    if args.release_postprocess:
        release = release_vqa_accuracy(predictions, references, qtypes, atypes)
        out["release_postprocessed"] = release_entry(release)
    return out


def main(argv: list[str] | None = None) -> int:
    return cli_main(build_parser, evaluate, argv)


if __name__ == "__main__":
    sys.exit(main())
