"""Registry of zero-shot tasks by ``<protocol>/<name>`` and version, and the fingerprint record.

``fingerprints.json`` (beside this file) maps ``"<protocol>/<name>" -> {"<version>": fingerprint}``.
A registered task whose version has no recorded fingerprint, or whose fingerprint differs from the
recorded one, is a problem: prompts or scoring changed without a version bump (or a bump was not
recorded). ``python -m evaluation.protocols record`` adds fingerprints for new versions and refuses
to rewrite the fingerprint of a version already recorded.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Iterable

from lavit_pl.utils.atomic import atomic_write_json

from evaluation.protocols.spec import Task, fingerprint

FINGERPRINTS_PATH = Path(__file__).with_name("fingerprints.json")

_REGISTRY: dict[str, Task] = {}


def register_task(task: Task) -> Task:
    """Add ``task`` under ``task.key``; registering a different task under a taken key is an error."""
    old = _REGISTRY.get(task.key)
    if old is not None and old != task:
        raise ValueError(f"task '{task.key}' is already registered with a different definition")
    _REGISTRY[task.key] = task
    return task


def get_task(key: str) -> Task:
    """The task registered as ``key`` (``"release/vqav2"``)."""
    try:
        return _REGISTRY[key]
    except KeyError:
        raise KeyError(f"no task '{key}'; registered: {', '.join(sorted(_REGISTRY))}") from None


def task_keys(protocol: str | None = None) -> list[str]:
    return sorted(k for k, t in _REGISTRY.items() if protocol is None or t.protocol == protocol)


def all_tasks() -> list[Task]:
    return [_REGISTRY[k] for k in task_keys()]


def protocols_for(name: str) -> list[str]:
    """The protocols with a task ``<protocol>/<name>`` registered, sorted (``[]`` for an unknown name)."""
    return sorted(t.protocol for t in _REGISTRY.values() if t.name == name)


def load_recorded(path: str | Path = FINGERPRINTS_PATH) -> dict[str, dict[str, str]]:
    path = Path(path)
    if not path.is_file():
        return {}
    data = json.loads(path.read_text())
    if not isinstance(data, dict) or not all(isinstance(v, dict) for v in data.values()):
        raise ValueError(f"{path}: expected {{task key: {{version: fingerprint}}}}")
    return data


def fingerprint_problems(tasks: Iterable[Task], recorded: dict[str, dict[str, str]]) -> list[str]:
    """One message per task whose current fingerprint is not the one recorded for its version."""
    problems = []
    for task in tasks:
        current = fingerprint(task)
        versions = recorded.get(task.key, {})
        known = versions.get(str(task.version))
        if known is None:
            problems.append(
                f"{task.key} v{task.version}: no recorded fingerprint (current {current}); if this is a new "
                f"version, run `python -m evaluation.protocols record`"
            )
        elif known != current:
            problems.append(
                f"{task.key} v{task.version}: definition changed (recorded {known}, now {current}); "
                f"bump the version and record it"
            )
    return problems


def record_fingerprints(tasks: Iterable[Task], path: str | Path = FINGERPRINTS_PATH) -> list[str]:
    """Record fingerprints of versions not yet recorded; returns the keys added. A recorded version
    whose fingerprint changed is refused (bump the version instead)."""
    recorded = load_recorded(path)
    added = []
    for task in tasks:
        versions = recorded.setdefault(task.key, {})
        current = fingerprint(task)
        known = versions.get(str(task.version))
        if known is None:
            versions[str(task.version)] = current
            added.append(f"{task.key} v{task.version}")
        elif known != current:
            raise ValueError(
                f"{task.key} v{task.version}: recorded fingerprint {known} differs from {current}; "
                f"bump Task.version instead of rewriting the record"
            )
    ordered = {k: dict(sorted(recorded[k].items(), key=lambda kv: int(kv[0]))) for k in sorted(recorded)}
    atomic_write_json(path, ordered)
    return added
