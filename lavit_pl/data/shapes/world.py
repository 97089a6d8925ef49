"""Generate a whole Shapes world folder (docs/data_layout.md) from a :class:`ShapesWorldConfig`.

Order of work: sample training scenes, then held-out scenes whose canonical description no
training scene has; render every image (a process pool, results in submission order, so the
bytes do not depend on the number of workers); write training shards, benchmark files, corpus
and quiz into a staging folder; run the leakage check; write ``config.yaml`` and
``world.json``; then swap the staging folder into place. A failed run leaves the previous world
untouched.
"""
from __future__ import annotations

import multiprocessing
import os
import shutil
import time
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import yaml

from lavit_pl.config import to_yaml
from lavit_pl.data.img2dataset_writer import Img2DatasetShardWriter
from lavit_pl.data.shapes import heldout
from lavit_pl.data.shapes.captions import scene_captions
from lavit_pl.data.shapes.config import ShapesWorldConfig
from lavit_pl.data.shapes.leakage import LeakageError, check_world
from lavit_pl.data.shapes.lore import build_lore
from lavit_pl.data.shapes.render import RenderJob, render_job
from lavit_pl.data.shapes.scene import COLORS, KINDS, Scene, canonical, sample_disjoint, sample_scene
from lavit_pl.utils.atomic import atomic_write_json, atomic_write_text

MANIFEST = "world.json"
CONFIG_FILE = "config.yaml"
BLUR_FRACTION = 0.15  # VizWiz "too blurry" images: Gaussian radius = 15% of the side


def _drawers(cfg: ShapesWorldConfig) -> dict[str, Callable[[np.random.Generator], Scene]]:
    def n_shapes(rng: np.random.Generator, low: int = 1) -> int:
        return int(rng.integers(low, cfg.max_shapes + 1))

    return {
        "train": lambda r: sample_scene(r, cfg.kinds, cfg.colors, n_shapes(r)),
        "in": lambda r: sample_scene(r, cfg.known_kinds, cfg.colors, n_shapes(r)),
        "near": lambda r: sample_scene(r, cfg.known_kinds, cfg.colors, n_shapes(r, 2), forced_kinds=[cfg.novel_kind]),
        "out": lambda r: sample_scene(r, [cfg.novel_kind], cfg.colors, n_shapes(r)),
    }


