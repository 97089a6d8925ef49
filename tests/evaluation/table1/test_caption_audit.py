"""The caption audit: the world's own "There is" captions parse back to their scenes; rates by hand."""
import json

import pytest

from evaluation.table1.caption_audit import CaptionShape, audit_captions, captions_by_image, parse_there_is
from lavit_pl.data.shapes.captions import there_is_caption
from lavit_pl.data.shapes.scene import Scene, Shape

KINDS = ["circle", "square", "star"]
COLORS = ["red", "blue", "green", "black"]
SCENE = Scene("gray", (Shape("circle", "red", "small", 0, 0.1, 0.1), Shape("star", "blue", "large", 8, 0.9, 0.9),
                       Shape("square", "green", "medium", 4, 0.5, 0.5)))


def test_world_caption_parses_back_to_its_scene_with_the_novel_kind_as_shape():
    caption = there_is_caption(SCENE, hidden_kind="star")
    assert "a large blue shape in the bottom right corner" in caption
    assert parse_there_is(caption) == [CaptionShape("small", "red", "circle", 0),
                                       CaptionShape("large", "blue", "shape", 8),
                                       CaptionShape("medium", "green", "square", 4)]
    assert parse_there_is("Two shapes on a gray background.") == []
    # a malformed part is skipped, the rest still parses
    assert parse_there_is("There is a huge red circle on top and a small red circle in the center") == \
        [CaptionShape("small", "red", "circle", 4)]


def test_rates_by_hand():
    scenes = {"a": SCENE, "b": Scene("white", (Shape("square", "black", "small", 2, 0.8, 0.2),))}
    captions = {
        # right count; cells 0 and 8 right, cell 5 wrong; at cell 0 size+colour right, kind wrong;
        # at cell 8 the novel kind called "shape" (right), colour wrong, size wrong
        "a": "There is a small red square in the top left corner, a small green shape in the bottom right "
             "corner and a large red circle on the right.",
        # wrong count (2 vs 1); cell 2 right with every attribute right; cell 6 wrong
        "b": "There is a small black square in the top right corner and a small black square in the bottom "
             "left corner.",
    }
    r = audit_captions(captions, scenes, "star", KINDS, COLORS)
    assert r["counts"]["images"] == 2 and r["counts"]["caption_shapes"] == 5 and r["counts"]["scene_shapes"] == 4
    assert r["count_accuracy"] == 0.5
    assert r["cell_precision"] == pytest.approx(3 / 5)
    assert r["cell_recall"] == pytest.approx(3 / 4)
    assert r["size|cell"] == pytest.approx(2 / 3)
    assert r["color|cell"] == pytest.approx(2 / 3)
    assert r["kind|cell"] == pytest.approx(2 / 3)
    assert r["chance"] == {"size|cell": 1 / 3, "color|cell": 1 / 4, "kind|cell": 1 / 3}
    with pytest.raises(KeyError, match="no ground-truth scene for 1 captioned images, e.g. 'c'"):
        audit_captions({"c": "There is"}, scenes, "star", KINDS, COLORS)


def test_captions_by_image_reads_the_trace_once_per_image_and_names_bad_records(tmp_path):
    eval_dir, questions_file = tmp_path / "eval", tmp_path / "v2_OpenEnded_mscoco_val2014_questions.json"
    (eval_dir / "predictions/describe_then_answer").mkdir(parents=True)
    questions = [{"question_id": 1, "image_id": 7, "question": "q"}, {"question_id": 2, "image_id": 7, "question": "q"}]
    questions_file.write_text(json.dumps({"data_subtype": "val2014", "questions": questions}))
    trace = eval_dir / "predictions/describe_then_answer/vqav2.trace.json"
    trace.write_text(json.dumps([{"id": 1, "outputs": {"caption": "There is A"}},
                                 {"id": 2, "outputs": {"caption": "There is B"}}]))
    assert captions_by_image(eval_dir, questions_file) == {"COCO_val2014_000000000007.jpg": "There is A"}
    trace.write_text(json.dumps([{"id": 1, "outputs": {}}]))
    with pytest.raises(ValueError, match=r"vqav2.trace.json: record 0 lacks 'id' or 'outputs.caption'"):
        captions_by_image(eval_dir, questions_file)
    trace.write_text(json.dumps([{"id": 3, "outputs": {"caption": "x"}}]))
    with pytest.raises(ValueError, match="record 0: question_id 3 is not in"):
        captions_by_image(eval_dir, questions_file)
    trace.unlink()
    with pytest.raises(FileNotFoundError, match="run the describe-then-answer evaluation first"):
        captions_by_image(eval_dir, questions_file)
