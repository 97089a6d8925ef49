"""``python -m evaluation.reports --table table1 --rows name=path.json ... --out reports/``

``--table`` is a built-in spec name (evaluation/reports/tables/<name>.json) or a spec file.
``--rows name=path`` may repeat a name: that row's files are merged (a key in two files is an error).
"""
from __future__ import annotations

import argparse
import sys

from evaluation.reports.build import build_table, write_report
from evaluation.reports.spec import SpecError, load_spec


def parse_rows(items: list[str]) -> dict[str, list[str]]:
    rows: dict[str, list[str]] = {}
    for item in items:
        name, sep, path = item.partition("=")
        if not sep or not name or not path:
            raise SystemExit(f"--rows: expected name=path.json, got {item!r}")
        rows.setdefault(name, []).append(path)
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m evaluation.reports", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--table", required=True, help="built-in table name or spec JSON path")
    parser.add_argument("--rows", nargs="*", default=[], metavar="NAME=PATH", help="result files per row")
    parser.add_argument("--out", default="reports", help="output folder (default: reports/)")
    args = parser.parse_args(argv)
    try:
        spec = load_spec(args.table)
        table = build_table(spec, parse_rows(args.rows))
    except (SpecError, ValueError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    for path in write_report(table, args.out):
        print(path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
