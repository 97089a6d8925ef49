"""The Table-1 retrieval row through ``python -m lavit_pl eval`` (experiments/eval/table1_tiny_retrieval.yaml)
on a small official-layout world with a seeded tiny CLIP export: nearest captions equal open_clip's
own computation, same-question answers come from the nearest training image, the answer prior
fills the rest, scores equal the standalone scorer, the report's row is filled, resume, errors."""
from __future__ import annotations

import contextlib
import io
import json
import shutil
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from evaluation import baselines, gqa
from evaluation.benchmarks.results import read_results
from evaluation.table1.report import table1_report
from lavit_pl.cli import main

from clip_export_fixtures import open_clip_reference, write_clip_export
from lavit_eval_fixtures import TRAIN_CAPTIONS, jpeg, write_official_world

ROOT = Path(__file__).resolve().parents[3]
CONFIG = ROOT / "experiments/eval/table1_tiny_retrieval.yaml"
pytestmark = pytest.mark.skipif(shutil.which("java") is None, reason="PTBTokenizer needs Java")
CAR_QUESTION = "Which color is the car on the left?"  # GQA testdev 201640614, image n161313


def run_eval(*overrides: str) -> dict:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert main(["eval", "-c", str(CONFIG), "progress=false", *overrides]) == 0
    return json.loads(out.getvalue().strip().splitlines()[-1])


def add_gqa_training_images(root: Path) -> None:
    """Two training questions with the car question's text: first a decoy image (answer 'blue'),
    then a copy of the eval image (answer 'green', which is not the true answer)."""
    path = root / "gqa/train_balanced_questions.json"
    train = json.loads(path.read_text())
    template = train["07333408"]
    train["90000001"] = {**template, "imageId": "decoy", "question": CAR_QUESTION, "answer": "blue"}
    train["90000002"] = {**template, "imageId": "twin", "question": CAR_QUESTION, "answer": "green"}
    path.write_text(json.dumps(train))
    (root / "gqa/images/decoy.jpg").write_bytes(jpeg("a decoy car"))
    shutil.copy(root / "gqa/images/n161313.jpg", root / "gqa/images/twin.jpg")


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    base = tmp_path_factory.mktemp("retrieval")
    root = write_official_world(base / "world")
    add_gqa_training_images(root)
    export = write_clip_export(base / "clip" / "export", seed=0)
    common = (f"data.root={root}", f"retrieval.clip_export={export}", "retrieval.max_captions=1000")
    summary = run_eval(f"output_dir={base / 'out'}", *common)
    return {"root": root, "base": base, "export": export, "out": base / "out", "common": common, "summary": summary}


def embed(model, transform, path) -> torch.Tensor:
    with Image.open(path) as image, torch.no_grad():
        return F.normalize(model.encode_image(transform(image).unsqueeze(0))[0], dim=-1)


def test_captions_are_the_nearest_training_caption_by_open_clip(world):
    model, transform, tokenizer = open_clip_reference(world["export"], "retrieval_test_clip")
    pool = sorted({c for caps in TRAIN_CAPTIONS for c in caps})  # 30 distinct, all kept (max_captions=1000)
    with torch.no_grad():
        texts = F.normalize(model.encode_text(tokenizer(pool)), dim=-1)  # (K, E)
    root = world["root"]
    folders = {"nocaps": (root / "nocaps/nocaps_val_4500_captions.json", "images", "file_name", "id"),
               "flickr30k": (root / "flickr30k/dataset_flickr30k.json", "images", "filename", "imgid")}
    for split, (ann, key, file_key, id_key) in folders.items():
        chosen = read_results(world["out"] / f"predictions/retrieval/{split}.json", "caption")
        images = [im for im in json.loads(ann.read_text())[key] if im.get("split", "test") == "test"]
        assert set(chosen) == {im[id_key] for im in images}
        for image in images:
            sims = texts @ embed(model, transform, ann.parent / "images" / image[file_key])  # (K,)
            # float32 on CPU; batched vs single-image matmuls differ by ~1e-7
            assert sims[pool.index(chosen[image[id_key]])] >= sims.max() - 1e-5, (split, image)


def test_same_question_answer_of_the_nearest_training_image(world):
    out, root = world["out"], world["root"]
    predictions = read_results(out / "predictions/retrieval/gqa.json", "gqa")
    prior = read_results(out / "predictions/retrieval/gqa.prior.json", "gqa")
    # the premise: the twin is clearly nearer than the decoy (which comes first in the file)
    model, transform, _ = open_clip_reference(world["export"], "retrieval_test_clip_gqa")
    query = embed(model, transform, root / "gqa/images/n161313.jpg")
    twin, decoy = (float(query @ embed(model, transform, root / f"gqa/images/{n}.jpg")) for n in ("twin", "decoy"))
    assert twin > decoy + 1e-3
    assert predictions["201640614"] == "green" != prior["201640614"]
    # "What is the man wearing?" has a training twin whose image is not on disk: the prior answers
    assert {k: v for k, v in predictions.items() if k != "201640614"} == {k: v for k, v in prior.items() if k != "201640614"}
    summary = json.loads((out / "predictions/retrieval/gqa.summary.json").read_text())
    assert (summary["num_same_text_train_questions"], summary["num_candidates_with_image"]) == (3, 2)
    assert json.loads((out / "metrics/retrieval.json").read_text())["gqa"]["num_retrieved"] == 1


