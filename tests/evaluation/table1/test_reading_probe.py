"""The reading probe: ground-truth description in the caption's place, protocol question forms, VQA scoring."""
import json

import pytest

from evaluation.benchmarks.vqa import VQAQuestion
from evaluation.table1.reading_probe import QUESTION_FORMS, probe, reading_prompt, scene_descriptions
from lavit_pl.data.shapes.scene import Scene, Shape

SCENE = Scene("gray", (Shape("circle", "red", "small", 0, 0.1, 0.1), Shape("square", "blue", "large", 8, 0.9, 0.9)))
DESCRIPTION = ("The picture shows two shapes on a gray background: a small red circle in the top left corner "
               "and a large blue square in the bottom right corner.")


def _question(qid, question, qtype, answers):
    return VQAQuestion(qid, 1, question, "COCO_train2014_000000000001.jpg", qtype, "other", answers[0], tuple(answers))


def test_prompt_is_the_describe_then_answer_prompt_with_the_description_as_caption():
    lowercased, as_written = QUESTION_FORMS.values()
    caption = DESCRIPTION[:-1]  # captions are cut before their first '.'
    assert reading_prompt(DESCRIPTION, "What color is the circle?", lowercased) == \
        f"{caption} Question: what color is the circle? Answer:"
    assert reading_prompt(DESCRIPTION, "What color is the circle (in all)?", as_written) == \
        f"{caption} Question: What color is the circle in all? Answer:"


def test_scene_descriptions_read_the_split_from_scenes_jsonl(tmp_path):
    rows = [{"path": "vqav2/train2014/COCO_train2014_000000000001.jpg", "scene": SCENE.to_json()},
            {"path": "vqav2/val2014/COCO_val2014_000000000002.jpg", "scene": SCENE.to_json()}]
    (tmp_path / "scenes.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert scene_descriptions(tmp_path, "train2014") == {"COCO_train2014_000000000001.jpg": DESCRIPTION}
    with pytest.raises(ValueError, match="no scene under 'vqav2/test2015/'"):
        scene_descriptions(tmp_path, "test2015")


def test_probe_scores_the_cut_answers_by_the_official_rule_per_type():
    questions = [_question(1, "What color is the circle?", "what color is the", ["red"] * 10),
                 _question(2, "How many squares are there?", "how many", ["1"] * 8 + ["2"] * 2),
                 _question(3, "Is there a cross?", "is there a", ["no"] * 10)]
    replies = {1: " Red, I think", 2: " 2\nQuestion: x", 3: " yes."}
    seen = []

    def answer(prompts):
        seen.extend(prompts)
        return [replies[i + 1] for i in range(len(prompts))]

    scores = probe(questions, {"COCO_train2014_000000000001.jpg": DESCRIPTION}, answer, QUESTION_FORMS["as written"])
    assert seen[1].endswith("Question: How many squares are there? Answer:")
    # "red" matches 10 of 10; "2" matches 2 of 10: official leave-one-out mean = (8 * 2/3 + 2 * 1/3) / 10
    assert scores["what color is the"] == 100.0 and scores["is there a"] == 0.0
    assert scores["how many"] == pytest.approx(100 * (8 * 2 / 3 + 2 * 1 / 3) / 10)
    assert scores["overall"] == pytest.approx((100 + scores["how many"]) / 3)


def test_probe_names_a_missing_description():
    with pytest.raises(ValueError, match="no scene description for 1 images, e.g. COCO_train2014_000000000001.jpg"):
        probe([_question(1, "Is there a cross?", "is there a", ["no"] * 10)], {}, lambda p: ["no"], QUESTION_FORMS["as written"])
