"""Zero-shot task definitions as plain data: text operations, decoding settings, prompt steps, tasks.

A :class:`Task` says everything that decides a benchmark number besides the model: which reader and
split feed it, how questions are normalised, the prompt steps (each step is a text template placed
after ``[IMG] x̂_1 … x̂_T [/IMG]``; a step's processed output can be used by later templates under the
step's name), the decoding settings of each step, how raw generations are cut, and which metric
scores the predictions. Every field is data (strings, numbers, tuples of small frozen dataclasses),
so :func:`fingerprint` can hash a task and a test can catch a change made without a version bump.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import string
from dataclasses import dataclass, field
from typing import Any

# kind -> expected type of ``arg`` (None: no argument)
_TEXT_OP_ARGS: dict[str, type | None] = {
    "lowercase": None,
    "strip": None,
    "rstrip": str,  # characters to strip from the right
    "delete_chars": str,  # every occurrence of each of these characters is removed
    "cut_at": tuple,  # keep the text before the earliest occurrence of any of these separators
    "max_words": int,  # keep the first n words, split on single spaces
    "prefix": str,  # arg + " " + the left-stripped text: the output of a step whose prompt began it
}


@dataclass(frozen=True)
class TextOp:
    """One named string operation; a tuple of them is applied left to right."""

    kind: str
    arg: Any = None

    def __post_init__(self) -> None:
        if self.kind not in _TEXT_OP_ARGS:
            raise ValueError(f"TextOp.kind: unknown '{self.kind}', expected one of {sorted(_TEXT_OP_ARGS)}")
        want = _TEXT_OP_ARGS[self.kind]
        if want is None and self.arg is not None:
            raise ValueError(f"TextOp.arg: '{self.kind}' takes no argument, got {self.arg!r}")
        if want is not None and not isinstance(self.arg, want):
            raise ValueError(f"TextOp.arg: '{self.kind}' needs a {want.__name__}, got {self.arg!r}")
        if self.kind == "cut_at" and not (self.arg and all(isinstance(s, str) and s for s in self.arg)):
            raise ValueError(f"TextOp.arg: 'cut_at' needs non-empty separator strings, got {self.arg!r}")
        if self.kind == "prefix" and not self.arg.strip():
            raise ValueError("TextOp.arg: 'prefix' needs a non-empty string")
        if self.kind == "max_words" and self.arg < 1:
            raise ValueError(f"TextOp.arg: 'max_words' needs n >= 1, got {self.arg}")

    def apply(self, text: str) -> str:
        if self.kind == "lowercase":
            return text.lower()
        if self.kind == "strip":
            return text.strip()
        if self.kind == "rstrip":
            return text.rstrip(self.arg)
        if self.kind == "delete_chars":
            return text.translate({ord(c): None for c in self.arg})
        if self.kind == "cut_at":
            for sep in self.arg:  # successive prefix cuts = cut at the earliest separator
                text = text.split(sep, 1)[0]
            return text
        if self.kind == "prefix":
            return f"{self.arg} {text.lstrip()}"
        words = text.split(" ")  # max_words
        return " ".join(words[: self.arg]) if len(words) > self.arg else text


def apply_ops(ops: tuple[TextOp, ...], text: str) -> str:
    for op in ops:
        text = op.apply(text)
    return text


@dataclass(frozen=True)
class GenerationSettings:
    """Decoding of one step; maps one-to-one onto ``transformers`` ``generate`` keyword arguments."""

    num_beams: int = 1
    min_new_tokens: int = 1
    max_new_tokens: int = 10
    length_penalty: float = 1.0
    early_stopping: bool = False
    do_sample: bool = False

    def __post_init__(self) -> None:
        # 0 and 0.0 must hash alike (see fingerprint)
        object.__setattr__(self, "length_penalty", float(self.length_penalty))
        if self.num_beams < 1:
            raise ValueError(f"GenerationSettings.num_beams: expected >= 1, got {self.num_beams}")
        if self.min_new_tokens < 0:
            raise ValueError(f"GenerationSettings.min_new_tokens: expected >= 0, got {self.min_new_tokens}")
        if self.max_new_tokens < max(1, self.min_new_tokens):
            raise ValueError(
                f"GenerationSettings.max_new_tokens: expected >= max(1, min_new_tokens={self.min_new_tokens}), "
                f"got {self.max_new_tokens}"
            )

    def generate_kwargs(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class ExitRule:
    """If a step's processed output contains ``contains`` (case-insensitive substring), the task's
    prediction becomes ``prediction`` and the later steps do not run."""

    contains: str
    prediction: str

    def __post_init__(self) -> None:
        if not self.contains:
            raise ValueError("ExitRule.contains: expected a non-empty string")

    def matches(self, output: str) -> bool:
        return self.contains.lower() in output.lower()


@dataclass(frozen=True)
class PromptStep:
    """One generation. ``template`` is the text after ``[/IMG]`` (``""``: the image alone), with
    ``{question}`` and ``{<earlier step name>}`` fields; ``output_ops`` turn the raw generation into
    the step's output."""

    name: str
    template: str
    generation: GenerationSettings
    output_ops: tuple[TextOp, ...] = ()
    exit_rule: ExitRule | None = None

    def __post_init__(self) -> None:
        if not self.name.isidentifier():
            raise ValueError(f"PromptStep.name: expected an identifier, got {self.name!r}")

    def fields(self) -> list[str]:
        """Names used as ``{field}`` in the template, in order of appearance."""
        names = []
        for _, name, spec, conv in string.Formatter().parse(self.template):
            if name is None:
                continue
            if not name.isidentifier() or spec or conv:
                raise ValueError(f"PromptStep.template of '{self.name}': only plain {{name}} fields, got {{{name}}}")
            names.append(name)
        return names


