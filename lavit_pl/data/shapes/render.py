"""Draw a :class:`Scene` as an RGB image and encode it as deterministic JPEG bytes.

Shapes are drawn on a canvas ``supersample`` times larger and box-filtered down, which gives
anti-aliased edges without any randomness. The only random part of a picture, the speckle of a
speckled background, comes from the scene's own ``texture_seed``.
"""
from __future__ import annotations

import io
import math
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from lavit_pl.data.shapes.scene import BACKGROUNDS, COLORS, Scene, Shape

JPEG_SUBSAMPLING = 0  # 4:4:4, so thin coloured shapes keep their colour at 32-64 px


def _regular(cx: float, cy: float, r: float, n: int, start_deg: float) -> list[tuple[float, float]]:
    return [
        (cx + r * math.cos(math.radians(start_deg + 360.0 * i / n)), cy + r * math.sin(math.radians(start_deg + 360.0 * i / n)))
        for i in range(n)
    ]


def shape_polygon(kind: str, cx: float, cy: float, r: float) -> list[tuple[float, float]]:
    """Outline of ``kind`` centred at (cx, cy) with half-extent r, in canvas pixels (y down)."""
    if kind == "square":
        h = 0.82 * r
        return [(cx - h, cy - h), (cx + h, cy - h), (cx + h, cy + h), (cx - h, cy + h)]
    if kind == "triangle":
        # Equilateral, pointing up, centred on its bounding box rather than its centroid.
        return [(cx, cy - r), (cx + 0.95 * r, cy + 0.8 * r), (cx - 0.95 * r, cy + 0.8 * r)]
    if kind == "diamond":
        return [(cx, cy - r), (cx + 0.68 * r, cy), (cx, cy + r), (cx - 0.68 * r, cy)]
    if kind == "star":
        outer = _regular(cx, cy, r, 5, -90.0)
        inner = _regular(cx, cy, 0.45 * r, 5, -54.0)
        return [p for pair in zip(outer, inner) for p in pair]
    if kind == "cross":
        a, w = r, 0.34 * r
        return [
            (cx - w, cy - a), (cx + w, cy - a), (cx + w, cy - w), (cx + a, cy - w), (cx + a, cy + w), (cx + w, cy + w),
            (cx + w, cy + a), (cx - w, cy + a), (cx - w, cy + w), (cx - a, cy + w), (cx - a, cy - w), (cx - w, cy - w),
        ]
    if kind == "hexagon":
        return _regular(cx, cy, r, 6, 0.0)
    raise ValueError(f"unknown shape kind '{kind}' (no outline for it)")


def _background(scene: Scene, size: int) -> np.ndarray:
    """(H, W, 3) uint8 background at the final resolution."""
    try:
        rgb, texture = BACKGROUNDS[scene.background]
    except KeyError as err:
        raise ValueError(f"unknown background '{scene.background}'; expected one of {sorted(BACKGROUNDS)}") from err
    img = np.empty((size, size, 3), dtype=np.int16)
    img[:] = rgb
    yy, xx = np.mgrid[0:size, 0:size]
    # Periods are not multiples of the 8-px patch, so texture does not line up with patches.
    if texture == "striped":
        img[(yy // 3) % 2 == 1] -= 10
    elif texture == "checkered":
        img[((yy // 5) + (xx // 5)) % 2 == 1] -= 9
    elif texture == "speckled":
        noise = np.random.default_rng(scene.texture_seed).integers(-7, 8, size=(size, size, 1))
        img += noise.astype(np.int16)
    return np.clip(img, 0, 255).astype(np.uint8)


def _draw_shape(draw: ImageDraw.ImageDraw, shape: Shape, canvas: int) -> None:
    cx, cy, r = shape.x * canvas, shape.y * canvas, shape.radius * canvas
    try:
        fill = COLORS[shape.color]
    except KeyError as err:
        raise ValueError(f"unknown colour '{shape.color}'; expected one of {sorted(COLORS)}") from err
    if shape.kind == "circle":
        draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=fill)
    else:
        draw.polygon(shape_polygon(shape.kind, cx, cy, r), fill=fill)


def render_scene(scene: Scene, image_size: int, supersample: int = 4, blur: float = 0.0) -> Image.Image:
    """RGB image (H = W = image_size). ``blur`` > 0 applies a Gaussian blur of that radius in pixels."""
    base = Image.fromarray(_background(scene, image_size), "RGB")
    canvas_size = image_size * supersample
    canvas = base.resize((canvas_size, canvas_size), Image.Resampling.NEAREST)
    draw = ImageDraw.Draw(canvas)
    for shape in scene.shapes:
        _draw_shape(draw, shape, canvas_size)
    image = canvas.reduce(supersample) if supersample > 1 else canvas
    if blur > 0:
        image = image.filter(ImageFilter.GaussianBlur(blur))
    return image


def encode_jpeg(image: Image.Image, quality: int) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format="JPEG", quality=quality, subsampling=JPEG_SUBSAMPLING, optimize=False)
    return buf.getvalue()


@dataclass(frozen=True)
class RenderJob:
    scene: Scene
    image_size: int
    supersample: int
    quality: int
    blur: float = 0.0


def render_job(job: RenderJob) -> bytes:
    """Top-level so a multiprocessing pool can call it; the bytes depend only on ``job``."""
    return encode_jpeg(render_scene(job.scene, job.image_size, job.supersample, job.blur), job.quality)


def foreground_fraction(image: Image.Image, background_rgb: tuple[int, int, int], threshold: int = 40) -> float:
    """Share of pixels farther than ``threshold`` (max over channels) from the background colour."""
    arr = np.asarray(image.convert("RGB"), dtype=np.int16)
    diff = np.abs(arr - np.asarray(background_rgb, dtype=np.int16)).max(axis=-1)
    return float((diff > threshold).mean())
