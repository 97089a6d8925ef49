"""`make test`'s end-to-end check: the whole Table 1 pipeline on the micro world, in a fresh folder.

Every stage runs for real (world -> stage-0 CLIP and LLaMA -> stage-1 tokenizer -> stage-2 unified
LM and its blind twin -> the blind and retrieval rows -> evaluation -> report) at minute size; no
metric targets at this size.
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from evaluation.benchmarks.results import read_results
from lavit_pl.cli import main

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_micro_pipeline_end_to_end(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    argv = ["reproduce", "-c", str(REPO / "experiments/pipeline/table1_micro.yaml"), f"config_root={REPO / 'experiments'}"]
    assert main(argv) == 0
    record = json.loads((tmp_path / "runs/micro/pipeline.json").read_text())
    assert [s["status"] for s in record["steps"]] == ["ok"] * len(record["steps"])

    report = (tmp_path / "runs/micro/eval_table1/reports/table1.md").read_text()
    assert "LaVIT" in report and "114.2" in report  # our row beside the paper's LaVIT-7B row
    blind = json.loads((tmp_path / "runs/micro/eval_table1_blind/metrics/blind.json").read_text())
    assert "vqav2" in blind
    preds = tmp_path / "runs/micro/eval_table1/predictions/release/vqav2.json"
    assert len(read_results(preds, "vqa")) > 0
    # the retrieval row (stage-0 CLIP, no LaVIT model) is filled in the main report from its own run
    retrieval = json.loads((tmp_path / "runs/micro/eval_table1_retrieval/metrics/retrieval.json").read_text())
    table = json.loads((tmp_path / "runs/micro/eval_table1/reports/table1.json").read_text())
    row = next(r for r in table["rows"] if r["name"] == "retrieval")
    assert row["cells"]["vqav2"]["value"] == retrieval["vqav2"]["vqa_accuracy"]
    assert row["cells"]["nocaps"]["value"] == pytest.approx(100 * retrieval["nocaps"]["cider"])
    print("micro retrieval row:", json.dumps(retrieval))
    # the blind model's describe-then-answer row sits beside ours, so both protocols compare in one table
    blind_dta = json.loads((tmp_path / "runs/micro/eval_table1_blind/metrics/blind_describe_then_answer.json").read_text())
    row = next(r for r in table["rows"] if r["name"] == "blind_describe_then_answer")
    assert row["cells"]["vqav2"]["value"] == blind_dta["vqav2"]["vqa_accuracy"]

    # Re-running does nothing: every step is already done.
    assert main(argv) == 0
    again = json.loads((tmp_path / "runs/micro/pipeline.json").read_text())
    assert all(s["status"].startswith("skipped") for s in again["steps"])
