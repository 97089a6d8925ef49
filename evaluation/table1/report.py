"""The Table-1 report of an evaluation run: the spec's rows (ours, baselines, blind, retrieval), the
extra protocol rows of this run, and the paper's rows, through ``evaluation.reports``.

Rows made by this run point at ``<out>/metrics/<row>.json``; rows made elsewhere (the blind-model
run, a retrieval captioner) are given as ``{row: metrics file}`` and filled when the file exists;
otherwise they are shown as missing and their description says which file was expected.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Mapping

from evaluation.reports import ResultRow, build_table, load_spec, write_report

PROTOCOL_TEXT = {
    "release": ("release protocol", "the authors' release prompts and decoding"),
    "paper": ("paper prompt", "the paper's 'Question: {} Answer:' prompt for every VQA task, release decoding"),
    "describe_then_answer": ("describe-then-answer",
                             "own caption first (it starts 'There is'), then '{caption}.\\nQuestion: {q} Answer:' after the image"),
}
PREFIX_TEXT = {"ours": ("LaVIT-PL (ours)", "our model"),
               "blind": ("Blind model", "stage 2 trained and evaluated with seeded noise in place of every image (token counts carry no content)")}


def is_model_row(name: str) -> bool:
    """A row made by a model run (``ours``, ``blind_describe_then_answer``...), not a baseline's."""
    return name.split("_")[0] in PREFIX_TEXT


def describe_row(name: str, report_protocol: str) -> tuple[str, str]:
    """(label, description) of a row produced by a model run (``ours``, ``ours_describe_then_answer``,
    ``blind_release_postprocessed`` ...)."""
    prefix, _, rest = name.partition("_")
    label, who = PREFIX_TEXT[prefix]
    if rest == "release_postprocessed":
        what = PROTOCOL_TEXT[report_protocol][0]
        return (f"{label}, release post-processing",
                f"{who}, {what}; the VQA/GQA columns hold the LaVIT release's post-processed accuracy "
                f"(lemmatised, fillers stripped), not the official evaluator's number")
    protocol = rest or report_protocol
    short, long = PROTOCOL_TEXT[protocol]
    return (label if not rest else f"{label}, {short}", f"{who} under the {short}: {long}")


def table1_report(produced: Mapping[str, Path], external: Mapping[str, str | Path], report_protocol: str,
                  out_dir: str | Path, table: str = "table1", baseline_notes: Mapping[str, str] | None = None,
                  ) -> tuple[Path, Path]:
    """Write ``<out_dir>/<table>.json`` and ``.md``.

    produced: row -> metrics file written by this run (model rows and baselines);
    external: row -> metrics file of another run, used when the file exists;
    baseline_notes: row -> text appended to that row's description.
    """
    spec = load_spec(table)
    known = {row.name for row in spec.rows}
    # a baseline this run produced that the table has no row for (no constant caption in a VQA table)
    files: dict[str, list[str]] = {name: [str(path)] for name, path in produced.items()
                                   if name in known or is_model_row(name)}
    notes = dict(baseline_notes or {})
    for name, path in external.items():
        if name in files:
            continue
        if Path(path).is_file():
            files[name] = [str(path)]
        else:
            notes[name] = f"expected {path}: not found"
    described = {name: describe_row(name, report_protocol) for name in files if is_model_row(name)}
    # a model's extra row (blind_describe_then_answer) whose file is missing still sits under its model
    for name in [n for n in notes if n in external and n not in known and is_model_row(n)]:
        label, description = describe_row(name, report_protocol)
        described[name] = (label, f"{description} ({notes.pop(name)})")
    rows: list[ResultRow] = []
    for row in spec.rows:
        if row.name in described:
            label, description = described.pop(row.name)
            row = dataclasses.replace(row, label=label, description=description)
        if row.name in notes:
            row = dataclasses.replace(row, description=f"{row.description} ({notes.pop(row.name)})")
        rows.append(row)
        # this run's other rows of the same model (protocols, release post-processing) follow its main row
        for name in [n for n in described if n.startswith(f"{row.name}_")]:
            label, description = described.pop(name)
            rows.append(ResultRow(name, label, row.kind, description))
    rows += [ResultRow(name, label, "ours" if name.startswith("ours") else "baseline", description)
             for name, (label, description) in described.items()]
    rows += [ResultRow(name, name, "ours" if name.startswith("ours") else "baseline", note)
             for name, note in notes.items() if name in external]
    spec = dataclasses.replace(spec, rows=tuple(rows))
    return write_report(build_table(spec, files), out_dir)
