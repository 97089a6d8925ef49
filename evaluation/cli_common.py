"""What every ``python -m evaluation.<benchmark>`` entry point shares.

One JSON object of metrics goes to stdout; logs and errors go to stderr. A malformed or
mismatched file exits with status 2 and a message naming the file and the first bad record.
"""
from __future__ import annotations

import json
import logging
import sys
from typing import Callable

from evaluation.benchmarks.errors import BenchmarkFileError

EXIT_BAD_INPUT = 2


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
    except BenchmarkFileError as err:
        print(f"error: {err}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return EXIT_BAD_INPUT
    emit(metrics)
    return 0
