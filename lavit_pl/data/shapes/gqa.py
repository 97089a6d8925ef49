"""GQA-like compositional questions with GQA's record fields.

Each question comes with a one-word ``answer``, a sentence ``fullAnswer``, the
``types`` triple (structural / semantic / detailed) and a small functional program in
``semantic``, as in ``testdev_balanced_questions.json``.
"""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from lavit_pl.data.shapes.scene import CELL_PHRASES, Scene, Shape, plural, unique_by


def _pick(rng: np.random.Generator, items: Sequence):
    return items[int(rng.integers(len(items)))]


def _step(op: str, arg: str, deps: list[int]) -> dict[str, Any]:
    return {"operation": op, "argument": arg, "dependencies": deps}


def _record(question: str, answer: str, full: str, structural: str, semantic: str, detailed: str,
            program: list[dict[str, Any]], local_group: str) -> dict[str, Any]:
    return {
        "question": question, "answer": answer, "fullAnswer": full, "isBalanced": True,
        "types": {"structural": structural, "semantic": semantic, "detailed": detailed},
        "semantic": program, "annotations": {"question": {}, "answer": {}, "fullAnswer": {}},
        "equivalent": [], "entailed": [], "groups": {"global": None, "local": local_group},
    }


def _query_color(scene: Scene, rng: np.random.Generator, colors: Sequence[str]) -> dict[str, Any] | None:
    refs = unique_by(scene, lambda s: s.kind)
    if not refs:
        return None
    s = _pick(rng, refs)
    prog = [_step("select", s.kind, []), _step("query", "color", [0])]
    return _record(f"What color is the {s.kind}?", s.color, f"The {s.kind} is {s.color}.", "query", "attr",
                   "queryAttr", prog, f"10q-{s.kind}_color")


def _relate_color(scene: Scene, rng: np.random.Generator, colors: Sequence[str]) -> dict[str, Any] | None:
    """Colour of the only shape left of (or above) a reference shape."""
    refs = unique_by(scene, lambda s: (s.color, s.kind))
    options = []
    for ref in refs:
        left = [s for s in scene.shapes if s.col < ref.col]
        above = [s for s in scene.shapes if s.row < ref.row]
        if len(left) == 1:
            options.append((ref, left[0], "to the left of", "left"))
        if len(above) == 1:
            options.append((ref, above[0], "above", "above"))
    if not options:
        return None
    ref, s, rel, rel_arg = _pick(rng, options)
    prog = [_step("select", ref.kind, []), _step("filter color", ref.color, [0]),
            _step("relate", f"shape,{rel_arg},s", [1]), _step("query", "color", [2])]
    return _record(f"What color is the shape {rel} the {ref.color} {ref.kind}?", s.color,
                   f"The shape {rel} the {ref.color} {ref.kind} is {s.color}.", "query", "rel", "relS", prog,
                   f"10q-shape_{rel_arg}_{ref.kind}_color")


def _verify_color(scene: Scene, rng: np.random.Generator, colors: Sequence[str]) -> dict[str, Any] | None:
    refs = unique_by(scene, lambda s: s.kind)
    if not refs:
        return None
    s = _pick(rng, refs)
    asked = s.color if rng.random() < 0.5 else _pick(rng, [c for c in colors if c != s.color])
    yes = asked == s.color
    full = f"Yes, the {s.kind} is {s.color}." if yes else f"No, the {s.kind} is {s.color}."
    prog = [_step("select", s.kind, []), _step("verify color", asked, [0])]
    return _record(f"Is the {s.kind} {asked}?", "yes" if yes else "no", full, "verify", "attr", "verifyAttr", prog,
                   f"{s.kind}_color")


