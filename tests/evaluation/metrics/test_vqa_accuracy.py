"""Official VQA accuracy: leave-one-out values, the normalisation tables and the identical-answers quirk.

Expected values are hand computations of the official vqaEval.py rule (GT-Vision-Lab/VQA master):
with k of the ten answers equal to the prediction, k subsets see k-1 matches and 10-k see k.
"""
import pytest

from evaluation.metrics.vqa import (
    grouped_percent,
    leave_one_out_accuracy,
    normalize_answer,
    official_percent,
    process_digit_article,
    process_punctuation,
    vqa_accuracy,
    vqa_question_accuracy,
)


def refs_with(k: int, answer: str = "cat", other: str = "dog") -> list[str]:
    return [answer] * k + [other] * (10 - k)


@pytest.mark.parametrize("k, expected", [(0, 0.0), (1, 0.3), (2, 0.6), (3, 0.9), (4, 1.0), (5, 1.0), (10, 1.0)])
def test_leave_one_out_pins(k, expected):
    # k=1: 9 subsets see 1 match -> 9 * (1/3) / 10 = 0.3; k=3: 3 * (2/3) + 7 * 1 = 9 -> 0.9;
    # k=4: 4 * min(1, 3/3) + 6 * 1 -> 1.0.
    assert vqa_question_accuracy("cat", refs_with(k)) == pytest.approx(expected, abs=1e-12)


def test_leave_one_out_is_bitwise_the_official_sum():
    # The official loop sums [min(1, m_i / 3) for i] in order and divides by 10.
    refs = refs_with(3)
    official = float(sum(min(1, float(sum(r == "cat" for j, r in enumerate(refs) if j != i)) / 3)
                         for i in range(10))) / 10
    assert leave_one_out_accuracy("cat", refs) == official


def test_quirk_identical_references_skip_normalisation():
    # All ten "yes": nothing is normalised, "Yes" != "yes" -> 0. Mixed answers: both sides are
    # normalised (lower-cased) and "Yes" scores.
    assert vqa_question_accuracy("Yes", ["yes"] * 10) == 0.0
    assert vqa_question_accuracy("yes", ["yes"] * 10) == 1.0
    assert vqa_question_accuracy("Yes", ["yes"] * 9 + ["no"]) == 1.0
    assert vqa_question_accuracy("Yes.", ["yes"] * 10) == 0.0


def test_whitespace_is_always_cleaned():
    assert vqa_question_accuracy(" yes\n", ["yes"] * 10) == 1.0
    assert vqa_question_accuracy("yes", ["yes\t"] * 10) == 1.0


def test_number_words_articles_contractions():
    assert process_digit_article("Two Dogs") == "2 dogs"
    assert process_digit_article("the cat") == "cat"
    assert process_digit_article("a an the") == ""
    assert process_digit_article("none") == "0"
    assert process_digit_article("dont know") == "don't know"
    assert process_digit_article("twenty") == "twenty"  # only zero..ten are mapped
    refs = ["2", "2", "two", "3", "3", "3", "3", "three", "three", "three"]
    assert vqa_question_accuracy("two", refs) == pytest.approx(0.9)  # "2" x3 after normalisation


def test_punctuation_rules():
    assert process_punctuation("end.") == "end"
    assert process_punctuation("2.5") == "2.5"  # a period before a digit stays
    assert process_punctuation("1,000") == "1000"  # digit,digit: every mark is deleted
    assert process_punctuation("hello, world") == "hello world"  # mark touching a space: deleted
    assert process_punctuation("black-and-white") == "black and white"  # otherwise: a space
    assert process_punctuation("it's") == "it's"  # apostrophes are not in the list
    assert normalize_answer("The  Umbrella!") == "umbrella"


def test_period_strip_count_quirk():
    # periodStrip.sub("", text, re.UNICODE) passes 32 as the count: only 32 periods go.
    out = process_punctuation("x." * 40)
    assert out.count(".") == 8 and out.startswith("x" * 32)


def test_aggregates_round_like_the_official():
    preds = ["Yes", "Yes", "two", "Red.", "The umbrella", "on couch"]
    refs = [["yes"] * 10, ["yes"] * 7 + ["no"] * 3,
            ["2", "2", "two", "3", "3", "3", "3", "three", "three", "three"], ["red"] + ["maroon"] * 9,
            ["an umbrella", "umbrella", "umbrellas", "umbrellas", "umbrellas"] + ["parasol"] * 5,
            ["on the couch"] * 4 + ["couch"] * 3 + ["sofa"] * 3]
    qtypes = ["is there a", "is the", "how many", "what color is the", "what is the man", "where is the"]
    atypes = ["yes/no", "yes/no", "number", "other", "other", "other"]
    out = vqa_accuracy(preds, refs, qtypes, atypes)
    # per question: 0, 1, 0.9, 0.3, 0.6, 1.0 -> overall 3.8 / 6 = 63.33
    assert out["overall"] == 63.33
    assert out["perAnswerType"] == {"yes/no": 50.0, "number": 90.0, "other": 63.33}
    assert out["perQuestionType"] == {"is there a": 0.0, "is the": 100.0, "how many": 90.0,
                                      "what color is the": 30.0, "what is the man": 60.0, "where is the": 100.0}
    assert out["num_questions"] == 6


def test_official_percent_and_groups():
    assert official_percent([1.0, 0.0, 0.0]) == 33.33
    assert official_percent([2 / 3]) == 66.67
    assert grouped_percent([1.0, 0.0, 0.3], ["a", "b", "a"]) == {"a": 65.0, "b": 0.0}
    with pytest.raises(ValueError, match="empty"):
        official_percent([])
    with pytest.raises(ValueError, match="differ in length"):
        vqa_accuracy(["a"], [])
