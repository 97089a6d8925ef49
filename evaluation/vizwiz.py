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
from evaluation.cli_common import run
from evaluation.metrics.release_postprocess import release_vqa_accuracy
from evaluation.metrics.vizwiz import vizwiz_accuracy
from evaluation.vqa import RELEASE_NOTE

log = logging.getLogger("evaluation.vizwiz")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m evaluation.vizwiz", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--annotations", required=True, help="VizWiz val.json (10 answers per image)")
    parser.add_argument("--results", required=True, help='results JSON: [{"image", "answer"}]')
    parser.add_argument("--release-postprocess", action="store_true",
                        help="also report the LaVIT release's post-processed accuracy (separate key)")
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
        out["release_postprocessed"] = {"note": RELEASE_NOTE, **release}
    return out


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return run(lambda: evaluate(args))


if __name__ == "__main__":
    sys.exit(main())