def _choose_side(scene: Scene, rng: np.random.Generator, colors: Sequence[str]) -> dict[str, Any] | None:
    refs = unique_by(scene, lambda s: (s.color, s.kind))
    pairs = [(a, b) for a in refs for b in refs if a is not b and a.col != b.col]
    if not pairs:
        return None
    a, b = _pick(rng, pairs)
    side = "left" if a.col < b.col else "right"
    first, second = ("left", "right") if rng.random() < 0.5 else ("right", "left")
    na, nb = f"{a.color} {a.kind}", f"{b.color} {b.kind}"
    prog = [_step("select", b.kind, []), _step("filter color", b.color, [0]), _step("select", a.kind, []),
            _step("filter color", a.color, [2]), _step("choose rel", f"{b.kind},to the left of|to the right of,s", [1, 3])]
    return _record(f"Is the {na} to the {first} or to the {second} of the {nb}?", side,
                   f"The {na} is to the {side} of the {nb}.", "choose", "rel", "positionChoose", prog, f"{a.kind}_side")


def _logic_both(scene: Scene, rng: np.random.Generator, kinds: Sequence[str]) -> dict[str, Any]:
    present = list(dict.fromkeys(s.kind for s in scene.shapes))
    k1 = _pick(rng, present)
    k2 = _pick(rng, [k for k in kinds if k != k1])
    both = k2 in present
    p1, p2 = plural(k1), plural(k2)
    full = f"Yes, there are both {p1} and {p2}." if both else f"No, there are {p1} but no {p2}."
    prog = [_step("select", k1, []), _step("exist", "?", [0]), _step("select", k2, []), _step("exist", "?", [2]),
            _step("and", "", [1, 3])]
    return _record(f"Are there both {p1} and {p2} in the image?", "yes" if both else "no", full, "logical", "obj",
                   "existAndC", prog, f"both_{k1}_{k2}")


def _compare_color(scene: Scene, rng: np.random.Generator, colors: Sequence[str]) -> dict[str, Any] | None:
    refs = unique_by(scene, lambda s: s.kind)
    if len(refs) < 2:
        return None
    i, j = rng.choice(len(refs), size=2, replace=False)
    a, b = refs[int(i)], refs[int(j)]
    same = a.color == b.color
    full = (f"Yes, both the {a.kind} and the {b.kind} are {a.color}." if same
            else f"No, the {a.kind} is {a.color} and the {b.kind} is {b.color}.")
    prog = [_step("select", a.kind, []), _step("select", b.kind, []), _step("same color", "", [0, 1])]
    return _record(f"Do the {a.kind} and the {b.kind} have the same color?", "yes" if same else "no", full,
                   "compare", "attr", "sameColor", prog, "sameColor")


def _query_kind(scene: Scene, rng: np.random.Generator, colors: Sequence[str]) -> dict[str, Any]:
    s: Shape = _pick(rng, scene.shapes)
    prog = [_step("select", "shape", []), _step("filter position", s.position, [0]), _step("query", "name", [1])]
    return _record(f"Which kind of shape is {CELL_PHRASES[s.cell]}?", s.kind, f"The shape {CELL_PHRASES[s.cell]} is {article_kind(s.kind)}.",
                   "query", "cat", "categoryThatPos", prog, f"{s.position}_name")


def article_kind(kind: str) -> str:
    return f"{'an' if kind[0] in 'aeiou' else 'a'} {kind}"


def gqa_questions(scene: Scene, rng: np.random.Generator, n: int, kinds: Sequence[str], colors: Sequence[str]) -> list[dict[str, Any]]:
    """Up to ``n`` records (without ``imageId``) of different detailed types."""
    makers = [
        lambda: _query_color(scene, rng, colors), lambda: _relate_color(scene, rng, colors),
        lambda: _verify_color(scene, rng, colors), lambda: _choose_side(scene, rng, colors),
        lambda: _logic_both(scene, rng, kinds), lambda: _compare_color(scene, rng, colors),
        lambda: _query_kind(scene, rng, colors),
    ]
    out: list[dict[str, Any]] = []
    for i in rng.permutation(len(makers)):
        rec = makers[int(i)]()
        if rec is not None and all(r["question"] != rec["question"] for r in out):
            out.append(rec)
        if len(out) == n:
            break
    return out
