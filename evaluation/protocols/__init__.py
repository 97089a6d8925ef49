"""Zero-shot evaluation protocols as versioned data (see ``tasks.py`` for the registered entries)."""
from evaluation.protocols.registry import (
    FINGERPRINTS_PATH,
    all_tasks,
    fingerprint_problems,
    get_task,
    load_recorded,
    protocols_for,
    record_fingerprints,
    register_task,
    task_keys,
)
from evaluation.protocols.runner import GenerationRequest, TaskOutput, one_at_a_time, results_entries, run_task
from evaluation.protocols.spec import ExitRule, GenerationSettings, PromptStep, Task, TextOp, definition, fingerprint
from evaluation.protocols import tasks as _tasks  # noqa: F401  (registers the entries)

__all__ = [
    "FINGERPRINTS_PATH", "ExitRule", "GenerationRequest", "GenerationSettings", "PromptStep", "Task", "TaskOutput",
    "TextOp", "all_tasks", "definition", "fingerprint", "fingerprint_problems", "get_task", "load_recorded",
    "one_at_a_time", "protocols_for", "record_fingerprints", "register_task", "results_entries", "run_task", "task_keys",
]