RECORD_FIELDS = ("question",)


@dataclass(frozen=True)
class Task:
    """A benchmark under one protocol, registered as ``<protocol>/<name>`` with a version."""

    name: str
    protocol: str
    version: int
    reader: str
    split: str
    steps: tuple[PromptStep, ...]
    metrics: tuple[str, ...]
    result_keys: tuple[str, str]  # (record id key, prediction key) of one results-file entry
    question_ops: tuple[TextOp, ...] = ()
    description: str = field(default="", compare=False)

    def __post_init__(self) -> None:
        for attr in ("name", "protocol", "reader", "split"):
            value = getattr(self, attr)
            if not value or "/" in value:
                raise ValueError(f"Task.{attr}: expected a non-empty name without '/', got {value!r}")
        if self.version < 1:
            raise ValueError(f"Task.version of {self.key}: expected >= 1, got {self.version}")
        if not self.steps:
            raise ValueError(f"Task.steps of {self.key}: expected at least one step")
        if not self.metrics:
            raise ValueError(f"Task.metrics of {self.key}: expected at least one metric name")
        seen: list[str] = []
        for step in self.steps:
            if step.name in seen or step.name in RECORD_FIELDS:
                raise ValueError(
                    f"Task.steps of {self.key}: step name '{step.name}' is used twice or is a record field"
                )
            for name in step.fields():
                if name not in RECORD_FIELDS and name not in seen:
                    raise ValueError(
                        f"Task.steps of {self.key}: step '{step.name}' uses {{{name}}}, expected one of "
                        f"{list(RECORD_FIELDS) + seen} (record fields and earlier steps)"
                    )
            seen.append(step.name)

    @property
    def key(self) -> str:
        return f"{self.protocol}/{self.name}"

    def record_fields(self) -> list[str]:
        """Record keys the templates need (besides ``image`` and the result id key)."""
        return sorted({n for s in self.steps for n in s.fields() if n in RECORD_FIELDS})


def _plain(obj: Any) -> Any:
    if dataclasses.is_dataclass(obj):
        return {f.name: _plain(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, (tuple, list)):
        return [_plain(x) for x in obj]
    return obj


def definition(task: Task) -> dict[str, Any]:
    """The task as plain JSON data, without ``version`` and ``description``: what the fingerprint hashes."""
    data = _plain(task)
    del data["version"], data["description"]
    return data


def fingerprint(task: Task) -> str:
    """sha256 (first 16 hex digits) of the canonical JSON of :func:`definition`."""
    text = json.dumps(definition(task), sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]
