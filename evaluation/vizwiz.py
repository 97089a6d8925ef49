"""Score a VizWiz-VQA results file with the VizWiz evaluator's accuracy.

    python -m evaluation.vizwiz --annotations val.json --results R.json \
        [--release-postprocess] [--image-root DIR]

Results: ``[{"image": str, "answer": str}]``, exactly one per record of val.json. Prints one
JSON object: ``overall`` and ``perAnswerType`` (other, yes/no, number, unanswerable) in percent,
rounded to 2 decimals; with ``--release-postprocess`` also the LaVIT release's number under
``release_postprocessed``.
"""
from __future__ import annotations

import argparse
import logging
import sys

from evaluation.benchmarks.results import align_predictions, read_results
from evaluation.benchmarks.vizwiz import read_vizwiz
from evaluation.cli_common import add_release_postprocess_flag, cli_main, new_parser, release_entry
from evaluation.metrics.release_postprocess import release_vqa_accuracy
from evaluation.metrics.vizwiz import vizwiz_accuracy

log = logging.getLogger("evaluation.vizwiz")


def build_parser() -> argparse.ArgumentParser:
    parser = new_parser("python -m evaluation.vizwiz", __doc__)
    parser.add_argument("--annotations", required=True, help="VizWiz val.json (10 answers per image)")
    parser.add_argument("--results", required=True, help='results JSON: [{"image", "answer"}]')
    add_release_postprocess_flag(parser)
    parser.add_argument("--image-root", help="if given, check that every image exists there")
    return parser


def evaluate(args: argparse.Namespace) -> dict:
    records = read_vizwiz(args.annotations, image_root=args.image_root)
    predictions = align_predictions(read_results(args.results, "vizwiz"), [r.image for r in records],
                                    args.results, "image")
    log.info("scoring %d questions of %s", len(records), args.annotations)
    references = [r.answers for r in records]
    atypes = [r.answer_type for r in records]
    out = {"metric": "vqa_accuracy (VizWiz evaluator)", **vizwiz_accuracy(predictions, references, atypes)}
    if args.release_postprocess:
        release = release_vqa_accuracy(predictions, references, answer_types=atypes)
        out["release_postprocessed"] = release_entry(release)
    return out


def main(argv: list[str] | None = None) -> int:
    return cli_main(build_parser, evaluate, argv)


if __name__ == "__main__":
    sys.exit(main())
