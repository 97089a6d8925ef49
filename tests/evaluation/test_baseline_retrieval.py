"""The retrieval baseline's choices on hand-made embeddings: cosine (not dot product) nearest,
earliest on ties, same-question candidates only, None when no training question matches."""
from __future__ import annotations

import pytest
import torch

from evaluation.baseline_retrieval import caption_pool, nearest, question_key, retrieve_answers


def test_nearest_is_by_cosine_not_dot_product():
    keys = torch.tensor([[0.0, 1.0], [3.0, 3.0], [1.0, 0.1]])
    queries = torch.tensor([[1.0, 0.0], [0.0, 2.0], [1.0, 1.0]])
    # by hand: q0 cos = (0, .707, .995) -> 2 (a dot product would pick key 1: 3 > 1);
    # q1 cos = (1, .707, .0995) -> 0; q2 cos = (.707, 1, .775) -> 1
    assert nearest(queries, keys).tolist() == [2, 0, 1]
    assert (queries @ keys.t()).argmax(-1).tolist() != [2, 0, 1]


def test_nearest_ties_go_to_the_earliest_key():
    keys = torch.tensor([[0.0, 1.0], [1.0, 0.0], [2.0, 0.0]])  # keys 1 and 2: the same direction
    assert nearest(torch.tensor([[5.0, 0.0]]), keys).tolist() == [1]


def test_nearest_rejects_bad_shapes():
    with pytest.raises(ValueError, match="must share E"):
        nearest(torch.zeros(2, 3), torch.zeros(4, 2))
    with pytest.raises(ValueError, match="at least one candidate"):
        nearest(torch.zeros(2, 3), torch.zeros(0, 3))


def test_caption_pool_is_distinct_sorted_and_a_seeded_sample():
    images = [("b cap", "a cap", "b cap"), ("c cap", " ")]
    assert caption_pool(images, 10, seed=0) == ["a cap", "b cap", "c cap"]  # blank dropped, duplicates merged
    many = [tuple(f"caption {i:02d}" for i in range(j, j + 5)) for j in range(0, 40, 5)]  # 40 distinct
    first = caption_pool(many, 6, seed=1)
    assert len(first) == 6 and first == sorted(first) and set(first) <= {c for caps in many for c in caps}
    assert caption_pool(many, 6, seed=1) == first
    assert caption_pool(many, 6, seed=2) != first
    with pytest.raises(ValueError, match="max_captions"):
        caption_pool(many, 0, seed=0)
    with pytest.raises(ValueError, match="none found"):
        caption_pool([("  ",)], 5, seed=0)


def test_question_key_ignores_case_and_punctuation():
    assert question_key("What color is the Circle?") == "what color is the circle"
    assert question_key("Is there a cross in the image ?") == question_key("is there a cross in the image")
    assert question_key("What's this?") == "what's this"


def test_retrieve_answers_takes_the_nearest_same_question_image():
    eval_questions = ["What color is the circle?", "How many shapes?", "Where is the star?"]
    eval_images = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    train_questions = ["what color is the circle", "What color is the circle?", "How many shapes?",
                       "How many shapes?", "Where is the square?"]
    train_images = torch.tensor([[0.0, 1.0], [1.0, 0.1], [1.0, 0.0], [0.0, 3.0], [1.0, 1.0]])
    answers = ["red", "blue", "2", "3", "left"]
    # q0: candidates 0 and 1, nearest to (1, 0) is 1 -> "blue"; q1: candidates 2 and 3, nearest to
    # (0, 1) is 3 -> "3"; q2: no training question with that text (the identical image of
    # "Where is the square?" does not count) -> None
    assert retrieve_answers(eval_questions, eval_images, train_questions, train_images, answers) == ["blue", "3", None]


def test_retrieve_answers_checks_lengths():
    with pytest.raises(ValueError, match="eval_questions"):
        retrieve_answers(["a?"], torch.zeros(2, 2), ["a?"], torch.zeros(1, 2), ["x"])
    with pytest.raises(ValueError, match="train_answers"):
        retrieve_answers(["a?"], torch.zeros(1, 2), ["a?"], torch.zeros(1, 2), [])