def render_all(jobs: Sequence[RenderJob], workers: int) -> list[bytes]:
    if workers <= 1 or len(jobs) < 64:
        return [render_job(j) for j in jobs]
    ctx = multiprocessing.get_context("fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn")
    with ctx.Pool(workers) as pool:
        return pool.map(render_job, jobs, chunksize=max(16, len(jobs) // (8 * workers)))


class _Renderer:
    """Collects (scene, blur) per named split, renders them in one pool pass."""

    def __init__(self, cfg: ShapesWorldConfig):
        self.cfg = cfg
        self.jobs: list[RenderJob] = []
        self.spans: dict[str, tuple[int, int]] = {}
        self.out: list[bytes] = []

    def add(self, name: str, scenes: Sequence[Scene], blur: Sequence[float] | None = None) -> None:
        start = len(self.jobs)
        for i, s in enumerate(scenes):
            self.jobs.append(RenderJob(s, self.cfg.image_size, self.cfg.supersample, self.cfg.jpeg_quality,
                                       blur[i] if blur else 0.0))
        self.spans[name] = (start, len(self.jobs))

    def run(self) -> None:
        self.out = render_all(self.jobs, self.cfg.workers)

    def __getitem__(self, name: str) -> list[bytes]:
        a, b = self.spans[name]
        return self.out[a:b]


def _check_target(out: Path) -> None:
    if out.exists() and (not out.is_dir() or (any(out.iterdir()) and not (out / MANIFEST).is_file())):
        raise FileExistsError(
            f"output_dir {out} exists and is not a Shapes world (no {MANIFEST}); refusing to replace it"
        )


def _write_shards(folder: Path, cfg: ShapesWorldConfig, scenes: Sequence[Scene], images: Sequence[bytes],
                  rng: np.random.Generator) -> list[list[str]]:
    """img2dataset shards; captions hide the novel kind. Returns each sample's five captions."""
    all_caps = []
    with Img2DatasetShardWriter(folder, samples_per_shard=cfg.samples_per_shard) as writer:
        for scene, data in zip(scenes, images):
            caps = scene_captions(scene, rng, hidden_kind=cfg.novel_kind)
            caption = caps[int(rng.integers(len(caps)))]
            extra = {"captions": caps, "complexity": scene.complexity, "scene": scene.to_json()}
            writer.write(data, caption, cfg.image_size, cfg.image_size, extra_json=extra)
            all_caps.append(caps)
    return all_caps


def _vizwiz_items(rng: np.random.Generator, draw: Callable, n: int, share: float,
                  forbidden: set[str] | None) -> list[tuple[Scene, bool, float]]:
    """(scene, answerable, blur): unanswerable items alternate between blank and heavily blurred."""
    n_un = int(round(n * share))
    unanswerable = set(int(i) for i in rng.choice(n, size=n_un, replace=False))
    items = []
    for i in range(n):
        scene = sample_disjoint(rng, 1, forbidden, draw)[0] if forbidden is not None else draw(rng)
        if i not in unanswerable:
            items.append((scene, True, 0.0))
        elif len(items) % 2 == 0:
            items.append((Scene(scene.background, (), scene.texture_seed), False, 0.0))
        else:
            items.append((scene, False, BLUR_FRACTION))
    return items


def _files_listing(root: Path) -> tuple[list[str], dict[str, int]]:
    files, folders = [], {}
    for path in sorted(root.rglob("*")):
        if not path.is_file():
            continue
        rel = path.relative_to(root).as_posix()
        if path.suffix == ".jpg":
            folders[path.parent.relative_to(root).as_posix()] = folders.get(path.parent.relative_to(root).as_posix(), 0) + 1
        else:
            files.append(rel)
    return files, folders


def generate_world(cfg: ShapesWorldConfig) -> dict[str, Any]:
    """Write the world described by ``cfg`` to ``cfg.output_dir``; returns the manifest."""
    t0 = time.perf_counter()
    out = Path(cfg.output_dir)
    _check_target(out)
    stage = out.parent / f".{out.name}.staging"
    if stage.exists():
        shutil.rmtree(stage)
    stage.mkdir(parents=True)
    try:
        manifest = _generate_into(stage, cfg, t0)
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        raise
    old = out.parent / f".{out.name}.old"
    if old.exists():
        shutil.rmtree(old)
    if out.exists():
        os.replace(out, old)
    os.replace(stage, out)
    shutil.rmtree(old, ignore_errors=True)
    return manifest


def _generate_into(root: Path, cfg: ShapesWorldConfig, t0: float) -> dict[str, Any]:
    c, rng = cfg.counts, lambda *n: heldout.split_rng(cfg.seed, *n)
    draw = _drawers(cfg)
    lore = build_lore(cfg.seed, cfg.colors, cfg.known_kinds, banned=[*KINDS, *COLORS])

    r_train, r_val = rng("scenes", "train"), rng("scenes", "val")
    train = [draw["train"](r_train) for _ in range(c.train)]
    val = [draw["train"](r_val) for _ in range(c.val)]
    forbidden = {canonical(s) for s in train} | {canonical(s) for s in val}

    def held(name: str, n: int, kind: str = "in") -> list[Scene]:
        return sample_disjoint(rng("scenes", name), n, forbidden, draw[kind])

    scenes = {
        "coco": held("coco", c.coco), "flickr_test": held("flickr_test", c.flickr_test),
        "nocaps_in": held("nocaps_in", c.nocaps_per_domain), "nocaps_near": held("nocaps_near", c.nocaps_per_domain, "near"),
        "nocaps_out": held("nocaps_out", c.nocaps_per_domain, "out"),
        "vqav2_val": held("vqav2_val", c.vqav2_val_images), "vqav2_train": held("vqav2_train", c.vqav2_train_images),
        "okvqa": held("okvqa", c.okvqa_images), "gqa_testdev": held("gqa_testdev", c.gqa_testdev_images),
    }
    vizwiz_val = _vizwiz_items(rng("scenes", "vizwiz_val"), draw["in"], c.vizwiz_val, c.vizwiz_unanswerable, forbidden)
    vizwiz_train = _vizwiz_items(rng("scenes", "vizwiz_train"), draw["in"], c.vizwiz_train, c.vizwiz_unanswerable, None)
    r_gqa = rng("scenes", "gqa_train")
    gqa_train = [draw["in"](r_gqa) for _ in range(c.gqa_train_images)]

    renderer = _Renderer(cfg)
    renderer.add("train", train)
    renderer.add("val", val)
    for name, ss in scenes.items():
        renderer.add(name, ss)
    renderer.add("vizwiz_val", [s for s, _, _ in vizwiz_val], [b * cfg.image_size for _, _, b in vizwiz_val])
    renderer.run()

    train_caps = _write_shards(root / "train/shards", cfg, train, renderer["train"], rng("captions", "train"))
    _write_shards(root / "val/shards", cfg, val, renderer["val"], rng("captions", "val"))

    ctx = heldout.Context(root, cfg, lore)
    counts: dict[str, Any] = {"train_pairs": c.train, "val_images": c.val}
    counts["coco"] = heldout.write_coco(ctx, scenes["coco"], renderer["coco"])
    train_samples = [(train[i], renderer["train"][i], train_caps[i]) for i in range(c.flickr_train)]
    counts["flickr30k"] = heldout.write_flickr(ctx, scenes["flickr_test"], renderer["flickr_test"], train_samples)
    counts["nocaps"] = heldout.write_nocaps(ctx, {
        d: (scenes[f"nocaps_{d.split('-')[0]}"], renderer[f"nocaps_{d.split('-')[0]}"])
        for d in ("in-domain", "near-domain", "out-domain")
    })
    counts["vqav2"] = heldout.write_vqav2(ctx, (scenes["vqav2_val"], renderer["vqav2_val"]),
                                          (scenes["vqav2_train"], renderer["vqav2_train"]))
    counts["okvqa"] = heldout.write_okvqa(ctx, scenes["okvqa"], renderer["okvqa"])
    counts["gqa"] = heldout.write_gqa(ctx, (scenes["gqa_testdev"], renderer["gqa_testdev"]), gqa_train)
    counts["vizwiz"] = heldout.write_vizwiz(ctx, [(s, a) for s, a, _ in vizwiz_val], renderer["vizwiz_val"],
                                            [(s, a) for s, a, _ in vizwiz_train])
    counts.update(heldout.write_text(ctx, train))
    heldout.write_scene_records(ctx)

    report = check_world(root)
    if not report.ok:
        raise LeakageError(f"Shapes world in {root} leaks evaluation data into training files:\n{report.summary()}")
    seconds = round(time.perf_counter() - t0, 2)
    atomic_write_text(root / CONFIG_FILE, to_yaml(cfg))
    files, folders = _files_listing(root)
    grid = cfg.image_size // cfg.patch_size
    manifest = {
        "preset": cfg.preset, "seed": cfg.seed, "novel_kind": cfg.novel_kind, "image_size": cfg.image_size,
        "patch_size": cfg.patch_size, "patch_grid": [grid, grid], "num_patches": grid * grid,
        "kinds": cfg.kinds, "known_kinds": cfg.known_kinds, "colors": cfg.colors,
        "counts": counts, "seconds": seconds, "leakage": report.to_json(),
        "files": sorted([*files, MANIFEST]), "image_folders": folders,
        "config": yaml.safe_load(to_yaml(cfg)),
    }
    atomic_write_json(root / MANIFEST, manifest)
    return manifest
