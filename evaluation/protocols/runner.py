"""Run a :class:`Task` over benchmark records with any text generator.

The generator is a plain callable ``generate(requests: list[GenerationRequest]) -> list[str]``
(one raw generation per request, same order). All requests of one call belong to the same step,
so they share one :class:`GenerationSettings` and can be decoded as one batch. A model wrapper puts
``request.image`` as ``[IMG] x̂_1 … x̂_T [/IMG]`` before ``request.text``; tests use plain functions.

Records that ask the same step the same thing about the same image (describe-then-answer's caption
step, asked once per question but the same for all questions of an image) are generated once and
share the output, when decoding is deterministic and the image is a path or an id.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any, Callable, Hashable, Mapping, Sequence

from evaluation.protocols.spec import GenerationSettings, Task, apply_ops


@dataclass(frozen=True)
class GenerationRequest:
    image: Any  # whatever the record holds under "image" (a path, an id, a tensor)
    text: str  # text after [/IMG]; "" means the image alone
    step: str
    generation: GenerationSettings


@dataclass
class TaskOutput:
    prediction: str
    prompts: dict[str, str] = field(default_factory=dict)  # step -> text after [/IMG]
    outputs: dict[str, str] = field(default_factory=dict)  # step -> processed output
    exited_at: str | None = None  # step whose exit rule fixed the prediction


Generator = Callable[[list[GenerationRequest]], list[str]]


def one_at_a_time(fn: Callable[[GenerationRequest], str]) -> Generator:
    """Wrap a per-request function ``fn(request) -> str`` as a batched generator."""
    return lambda requests: [fn(r) for r in requests]


def _check_records(task: Task, records: Sequence[Mapping[str, Any]]) -> None:
    needed = ["image", *task.record_fields()]
    for i, record in enumerate(records):
        missing = [k for k in needed if k not in record]
        if missing:
            raise KeyError(f"{task.key}: record {i} lacks {missing}; expected keys {needed}")


def _request_key(image: Any, text: str, deterministic: bool, index: int) -> Hashable:
    """Records with equal keys get one generation: same image (a path or an id) and same text."""
    if deterministic and isinstance(image, (str, int, os.PathLike)):
        return ("image", os.fspath(image) if isinstance(image, os.PathLike) else image, text)
    return ("record", index)


def run_task(
    task: Task, records: Sequence[Mapping[str, Any]], generate: Generator, batch_size: int = 16,
    on_batch: Callable[[int], None] | None = None,
) -> list[TaskOutput]:
    """Run every step of ``task`` on ``records`` (mappings with ``image`` and the template fields).

    Step k's template is filled with the normalised record fields and the outputs of steps < k.
    A record whose exit rule fired skips the remaining steps; otherwise its prediction is the last
    step's output. Identical requests of a step (see the module docstring) go to ``generate`` once,
    in batches of at most ``batch_size`` distinct requests. ``on_batch(n)`` is called after each
    batch with the number of records it answered (for progress bars).
    """
    if batch_size < 1:
        raise ValueError(f"batch_size: expected >= 1, got {batch_size}")
    _check_records(task, records)
    fields = [
        {name: apply_ops(task.question_ops, str(r[name])) for name in task.record_fields()} for r in records
    ]
    results = [TaskOutput(prediction="") for _ in records]
    active = list(range(len(records)))
    for step in task.steps:
        texts = {i: step.template.format(**fields[i], **results[i].outputs) for i in active}
        sharing: dict[Hashable, list[int]] = {}  # request key -> the records it answers, first one asked
        for i in active:
            key = _request_key(records[i]["image"], texts[i], not step.generation.do_sample, i)
            sharing.setdefault(key, []).append(i)
        groups = list(sharing.values())
        for start in range(0, len(groups), batch_size):
            chunk = groups[start : start + batch_size]
            requests = [GenerationRequest(records[g[0]]["image"], texts[g[0]], step.name, step.generation) for g in chunk]
            raw = generate(requests)
            if len(raw) != len(requests):
                raise ValueError(
                    f"{task.key} step '{step.name}': generator returned {len(raw)} texts for {len(requests)} requests"
                )
            for group, out in zip(chunk, raw):
                if not isinstance(out, str):
                    raise TypeError(
                        f"{task.key} step '{step.name}': generator returned {type(out).__name__}, expected str"
                    )
                for i in group:
                    results[i].prompts[step.name] = texts[i]
                    results[i].outputs[step.name] = results[i].prediction = apply_ops(step.output_ops, out)
                    if step.exit_rule is not None and step.exit_rule.matches(results[i].prediction):
                        results[i].prediction = step.exit_rule.prediction
                        results[i].exited_at = step.name
            if on_batch is not None:
                on_batch(sum(len(g) for g in chunk))
        active = [i for i in active if results[i].exited_at is None]
    return results


def results_entries(task: Task, records: Sequence[Mapping[str, Any]], outputs: Sequence[TaskOutput]) -> list[dict]:
    """The official results-file entries, e.g. ``{"question_id": 1, "answer": "red"}`` for VQAv2."""
    id_key, value_key = task.result_keys
    if len(records) != len(outputs):
        raise ValueError(f"{task.key}: {len(records)} records but {len(outputs)} outputs")
    entries = []
    for i, (record, out) in enumerate(zip(records, outputs)):
        if id_key not in record:
            raise KeyError(f"{task.key}: record {i} lacks the results id key '{id_key}'")
        entries.append({id_key: record[id_key], value_key: out.prediction})
    return entries
