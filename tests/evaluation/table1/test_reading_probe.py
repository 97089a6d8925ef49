"""The reading probe: ground-truth caption in the caption step's place, the registered task's prompts
under each question form, official VQA scoring."""
import json

import pytest

from evaluation.benchmarks.vqa import VQAQuestion
from evaluation.protocols.tasks import VQA_GENERATION
from evaluation.table1.reading_probe import (
    QUESTION_FORMS, continuation, ground_truth_captions, probe, question_scores,
)
from lavit_pl.data.shapes.scene import Scene, Shape

IMAGE = "COCO_train2014_000000000001.jpg"
SCENE = Scene("gray", (Shape("circle", "red", "small", 0, 0.1, 0.1), Shape("square", "blue", "large", 8, 0.9, 0.9)))
DESCRIPTION = "There is a small red circle in the top left corner and a large blue square in the bottom right corner."


def _question(qid, question, qtype, answers):
    return VQAQuestion(qid, 1, question, IMAGE, qtype, "other", answers[0], tuple(answers))


def _prompts_seen(question, question_ops):
    seen = []

    def answer(prompts, settings):
        seen.extend(prompts)
        assert settings == VQA_GENERATION  # the task's answer-step decoding
        return ["red"] * len(prompts)

    probe([_question(1, question, "what color is the", ["red"] * 10)], {IMAGE: DESCRIPTION}, answer, question_ops)
    return seen


def test_prompt_is_the_describe_then_answer_prompt_with_the_description_as_caption():
    lowercased, as_written = QUESTION_FORMS.values()
    caption = DESCRIPTION[:-1]  # captions are cut before their first '.'
    assert _prompts_seen("What color is the circle?", lowercased) == \
        [f"{caption}.\nQuestion: what color is the circle? Answer:"]
    assert _prompts_seen("What color is the circle (in all)?", as_written) == \
        [f"{caption}.\nQuestion: What color is the circle in all? Answer:"]
    assert continuation(DESCRIPTION, "There is") == DESCRIPTION[len("There is"):]
    with pytest.raises(ValueError, match="does not begin with the caption step's prompt 'There is'"):
        continuation("A picture of two shapes.", "There is")


def test_ground_truth_captions_read_the_split_from_scenes_jsonl(tmp_path):
    rows = [{"path": "vqav2/train2014/COCO_train2014_000000000001.jpg", "scene": SCENE.to_json()},
            {"path": "vqav2/val2014/COCO_val2014_000000000002.jpg", "scene": SCENE.to_json()}]
    (tmp_path / "scenes.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert ground_truth_captions(tmp_path, "train2014") == {"COCO_train2014_000000000001.jpg": DESCRIPTION}
    with pytest.raises(ValueError, match="no scene under 'vqav2/test2015/'"):
        ground_truth_captions(tmp_path, "test2015")


def test_probe_scores_the_cut_answers_by_the_official_rule_per_type():
    questions = [_question(1, "What color is the circle?", "what color is the", ["red"] * 10),
                 _question(2, "How many squares are there?", "how many", ["1"] * 8 + ["2"] * 2),
                 _question(3, "Is there a cross?", "is there a", ["no"] * 10)]
    replies = {1: " Red, I think", 2: " 2\nQuestion: x", 3: " yes."}
    seen = []

    def answer(prompts, settings):
        seen.extend(prompts)
        return [replies[i + 1] for i in range(len(prompts))]

    scores = probe(questions, {IMAGE: DESCRIPTION}, answer, QUESTION_FORMS["as written"])
    assert seen[1].endswith("Question: How many squares are there? Answer:")
    per_type = scores["perQuestionType"]
    # "red" matches 10 of 10; "2" matches 2 of 10: official leave-one-out mean = (8 * 2/3 + 2 * 1/3) / 10
    assert per_type["what color is the"] == 100.0 and per_type["is there a"] == 0.0
    assert per_type["how many"] == pytest.approx(100 * (8 * 2 / 3 + 2 * 1 / 3) / 10)
    assert scores["overall"] == round((100 + per_type["how many"]) / 3, 2)  # official rounding
    assert scores["num_questions"] == 3


def test_probe_names_a_missing_description():
    with pytest.raises(ValueError, match=f"no ground-truth caption for 1 images, e.g. {IMAGE}"):
        probe([_question(1, "Is there a cross?", "is there a", ["no"] * 10)], {}, lambda p, s: ["no"],
              QUESTION_FORMS["as written"])


def test_question_scores_are_per_question_official_accuracies_in_order():
    questions = [_question(1, "Is there a circle in the image?", "is there a", ["yes"] * 10),
                 _question(2, "Is there a cross in the image?", "is there a", ["no"] * 10),
                 _question(3, "How many squares are there?", "how many", ["1"] * 8 + ["2"] * 2)]
    replies = [" yes", " yes", " 2"]
    scores = question_scores(questions, {IMAGE: DESCRIPTION}, lambda prompts, settings: replies[:len(prompts)],
                             QUESTION_FORMS["as written"])
    assert scores == [1.0, 0.0, pytest.approx((8 * 2 / 3 + 2 * 1 / 3) / 10)]