def test_without_a_matching_question_the_answer_prior_is_used(world, tmp_path):
    """VQAv2 / OK-VQA share no question text with VQAv2 train; VizWiz has no training images: every
    answer is the prior baseline's, as `python -m evaluation.baselines` writes it."""
    out, root = world["out"], world["root"]
    argv = {"vqav2": ["prior-vqa", "--train-questions", root / "vqav2/v2_OpenEnded_mscoco_train2014_questions.json",
                      "--train-annotations", root / "vqav2/v2_mscoco_train2014_annotations.json",
                      "--questions", root / "vqav2/v2_OpenEnded_mscoco_val2014_questions.json"],
            "vizwiz": ["prior-vizwiz", "--train", root / "vizwiz/train.json", "--annotations", root / "vizwiz/val.json"]}
    kinds = {"vqav2": "vqa", "vizwiz": "vizwiz"}
    for split, args in argv.items():
        with contextlib.redirect_stdout(io.StringIO()):
            assert baselines.main([*map(str, args), "--out", str(tmp_path / f"{split}.json")]) == 0
        expected = read_results(tmp_path / f"{split}.json", kinds[split])
        assert read_results(out / f"predictions/retrieval/{split}.json", kinds[split]) == expected
    metrics = json.loads((out / "metrics/retrieval.json").read_text())
    assert [metrics[s]["num_retrieved"] for s in ("vqav2", "okvqa", "vizwiz")] == [0, 0, 0]


def test_scores_equal_the_standalone_scorer_and_fill_the_report(world, capsys):
    out, root = world["out"], world["root"]
    metrics = json.loads((out / "metrics/retrieval.json").read_text())
    assert sorted(metrics) == ["flickr30k", "gqa", "nocaps", "okvqa", "vizwiz", "vqav2"]
    assert {"cider", "cider_in_domain", "cider_near_domain", "cider_out_domain"} <= set(metrics["nocaps"])
    capsys.readouterr()
    assert gqa.main(["--questions", str(root / "gqa/testdev_balanced_questions.json"),
                     "--results", str(out / "predictions/retrieval/gqa.json")]) == 0
    assert metrics["gqa"]["gqa_accuracy"] == json.loads(capsys.readouterr().out)["accuracy"]
    json_path, _ = table1_report({}, {"retrieval": out / "metrics/retrieval.json"}, "release", out / "main_report")
    row = next(r for r in json.loads(json_path.read_text())["rows"] if r["name"] == "retrieval")
    assert row["cells"]["nocaps"]["value"] == pytest.approx(100 * metrics["nocaps"]["cider"])
    assert row["cells"]["vqav2"]["value"] == metrics["vqav2"]["vqa_accuracy"]
    assert row["cells"]["vizwiz"]["value"] == metrics["vizwiz"]["vqa_accuracy"]
    assert row["cells"]["gqa"]["value"] == metrics["gqa"]["gqa_accuracy"]
    assert not list(out.rglob("*.tmp"))


def test_resume_and_a_new_export_regenerates(world):
    out = world["out"]
    assert sorted(world["summary"]["generated"]) == sorted(
        f"retrieval/{s}" for s in ("nocaps", "flickr30k", "vqav2", "okvqa", "gqa", "vizwiz"))
    assert run_eval(f"output_dir={out}", *world["common"])["generated"] == []
    other = write_clip_export(world["base"] / "clip2" / "export", seed=1)
    common = [c for c in world["common"] if not c.startswith("retrieval.clip_export")]
    summary = run_eval(f"output_dir={out}", *common, f"retrieval.clip_export={other}", "splits=[nocaps]")
    assert summary["generated"] == ["retrieval/nocaps"]


def test_missing_export_and_config_errors_are_named(world, tmp_path, capsys):
    args = ["eval", "-c", str(CONFIG), f"output_dir={tmp_path}", f"data.root={world['root']}", "progress=false"]
    assert main([*args, f"retrieval.clip_export={tmp_path / 'nowhere'}"]) == 2
    assert f"config file {tmp_path / 'nowhere' / 'open_clip_config.json'} not found" in capsys.readouterr().err
    assert main([*args, "retrieval.clip_export=''"]) == 2
    assert "retrieval.clip_export: expected the stage-0 CLIP export folder" in capsys.readouterr().err
