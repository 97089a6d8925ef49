"""What every ``python -m evaluation.<benchmark>`` entry point shares.

One JSON object of metrics goes to stdout; logs and errors go to stderr. A malformed or
mismatched file exits with status 2 and a message naming the file and the first bad record.
"""
from __future__ import annotations

import argparse
import json
import logging
import sys
from typing import Callable, Sequence

EXIT_BAD_INPUT = 2
RELEASE_NOTE = ("LaVIT release post-processing (first clause, lemmatised with spaCy's lookup table, leading "
                "fillers stripped); not comparable with the official number")


def new_parser(prog: str, description: str | None) -> argparse.ArgumentParser:
    """An entry point's parser: ``prog`` as typed (``python -m evaluation.vqa``), the module
    docstring shown verbatim as the description."""
    return argparse.ArgumentParser(prog=prog, description=description,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)


def add_release_postprocess_flag(parser: argparse.ArgumentParser) -> None:
    """``--release-postprocess``: the VQA-type scorers' opt-in for the release's number."""
    parser.add_argument("--release-postprocess", action="store_true",
                        help="also report the LaVIT release's post-processed accuracy (separate key)")


def release_entry(scores: dict) -> dict:
    """The ``release_postprocessed`` value: the release's scores under the non-comparability note."""
    return {"note": RELEASE_NOTE, **scores}


def setup_logging() -> None:
    logging.basicConfig(stream=sys.stderr, level=logging.INFO, format="%(name)s: %(message)s")


def emit(metrics: dict) -> None:
    """Print the one JSON object on stdout."""
    sys.stdout.write(json.dumps(metrics, ensure_ascii=False) + "\n")
    sys.stdout.flush()


def run(main: Callable[[], dict]) -> int:
    """Call ``main`` (which returns the metrics); map bad input to exit status 2."""
    setup_logging()
    try:
        metrics = main()
    except ValueError as err:  # BenchmarkFileError is a ValueError
        print(f"error: {err}", file=sys.stderr)
        return EXIT_BAD_INPUT
    emit(metrics)
    return 0


def cli_main(
    build_parser: Callable[[], argparse.ArgumentParser],
    evaluate: Callable[[argparse.Namespace], dict],
    argv: Sequence[str] | None = None,
) -> int:
    """Parse ``argv`` (argparse exits 2 on bad usage) and :func:`run` ``evaluate`` on the result."""
    args = build_parser().parse_args(argv)
    return run(lambda: evaluate(args))
