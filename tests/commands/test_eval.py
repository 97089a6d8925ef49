"""``python -m lavit_pl eval`` on a small official-layout world with a tiny random LaVIT: official
results files, scores equal to the standalone scorers, baselines, report, describe-then-answer
prompts, resume, subsets and the blind row."""
from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from evaluation.benchmarks.gqa import read_gqa
from evaluation.benchmarks.karpathy import read_karpathy
from evaluation.benchmarks.nocaps import read_nocaps
from evaluation.benchmarks.results import read_results
from evaluation.benchmarks.vizwiz import read_vizwiz
from evaluation.benchmarks.vqa import read_vqa
from lavit_pl.cli import main
from lavit_pl.commands.eval import EvalConfig
from lavit_pl.config import load_config
from lavit_pl.generation import eval_model
from lavit_pl.generation.eval_model import save_lavit_for_eval

from lavit_eval_fixtures import D_VIS, FIXTURES, tiny_lm, tiny_tokenizer, write_official_world

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.skipif(shutil.which("java") is None, reason="PTBTokenizer needs Java")
KIND = {"nocaps": "caption", "flickr30k": "caption", "vqav2": "vqa", "okvqa": "vqa", "gqa": "gqa", "vizwiz": "vizwiz"}


def run_eval(*overrides: str) -> dict:
    """``main(["eval", ...])``; returns the JSON summary it prints."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert main(["eval", "-c", str(ROOT / "experiments/eval/table1_tiny.yaml"), *overrides]) == 0
    return json.loads(out.getvalue().strip().splitlines()[-1])


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    base = tmp_path_factory.mktemp("eval")
    root = write_official_world(base / "world")
    save_lavit_for_eval(base / "model", tiny_lm(seed=0), tiny_tokenizer(base / "tok"),
                        "lavit_pl.generation.pixel_encoder:build_pixel_patch_encoder",
                        {"image_size": 16, "patch_size": 8, "dim": D_VIS})
    # external rows point into this test's folder: the YAML's runs/tiny/... files exist after `make reproduce-table1`
    common = (f"data.root={root}", f"model.path={base / 'model'}", "progress=false", "batch_size=3",
              "baselines.num_candidates=5", "baselines.num_reference_images=4",
              f"report.external_rows.blind={base / 'blind/metrics/blind.json'}",
              f"report.external_rows.blind_describe_then_answer={base / 'blind/metrics/blind_describe_then_answer.json'}",
              f"report.external_rows.retrieval={base / 'retrieval/metrics/retrieval.json'}")
    summary = run_eval(f"output_dir={base / 'out'}", *common)
    return {"root": root, "base": base, "out": base / "out", "common": common, "summary": summary}


def expected_ids(root: Path) -> dict[str, list]:
    return {
        "nocaps": [r.image_id for r in read_nocaps(root / "nocaps/nocaps_val_4500_captions.json")],
        "flickr30k": [r.image_id for r in read_karpathy(root / "flickr30k/dataset_flickr30k.json", "test")],
        "vqav2": [r.question_id for r in read_vqa(root / "vqav2/v2_OpenEnded_mscoco_val2014_questions.json",
                                                  root / "vqav2/v2_mscoco_val2014_annotations.json")],
        "okvqa": [r.question_id for r in read_vqa(root / "okvqa/OpenEnded_mscoco_val2014_questions.json",
                                                  root / "okvqa/mscoco_val2014_annotations.json")],
        "gqa": [r.question_id for r in read_gqa(root / "gqa/testdev_balanced_questions.json", balanced_only=False)],
        "vizwiz": [r.image for r in read_vizwiz(root / "vizwiz/val.json")],
    }


def test_every_split_and_protocol_has_an_official_results_file(world):
    out, ids = world["out"], expected_ids(world["root"])
    assert set(world["summary"]["generated"]) == {
        "release/nocaps", "release/flickr30k", *(f"{p}/{s}" for p in ("release", "describe_then_answer")
                                                 for s in ("vqav2", "okvqa", "gqa", "vizwiz"))}
    groups = {"release": list(KIND), "describe_then_answer": ["vqav2", "okvqa", "gqa", "vizwiz"],
              "prior": ["vqav2", "okvqa", "gqa", "vizwiz"], "constant_caption": ["nocaps", "flickr30k"]}
    keys = {"caption": ["image_id", "caption"], "vqa": ["question_id", "answer"], "gqa": ["questionId", "prediction"],
            "vizwiz": ["image", "answer"]}
    for group, splits in groups.items():
        for split in splits:
            path = out / "predictions" / group / f"{split}.json"
            predictions = read_results(path, KIND[split])
            assert list(predictions) == ids[split], path
            assert all(sorted(e) == sorted(keys[KIND[split]]) for e in json.loads(path.read_text()))
    assert not list(out.rglob("*.tmp"))  # atomic writes leave no temp file


def cli(module: str, *argv) -> dict:
    proc = subprocess.run([sys.executable, "-m", f"evaluation.{module}", *map(str, argv)], capture_output=True,
                          text=True, check=True, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)})
    return json.loads(proc.stdout)


def test_scores_equal_the_standalone_scorers_on_known_predictions(world):
    """Swap in the fixture results files (known scores) for the model's, re-run: nothing is
    regenerated, and the report numbers are what `python -m evaluation.<benchmark>` prints."""
    out, root = world["out"], world["root"]
    known = {"vqav2": "vqav2_val_results.json", "okvqa": "okvqa_val_results.json", "gqa": "gqa_testdev_results.json",
             "vizwiz": "vizwiz_val_results.json", "nocaps": "nocaps_val_results.json",
             "flickr30k": "flickr30k_test_results.json"}
    for split, name in known.items():
        shutil.copy(FIXTURES / "results" / name, out / "predictions/release" / f"{split}.json")
    summary = run_eval(f"output_dir={out}", *world["common"])
    assert summary["generated"] == []
    ours = json.loads((out / "metrics/ours.json").read_text())
    release = json.loads((out / "metrics/ours_release_postprocessed.json").read_text())
    pred = out / "predictions/release"
    vqa = cli("vqa", "--questions", root / "vqav2/v2_OpenEnded_mscoco_val2014_questions.json", "--annotations",
              root / "vqav2/v2_mscoco_val2014_annotations.json", "--results", pred / "vqav2.json",
              "--release-postprocess")
    # 63.33 / 80.0: hand-computed in tests/evaluation/test_evaluation_cli.py for these files
    assert ours["vqav2"]["vqa_accuracy"] == vqa["overall"] == 63.33
    assert release["vqav2"]["vqa_accuracy"] == vqa["release_postprocessed"]["overall"] == 80.0
    okvqa = cli("vqa", "--questions", root / "okvqa/OpenEnded_mscoco_val2014_questions.json", "--annotations",
                root / "okvqa/mscoco_val2014_annotations.json", "--results", pred / "okvqa.json")
    assert ours["okvqa"]["vqa_accuracy"] == okvqa["overall"] == 66.67
    gqa = cli("gqa", "--questions", root / "gqa/testdev_balanced_questions.json", "--results", pred / "gqa.json",
              "--release-postprocess")
    assert ours["gqa"]["gqa_accuracy"] == gqa["accuracy"]
    assert release["gqa"]["gqa_accuracy"] == gqa["release_postprocessed"]["accuracy"]
    vizwiz = cli("vizwiz", "--annotations", root / "vizwiz/val.json", "--results", pred / "vizwiz.json")
    assert ours["vizwiz"]["vqa_accuracy"] == vizwiz["overall"]
    flickr = cli("caption", "--annotations", root / "flickr30k/dataset_flickr30k.json", "--karpathy-split", "test",
                 "--results", pred / "flickr30k.json")
    assert ours["flickr30k"]["cider"] == flickr["CIDEr"] > 0
    nocaps = cli("caption", "--annotations", root / "nocaps/nocaps_val_4500_captions.json", "--results",
                 pred / "nocaps.json")
    assert ours["nocaps"]["cider"] == nocaps["CIDEr"]
    assert ours["nocaps"]["cider_out_domain"] == nocaps["perDomain"]["out-domain"]["CIDEr"]
    prior = json.loads((out / "metrics/prior.json").read_text())
    prior_cli = cli("vqa", "--questions", root / "vqav2/v2_OpenEnded_mscoco_val2014_questions.json", "--annotations",
                    root / "vqav2/v2_mscoco_val2014_annotations.json", "--results", out / "predictions/prior/vqav2.json")
    assert prior["vqav2"]["vqa_accuracy"] == prior_cli["overall"]
    # the report shows the metric files: VQA in percent, CIDEr x100
    table = json.loads((out / "reports/table1.json").read_text())
    rows = {r["label"]: r for r in table["rows"]}
    assert rows["LaVIT-PL (ours)"]["cells"]["vqav2"]["text"] == "63.3"
    assert rows["LaVIT-PL (ours)"]["cells"]["flickr30k"]["value"] == pytest.approx(100 * flickr["CIDEr"])
    assert rows["LaVIT-PL (ours), release post-processing"]["cells"]["vqav2"]["text"] == "80.0"


def test_report_has_the_paper_row_baselines_and_missing_reasons(world):
    out = world["out"]
    table = json.loads((out / "reports/table1.json").read_text())
    rows = {r["label"]: r for r in table["rows"]}
    paper = rows["LaVIT (LLaMA-7B), paper"]
    assert {k: c["value"] for k, c in paper["cells"].items()} == {
        "nocaps": 114.2, "flickr30k": 83.0, "vqav2": 66.0, "okvqa": 54.6, "gqa": 46.8, "vizwiz": 38.5}
    assert [r["name"] for r in table["rows"][:8]] == [
        "ours", "ours_release_postprocessed", "ours_describe_then_answer", "prior", "constant_caption", "blind",
        "blind_describe_then_answer", "retrieval"]
    prior = json.loads((out / "metrics/prior.json").read_text())
    assert rows["Answer prior"]["cells"]["vqav2"]["value"] == prior["vqav2"]["vqa_accuracy"]
    assert rows["Constant caption"]["cells"]["nocaps"]["value"] is not None
    blind = rows["Blind model"]
    assert all(c["value"] is None for c in blind["cells"].values()) and "blind.json: not found" in blind["description"]
    blind_dta = rows["Blind model, describe-then-answer"]  # a missing extra row still sits under its model
    assert all(c["value"] is None for c in blind_dta["cells"].values())
    assert "blind_describe_then_answer.json: not found" in blind_dta["description"]
    md = (out / "reports/table1.md").read_text()
    assert "| LaVIT (LLaMA-7B), paper | paper | 114.2 | 83.0 | 66.0 | 54.6 | 46.8 | 38.5 |" in md
    assert "no result file given for row 'retrieval'" in md


def test_describe_then_answer_feeds_its_caption_into_the_question(world):
    trace = json.loads((world["out"] / "predictions/describe_then_answer/vqav2.trace.json").read_text())
    first = trace[0]  # question 42000: "Is there a dog?"
    assert first["id"] == 42000 and first["prompts"]["caption"] == "There is"
    assert first["prompts"]["answer"] == f"{first['outputs']['caption']}.\nQuestion: Is there a dog? Answer:"  # case kept
    release = json.loads((world["out"] / "predictions/release/vqav2.trace.json").read_text())
    assert release[0]["prompts"] == {"answer": "Question: is there a dog? Answer:"}
    vizwiz = json.loads((world["out"] / "predictions/describe_then_answer/vizwiz.trace.json").read_text())
    for item in vizwiz:  # answerability first; only answerable questions get a caption and an answer
        assert item["prompts"]["answerable"].startswith('Question: Is the question: "')
        assert ("caption" in item["prompts"]) == (item["exited_at"] is None)


def test_resume_regenerates_only_incomplete_splits(world, monkeypatch):
    out = world["out"]
    untouched = out / "predictions/release/vqav2.json"
    before = untouched.stat().st_mtime_ns

    def no_model(*args, **kwargs):
        raise AssertionError("the model must not be loaded when every split is complete")

    monkeypatch.setattr(eval_model, "load_lavit_for_eval", no_model)
    assert run_eval(f"output_dir={out}", *world["common"])["generated"] == []
    monkeypatch.undo()
    (out / "predictions/release/gqa.json").unlink()
    truncated = out / "predictions/describe_then_answer/okvqa.json"
    truncated.write_text(truncated.read_text()[:20])  # a half-written file is not complete either
    summary = run_eval(f"output_dir={out}", *world["common"])
    assert sorted(summary["generated"]) == ["describe_then_answer/okvqa", "release/gqa"]
    assert untouched.stat().st_mtime_ns == before
    assert list(read_results(out / "predictions/release/gqa.json", "gqa")) == expected_ids(world["root"])["gqa"]


def test_subsets_and_the_blind_row(world):
    """First n examples (NoCaps: per domain) with official-layout subset files, scored identically by
    the standalone scorer; the blind run's metrics fill the main report's blind row."""
    base, root = world["base"], world["root"]
    blind_out = base / "blind"
    summary = run_eval(f"output_dir={blind_out}", *world["common"], "model.blind=true", "splits=[vqav2,nocaps]",
                       "protocols=[release]", "split_max_examples={vqav2: 2, nocaps: 1}", "baselines.enabled=false")
    assert summary["examples"] == {"vqav2": "2 of 6", "nocaps": "3 of 6"}
    subset_q = blind_out / "benchmark/vqav2/v2_OpenEnded_mscoco_val2014_questions.json"
    assert [q["question_id"] for q in json.loads(subset_q.read_text())["questions"]] == [42000, 42001]
    preds = blind_out / "predictions/release/vqav2.json"
    assert list(read_results(preds, "vqa")) == [42000, 42001]
    nocaps = read_results(blind_out / "predictions/release/nocaps.json", "caption")
    assert list(nocaps) == [0, 2, 4]  # the first image of each domain
    metrics = json.loads((blind_out / "metrics/blind.json").read_text())
    scored = cli("vqa", "--questions", subset_q, "--annotations",
                 blind_out / "benchmark/vqav2/v2_mscoco_val2014_annotations.json", "--results", preds)
    assert metrics["vqav2"]["vqa_accuracy"] == scored["overall"] and metrics["vqav2"]["num_questions"] == 2
    # the blind model saw noise: its captions differ from the model's on the same images
    ours = read_results(world["out"] / "predictions/release/nocaps.json", "caption")
    assert [nocaps[i] for i in nocaps] != [ours[i] for i in nocaps]
    run_eval(f"output_dir={world['out']}", *world["common"], f"report.external_rows.blind={blind_out / 'metrics/blind.json'}")
    table = json.loads((world["out"] / "reports/table1.json").read_text())
    blind = next(r for r in table["rows"] if r["name"] == "blind")
    assert blind["cells"]["vqav2"]["value"] == metrics["vqav2"]["vqa_accuracy"]
    assert blind["cells"]["gqa"]["value"] is None and "seeded noise in place of every image" in blind["description"]
    # the per-question-type table: the official evaluator's perQuestionType, for the same rows
    types = json.loads((world["out"] / "reports/table1_vqa_types.json").read_text())
    assert [r["name"] for r in types["rows"] if r["kind"] != "paper"] == [
        "ours", "ours_release_postprocessed", "ours_describe_then_answer", "prior", "blind",
        "blind_describe_then_answer", "retrieval"]
    columns = {"color": "what color is the", "count": "how many", "exists": "is there a", "where": "where is the"}

    def type_cells(row: str) -> dict:
        cells = next(r for r in types["rows"] if r["name"] == row)["cells"]
        return {key: cells[key]["value"] for key in columns}

    ours_scores = json.loads((world["out"] / "scores/describe_then_answer/vqav2.json").read_text())
    for row, per_type in (("blind", scored["perQuestionType"]), ("ours_describe_then_answer", ours_scores["perQuestionType"])):
        assert type_cells(row) == {key: per_type.get(t) for key, t in columns.items()}, (row, per_type)
    assert (world["out"] / "reports/table1_vqa_types.md").is_file()


def test_missing_inputs_are_named(world, tmp_path, capsys):
    config = str(ROOT / "experiments/eval/table1_tiny.yaml")
    args = ["eval", "-c", config, f"output_dir={tmp_path}", f"data.root={world['root']}", "progress=false"]
    assert main([*args, f"model.path={tmp_path / 'nowhere'}"]) == 2
    assert f"model.path: {tmp_path / 'nowhere'} not found" in capsys.readouterr().err
    assert main([*args, f"model.path={world['base'] / 'model'}", "data.vqav2_questions=missing.json"]) == 2
    assert f"{world['root'] / 'missing.json'}: file not found" in capsys.readouterr().err


def test_every_eval_yaml_loads():
    for path in sorted((ROOT / "experiments/eval").glob("*.yaml")):
        cfg = load_config(EvalConfig, path)
        assert cfg.report_protocol in cfg.protocols, path
    micro = load_config(EvalConfig, ROOT / "experiments/eval/table1_micro.yaml")
    assert micro.data.root == "data/shapes/micro" and micro.max_examples == 8
    assert micro.protocols == ["release", "describe_then_answer"]  # inherited from table1_tiny.yaml
    from lavit_pl.config import ConfigError

    with pytest.raises(ConfigError, match="report_protocol"):
        load_config(EvalConfig, ROOT / "experiments/eval/table1_tiny.yaml", ["protocols=[paper]"])
    with pytest.raises(ConfigError, match="splits: unknown"):
        load_config(EvalConfig, ROOT / "experiments/eval/table1_tiny.yaml", ["splits=[coco]"])
    # a captioning split has no describe-then-answer task: asking only for that protocol is an error,
    # not a split that is read, counted "500 of 500" and never predicted
    with pytest.raises(ConfigError, match=r"'flickr30k' has no task under protocols \['describe_then_answer'\]; "
                                          r"add one of \['paper', 'release'\]"):
        load_config(EvalConfig, ROOT / "experiments/eval/table1_tiny.yaml",
                    ["splits=[vqav2,flickr30k]", "protocols=[describe_then_answer]",
                     "report_protocol=describe_then_answer"])
    ok = load_config(EvalConfig, ROOT / "experiments/eval/table1_tiny.yaml",
                     ["splits=[vqav2]", "protocols=[describe_then_answer]", "report_protocol=describe_then_answer"])
    assert ok.splits == ["vqav2"]
