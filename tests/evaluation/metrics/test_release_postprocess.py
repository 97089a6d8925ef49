"""LaVIT release-style post-processing (first clause, lookup lemmas, leading fillers).

Lemma values come from spacy-lookups-data 1.0.5's ``en_lemma_lookup`` table (read from the package).
"""
import gzip
import json

import pytest

from evaluation.metrics.release_postprocess import (
    first_clause,
    lemmatize,
    load_lemma_table,
    release_gqa_accuracy,
    release_prediction,
    release_question_accuracy,
    release_vqa_accuracy,
    strip_leading_fillers,
    tokenize,
)
from evaluation.metrics.vqa import vqa_question_accuracy


def test_lemma_table_is_spacys_lookup_table():
    table = load_lemma_table()
    assert table["dogs"] == "dog" and table["running"] == "run" and table["women"] == "woman"
    assert "red" not in table  # words that are their own lemma are absent


def test_lemma_table_from_explicit_path(tmp_path):
    path = tmp_path / "lemmas.json.gz"
    with gzip.open(path, "wt", encoding="utf-8") as handle:
        json.dump({"cats": "cat"}, handle)
    assert lemmatize("Cats sleep", load_lemma_table(str(path))) == "cat sleep"


def test_first_clause_follows_the_release_cuts():
    assert first_clause("  yes, it is a dog. ") == "yes"
    assert first_clause("red\nquestion: what") == "red"
    assert first_clause("two Long answer: there are two") == "two "
    assert first_clause("2.5 meters") == "2"  # the release cuts at the first "." even in numbers


def test_tokenize_splits_clitics_like_spacy():
    assert tokenize("i don't know.") == ["i", "do", "n't", "know", "."]
    assert tokenize("they're (red) circles!") == ["they", "'re", "(", "red", ")", "circles", "!"]
    assert tokenize("she 's here") == ["she", "'s", "here"]


def test_lemmatize_keeps_clitics_and_function_words():
    # The lookup table maps "'s" -> "have", "n't" -> "not", "is" -> "be", "as" -> "a",
    # "left" -> "leave"; the release (NOUN/VERB only) keeps them.
    assert lemmatize("I don't know") == "i do n't know"
    assert lemmatize("Two dogs running") == "two dog run"
    assert lemmatize("it is as big as the left one") == "it is as big as the left one"
    assert lemmatize("the women were eating apples") == "the woman were eat apple"


def test_strip_leading_fillers():
    assert strip_leading_fillers("it is the dog") == "dog"
    assert strip_leading_fillers("i do n't know") == "unanswerable"
    assert strip_leading_fillers("") == "unanswerable"
    assert strip_leading_fillers("on the table") == "table"
    assert strip_leading_fillers("they are on it") == "it"


def test_release_prediction_pipeline():
    assert release_prediction("It is two dogs, I think.") == "2 dog"
    assert release_prediction("I don't know") == "unanswerable"
    assert release_prediction("Nope") == "no"


def test_release_differs_from_official_where_expected():
    refs = ["yes"] * 10
    assert vqa_question_accuracy("Yes", refs) == 0.0
    assert release_question_accuracy("Yes", refs) == 1.0  # the prediction is always lower-cased
    umbrellas = ["an umbrella", "umbrella", "umbrellas", "umbrellas", "umbrellas"] + ["parasol"] * 5
    assert vqa_question_accuracy("The umbrella", umbrellas) == pytest.approx(0.6)
    # Lemmas: "umbrellas" -> "umbrella" in the references too; "an umbrella" keeps its article.
    assert release_question_accuracy("The umbrella", umbrellas) == 1.0
    # References get no number-word mapping in the release rule: "two" stays "two".
    counts = ["2", "2", "two", "3", "3", "3", "3", "three", "three", "three"]
    assert release_question_accuracy("two", counts) == pytest.approx(0.6)


def test_release_aggregates():
    out = release_vqa_accuracy(["Yes", "red"], [["yes"] * 10, ["red"] + ["maroon"] * 9], ["a", "b"], ["x", "x"])
    assert out == {"overall": 65.0, "perQuestionType": {"a": 100.0, "b": 30.0}, "perAnswerType": {"x": 65.0},
                   "num_questions": 2}
    gqa = release_gqa_accuracy(["Shirts", "Left"], ["shirt", "left"], ["query", "choose"])
    assert gqa["accuracy"] == 100.0  # "shirts" -> "shirt"; "Left" lower-cased
