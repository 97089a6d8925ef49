"""Model-free baselines: answer priors and the best constant caption, scored by the same CLIs."""
import io
import json
import shutil
import tarfile
from pathlib import Path

import pytest

from evaluation import baselines, gqa, vizwiz, vqa
from evaluation.baseline_priors import (
    best_constant_caption,
    constant_caption_scores,
    fit_answer_prior,
    majority,
    question_type_of,
)

ROOT = Path(__file__).resolve().parents[2]
F = ROOT / "tests" / "fixtures" / "official"
needs_java = pytest.mark.skipif(shutil.which("java") is None, reason="PTBTokenizer needs Java")


def run_main(module, argv, capsys):
    code = module.main([str(a) for a in argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_majority_and_prior():
    assert majority(["b", "a", "b", "a", "c"]) == "a"  # tie between a and b -> smallest
    prior = fit_answer_prior(["x", "x", "y", "y", "y"], ["1", "1", "no", "no", "yes"])
    assert prior.by_group == {"x": "1", "y": "no"} and prior.fallback == "1"  # "1" and "no" tie overall
    assert prior.predict("z") == "1" and prior.predict(None) == "1"


def test_question_type_from_text():
    known = ["what", "what color is the", "what is the", "how many", "is there a"]
    assert question_type_of("What color is the bus?", known) == "what color is the"
    assert question_type_of("What is the man holding?", known) == "what is the"
    assert question_type_of("Whatever?", known) is None  # whole words only
    assert question_type_of("Where is the cat?", known) is None


def test_prior_vqa(tmp_path, capsys):
    out = tmp_path / "prior.json"
    code, stdout, _ = run_main(baselines, [
        "prior-vqa", "--train-questions", F / "vqav2/v2_OpenEnded_mscoco_train2014_questions.json",
        "--train-annotations", F / "vqav2/v2_mscoco_train2014_annotations.json",
        "--questions", F / "vqav2/v2_OpenEnded_mscoco_val2014_questions.json", "--out", out], capsys)
    summary = json.loads(stdout)
    assert code == 0 and summary["num_without_known_type"] == 1 and summary["fallback_answer"] == "2"
    # Training majorities: yes, no, 2, red, pizza per type; overall a four-way tie (2, no, red, yes)
    # resolved to the smallest, "2", for "Where is the cat?" (no training type begins it).
    answers = {r["question_id"]: r["answer"] for r in json.loads(out.read_text())}
    assert answers == {42000: "yes", 42001: "no", 73000: "2", 73001: "red", 74000: "pizza", 74001: "2"}
    code, stdout, _ = run_main(vqa, [
        "--questions", F / "vqav2/v2_OpenEnded_mscoco_val2014_questions.json",
        "--annotations", F / "vqav2/v2_mscoco_val2014_annotations.json", "--results", out], capsys)
    # per question 1.0, 0.9 ("no" 3 of 10), 0.9, 0.3, 0, 0 -> 3.1 / 6
    assert code == 0 and json.loads(stdout)["overall"] == 51.67


def test_prior_gqa(tmp_path, capsys):
    out = tmp_path / "prior.json"
    code, _, _ = run_main(baselines, [
        "prior-gqa", "--train-questions", F / "gqa/train_balanced_questions.json",
        "--questions", F / "gqa/testdev_balanced_questions.json", "--out", out], capsys)
    preds = {r["questionId"]: r["prediction"] for r in json.loads(out.read_text())}
    # detailed types: verifyAttr -> yes, relS -> shirt, directWhich unseen -> overall "yes",
    # positionChoose -> right, existAndC -> yes
    assert preds == {"20968379": "yes", "20968380": "shirt", "201640614": "yes", "201640615": "right",
                     "201640616": "yes"}
    code, stdout, _ = run_main(gqa, ["--questions", F / "gqa/testdev_balanced_questions.json",
                                     "--results", out], capsys)
    assert code == 0 and json.loads(stdout)["accuracy"] == 40.0


@pytest.mark.parametrize("group_by, expected", [("answer_type", 50.0), ("none", 55.0)])
def test_prior_vizwiz(tmp_path, capsys, group_by, expected):
    out = tmp_path / "prior.json"
    code, _, _ = run_main(baselines, ["prior-vizwiz", "--train", F / "vizwiz/train.json",
                                      "--annotations", F / "vizwiz/val.json", "--group-by", group_by,
                                      "--out", out], capsys)
    assert code == 0
    code, stdout, _ = run_main(vizwiz, ["--annotations", F / "vizwiz/val.json", "--results", out], capsys)
    # by type: unanswerable 1, yes/no "no" 1, number "72" 0, other "soup" 0 -> 50;
    # overall majority "unanswerable": 1, 0.6, 0.6, 0 -> 55
    assert json.loads(stdout)["overall"] == expected


def test_best_constant_caption_is_the_argmax():
    refs = {"a": ["a red circle", "one red circle"], "b": ["a blue square", "one blue square"],
            "c": ["a red square", "the red square"]}
    candidates = ["a green triangle", "a red square", "one red circle"]
    scores = constant_caption_scores(candidates, refs)
    best, score = best_constant_caption(candidates, refs)
    assert best == max(range(3), key=lambda i: scores[i]) and score == scores[best]
    assert scores[0] == 0.0  # no n-gram in common with any reference


def _shards(path: Path, captions: list[list[str]]) -> None:
    with tarfile.open(path, "w") as tar:
        for i, caps in enumerate(captions):
            data = json.dumps({"caption": caps[0], "captions": caps}).encode()
            info = tarfile.TarInfo(f"{i:09d}.json")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))


@needs_java
def test_constant_caption_is_chosen_on_training_captions_only(tmp_path, capsys):
    colours, shapes = ["red", "blue", "green"], ["circle", "square", "triangle"]
    train = [[f"a {c} {s}", f"one {c} {s} on a white background", f"a {s} that is {c}"]
             for c in colours for s in shapes]
    _shards(tmp_path / "00000.tar", train)
    out1, out2 = tmp_path / "r1.json", tmp_path / "r2.json"
    common = ["constant-caption", "--train-shards", tmp_path / "00000.tar", "--num-candidates", "12",
              "--num-reference-images", "6", "--seed", "3"]
    code, stdout, _ = run_main(baselines, common + ["--annotations", F / "coco/annotations/captions_val2014.json",
                                                    "--out", out1], capsys)
    summary = json.loads(stdout)
    assert code == 0 and summary["num_reference_images"] == 6 and summary["num_candidates"] == 9
    results = json.loads(out1.read_text())
    assert [r["image_id"] for r in results] == [42, 73, 74, 133, 136]
    assert {r["caption"] for r in results} == {summary["caption"]}
    # A different eval split gets the same caption: the eval references play no part in the choice.
    code, stdout, _ = run_main(baselines, common + ["--annotations", F / "flickr30k/dataset_flickr30k.json",
                                                    "--karpathy-split", "test", "--out", out2], capsys)
    assert code == 0 and json.loads(stdout)["caption"] == summary["caption"]
    assert json.loads(out2.read_text())[0]["image_id"] == 3


def test_constant_caption_rejects_a_single_reference_image(tmp_path, capsys):
    argv = ["constant-caption", "--train-annotations", F / "flickr30k/dataset_flickr30k.json",
            "--train-karpathy-split", "train", "--annotations", F / "coco/annotations/captions_val2014.json",
            "--out", tmp_path / "r.json"]
    code, _, err = run_main(baselines, argv, capsys)
    assert code == 2 and "need at least 3 training images" in err
