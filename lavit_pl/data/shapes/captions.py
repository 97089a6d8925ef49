"""Five reference captions per scene from varied templates.

The templates together state what the questions ask about: colours, counts, presence, sizes
and positions ("on the left", "at the top"). ``hidden_kind`` (the novel kind in training text)
is written as "shape", so a training caption never names it.
"""
from __future__ import annotations

from collections import Counter
from typing import Callable, Sequence

import numpy as np

from lavit_pl.data.shapes.scene import CELL_PHRASES, Scene, Shape, plural

NUMBER_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
CAPTIONS_PER_IMAGE = 5


def article(word: str) -> str:
    return "an" if word[0] in "aeiou" else "a"


def kind_word(kind: str, hidden_kind: str | None) -> str:
    return "shape" if kind == hidden_kind else kind


def noun_phrase(shape: Shape, hidden_kind: str | None, with_size: bool = False, det: str = "a") -> str:
    words = ([shape.size] if with_size else []) + [shape.color, kind_word(shape.kind, hidden_kind)]
    text = " ".join(words)
    if det == "a":
        return f"{article(text)} {text}"
    return f"{det} {text}" if det else text


def join_list(items: Sequence[str]) -> str:
    if len(items) <= 1:
        return "".join(items)
    return ", ".join(items[:-1]) + " and " + items[-1]


def _sentence(text: str) -> str:
    text = text.strip()
    return text[0].upper() + text[1:] + ("" if text.endswith(".") else ".")


def _grouped(scene: Scene, hidden_kind: str | None, key: Callable[[Shape], str]) -> list[str]:
    """"two red circles", "a blue square": identical descriptions merged, first-seen order."""
    counts = Counter(key(s) for s in scene.shapes)
    out = []
    for text, n in counts.items():
        if n == 1:
            out.append(f"{article(text)} {text}")
        else:
            *adj, noun = text.split(" ")
            out.append(" ".join([NUMBER_WORDS[n], *adj, plural(noun)]))
    return out


def _color_kind(hidden_kind: str | None) -> Callable[[Shape], str]:
    return lambda s: f"{s.color} {kind_word(s.kind, hidden_kind)}"


def _count_phrase(n: int) -> str:
    return "a single shape" if n == 1 else f"{NUMBER_WORDS[n]} shapes"


def t_list(scene: Scene, hidden: str | None, rng: np.random.Generator) -> str:
    return f"{join_list(_grouped(scene, hidden, _color_kind(hidden)))} on {article(scene.background)} {scene.background} background"


def t_count_positions(scene: Scene, hidden: str | None, rng: np.random.Generator) -> str:
    parts = [f"{noun_phrase(s, hidden)} {CELL_PHRASES[s.cell]}" for s in scene.shapes]
    return f"{_count_phrase(scene.complexity)}: {join_list(parts)}"


def _sized_shapes_in_place(scene: Scene, hidden: str | None) -> list[str]:
    """"a small red circle in the top left corner", one per shape, in scene order."""
    return [f"{noun_phrase(s, hidden, with_size=True)} {CELL_PHRASES[s.cell]}" for s in scene.shapes]


def t_there_is(scene: Scene, hidden: str | None, rng: np.random.Generator | None = None) -> str:
    return f"there is {join_list(_sized_shapes_in_place(scene, hidden))}"


def t_colors(scene: Scene, hidden: str | None, rng: np.random.Generator) -> str:
    colors = list(dict.fromkeys(s.color for s in scene.shapes))
    if scene.complexity == 1:
        return f"a picture of a single {scene.shapes[0].color} {kind_word(scene.shapes[0].kind, hidden)}"
    if len(colors) == 1:
        return f"a picture of {NUMBER_WORDS[scene.complexity]} shapes, all of them {colors[0]}"
    return f"a picture of {NUMBER_WORDS[scene.complexity]} shapes colored {join_list(colors)}"


def t_kinds(scene: Scene, hidden: str | None, rng: np.random.Generator) -> str:
    kinds = _grouped(scene, hidden, lambda s: kind_word(s.kind, hidden))
    return f"{join_list(kinds)} in {'one image' if rng.random() < 0.5 else 'the picture'}"


def t_sizes(scene: Scene, hidden: str | None, rng: np.random.Generator) -> str:
    return join_list(_grouped(scene, hidden, lambda s: f"{s.size} {s.color} {kind_word(s.kind, hidden)}"))


def t_relative(scene: Scene, hidden: str | None, rng: np.random.Generator) -> str:
    if scene.complexity == 1:
        s = scene.shapes[0]
        return f"{noun_phrase(s, hidden, with_size=True)} {CELL_PHRASES[s.cell]} of the image"
    pairs = [(a, b) for a in scene.shapes for b in scene.shapes if a is not b and (a.col < b.col or a.row < b.row)]
    a, b = pairs[int(rng.integers(len(pairs)))]
    relation = "to the left of" if a.col < b.col else "above"
    rest = [s for s in scene.shapes if s is not a and s is not b]
    tail = f", with {join_list([noun_phrase(s, hidden) for s in rest])} nearby" if rest else ""
    return f"{noun_phrase(a, hidden)} {relation} {noun_phrase(b, hidden)}{tail}"


def t_background_first(scene: Scene, hidden: str | None, rng: np.random.Generator) -> str:
    return f"on {article(scene.background)} {scene.background} background, {_count_phrase(scene.complexity)}: " + join_list(
        [noun_phrase(s, hidden) for s in scene.shapes]
    )


TEMPLATES = (t_list, t_count_positions, t_there_is, t_colors, t_kinds, t_sizes, t_relative, t_background_first)


def scene_captions(scene: Scene, rng: np.random.Generator, hidden_kind: str | None = None) -> list[str]:
    """Five different captions for a scene with at least one shape."""
    if scene.complexity == 0:
        raise ValueError("scene_captions needs at least one shape (got an empty scene)")
    order = rng.permutation(len(TEMPLATES))
    out: list[str] = []
    for i in order:
        text = _sentence(TEMPLATES[int(i)](scene, hidden_kind, rng))
        if text not in out:
            out.append(text)
        if len(out) == CAPTIONS_PER_IMAGE:
            return out
    raise RuntimeError(f"only {len(out)} distinct captions for scene {scene}")


def there_is_caption(scene: Scene, hidden_kind: str | None = None) -> str:
    """The "There is ..." caption: every shape with size, colour, kind and position, as one sentence."""
    if scene.complexity == 0:
        raise ValueError("there_is_caption needs at least one shape (got an empty scene)")
    return _sentence(t_there_is(scene, hidden_kind))


def scene_description(scene: Scene, hidden_kind: str | None = None) -> str:
    """Every shape with size, colour and position, in reading order: the text a reading doc starts from."""
    if scene.complexity == 0:
        return f"The picture shows an empty {scene.background} background."
    parts = _sized_shapes_in_place(scene, hidden_kind)
    return (
        f"The picture shows {_count_phrase(scene.complexity)} on {article(scene.background)} {scene.background} "
        f"background: {join_list(parts)}."
    )
