"""VizWiz (VizWiz evaluator rule) and GQA (official eval.py exact match) accuracies, hand-computed."""
import pytest

from evaluation.metrics.gqa import gqa_accuracy
from evaluation.metrics.vizwiz import vizwiz_accuracy, vizwiz_question_accuracy


def test_vizwiz_unanswerable_is_an_ordinary_answer():
    assert vizwiz_question_accuracy("unanswerable", ["unanswerable"] * 10) == 1.0
    # The prediction is always normalised, even against ten identical references (unlike VQAv2).
    assert vizwiz_question_accuracy("Unanswerable", ["unanswerable"] * 10) == 1.0
    assert vizwiz_question_accuracy("unanswerable", ["unanswerable"] * 2 + ["no"] * 8) == pytest.approx(0.6)


def test_vizwiz_references_are_compared_as_written():
    refs = ["20"] * 3 + ["twenty"] * 5 + ["unanswerable"] * 2
    assert vizwiz_question_accuracy("20", refs) == pytest.approx(0.9)
    # "twenty" is not a mapped number word, so it stays and matches the five "twenty".
    assert vizwiz_question_accuracy("twenty", refs) == 1.0
    # "Two" -> "2" on the prediction side only; references "two" are not rewritten.
    assert vizwiz_question_accuracy("Two", ["two"] * 10) == 0.0


def test_vizwiz_aggregate():
    preds = ["Unanswerable", "yes", "20", "Chicken noodle."]
    refs = [["unanswerable"] * 10, ["no"] * 6 + ["yes"] * 2 + ["unanswerable"] * 2,
            ["20"] * 3 + ["twenty"] * 5 + ["unanswerable"] * 2,
            ["chicken noodle"] * 4 + ["chicken noodle soup"] * 4 + ["soup"] * 2]
    out = vizwiz_accuracy(preds, refs, ["unanswerable", "yes/no", "number", "other"])
    # 1.0, 0.6, 0.9, 1.0 -> 87.5
    assert out == {"overall": 87.5, "perAnswerType": {"unanswerable": 100.0, "yes/no": 60.0, "number": 90.0,
                                                      "other": 100.0}, "num_questions": 4}


def test_gqa_exact_match_no_normalisation():
    preds = ["yes", "shirts", "white", "Left", "no"]
    gold = ["yes", "shirt", "white", "left", "no"]
    structural = ["verify", "query", "query", "choose", "logical"]
    semantic = ["attr", "rel", "attr", "rel", "obj"]
    detailed = ["verifyAttr", "relS", "directWhich", "positionChoose", "existAndC"]
    out = gqa_accuracy(preds, gold, structural, semantic, detailed)
    assert out["accuracy"] == 60.0
    assert out["binary"] == 66.67  # verify, choose, logical: 2 of 3
    assert out["open"] == 50.0  # query: 1 of 2
    assert out["perStructuralType"] == {"choose": 0.0, "logical": 100.0, "query": 50.0, "verify": 100.0}
    assert out["perSemanticType"] == {"attr": 100.0, "obj": 100.0, "rel": 0.0}
    assert out["perDetailedType"]["relS"] == 0.0 and out["perDetailedType"]["directWhich"] == 100.0


def test_gqa_empty_group_is_none():
    out = gqa_accuracy(["a"], ["a"], ["query"])
    assert out["binary"] is None and out["open"] == 100.0
    with pytest.raises(ValueError, match="structural"):
        gqa_accuracy(["a", "b"], ["a", "b"], ["query"])
