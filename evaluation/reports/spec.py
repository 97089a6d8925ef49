"""Table specs: which numbers a report table shows, read from JSON (``reports/tables/<table>.json``).

A spec::

    {"table": "table1", "title": "...",
     "columns": [{"key": "vqav2", "label": "VQAv2 acc.", "path": "vqav2.vqa_accuracy", "digits": 1, "scale": 1}],
     "rows": [{"name": "ours", "label": "LaVIT-PL (ours)", "kind": "ours", "description": "..."}],
     "paper_rows": [{"label": "LaVIT (LLaMA-7B)", "values": {"vqav2": 66.0}}],
     "paper_missing_reason": "not reported in the paper",
     "notes": ["..."]}

``path`` is a dotted key into a row's result JSON; a result row shows ``value * scale`` with
``digits`` decimals (paper values are on the paper's scale already and are not scaled). ``rows`` are the result rows the table expects (their files are given at
run time); a paper value that is ``null`` or absent is shown as missing with ``paper_missing_reason``.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROW_KINDS = ("ours", "baseline")


class SpecError(ValueError):
    """A table spec that cannot be used; the message names the file and key."""


@dataclass(frozen=True)
class Column:
    key: str
    label: str
    path: str
    digits: int = 1
    scale: float = 1.0


@dataclass(frozen=True)
class ResultRow:
    name: str
    label: str
    kind: str = "ours"
    description: str = ""


@dataclass(frozen=True)
class PaperRow:
    label: str
    values: dict[str, float | None]


@dataclass(frozen=True)
class TableSpec:
    table: str
    title: str
    columns: tuple[Column, ...]
    rows: tuple[ResultRow, ...] = ()
    paper_rows: tuple[PaperRow, ...] = ()
    paper_missing_reason: str = "not reported in the paper"
    notes: tuple[str, ...] = field(default=())


def _need(obj: dict, key: str, kind: type, where: str) -> Any:
    if key not in obj:
        raise SpecError(f"{where}: missing key '{key}'")
    value = obj[key]
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if not isinstance(value, kind) or isinstance(value, bool) and kind is not bool:
        raise SpecError(f"{where}: '{key}' must be a {kind.__name__}, got {value!r}")
    return value


def _allowed(obj: dict, keys: set[str], where: str) -> None:
    extra = sorted(set(obj) - keys)
    if extra:
        raise SpecError(f"{where}: unknown keys {extra}, expected some of {sorted(keys)}")


def spec_from_dict(data: dict, where: str = "spec") -> TableSpec:
    if not isinstance(data, dict):
        raise SpecError(f"{where}: expected a JSON object")
    _allowed(data, {"table", "title", "columns", "rows", "paper_rows", "paper_missing_reason", "notes"}, where)
    columns = []
    for i, c in enumerate(_need(data, "columns", list, where)):
        w = f"{where}: columns[{i}]"
        _allowed(c, {"key", "label", "path", "digits", "scale"}, w)
        columns.append(Column(_need(c, "key", str, w), _need(c, "label", str, w), _need(c, "path", str, w),
                              int(c.get("digits", 1)), float(c.get("scale", 1.0))))
    keys = [c.key for c in columns]
    if not columns or len(set(keys)) != len(keys):
        raise SpecError(f"{where}: 'columns' must be non-empty with unique keys, got {keys}")
    rows = []
    for i, r in enumerate(data.get("rows", [])):
        w = f"{where}: rows[{i}]"
        _allowed(r, {"name", "label", "kind", "description"}, w)
        row = ResultRow(
            _need(r, "name", str, w), _need(r, "label", str, w), r.get("kind", "ours"), r.get("description", "")
        )
        if row.kind not in ROW_KINDS:
            raise SpecError(f"{w}: 'kind' must be one of {list(ROW_KINDS)}, got {row.kind!r}")
        rows.append(row)
    if len({r.name for r in rows}) != len(rows):
        raise SpecError(f"{where}: row names must be unique")
    paper = []
    for i, p in enumerate(data.get("paper_rows", [])):
        w = f"{where}: paper_rows[{i}]"
        _allowed(p, {"label", "values"}, w)
        values = _need(p, "values", dict, w)
        unknown = sorted(set(values) - set(keys))
        if unknown:
            raise SpecError(f"{w}: values for unknown columns {unknown}")
        for k, v in values.items():
            if v is not None and (isinstance(v, bool) or not isinstance(v, (int, float))):
                raise SpecError(f"{w}: value of '{k}' must be a number or null, got {v!r}")
        values = {k: None if v is None else float(v) for k, v in values.items()}
        paper.append(PaperRow(_need(p, "label", str, w), values))
    return TableSpec(
        table=_need(data, "table", str, where),
        title=_need(data, "title", str, where),
        columns=tuple(columns),
        rows=tuple(rows),
        paper_rows=tuple(paper),
        paper_missing_reason=data.get("paper_missing_reason", "not reported in the paper"),
        notes=tuple(data.get("notes", ())),
    )


TABLES_DIR = Path(__file__).with_name("tables")


def load_spec(name_or_path: str | Path) -> TableSpec:
    """A built-in table name (``table1``) or the path of a spec JSON file."""
    path = Path(name_or_path)
    if not path.suffix:
        path = TABLES_DIR / f"{name_or_path}.json"
    if not path.is_file():
        builtin = sorted(p.stem for p in TABLES_DIR.glob("*.json"))
        raise SpecError(f"{path}: no such table spec; built-in tables: {builtin}")
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise SpecError(f"{path}: not valid JSON: {err}") from err
    return spec_from_dict(data, str(path))
