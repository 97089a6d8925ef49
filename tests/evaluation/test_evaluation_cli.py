"""Command-line entry points on the official-layout fixtures: one JSON object on stdout, exit 2 on bad input.

Expected numbers are hand computations (see tests/evaluation/metrics/) on the fixture files.
"""
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from evaluation import caption, gqa, vizwiz, vqa

ROOT = Path(__file__).resolve().parents[2]
F = ROOT / "tests" / "fixtures" / "official"
needs_java = pytest.mark.skipif(shutil.which("java") is None, reason="PTBTokenizer needs Java")


def run_main(module, argv, capsys):
    code = module.main([str(a) for a in argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def vqa_args(results=F / "results/vqav2_val_results.json"):
    return ["--questions", F / "vqav2/v2_OpenEnded_mscoco_val2014_questions.json",
            "--annotations", F / "vqav2/v2_mscoco_val2014_annotations.json", "--results", results]


def test_vqa_cli_official_and_release(capsys):
    code, out, _ = run_main(vqa, vqa_args() + ["--release-postprocess"], capsys)
    assert code == 0
    metrics = json.loads(out)
    assert metrics["overall"] == 63.33
    assert metrics["perAnswerType"] == {"yes/no": 50.0, "number": 90.0, "other": 63.33}
    release = metrics["release_postprocessed"]
    # per question 1.0, 1.0, 0.6, 0.3, 1.0, 0.9 -> 80.0
    assert release["overall"] == 80.0 and "not comparable" in release["note"]


def test_okvqa_cli(capsys):
    argv = ["--questions", F / "okvqa/OpenEnded_mscoco_val2014_questions.json",
            "--annotations", F / "okvqa/mscoco_val2014_annotations.json",
            "--results", F / "results/okvqa_val_results.json"]
    code, out, _ = run_main(vqa, argv, capsys)
    # motocross 4 of 10 -> 1; "leathers" 0 -> 0; "Italy" -> "italy" 8 of 10 -> 1
    assert code == 0 and json.loads(out)["overall"] == 66.67


def test_vqa_cli_missing_and_extra_predictions(tmp_path, capsys):
    results = json.loads((F / "results/vqav2_val_results.json").read_text())
    path = tmp_path / "r.json"
    path.write_text(json.dumps(results[:2] + results[3:]))
    code, out, err = run_main(vqa, vqa_args(path), capsys)
    assert code == 2 and out == ""
    assert str(path) in err and "first missing question_id 73000" in err
    path.write_text(json.dumps(results + [{"question_id": 5, "answer": "x"}]))
    code, out, err = run_main(vqa, vqa_args(path), capsys)
    assert code == 2 and "first extra question_id 5" in err


def test_vqa_cli_malformed_annotation(tmp_path, capsys):
    ann = json.loads((F / "vqav2/v2_mscoco_val2014_annotations.json").read_text())
    del ann["annotations"][4]["answer_type"]
    path = tmp_path / "a.json"
    path.write_text(json.dumps(ann))
    argv = vqa_args()
    argv[3] = path
    code, out, err = run_main(vqa, argv, capsys)
    assert code == 2 and out == ""
    assert f"{path}: record annotations[4] (question_id 74000): key 'answer_type': missing" in err


def test_gqa_cli(capsys):
    argv = ["--questions", F / "gqa/testdev_balanced_questions.json",
            "--results", F / "results/gqa_testdev_results.json", "--release-postprocess"]
    code, out, _ = run_main(gqa, argv, capsys)
    metrics = json.loads(out)
    assert code == 0 and metrics["accuracy"] == 60.0 and metrics["binary"] == 66.67 and metrics["open"] == 50.0
    assert metrics["release_postprocessed"]["accuracy"] == 100.0


def test_vizwiz_cli(capsys):
    argv = ["--annotations", F / "vizwiz/val.json", "--results", F / "results/vizwiz_val_results.json"]
    code, out, _ = run_main(vizwiz, argv, capsys)
    metrics = json.loads(out)
    assert code == 0 and metrics["overall"] == 87.5
    assert metrics["perAnswerType"] == {"unanswerable": 100.0, "yes/no": 60.0, "number": 90.0, "other": 100.0}


@needs_java
def test_caption_cli_coco_layout(capsys):
    argv = ["--annotations", F / "coco/annotations/captions_val2014.json",
            "--results", F / "results/coco_captions_results.json"]
    code, out, _ = run_main(caption, argv, capsys)
    metrics = json.loads(out)
    assert code == 0 and metrics["layout"] == "coco" and metrics["num_images"] == 5
    assert metrics["CIDEr"] == pytest.approx(2.001940784643772, abs=1e-12)  # golden, see test_caption_metrics
    assert metrics["Bleu_4"] == pytest.approx(0.529739466515738, abs=1e-12)


@needs_java
def test_caption_cli_karpathy_needs_a_split(capsys):
    argv = ["--annotations", F / "flickr30k/dataset_flickr30k.json",
            "--results", F / "results/flickr30k_test_results.json"]
    code, out, err = run_main(caption, argv, capsys)
    assert code == 2 and out == "" and "needs --karpathy-split" in err
    code, out, _ = run_main(caption, argv + ["--karpathy-split", "test"], capsys)
    metrics = json.loads(out)
    assert code == 0 and metrics["layout"] == "karpathy:test" and metrics["num_images"] == 2
    code, out, err = run_main(caption, argv + ["--karpathy-split", "val"], capsys)
    assert code == 2 and "first missing image_id 2" in err


@needs_java
def test_caption_cli_nocaps_per_domain(capsys):
    argv = ["--annotations", F / "nocaps/nocaps_val_4500_captions.json",
            "--results", F / "results/nocaps_val_results.json"]
    code, out, _ = run_main(caption, argv, capsys)
    metrics = json.loads(out)
    assert code == 0 and set(metrics["perDomain"]) == {"in-domain", "near-domain", "out-domain"}
    assert all(d["num_images"] == 2 for d in metrics["perDomain"].values())
    # Each domain is its own evaluated set (own IDF), so the overall CIDEr is not their mean.
    mean = sum(d["CIDEr"] for d in metrics["perDomain"].values()) / 3
    assert metrics["CIDEr"] != pytest.approx(mean)
    code, out, err = run_main(caption, argv + ["--nocaps-domains", "out-domain"], capsys)
    assert code == 2 and "first extra image_id 0" in err  # six results, two images evaluated


def test_python_dash_m_prints_one_json_line():
    cmd = [sys.executable, "-m", "evaluation.vizwiz", "--annotations", str(F / "vizwiz/val.json"),
           "--results", str(F / "results/vizwiz_val_results.json")]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.strip().splitlines()
    assert len(lines) == 1 and json.loads(lines[0])["overall"] == 87.5
    assert "scoring 4 questions" in proc.stderr
