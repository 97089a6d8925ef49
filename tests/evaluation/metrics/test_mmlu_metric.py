"""MMLU aggregation: question-weighted average vs mean of categories, hand-computed."""
import pytest

from evaluation.metrics.mmlu import mmlu_accuracy


def test_hand_computed_accuracies():
    out = mmlu_accuracy(["a", "a", "a", "b", "c"], [True, False, False, True, True],
                        {"a": "STEM", "b": "STEM", "c": "other", "d": "humanities"})
    assert out["average"] == pytest.approx(60.0)  # 3 of 5 questions
    assert out["categories"] == {"STEM": {"accuracy": pytest.approx(50.0), "num_questions": 4},
                                 "other": {"accuracy": pytest.approx(100.0), "num_questions": 1}}
    assert out["category_mean"] == pytest.approx(75.0)  # (50 + 100) / 2; humanities has no questions
    assert out["subjects"]["a"] == {"accuracy": pytest.approx(100 / 3), "num_questions": 3, "category": "STEM"}


def test_errors():
    with pytest.raises(KeyError, match=r"no category for subjects \['z'\]"):
        mmlu_accuracy(["z"], [True], {})
    with pytest.raises(ValueError, match="no questions"):
        mmlu_accuracy([], [], {})
