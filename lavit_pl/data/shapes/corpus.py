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
from lavit_pl.data.shapes.questions import kind_exist_question, vqa_questions
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


def _with_existence_pairs(
    scene: Scene, rng: np.random.Generator, qas: list[QA], known_kinds: Sequence[str], pairs: int
) -> list[QA]:
    """``qas`` plus up to ``pairs`` present-kind / absent-kind existence questions, in a random order.

    Both answers of a pair follow the same question form about the same description, so the
    form alone does not predict the answer: only looking the kind up in the description does.
    """
    present = sorted({s.kind for s in scene.shapes if s.kind in known_kinds})
    absent = [k for k in known_kinds if k not in present]
    asked = {q.question for q in qas}
    extra: list[QA] = []
    for pool, is_present in ((present, True), (absent, False)):
        fresh = [q for q in (kind_exist_question(k, is_present) for k in pool) if q.question not in asked]
        extra += [fresh[int(i)] for i in rng.permutation(len(fresh))[:pairs]]
    out = qas + extra
    return [out[int(i)] for i in rng.permutation(len(out))]


def reading_document(
    scene: Scene,
    rng: np.random.Generator,
    known_kinds: Sequence[str],
    colors: Sequence[str],
    hidden_kind: str,
    n_questions: int,
    existence_pairs: int = 0,
) -> dict[str, Any]:
    """A training scene in words followed by up to ``n_questions`` ``Question: ... Answer: ...`` pairs
    (the world's ``counts.corpus_reading_questions``), plus ``existence_pairs`` contrastive pairs
    (``counts.corpus_existence_pairs``): "Is there a <kind> in the image?" about a kind the
    description names ("yes") and about one it does not ("no"), shuffled in among the others.

    Questions that would name ``hidden_kind`` are dropped; the description calls it "shape".
    """
    describe = scene_description if rng.random() < 0.5 else there_is_caption
    qas: list[QA] = vqa_questions(scene, rng, n_questions + 2, known_kinds, colors)
    qas = [q for q in qas if not mentions(q.question, hidden_kind) and not mentions(q.answer, hidden_kind)][:n_questions]
    if existence_pairs:
        qas = _with_existence_pairs(scene, rng, qas, known_kinds, existence_pairs)
    lines = [describe(scene, hidden_kind)]
    lines += [f"Question: {q.question} Answer: {q.answer}" for q in qas]
    return {"text": "\n".join(lines), "meta": {"source": READING_SOURCE, "scene_sha256": scene_digest(canonical(scene))}}
