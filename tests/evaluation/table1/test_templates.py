"""Accuracy per Shapes-world question template beside each template's most common answer."""
import json

import pytest

from evaluation.benchmarks.vqa import VQAQuestion
from evaluation.table1.templates import by_template, eval_dir_scores

IMAGE = "COCO_val2014_000000000001.jpg"


def _question(qid, question, qtype, answers):
    return VQAQuestion(qid, 1, question, IMAGE, qtype, "other", answers[0], tuple(answers))


QUESTIONS = [_question(1, "Is there a circle in the image?", "is there a", ["yes"] * 10),
             _question(2, "Is there a cross in the image?", "is there a", ["no"] * 10),
             _question(3, "Is there a star in the image?", "is there a", ["yes"] * 10),
             _question(4, "How many squares are there?", "how many", ["1"] * 8 + ["2"] * 2)]


def test_each_template_is_set_beside_always_giving_its_most_common_answer():
    rows = {r["template"]: r for r in by_template(QUESTIONS, [1.0, 0.0, 1.0, 0.6])}
    assert list(rows) == ["count kind", "exist kind"]  # sorted by name
    # the LM said "yes" three times: 2 of 3 right, exactly what always "yes" scores
    exist = rows["exist kind"]
    assert (exist["num_questions"], exist["prior_answer"]) == (3, "yes")
    assert exist["accuracy"] == pytest.approx(200 / 3) == exist["prior_accuracy"]
    # always "1" against 8 x "1" + 2 x "2": every leave-one-out subset keeps >= 3 "1"s -> 100
    count = rows["count kind"]
    assert (count["accuracy"], count["prior_answer"], count["prior_accuracy"]) == (pytest.approx(60.0), "1", 100.0)
    with pytest.raises(ValueError, match="3 scores for 4 questions"):
        by_template(QUESTIONS, [1.0, 0.0, 1.0])
    with pytest.raises(ValueError, match="matches none of the Shapes world's VQA templates"):
        by_template([_question(5, "Is it sunny?", "is it", ["no"] * 10)], [0.0])


def test_eval_dir_scores_read_the_official_results_file(tmp_path):
    out = tmp_path / "predictions" / "describe_then_answer"
    out.mkdir(parents=True)
    answers = [{"question_id": 1, "answer": "Yes."}, {"question_id": 2, "answer": "yes"},
               {"question_id": 3, "answer": "no"}, {"question_id": 4, "answer": "2"}]
    (out / "vqav2.json").write_text(json.dumps(answers))
    scores = eval_dir_scores(tmp_path, QUESTIONS, "describe_then_answer")
    # the official quirk: answers are normalised only where the annotators disagree, so "Yes." scores 0
    assert scores == [0.0, 0.0, 0.0, pytest.approx(0.6)]
    (out / "vqav2.json").write_text(json.dumps(answers[:3]))
    with pytest.raises(ValueError, match="no answer for 1 questions, e.g. question_id 4"):
        eval_dir_scores(tmp_path, QUESTIONS, "describe_then_answer")
    with pytest.raises(FileNotFoundError, match="run the release evaluation of vqav2 first"):
        eval_dir_scores(tmp_path, QUESTIONS, "release")
