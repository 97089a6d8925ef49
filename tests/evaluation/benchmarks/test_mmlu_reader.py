"""MMLU-layout reader: CSV parsing, category maps, errors naming file and row."""
import csv
import json

import pytest

from evaluation.benchmarks.mmlu import CATEGORIES, MMLU_CATEGORIES, MMLUFormatError, load_mmlu, read_mc_csv


def _write(path, rows):
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as handle:
        csv.writer(handle).writerows(rows)


def _toy(root, subjects=("anatomy", "sociology")):
    for s in subjects:
        _write(root / "data" / "dev" / f"{s}_dev.csv", [[f"{s} dev?", "a", "b", "c", "d", "A"]])
        _write(root / "data" / "test" / f"{s}_test.csv", [[f"{s} test?", "a", "b", "c", "d", "D"]] * 2)
    return root


def test_builtin_map_is_hendrycks_four_categories_over_57_subjects():
    assert len(MMLU_CATEGORIES) == 57
    counts = {c: sum(v == c for v in MMLU_CATEGORIES.values()) for c in CATEGORIES}
    assert counts == {"humanities": 13, "STEM": 18, "social sciences": 12, "other": 14}
    # subcategory "health" -> other, "culture" -> social sciences, "math" -> STEM, "law" -> humanities
    assert MMLU_CATEGORIES["anatomy"] == "other" and MMLU_CATEGORIES["human_sexuality"] == "social sciences"
    assert MMLU_CATEGORIES["high_school_statistics"] == "STEM" and MMLU_CATEGORIES["professional_law"] == "humanities"


def test_reads_quoted_fields_and_uses_the_builtin_map(tmp_path):
    root = _toy(tmp_path)
    _write(root / "data" / "test" / "anatomy_test.csv", [['Which, "exactly",\nbone?', "x,y", "b", "c", "d", " B "]])
    data = load_mmlu(root)
    assert data.subjects == ["anatomy", "sociology"] and data.category_source.startswith("built-in")
    assert data.categories == {"anatomy": "other", "sociology": "social sciences"}
    (q,) = data.test["anatomy"]
    assert (q.question, q.choices, q.answer) == ('Which, "exactly",\nbone?', ("x,y", "b", "c", "d"), "B")
    assert load_mmlu(root / "data").subjects == data.subjects  # pointing at data/ itself works too


def test_subject_categories_json_beside_data_overrides(tmp_path):
    root = _toy(tmp_path, ("shape_colors", "shape_counts"))
    (root / "subject_categories.json").write_text(json.dumps({"shape_colors": "STEM", "shape_counts": "other"}))
    assert load_mmlu(root).categories == {"shape_colors": "STEM", "shape_counts": "other"}
    (root / "subject_categories.json").write_text(json.dumps({"shape_colors": "art", "shape_counts": "other"}))
    with pytest.raises(MMLUFormatError, match=r"subject_categories.json: subject 'shape_colors' has category 'art'"):
        load_mmlu(root)
    (root / "subject_categories.json").unlink()
    with pytest.raises(MMLUFormatError, match=r"\['shape_colors', 'shape_counts'\] are not MMLU subjects"):
        load_mmlu(root)


def test_malformed_rows_name_file_and_row(tmp_path):
    bad = tmp_path / "x_test.csv"
    _write(bad, [["q", "a", "b", "c", "d", "A"], ["q", "a", "b", "c", "D"]])
    with pytest.raises(MMLUFormatError, match=r"x_test.csv: row 2 \(line 2\): expected 6 columns .* got 5"):
        read_mc_csv(bad, "x")
    _write(bad, [["multi\nline q", "a", "b", "c", "d", "A"], ["q", "a", "b", "c", "d", "E"]])
    with pytest.raises(MMLUFormatError, match=r"x_test.csv: row 2 \(line 3\): answer 'E' is not one of A, B, C, D"):
        read_mc_csv(bad, "x")


def test_missing_files_are_named(tmp_path):
    root = _toy(tmp_path)
    (root / "data" / "dev" / "sociology_dev.csv").unlink()
    with pytest.raises(FileNotFoundError, match="no sociology_dev.csv"):
        load_mmlu(root)
    with pytest.raises(FileNotFoundError, match="expected .*/data/test/<subject>_test.csv"):
        load_mmlu(tmp_path / "nowhere")
