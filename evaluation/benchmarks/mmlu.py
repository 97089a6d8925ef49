"""Reader for MMLU-layout multiple-choice sets: the real MMLU release and the Shapes world's quiz.

Layout (``root`` is the folder holding ``data/``; ``root`` may also be ``data/`` itself)::

    root/data/dev/<subject>_dev.csv     few-shot examples
    root/data/test/<subject>_test.csv   evaluated questions
    root/subject_categories.json        optional {"<subject>": "humanities"|"STEM"|"social sciences"|"other"}

CSV rows have no header: ``question,A,B,C,D,answer`` with ``answer`` one of A-D. Without
``subject_categories.json`` the built-in map of the 57 real subjects is used: the categorisation
of Hendrycks et al.'s evaluation code (subject -> subcategory -> one of four categories; e.g.
anatomy is "health", hence "other"; human_sexuality is "culture", hence "social sciences").
"""
from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from pathlib import Path

CHOICES = ("A", "B", "C", "D")
CATEGORIES = ("humanities", "STEM", "social sciences", "other")

_HUMANITIES = (
    "formal_logic high_school_european_history high_school_us_history high_school_world_history international_law "
    "jurisprudence logical_fallacies moral_disputes moral_scenarios philosophy prehistory professional_law "
    "world_religions"
)
_STEM = (
    "abstract_algebra astronomy college_biology college_chemistry college_computer_science college_mathematics "
    "college_physics computer_security conceptual_physics electrical_engineering elementary_mathematics "
    "high_school_biology high_school_chemistry high_school_computer_science high_school_mathematics "
    "high_school_physics high_school_statistics machine_learning"
)
_SOCIAL_SCIENCES = (
    "econometrics high_school_geography high_school_government_and_politics high_school_macroeconomics "
    "high_school_microeconomics high_school_psychology human_sexuality professional_psychology public_relations "
    "security_studies sociology us_foreign_policy"
)
_OTHER = (
    "anatomy business_ethics clinical_knowledge college_medicine global_facts human_aging management marketing "
    "medical_genetics miscellaneous nutrition professional_accounting professional_medicine virology"
)
MMLU_CATEGORIES: dict[str, str] = {
    subject: category
    for category, names in zip(CATEGORIES, (_HUMANITIES, _STEM, _SOCIAL_SCIENCES, _OTHER))
    for subject in names.split()
}


class MMLUFormatError(ValueError):
    """A malformed MMLU file; the message names the file and row."""


@dataclass(frozen=True)
class MCQuestion:
    subject: str
    question: str
    choices: tuple[str, str, str, str]
    answer: str  # "A".."D"
    source: str  # "<file>:<row>" for error messages and per-question dumps


@dataclass(frozen=True)
class MMLUSet:
    root: Path
    dev: dict[str, list[MCQuestion]]  # subject -> few-shot examples, in file order
    test: dict[str, list[MCQuestion]]  # subject -> evaluated questions, in file order
    categories: dict[str, str]  # subject -> one of CATEGORIES
    category_source: str  # the json file, or "built-in (Hendrycks et al.)"

    @property
    def subjects(self) -> list[str]:
        return sorted(self.test)


def read_mc_csv(path: str | Path, subject: str) -> list[MCQuestion]:
    """Rows of one ``question,A,B,C,D,answer`` file (no header); a bad row raises naming file and row."""
    path = Path(path)
    rows = []
    with open(path, newline="", encoding="utf-8") as handle:
        reader = csv.reader(handle)
        for row_number, row in enumerate(reader, start=1):
            where = f"{path}: row {row_number} (line {reader.line_num})"
            if len(row) != 6:
                raise MMLUFormatError(f"{where}: expected 6 columns (question,A,B,C,D,answer), got {len(row)}")
            answer = row[5].strip()
            if answer not in CHOICES:
                raise MMLUFormatError(f"{where}: answer {row[5]!r} is not one of A, B, C, D")
            rows.append(MCQuestion(subject, row[0], tuple(row[1:5]), answer, f"{path.name}:{row_number}"))
    if not rows:
        raise MMLUFormatError(f"{path}: no rows")
    return rows


def _data_dir(root: Path) -> Path:
    if (root / "data" / "test").is_dir():
        return root / "data"
    if (root / "test").is_dir() and root.name == "data":
        return root
    raise FileNotFoundError(f"{root}: expected {root}/data/test/<subject>_test.csv (MMLU layout)")


def _subjects_in(folder: Path, suffix: str) -> dict[str, Path]:
    return {p.name[: -len(suffix)]: p for p in sorted(folder.glob(f"*{suffix}"))} if folder.is_dir() else {}


def load_categories(path: Path, subjects: list[str]) -> dict[str, str]:
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise MMLUFormatError(f"{path}: not valid JSON: {err}") from err
    if not isinstance(data, dict):
        raise MMLUFormatError(f"{path}: expected {{subject: category}}")
    for subject, category in data.items():
        if category not in CATEGORIES:
            raise MMLUFormatError(
                f"{path}: subject '{subject}' has category {category!r}, expected one of {list(CATEGORIES)}"
            )
    missing = [s for s in subjects if s not in data]
    if missing:
        raise MMLUFormatError(f"{path}: no category for subjects {missing}")
    return {s: data[s] for s in subjects}


def load_mmlu(root: str | Path, subjects: list[str] | None = None) -> MMLUSet:
    """Read every subject that has a test file (or only ``subjects``); each needs a dev file too."""
    root = Path(root)
    data = _data_dir(root)
    tests = _subjects_in(data / "test", "_test.csv")
    devs = _subjects_in(data / "dev", "_dev.csv")
    if not tests:
        raise FileNotFoundError(f"{data / 'test'}: no <subject>_test.csv files")
    chosen = sorted(tests) if subjects is None else list(subjects)
    for subject in chosen:
        if subject not in tests:
            raise FileNotFoundError(f"{data / 'test'}: no {subject}_test.csv")
        if subject not in devs:
            raise FileNotFoundError(f"{data / 'dev'}: no {subject}_dev.csv (few-shot examples for {subject})")
    cat_file = data.parent / "subject_categories.json"
    if cat_file.is_file():
        categories, source = load_categories(cat_file, chosen), str(cat_file)
    else:
        unknown = [s for s in chosen if s not in MMLU_CATEGORIES]
        if unknown:
            raise MMLUFormatError(
                f"{root}: subjects {unknown} are not MMLU subjects and there is no {cat_file.name} beside data/"
            )
        categories, source = {s: MMLU_CATEGORIES[s] for s in chosen}, "built-in (Hendrycks et al.)"
    return MMLUSet(
        root=root,
        dev={s: read_mc_csv(devs[s], s) for s in chosen},
        test={s: read_mc_csv(tests[s], s) for s in chosen},
        categories=categories,
        category_source=source,
    )
