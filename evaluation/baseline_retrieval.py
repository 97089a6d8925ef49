"""The retrieval baseline's choices, as pure functions over embeddings (no file I/O, no model).

- Captioning: each eval image gets the training caption whose text embedding is nearest (cosine)
  to the image's embedding, among a seeded sample of at most ``max_captions`` distinct training
  captions (:func:`caption_pool`).
- VQA-type: each eval question gets the answer of the training question with the *same normalised
  text* (:func:`question_key`) whose image is nearest (image-image cosine) to the eval image; None
  when no training question has that text (the caller falls back to the answer prior).

Ties go to the earliest candidate (pool order, training-file order), so a choice is a pure
function of its inputs. Embeddings need not be normalised: they are l2-normalised here.
"""
from __future__ import annotations

import random
from typing import Iterable, Sequence

import torch
import torch.nn.functional as F

from evaluation.baseline_priors import question_words


def nearest(queries: torch.Tensor, keys: torch.Tensor) -> torch.Tensor:
    """Index of the key nearest each query by cosine similarity (earliest on ties).

    queries: (N, E); keys: (K, E) with K >= 1. Returns (N,) int64.
    """
    if queries.ndim != 2 or keys.ndim != 2 or queries.shape[1] != keys.shape[1]:
        raise ValueError(f"queries (N, E) and keys (K, E) must share E, got {tuple(queries.shape)} and {tuple(keys.shape)}")
    if keys.shape[0] == 0:
        raise ValueError("keys: need at least one candidate")
    similarity = F.normalize(queries.float(), dim=-1) @ F.normalize(keys.float(), dim=-1).t()  # (N, K)
    return similarity.argmax(dim=-1)  # torch.argmax returns the first maximal index


def caption_pool(captions: Iterable[Sequence[str]], max_captions: int, seed: int) -> list[str]:
    """Distinct training captions (of every image's references), sorted, then a seeded sample of
    at most ``max_captions`` of them, kept in sorted order."""
    if max_captions < 1:
        raise ValueError(f"max_captions: expected >= 1, got {max_captions}")
    pool = sorted({c for caps in captions for c in caps if c.strip()})
    if not pool:
        raise ValueError("training captions: none found")
    if len(pool) <= max_captions:
        return pool
    keep = sorted(random.Random(seed).sample(range(len(pool)), max_captions))
    return [pool[i] for i in keep]


def question_key(question: str) -> str:
    """Lower-cased words, punctuation dropped: 'What color is the cube?' -> 'what color is the cube'."""
    return " ".join(question_words(question))


def retrieve_answers(eval_questions: Sequence[str], eval_images: torch.Tensor, train_questions: Sequence[str],
                     train_images: torch.Tensor, train_answers: Sequence[str]) -> list[str | None]:
    """Per eval question, the answer of the same-text training question with the nearest image.

    eval_images: (N, E), row i embeds eval question i's image; train_images: (M, E), row j embeds
    training question j's image; train_answers[j] is its answer. None where no training question
    has the eval question's normalised text.
    """
    if len(eval_questions) != eval_images.shape[0]:
        raise ValueError(f"eval_questions ({len(eval_questions)}) and eval_images ({eval_images.shape[0]}) differ")
    if not len(train_questions) == train_images.shape[0] == len(train_answers):
        raise ValueError(f"train_questions ({len(train_questions)}), train_images ({train_images.shape[0]}) and "
                         f"train_answers ({len(train_answers)}) differ in length")
    by_key: dict[str, list[int]] = {}
    for j, question in enumerate(train_questions):
        by_key.setdefault(question_key(question), []).append(j)
    answers: list[str | None] = []
    for i, question in enumerate(eval_questions):
        rows = by_key.get(question_key(question))
        if not rows:
            answers.append(None)
            continue
        best = int(nearest(eval_images[i : i + 1], train_images[rows])[0])
        answers.append(train_answers[rows[best]])
    return answers
