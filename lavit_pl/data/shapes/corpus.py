"""Text corpus of the Shapes world (RedPajama-style ``{"text", "meta": {"source", ...}}`` records).

Two sources: ``shapes_facts`` documents state the invented facts of :mod:`lore` (each fact in
several paraphrases, every fact at least once in an entity article), and ``shapes_reading``
documents describe a TRAINING scene in words, then ask questions about it; the description is one
of the world's two per-shape forms, the reading form ("The picture shows two shapes on a gray
background: a small red circle in the top left corner and ...") or the "There is ..." caption form,
half each, so reading is learnt on the phrasing captions use too. Reading documents
carry the sha256 of the scene's canonical description in ``meta["scene_sha256"]`` (a digest, so
the metadata never names the novel kind either) so the leakage check can compare scenes.
"""
from __future__ import annotations

import re
from collections import defaultdict
from typing import Any, Sequence

import numpy as np

from lavit_pl.data.shapes.answers import QA
from lavit_pl.data.shapes.captions import scene_description, there_is_caption
from lavit_pl.data.shapes.lore import Fact
from lavit_pl.data.shapes.questions import vqa_questions
from lavit_pl.data.shapes.scene import Scene, canonical, scene_digest

FACTS_SOURCE = "shapes_facts"
READING_SOURCE = "shapes_reading"


def _say(rng: np.random.Generator, fact: Fact) -> str:
    return fact.sentences[int(rng.integers(len(fact.sentences)))]


def fact_documents(facts: Sequence[Fact], rng: np.random.Generator, n_docs: int) -> list[dict[str, Any]]:
    """``n_docs`` documents; the first ones are one article per subject, so every fact is covered."""
    by_subject: dict[str, list[Fact]] = defaultdict(list)
    for f in facts:
        by_subject[f.subject].append(f)
    if n_docs < len(by_subject):
        raise ValueError(f"corpus fact_docs={n_docs} is fewer than the {len(by_subject)} articles needed to state every fact once")
    docs = []
    for subject, group in by_subject.items():
        docs.append(" ".join(_say(rng, f) for f in group))
    while len(docs) < n_docs:
        k = int(rng.integers(3, 7))
        picked = rng.choice(len(facts), size=k, replace=False)
        docs.append(" ".join(_say(rng, facts[int(i)]) for i in picked))
    return [{"text": t, "meta": {"source": FACTS_SOURCE}} for t in docs]


def mentions(text: str, word: str) -> bool:
    """Whole-word, case-insensitive, singular or plural."""
    return re.search(rf"\b{re.escape(word)}(s|es)?\b", text, flags=re.IGNORECASE) is not None


def reading_document(
    scene: Scene,
    rng: np.random.Generator,
    known_kinds: Sequence[str],
    colors: Sequence[str],
    hidden_kind: str,
    n_questions: int,
) -> dict[str, Any]:
    """A training scene in words followed by up to ``n_questions`` ``Question: ... Answer: ...`` pairs
    (the world's ``counts.corpus_reading_questions``).

    Questions that would name ``hidden_kind`` are dropped; the description calls it "shape".
    """
    describe = scene_description if rng.random() < 0.5 else there_is_caption
    qas: list[QA] = vqa_questions(scene, rng, n_questions + 2, known_kinds, colors)
    qas = [q for q in qas if not mentions(q.question, hidden_kind) and not mentions(q.answer, hidden_kind)][:n_questions]
    lines = [describe(scene, hidden_kind)]
    lines += [f"Question: {q.question} Answer: {q.answer}" for q in qas]
    return {"text": "\n".join(lines), "meta": {"source": READING_SOURCE, "scene_sha256": scene_digest(canonical(scene))}}
