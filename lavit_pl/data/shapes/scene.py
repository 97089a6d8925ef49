"""Scenes of the Shapes world: what an image shows, before it is drawn.

A scene is a background and 0-4 shapes, each in its own cell of a 3x3 grid (so shapes never
touch and "on the left" / "at the top" are unambiguous). Coordinates are fractions of the image
side, so the same scene renders at any resolution. Scenes are plain JSON via ``to_json``.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any, Iterable, Sequence

import numpy as np

# Clearly distinct colours; none is close to a background colour.
COLORS: dict[str, tuple[int, int, int]] = {
    "red": (215, 35, 35),
    "green": (30, 160, 60),
    "blue": (35, 75, 215),
    "yellow": (240, 205, 20),
    "purple": (135, 50, 185),
    "orange": (245, 130, 20),
    "pink": (245, 115, 185),
    "black": (25, 25, 25),
    "brown": (130, 80, 35),
    "cyan": (30, 195, 210),
}
KINDS = ("circle", "square", "triangle", "diamond", "star", "cross", "hexagon")
PLURALS = {"cross": "crosses", "shape": "shapes"}
# Half-extent of a shape as a fraction of the image side.
SIZES: dict[str, float] = {"small": 0.075, "medium": 0.105, "large": 0.14}
# name -> (RGB, texture); textures are faint so the background stays "plain-looking".
BACKGROUNDS: dict[str, tuple[tuple[int, int, int], str]] = {
    "white": ((250, 250, 250), "plain"),
    "gray": ((200, 200, 200), "plain"),
    "beige": ((236, 226, 204), "plain"),
    "striped white": ((248, 248, 248), "striped"),
    "checkered gray": ((205, 205, 205), "checkered"),
    "speckled beige": ((234, 224, 202), "speckled"),
}
GRID = 3
ROWS = ("top", "middle", "bottom")
COLS = ("left", "middle", "right")
# cell index (row * 3 + col) -> canonical position answer
CELL_NAMES = ("top left", "top", "top right", "left", "center", "right", "bottom left", "bottom", "bottom right")
# cell index -> phrase used in captions and questions
CELL_PHRASES = (
    "in the top left corner", "at the top", "in the top right corner",
    "on the left", "in the center", "on the right",
    "in the bottom left corner", "at the bottom", "in the bottom right corner",
)
MAX_SHAPES = 4


def plural(word: str) -> str:
    return PLURALS.get(word, word + "s")


@dataclass(frozen=True)
class Shape:
    kind: str
    color: str
    size: str
    cell: int  # row * 3 + col
    x: float  # centre, fraction of width
    y: float  # centre, fraction of height

    @property
    def row(self) -> int:
        return self.cell // GRID

    @property
    def col(self) -> int:
        return self.cell % GRID

    @property
    def radius(self) -> float:
        return SIZES[self.size]

    @property
    def position(self) -> str:
        return CELL_NAMES[self.cell]

    @property
    def bbox(self) -> list[float]:
        r = self.radius
        return [round(self.x - r, 4), round(self.y - r, 4), round(self.x + r, 4), round(self.y + r, 4)]

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": self.kind, "color": self.color, "size": self.size, "x": self.x, "y": self.y,
            "bbox": self.bbox, "position": self.position,
        }


@dataclass(frozen=True)
class Scene:
    background: str
    shapes: tuple[Shape, ...]
    texture_seed: int = 0

    @property
    def complexity(self) -> int:
        return len(self.shapes)

    def to_json(self) -> dict[str, Any]:
        return {
            "background": self.background,
            "shapes": [s.to_json() for s in self.shapes],
            "texture_seed": self.texture_seed,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "Scene":
        try:
            shapes = tuple(
                Shape(s["kind"], s["color"], s["size"], CELL_NAMES.index(s["position"]), float(s["x"]), float(s["y"]))
                for s in data["shapes"]
            )
            return cls(data["background"], shapes, int(data.get("texture_seed", 0)))
        except (KeyError, ValueError, TypeError) as err:
            raise ValueError(f"scene json {data!r}: expected background and shapes[kind,color,size,position,x,y]: {err}") from err

    def with_kinds(self, kind: str) -> list[Shape]:
        return [s for s in self.shapes if s.kind == kind]


def canonical(scene: Scene) -> str:
    """What captions and questions can tell apart: background + multiset of (kind, colour, size, cell).

    Two scenes with the same canonical description differ only by sub-cell jitter or texture
    noise, so an evaluation scene must not share it with any training scene.
    """
    parts = sorted(f"{s.kind},{s.color},{s.size},{s.position}" for s in scene.shapes)
    return f"{scene.background}|{';'.join(parts)}"


def canonical_of_json(data: dict[str, Any]) -> str:
    return canonical(Scene.from_json(data))


def scene_digest(canonical_description: str) -> str:
    """sha256 of a canonical description: identifies a scene in text files without naming its kinds."""
    return hashlib.sha256(canonical_description.encode("utf-8")).hexdigest()


def _place(rng: np.random.Generator, cell: int, size: str) -> tuple[float, float]:
    """Centre inside ``cell``, jittered but keeping a margin to the cell border."""
    c = 1.0 / GRID
    r = SIZES[size]
    slack = max(0.0, c / 2 - r - 0.02)
    cx = (cell % GRID + 0.5) * c + rng.uniform(-slack, slack)
    cy = (cell // GRID + 0.5) * c + rng.uniform(-slack, slack)
    return round(float(cx), 4), round(float(cy), 4)


def sample_scene(
    rng: np.random.Generator,
    kinds: Sequence[str],
    colors: Sequence[str],
    n_shapes: int,
    backgrounds: Sequence[str] = tuple(BACKGROUNDS),
    forced_kinds: Iterable[str] = (),
) -> Scene:
    """Draw ``n_shapes`` shapes in distinct cells; ``forced_kinds`` are placed first."""
    if not 0 <= n_shapes <= GRID * GRID:
        raise ValueError(f"n_shapes must be in [0, {GRID * GRID}], got {n_shapes}")
    forced = list(forced_kinds)
    if len(forced) > n_shapes:
        raise ValueError(f"forced_kinds {forced} do not fit in {n_shapes} shapes")
    background = backgrounds[int(rng.integers(len(backgrounds)))]
    cells = sorted(int(c) for c in rng.choice(GRID * GRID, size=n_shapes, replace=False))
    chosen = forced + [kinds[int(rng.integers(len(kinds)))] for _ in range(n_shapes - len(forced))]
    order = rng.permutation(n_shapes)
    shapes = []
    for cell, i in zip(cells, order):
        size = tuple(SIZES)[int(rng.integers(len(SIZES)))]
        color = colors[int(rng.integers(len(colors)))]
        x, y = _place(rng, cell, size)
        shapes.append(Shape(chosen[int(i)], color, size, cell, x, y))
    return Scene(background, tuple(shapes), int(rng.integers(2**31 - 1)))


def sample_disjoint(
    rng: np.random.Generator,
    count: int,
    forbidden: set[str],
    draw,
    max_tries_per_scene: int = 1000,
) -> list[Scene]:
    """``count`` scenes from ``draw(rng)`` whose canonical description is not in ``forbidden``.

    Rejection sampling: held-out splits never share a scene description with a training scene.
    """
    scenes = []
    for i in range(count):
        for _ in range(max_tries_per_scene):
            scene = draw(rng)
            if canonical(scene) not in forbidden:
                scenes.append(scene)
                break
        else:
            raise RuntimeError(
                f"could not draw held-out scene {i} outside the {len(forbidden)} training scene descriptions "
                f"in {max_tries_per_scene} tries; reduce the training count or add kinds/colours"
            )
    return scenes


def unique_by(scene: Scene, key) -> list[Shape]:
    """Shapes whose ``key(shape)`` no other shape in the scene shares (safe referents)."""
    values = [key(s) for s in scene.shapes]
    return [s for s, v in zip(scene.shapes, values) if values.count(v) == 1]
