"""Build a report table from saved metric JSON files and write ``<table>.json`` and ``<table>.md``.

Reports read result files only, never models. A number that cannot be read is shown as ``—``
with a numbered reason (no file for the row, key absent, value null or not a number, not in the
paper); nothing is filled in or guessed.
"""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Mapping, Sequence

from lavit_pl.utils.atomic import atomic_write_text

from evaluation.reports.spec import Column, ResultRow, TableSpec

MISSING = "—"


def _merge(into: dict, new: Mapping, src: str, origin: dict, prefix: str = "") -> None:
    for key, value in new.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, Mapping) and isinstance(into.get(key), dict):
            _merge(into[key], value, src, origin, dotted + ".")
        elif key in into:
            parts = dotted.split(".")
            first = next(origin[".".join(parts[:n])] for n in range(len(parts), 0, -1) if ".".join(parts[:n]) in origin)
            raise ValueError(f"'{dotted}' is in both {first} and {src}")
        else:
            into[key] = json.loads(json.dumps(value)) if isinstance(value, Mapping) else value
            origin[dotted] = src


def read_results(paths: Sequence[str | Path]) -> dict[str, Any]:
    """Deep-merge the JSON objects of ``paths``; the same key in two files is an error."""
    merged: dict[str, Any] = {}
    origin: dict[str, str] = {}
    for path in paths:
        try:
            data = json.loads(Path(path).read_text())
        except FileNotFoundError:
            raise FileNotFoundError(f"{path}: result file not found") from None
        except json.JSONDecodeError as err:
            raise ValueError(f"{path}: not valid JSON: {err}") from err
        if not isinstance(data, dict):
            raise ValueError(f"{path}: expected a JSON object of metrics")
        _merge(merged, data, str(path), origin)
    return merged


def _lookup(data: Mapping, path: str) -> tuple[bool, Any]:
    node: Any = data
    for part in path.split("."):
        if not isinstance(node, Mapping) or part not in node:
            return False, None
        node = node[part]
    return True, node


def _cell(value: Any, column: Column, missing_reason: str | None, scale: float | None = None) -> dict[str, Any]:
    if missing_reason is not None:
        return {"value": None, "text": MISSING, "reason": missing_reason}
    shown = value * (column.scale if scale is None else scale)
    return {"value": shown, "text": f"{shown:.{column.digits}f}", "reason": None}


def _result_cell(data: Mapping, column: Column, files: str) -> dict[str, Any]:
    found, value = _lookup(data, column.path)
    if not found:
        return _cell(None, column, f"no '{column.path}' in {files}")
    if value is None:
        return _cell(None, column, f"'{column.path}' is null in {files}")
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return _cell(None, column, f"'{column.path}' in {files} is not a finite number: {value!r}")
    return _cell(float(value), column, None)


def build_table(spec: TableSpec, results: Mapping[str, Sequence[str | Path]]) -> dict[str, Any]:
    """``results``: row name -> result files (merged). Rows of the spec come first, in spec order,
    then rows only given at run time; the paper's rows last."""
    given = {name: [str(p) for p in paths] for name, paths in results.items()}
    rows_spec = list(spec.rows) + [ResultRow(n, n, "ours") for n in given if n not in {r.name for r in spec.rows}]
    rows = []
    for row in rows_spec:
        files = given.get(row.name, [])
        if files:
            data = read_results(files)
            cells = {c.key: _result_cell(data, c, ", ".join(files)) for c in spec.columns}
        else:
            cells = {c.key: _cell(None, c, f"no result file given for row '{row.name}'") for c in spec.columns}
        rows.append({"name": row.name, "label": row.label, "kind": row.kind, "description": row.description,
                     "sources": files, "cells": cells})
    for paper in spec.paper_rows:
        cells = {}
        for c in spec.columns:
            value = paper.values.get(c.key)
            # paper values are printed on the paper's scale already: no column scale
            cells[c.key] = _cell(value, c, None if value is not None else spec.paper_missing_reason, scale=1.0)
        rows.append({"name": None, "label": paper.label, "kind": "paper", "description": "", "sources": ["paper"],
                     "cells": cells})
    reasons: list[str] = []
    for row in rows:
        for cell in row["cells"].values():
            if cell["reason"] is not None and cell["reason"] not in reasons:
                reasons.append(cell["reason"])
    return {
        "table": spec.table,
        "title": spec.title,
        "columns": [{"key": c.key, "label": c.label, "path": c.path} for c in spec.columns],
        "rows": rows,
        "missing_reasons": reasons,
        "notes": list(spec.notes),
    }


def _md(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def render_markdown(table: Mapping[str, Any]) -> str:
    reasons = {r: i for i, r in enumerate(table["missing_reasons"], start=1)}
    head = ["Row", "Kind", *[c["label"] for c in table["columns"]]]
    lines = [f"# {_md(table['title'])}", "", "| " + " | ".join(_md(h) for h in head) + " |",
             "| --- | --- | " + " | ".join("---:" for _ in table["columns"]) + " |"]
    for row in table["rows"]:
        cells = []
        for column in table["columns"]:
            cell = row["cells"][column["key"]]
            cells.append(cell["text"] if cell["reason"] is None else f"{MISSING} [{reasons[cell['reason']]}]")
        lines.append("| " + " | ".join([_md(row["label"]), row["kind"], *cells]) + " |")
    lines.append("")
    described = [r for r in table["rows"] if r["kind"] != "paper"]
    if described:
        lines.append("Rows:")
        for row in described:
            source = ", ".join(row["sources"]) if row["sources"] else "no result file"
            about = f" {row['description']}" if row["description"] else ""
            lines.append(f"- {_md(row['label'])}:{about} ({source})")
        lines.append("")
    if reasons:
        lines.append("Missing values:")
        lines += [f"[{i}] {_md(r)}" for r, i in reasons.items()]
        lines.append("")
    if table["notes"]:
        lines.append("Notes:")
        lines += [f"- {_md(n)}" for n in table["notes"]]
        lines.append("")
    return "\n".join(lines)


def write_report(table: Mapping[str, Any], out_dir: str | Path) -> tuple[Path, Path]:
    """Write ``<out_dir>/<table>.json`` and ``.md``, each atomically; both texts are rendered before
    either file is touched, so a rendering error leaves both old files as they were."""
    out_dir = Path(out_dir)
    json_text = json.dumps(table, indent=2, ensure_ascii=False) + "\n"
    md_text = render_markdown(table)
    json_path, md_path = out_dir / f"{table['table']}.json", out_dir / f"{table['table']}.md"
    atomic_write_text(json_path, json_text)
    atomic_write_text(md_path, md_text)
    return json_path, md_path
