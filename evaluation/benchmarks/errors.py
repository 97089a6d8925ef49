"""Errors and field checks shared by the benchmark readers.

Every failure names the file, the record (list index or id) and the key, and says what was
expected, so that a broken download or a half-written file is found without a debugger.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Iterable


class BenchmarkFileError(ValueError):
    """A benchmark or results file that does not have the official layout."""

    def __init__(self, path: str | Path, message: str, record: Any = None, key: str | None = None):
        self.path = Path(path)
        self.record = record
        self.key = key
        where = f"{self.path}"
        if record is not None:
            where += f": record {record}"
        if key is not None:
            where += f": key '{key}'"
        super().__init__(f"{where}: {message}")


class MissingImageError(BenchmarkFileError):
    """An image named by a benchmark file is not on disk."""

    def __init__(self, path: str | Path, record: Any, image_path: Path, n_missing: int):
        self.image_path = Path(image_path)
        self.n_missing = n_missing
        more = f" ({n_missing} images missing in all)" if n_missing > 1 else ""
        super().__init__(path, f"image file not found: {image_path}{more}", record=record)


_TYPE_NAMES = {str: "a string", int: "an integer", list: "a list", dict: "an object", bool: "a boolean"}


def load_json(path: str | Path) -> Any:
    """Parse ``path`` as JSON; a missing or unparsable file is a :class:`BenchmarkFileError`."""
    path = Path(path)
    if not path.is_file():
        raise BenchmarkFileError(path, "file not found")
    try:
        with path.open("r", encoding="utf-8") as handle:
            return json.load(handle)
    except json.JSONDecodeError as err:
        raise BenchmarkFileError(path, f"not valid JSON: {err}") from err
    except UnicodeDecodeError as err:
        raise BenchmarkFileError(path, f"not UTF-8 text: {err}") from err


def require(obj: Any, key: str, kind: type | tuple[type, ...], path: Path, record: Any) -> Any:
    """Return ``obj[key]`` after checking that it exists and has type ``kind``.

    ``bool`` is rejected where an ``int`` is wanted (JSON ``true`` is not an id).
    """
    if not isinstance(obj, dict):
        raise BenchmarkFileError(path, f"expected an object, got {type(obj).__name__}", record=record)
    if key not in obj:
        raise BenchmarkFileError(path, "missing", record=record, key=key)
    value = obj[key]
    kinds = kind if isinstance(kind, tuple) else (kind,)
    bad_bool = isinstance(value, bool) and bool not in kinds
    if bad_bool or not isinstance(value, kinds):
        expected = " or ".join(_TYPE_NAMES.get(k, k.__name__) for k in kinds)
        raise BenchmarkFileError(
            path, f"expected {expected}, got {type(value).__name__} {value!r:.60}", record=record, key=key
        )
    return value


def require_list(obj: Any, key: str, path: Path, record: Any = None) -> list:
    return require(obj, key, list, path, record)


def check_images(path: Path, image_root: str | Path | None, named: Iterable[tuple[Any, str]]) -> None:
    """Raise :class:`MissingImageError` for the first ``(record, relative_name)`` not on disk.

    Does nothing when ``image_root`` is None (the caller did not ask for the check).
    """
    if image_root is None:
        return
    root = Path(image_root)
    missing = [(record, root / name) for record, name in named if not (root / name).is_file()]
    if missing:
        record, image_path = missing[0]
        raise MissingImageError(path, record, image_path, len(missing))
