"""Readers for official-format results (prediction) files, and the id check against a benchmark.

Schemas (one JSON list each)::

    VQAv2 / OK-VQA  [{"question_id": int, "answer": str}]
    captions        [{"image_id": int, "caption": str}]
    GQA             [{"questionId": str, "prediction": str}]
    VizWiz          [{"image": str, "answer": str}]

A duplicate id is an error. :func:`align_predictions` then demands exactly the benchmark's ids:
the first missing id and the first extra id are named.
"""
from __future__ import annotations

from pathlib import Path
from typing import Hashable, Sequence

from evaluation.benchmarks.errors import BenchmarkFileError, load_json, require

# benchmark kind -> (id key, id type, prediction key)
RESULT_SCHEMAS: dict[str, tuple[str, type, str]] = {
    "vqa": ("question_id", int, "answer"),
    "caption": ("image_id", int, "caption"),
    "gqa": ("questionId", str, "prediction"),
    "vizwiz": ("image", str, "answer"),
}


def read_results(path: str | Path, kind: str) -> dict[Hashable, str]:
    """Read a results file of ``kind`` (a key of :data:`RESULT_SCHEMAS`) into ``id -> prediction``.

    GQA ids are accepted as JSON integers too (some writers emit them) and turned into strings,
    the type of the questions file's keys.
    """
    if kind not in RESULT_SCHEMAS:
        raise ValueError(f"kind: expected one of {sorted(RESULT_SCHEMAS)}, got {kind!r}")
    id_key, id_type, value_key = RESULT_SCHEMAS[kind]
    path = Path(path)
    data = load_json(path)
    if not isinstance(data, list):
        raise BenchmarkFileError(path, f"top level must be a list of {{'{id_key}', '{value_key}'}} objects, "
                                 f"got {type(data).__name__}")
    out: dict[Hashable, str] = {}
    first_at: dict[Hashable, int] = {}
    accepted = (str, int) if kind == "gqa" else id_type
    for index, item in enumerate(data):
        where = f"[{index}]"
        key = require(item, id_key, accepted, path, where)
        key = str(key) if kind == "gqa" else key
        value = require(item, value_key, str, path, f"[{index}] ({id_key} {key})")
        if key in out:
            raise BenchmarkFileError(path, f"duplicate {id_key} {key!r} (first at [{first_at[key]}])",
                                     record=where, key=id_key)
        out[key] = value
        first_at[key] = index
    return out


def align_predictions(
    predictions: dict[Hashable, str], expected_ids: Sequence[Hashable], path: str | Path, id_name: str
) -> list[str]:
    """Return the predictions in ``expected_ids`` order; a missing or an extra id is an error."""
    missing = [i for i in expected_ids if i not in predictions]
    if missing:
        raise BenchmarkFileError(path, f"no prediction for {len(missing)} of {len(expected_ids)} {id_name}s; "
                                 f"first missing {id_name} {missing[0]!r}")
    expected = set(expected_ids)
    extra = [i for i in predictions if i not in expected]
    if extra:
        raise BenchmarkFileError(path, f"{len(extra)} predictions for {id_name}s not in the benchmark; "
                                 f"first extra {id_name} {extra[0]!r}")
    return [predictions[i] for i in expected_ids]
