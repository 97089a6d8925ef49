"""The LaVIT release's VQA answer post-processing: a separate, labelled number, never the official one.

What the authors' evaluation (jy0205/LaVIT, ``LaVIT/evaluation``) does on top of the official rule:

- the generated answer is cut to its first clause (first line, then before "question:",
  "Long answer:", the first "," and the first ".");
- answers are lower-cased and lemmatised with spaCy, predictions at generation time and the ten
  human answers offline (the release reads ``*_annotations_lemm.json`` files);
- the prediction is always normalised (punctuation, which the release also lower-cases; number
  words, with "nope" -> "no" added; articles; contractions), then leading filler words are
  stripped ("it is ", "the ", ... and "i don't know" -> "unanswerable");
- the references get punctuation processing only when they are not all identical (the older
  rule of the official evaluator; digit/article normalisation is not applied to them).

spaCy is not installed here: the lemmatiser is spaCy's lookup table ``en_lemma_lookup`` from the
``spacy-lookups-data`` package, read directly. The release lemmatised only tokens tagged NOUN or
VERB; a lookup table has no tagger, so every token is looked up except clitics ("n't", "'s", ...)
and the few function words that the table would rewrite but that spaCy tags as determiner,
auxiliary, adverb or adposition in answers (:data:`KEEP_AS_IS`: "is" -> "be" would defeat the
release's own "it is " filler rule, "as" -> "a", "more" -> "much"), plus "left", a direction in
answers, not the verb "leave". Predictions and references go through the same lemmatiser.
"""
from __future__ import annotations

import functools
import gzip
import json
import re
from pathlib import Path
from typing import Mapping, Sequence

from evaluation.metrics.gqa import gqa_accuracy
from evaluation.metrics.vqa import (
    NUMBER_WORDS,
    OFFICIAL_NDIGITS,
    check_aligned,
    clean_whitespace,
    leave_one_out_accuracy,
    process_digit_article,
    process_punctuation,
    vqa_score_summary,
)

RELEASE_NUMBER_WORDS: dict[str, str] = {**NUMBER_WORDS, "nope": "no"}
# Checked in this order, each on the result of the previous step (release ``process_ans``).
UNANSWERABLE_PREFIXES = ("i don't know", "i do n't know", "i need to know")
FILLER_PREFIXES = (
    "it's ", "it is ", "this is ", "that is ", "she's ", "she 's ", "she is ", "he's ", "he 's ",
    "he is ", "they are ", "they're ", "very ", "for ", "to ", "in ", "on ", "at ", "a ", "an ", "the ",
)
CLAUSE_CUTS = ("\n", "question:", "Long answer:", ",", ".")
CLITICS = ("n't", "'s", "'re", "'ve", "'ll", "'m", "'d")
_CLITIC = re.compile(r"^(.+?)(n't|'s|'re|'ve|'ll|'m|'d)$", re.IGNORECASE)
KEEP_AS_IS = frozenset({
    "these", "those", "an", "is", "are", "was", "were", "am", "been", "being", "does", "did", "has", "had",
    "could", "might", "more", "most", "less", "least", "as", "left",
})
_EDGE_PUNCT = "\"'()[]{}<>!?;:,.`"


def first_clause(text: str) -> str:
    """The release's cut of a generated answer: strip, then keep what precedes each marker."""
    text = text.strip()
    for marker in CLAUSE_CUTS:
        text = text.split(marker)[0]
    return text


@functools.lru_cache(maxsize=2)
def load_lemma_table(path: str | None = None) -> Mapping[str, str]:
    """spaCy's English lookup lemmatiser table (``spacy-lookups-data``'s ``en_lemma_lookup``)."""
    if path is None:
        import spacy_lookups_data

        base = Path(spacy_lookups_data.en["lemma_lookup"])
        path = str(base if base.is_file() else base.with_name(base.name + ".gz"))
    opener = gzip.open if str(path).endswith(".gz") else open
    with opener(path, "rt", encoding="utf-8") as handle:
        table = json.load(handle)
    if not isinstance(table, dict) or not table:
        raise ValueError(f"{path}: expected a non-empty JSON object mapping words to lemmas")
    return table


