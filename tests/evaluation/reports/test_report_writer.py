"""Report tables: exact markdown of a small spec, missing-value reasons, atomic writes, CLI."""
import json

import pytest

import lavit_pl.utils.atomic as atomic
from evaluation.reports import SpecError, build_table, load_spec, render_markdown, spec_from_dict, write_report
from evaluation.reports.__main__ import main

SPEC = {
    "table": "toy",
    "title": "Toy table",
    "columns": [
        {"key": "vqa", "label": "VQA acc.", "path": "vqav2.vqa_accuracy", "digits": 1},
        {"key": "cap", "label": "CIDEr", "path": "flickr30k.cider", "digits": 1, "scale": 100},
    ],
    "rows": [
        {"name": "ours", "label": "Ours", "kind": "ours", "description": "our model"},
        {"name": "prior", "label": "Prior", "kind": "baseline"},
    ],
    "paper_rows": [{"label": "LaVIT, paper", "values": {"vqa": None, "cap": 83.0}}],
    "notes": ["toy note"],
}


def _write(path, obj):
    path.write_text(json.dumps(obj))
    return str(path)


def test_markdown_of_a_small_spec(tmp_path):
    ours = _write(tmp_path / "ours.json", {"vqav2": {"vqa_accuracy": 52.345}})
    ours_cap = _write(tmp_path / "ours_cap.json", {"flickr30k": {"cider": 0.4567}})
    blind = _write(tmp_path / "blind.json", {"vqav2": {"vqa_accuracy": None}, "flickr30k": {"cider": 0.1}})
    table = build_table(spec_from_dict(SPEC), {"ours": [ours, ours_cap], "blind": [blind]})
    expected = (
        "# Toy table\n"
        "\n"
        "| Row | Kind | VQA acc. | CIDEr |\n"
        "| --- | --- | ---: | ---: |\n"
        "| Ours | ours | 52.3 | 45.7 |\n"
        "| Prior | baseline | — [1] | — [1] |\n"
        "| blind | ours | — [2] | 10.0 |\n"
        "| LaVIT, paper | paper | — [3] | 83.0 |\n"  # paper numbers are not scaled
        "\n"
        "Rows:\n"
        f"- Ours: our model ({ours}, {ours_cap})\n"
        "- Prior: (no result file)\n"
        f"- blind: ({blind})\n"
        "\n"
        "Missing values:\n"
        "[1] no result file given for row 'prior'\n"
        f"[2] 'vqav2.vqa_accuracy' is null in {blind}\n"
        "[3] not reported in the paper\n"
        "\n"
        "Notes:\n"
        "- toy note\n"
    )
    assert render_markdown(table) == expected
    assert table["rows"][0]["cells"]["cap"] == {"value": pytest.approx(45.67), "text": "45.7", "reason": None}


def test_missing_keys_and_non_numbers_are_reasons_not_values(tmp_path):
    f = _write(tmp_path / "r.json", {"vqav2": {"vqa_accuracy": "n/a"}})
    (row,) = [r for r in build_table(spec_from_dict(SPEC), {"ours": [f]})["rows"] if r["name"] == "ours"]
    assert row["cells"]["vqa"]["reason"] == f"'vqav2.vqa_accuracy' in {f} is not a finite number: 'n/a'"
    assert row["cells"]["cap"]["reason"] == f"no 'flickr30k.cider' in {f}"
    assert row["cells"]["vqa"]["value"] is None and row["cells"]["vqa"]["text"] == "—"


def test_a_key_in_two_files_of_one_row_is_an_error(tmp_path):
    a = _write(tmp_path / "a.json", {"vqav2": {"vqa_accuracy": 1}})
    b = _write(tmp_path / "b.json", {"vqav2": {"vqa_accuracy": 2}})
    with pytest.raises(ValueError, match=r"'vqav2.vqa_accuracy' is in both .*a.json and .*b.json"):
        build_table(spec_from_dict(SPEC), {"ours": [a, b]})


def test_failed_write_leaves_the_old_report_intact(tmp_path, monkeypatch):
    spec = spec_from_dict(SPEC)
    f = _write(tmp_path / "r.json", {"vqav2": {"vqa_accuracy": 50.0}})
    json_path, md_path = write_report(build_table(spec, {"ours": [f]}), tmp_path / "out")
    old_json, old_md = json_path.read_text(), md_path.read_text()

    def broken_fsync(fd):
        raise OSError("disk full")

    monkeypatch.setattr(atomic.os, "fsync", broken_fsync)
    _write(tmp_path / "r.json", {"vqav2": {"vqa_accuracy": 60.0}})
    with pytest.raises(OSError, match="disk full"):
        write_report(build_table(spec, {"ours": [f]}), tmp_path / "out")
    assert json_path.read_text() == old_json and md_path.read_text() == old_md
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["toy.json", "toy.md"]  # no temp files left


def test_builtin_specs_load_and_hold_the_paper_numbers():
    t1, t2, t4 = load_spec("table1"), load_spec("table2"), load_spec("table4")
    assert t1.paper_rows[0].values == {"nocaps": 114.2, "flickr30k": 83.0, "vqav2": 66.0, "okvqa": 54.6, "gqa": 46.8,
                                       "vizwiz": 38.5}
    assert t2.paper_rows[0].values == {"fid": 7.4}
    assert [p.values["average"] for p in t4.paper_rows] == [35.1, 27.1, 30.9, 33.6]
    assert {r.name for r in t1.rows} == {"ours", "prior", "constant_caption", "blind", "retrieval"}


def test_spec_errors_name_the_key():
    with pytest.raises(SpecError, match=r"spec: columns\[0\]: missing key 'path'"):
        spec_from_dict({"table": "t", "title": "t", "columns": [{"key": "a", "label": "A"}]})
    with pytest.raises(SpecError, match=r"paper_rows\[0\]: values for unknown columns \['b'\]"):
        spec_from_dict({**SPEC, "paper_rows": [{"label": "x", "values": {"b": 1}}]})
    with pytest.raises(SpecError, match=r"rows\[0\]: 'kind' must be one of"):
        spec_from_dict({**SPEC, "rows": [{"name": "x", "label": "x", "kind": "paper"}]})
    with pytest.raises(SpecError, match="no such table spec"):
        load_spec("table99")


def test_cli_table4_from_an_mmlu_result(tmp_path, capsys):
    mmlu = {"average": 31.25, "categories": {"humanities": {"accuracy": 30.0}, "STEM": {"accuracy": 25.0},
                                             "social sciences": {"accuracy": 40.0}, "other": {"accuracy": 35.5}}}
    path = _write(tmp_path / "mmlu.json", mmlu)
    assert main(["--table", "table4", "--rows", f"ours={path}", "--out", str(tmp_path / "reports")]) == 0
    assert capsys.readouterr().out.split() == [str(tmp_path / "reports" / "table4.json"), str(tmp_path / "reports" / "table4.md")]
    md = (tmp_path / "reports" / "table4.md").read_text()
    assert "| LaVIT-PL (ours) | ours | 30.0 | 25.0 | 40.0 | 35.5 | 31.2 |" in md
    assert "| Base LLM (before stage 2) | baseline | — [1] | — [1] | — [1] | — [1] | — [1] |" in md
    assert "| LLaMA-7B, paper | paper | 34.0 | 30.5 | 38.3 | 38.1 | 35.1 |" in md
    with pytest.raises(SystemExit, match="expected name=path.json"):
        main(["--table", "table4", "--rows", "ours", "--out", str(tmp_path)])
    assert main(["--table", "table4", "--rows", f"ours={tmp_path / 'nope.json'}", "--out", str(tmp_path)]) == 2
