"""Scenes: separated shapes, canonical descriptions, disjoint held-out sampling, captions and questions."""
from __future__ import annotations

import numpy as np
import pytest

from lavit_pl.data.shapes.answers import QA, annotate
from lavit_pl.data.shapes.captions import scene_captions, scene_description
from lavit_pl.data.shapes.questions import count_question, vqa_questions
from lavit_pl.data.shapes.scene import KINDS, Scene, Shape, canonical, canonical_of_json, sample_disjoint, sample_scene

COLORS = ["red", "green", "blue", "yellow", "purple", "orange", "pink", "black"]


def test_shapes_never_overlap_and_stay_in_the_image():
    rng = np.random.default_rng(0)
    for _ in range(300):
        scene = sample_scene(rng, KINDS, COLORS, 4)
        boxes = [s.bbox for s in scene.shapes]
        assert len({s.cell for s in scene.shapes}) == 4
        for b in boxes:
            assert 0.0 <= b[0] and b[2] <= 1.0 and 0.0 <= b[1] and b[3] <= 1.0
        for i in range(4):
            for j in range(i + 1, 4):
                a, b = boxes[i], boxes[j]
                gap = max(b[0] - a[2], a[0] - b[2], b[1] - a[3], a[1] - b[3])
                assert gap >= 0.03  # >= ~2 px at 64 px: counts and colours stay unambiguous


def test_canonical_ignores_jitter_order_and_texture_but_not_content():
    a = Scene("white", (Shape("circle", "red", "small", 0, 0.15, 0.16), Shape("square", "blue", "large", 8, 0.83, 0.84)), 1)
    b = Scene("white", (Shape("square", "blue", "large", 8, 0.84, 0.83), Shape("circle", "red", "small", 0, 0.17, 0.15)), 2)
    assert canonical(a) == canonical(b) == "white|circle,red,small,top left;square,blue,large,bottom right"
    c = Scene("white", (Shape("circle", "red", "medium", 0, 0.15, 0.16), b.shapes[0]))
    assert canonical(c) != canonical(a)
    assert canonical_of_json(a.to_json()) == canonical(a) and Scene.from_json(a.to_json()) == a


def test_sample_disjoint_rejects_forbidden_descriptions():
    draw = lambda r: sample_scene(r, ["circle", "square"], ["red", "blue"], 1, backgrounds=["white"])
    every = {canonical(draw(np.random.default_rng(i))) for i in range(2000)}
    assert len(every) == 2 * 2 * 3 * 9  # kinds x colours x sizes x cells
    allowed = sorted(every)[:5]
    forbidden = every - set(allowed)
    scenes = sample_disjoint(np.random.default_rng(0), 50, forbidden, draw)
    assert {canonical(s) for s in scenes} <= set(allowed)
    with pytest.raises(RuntimeError, match="could not draw held-out scene"):
        sample_disjoint(np.random.default_rng(0), 1, every, draw, max_tries_per_scene=50)


def test_captions_state_colours_counts_and_positions_and_hide_a_kind():
    scene = Scene("gray", (Shape("star", "red", "small", 0, 0.15, 0.15), Shape("circle", "blue", "large", 5, 0.83, 0.5)))
    caps = scene_captions(scene, np.random.default_rng(0))
    assert len(caps) == len(set(caps)) == 5
    joined = " ".join(caps).lower()
    for word in ("red", "blue", "star", "circle"):
        assert word in joined
    hidden = " ".join(scene_captions(scene, np.random.default_rng(0), hidden_kind="star")).lower()
    assert "star" not in hidden and "red shape" in hidden
    assert scene_description(scene, "star") == (
        "The picture shows two shapes on a gray background: a small red shape in the top left corner and "
        "a large blue circle on the right."
    )


def test_vqa_questions_answer_correctly():
    scene = Scene("white", (Shape("circle", "red", "small", 0, 0.15, 0.15), Shape("circle", "blue", "large", 2, 0.83, 0.17),
                            Shape("square", "red", "medium", 7, 0.5, 0.83)))
    rng = np.random.default_rng(1)
    for _ in range(50):
        for qa in vqa_questions(scene, rng, 4, ["circle", "square", "triangle"], COLORS):
            if qa.question == "How many circles are there?":
                assert qa.answer == "2"
            if qa.question == "How many red shapes are there?":
                assert qa.answer == "2"
            if qa.question == "What color is the square?":
                assert qa.answer == "red"
            if qa.question == "Where is the blue circle?":
                assert qa.answer == "top right"
            if qa.question == "What color is the shape at the bottom?":
                assert qa.answer == "red"
            assert qa.question != "What color is the circle?"  # two circles: ambiguous, never asked


def test_annotate_gives_ten_answers_with_digit_word_variation():
    rng = np.random.default_rng(0)
    seen = set()
    for _ in range(40):
        answers, mc = annotate(rng, QA("count", "How many circles are there?", "2", ["1", "3"], "circles"))
        assert [a["answer_id"] for a in answers] == list(range(1, 11))
        texts = [a["answer"] for a in answers]
        assert texts.count(mc) == max(texts.count(t) for t in texts)  # the most common one (ties: first seen)
        seen |= {a["answer"] for a in answers}
    assert {"2", "two"} <= seen and "2 circles" in seen and ({"1", "3"} & seen)


def test_count_question_uses_singular_noun_for_one():
    rng = np.random.default_rng(5)
    scene = Scene("white", (Shape("cross", "red", "small", 0, 0.15, 0.15),))
    seen = set()
    for _ in range(200):
        qa = count_question(scene, rng, ["cross"], ["red"])
        answers, _ = annotate(rng, qa)
        seen |= {a["answer"] for a in answers}
    assert "1 cross" in seen and "1 crosses" not in seen