def tokenize(text: str) -> list[str]:
    """Whitespace split, punctuation peeled off both ends, English clitics split off the way
    spaCy's tokenizer does ("don't" -> "do", "n't"; "it's" -> "it", "'s")."""
    tokens: list[str] = []
    for chunk in text.split():
        if chunk.lower() in CLITICS:
            tokens.append(chunk)
            continue
        lead = []
        while chunk and chunk[0] in _EDGE_PUNCT:
            lead.append(chunk[0])
            chunk = chunk[1:]
        trail = []
        while chunk and chunk[-1] in _EDGE_PUNCT:
            trail.append(chunk[-1])
            chunk = chunk[:-1]
        tokens.extend(lead)
        match = _CLITIC.match(chunk)
        if match:
            tokens.extend(match.groups())
        elif chunk:
            tokens.append(chunk)
        tokens.extend(reversed(trail))
    return tokens


def lemmatize(text: str, table: Mapping[str, str] | None = None) -> str:
    """Lower-case, tokenise, replace each token (but clitics and :data:`KEEP_AS_IS`) by its lookup
    lemma, join with spaces."""
    table = load_lemma_table() if table is None else table
    words = []
    for token in tokenize(text.lower()):
        keep = token in CLITICS or token in KEEP_AS_IS
        words.append(token if keep else table.get(token, token))
    return " ".join(words)


def strip_leading_fillers(answer: str) -> str:
    """Release ``process_ans``: "i don't know"-style and empty answers become "unanswerable",
    then each filler prefix in turn is cut (keeping what follows its last occurrence)."""
    for prefix in UNANSWERABLE_PREFIXES:
        if answer.startswith(prefix):
            answer = "unanswerable"
    if answer == "":
        answer = "unanswerable"
    for prefix in FILLER_PREFIXES:
        if answer.startswith(prefix):
            answer = answer.rpartition(prefix)[2]
    return answer


def release_prediction(raw: str, table: Mapping[str, str] | None = None) -> str:
    """A raw generated answer as the release scores it (cut, lemmatise, normalise, strip fillers)."""
    text = clean_whitespace(lemmatize(first_clause(raw), table))
    text = process_digit_article(process_punctuation(text).lower(), RELEASE_NUMBER_WORDS)
    return strip_leading_fillers(text)


def release_question_accuracy(
    prediction: str, references: Sequence[str], table: Mapping[str, str] | None = None
) -> float:
    """Release-style accuracy in [0, 1] of one raw prediction against its human answers."""
    refs = [clean_whitespace(lemmatize(ref, table)) for ref in references]
    if len(set(refs)) > 1:
        refs = [process_punctuation(ref).lower() for ref in refs]
    return leave_one_out_accuracy(release_prediction(prediction, table), refs)


def release_vqa_accuracy(
    predictions: Sequence[str],
    references: Sequence[Sequence[str]],
    question_types: Sequence[str] | None = None,
    answer_types: Sequence[str] | None = None,
    ndigits: int = OFFICIAL_NDIGITS,
) -> dict:
    """Release-style VQA accuracy (VQAv2, OK-VQA, VizWiz), same keys and rounding as the official."""
    check_aligned(predictions, references)
    table = load_lemma_table()
    scores = [release_question_accuracy(p, r, table) for p, r in zip(predictions, references)]
    return vqa_score_summary(scores, question_types, answer_types, ndigits)


def release_gqa_accuracy(
    predictions: Sequence[str],
    answers: Sequence[str],
    structural: Sequence[str],
    semantic: Sequence[str] | None = None,
    detailed: Sequence[str] | None = None,
) -> dict:
    """Release-style GQA: processed prediction == lemmatised gold answer, else as :func:`gqa_accuracy`."""
    table = load_lemma_table()
    preds = [release_prediction(p, table) for p in predictions]
    golds = [lemmatize(a, table) for a in answers]
    return gqa_accuracy(preds, golds, structural, semantic, detailed)
