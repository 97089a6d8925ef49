"""Rendering: content decides the foreground, bytes are deterministic, outlines are where the scene says."""
from __future__ import annotations

import numpy as np
import pytest

from lavit_pl.data.shapes.render import RenderJob, foreground_fraction, render_job, render_scene, shape_polygon
from lavit_pl.data.shapes.scene import BACKGROUNDS, KINDS, Scene, Shape, sample_scene

COLORS = ["red", "green", "blue", "yellow", "purple", "orange", "pink", "black"]


def test_foreground_fraction_grows_with_complexity():
    rng = np.random.default_rng(0)
    means = []
    for n in (1, 2, 3, 4):
        fractions = []
        for _ in range(60):
            scene = sample_scene(rng, KINDS, COLORS, n, backgrounds=["white", "gray", "beige"])
            fractions.append(foreground_fraction(render_scene(scene, 64), BACKGROUNDS[scene.background][0]))
        means.append(float(np.mean(fractions)))
    assert all(a < b for a, b in zip(means, means[1:])), means
    # One shape covers a few percent of a 64 px image, four shapes several times that.
    assert 0.02 < means[0] < 0.08 and means[3] > 3 * means[0]


def test_single_shape_area_matches_its_outline():
    """A large centred square: half side 0.82 r with r = 0.14 -> area (2 * 0.82 * 0.14)^2 = 5.27% of the image."""
    scene = Scene("white", (Shape("square", "black", "large", 4, 0.5, 0.5),))
    frac = foreground_fraction(render_scene(scene, 128), BACKGROUNDS["white"][0], threshold=120)
    assert frac == pytest.approx((2 * 0.82 * 0.14) ** 2, abs=0.003)  # edge anti-aliasing: ~1 pixel ring


def test_blank_scene_is_background_only():
    img = render_scene(Scene("gray", ()), 32)
    assert foreground_fraction(img, BACKGROUNDS["gray"][0]) == 0.0


def test_jpeg_bytes_are_deterministic_and_seeded_by_the_scene():
    rng = np.random.default_rng(3)
    scene = sample_scene(rng, KINDS, COLORS, 3, backgrounds=["speckled beige"])
    job = RenderJob(scene, 64, 4, 90)
    assert render_job(job) == render_job(RenderJob(scene, 64, 4, 90))
    reseeded = Scene(scene.background, scene.shapes, scene.texture_seed + 1)
    assert render_job(RenderJob(reseeded, 64, 4, 90)) != render_job(job)


@pytest.mark.parametrize("kind", [k for k in KINDS if k != "circle"])
def test_outlines_stay_inside_the_bounding_box(kind):
    pts = np.array(shape_polygon(kind, 10.0, 20.0, 5.0))
    assert np.all(np.abs(pts[:, 0] - 10.0) <= 5.0 + 1e-9) and np.all(np.abs(pts[:, 1] - 20.0) <= 5.0 + 1e-9)
    assert np.ptp(pts[:, 1]) > 7.0  # and fill most of it


def test_unknown_names_fail_clearly():
    with pytest.raises(ValueError, match="unknown shape kind 'blob'"):
        shape_polygon("blob", 0, 0, 1)
    with pytest.raises(ValueError, match="unknown colour 'teal'"):
        render_scene(Scene("white", (Shape("square", "teal", "small", 0, 0.2, 0.2),)), 32)
    with pytest.raises(ValueError, match="unknown background 'plaid'"):
        render_scene(Scene("plaid", ()), 32)
