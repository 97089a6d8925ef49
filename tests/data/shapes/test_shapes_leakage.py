"""The leakage check passes on a generated world and catches leaks planted in a copy of it."""
from __future__ import annotations

import io
import json
import shutil
import tarfile
from pathlib import Path

import pytest
from PIL import Image

from lavit_pl.data.shapes.leakage import check_world, pixel_hash
from lavit_pl.data.shapes.scene import scene_digest


def _append_to_shard(shard: Path, members: dict[str, bytes]) -> None:
    """Rewrite ``shard`` with extra members (tar append mode cannot follow a USTAR end marker safely)."""
    with tarfile.open(shard) as tar:
        old = [(m, tar.extractfile(m).read()) for m in tar.getmembers()]
    with tarfile.open(shard, "w", format=tarfile.USTAR_FORMAT) as tar:
        for member, data in old:
            tar.addfile(member, io.BytesIO(data))
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))


@pytest.fixture
def world_copy(shapes_micro_world, tmp_path) -> Path:
    dst = tmp_path / "copy"
    shutil.copytree(shapes_micro_world, dst)
    return dst


def _heldout_record(root: Path, split: str) -> dict:
    for line in (root / "scenes.jsonl").read_text().splitlines():
        rec = json.loads(line)
        if rec["split"] == split:
            return rec
    raise AssertionError(f"no {split} record")


def test_generated_world_has_no_leak(shapes_micro_world):
    report = check_world(shapes_micro_world)
    assert report.ok, report.summary()
    # 400 train + 160 val shard images + 40 Karpathy train copies (same pixels as shard images).
    assert report.train_images == 560
    # Every jpg outside the shards except the 40 Karpathy train copies.
    manifest = json.loads((shapes_micro_world / "world.json").read_text())
    assert report.heldout_images == sum(manifest["image_folders"].values()) - 40
    assert report.heldout_scenes == report.heldout_images


def test_detects_an_evaluation_image_copied_into_a_training_shard(world_copy):
    rec = _heldout_record(world_copy, "vqav2_val2014")
    data = (world_copy / rec["path"]).read_bytes()
    _append_to_shard(world_copy / "train/shards/00000.tar", {"000009999.jpg": data})
    report = check_world(world_copy)
    assert not report.ok
    assert report.image_leaks == [rec["path"]]
    assert report.scene_leaks == []


def test_detects_the_same_pixels_in_another_encoding(world_copy):
    """A PNG of a decoded evaluation JPEG has other bytes but the same pixels."""
    rec = _heldout_record(world_copy, "coco")
    img = Image.open(world_copy / rec["path"]).convert("RGB")
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    assert pixel_hash(buf.getvalue()) == pixel_hash((world_copy / rec["path"]).read_bytes())
    _append_to_shard(world_copy / "val/shards/00000.tar", {"000009999.png": buf.getvalue()})
    assert check_world(world_copy).image_leaks == [rec["path"]]


def test_detects_an_evaluation_scene_in_shard_json(world_copy):
    rec = _heldout_record(world_copy, "gqa_testdev")
    meta = {"key": "000009999", "scene": rec["scene"], "complexity": len(rec["scene"]["shapes"])}
    _append_to_shard(world_copy / "train/shards/00001.tar", {"000009999.json": json.dumps(meta).encode()})
    report = check_world(world_copy)
    assert report.image_leaks == []
    assert report.scene_leaks == [rec["path"]]


def test_detects_an_evaluation_scene_described_in_the_corpus(world_copy):
    rec = _heldout_record(world_copy, "okvqa_val2014")
    doc = {"text": "planted", "meta": {"source": "shapes_reading", "scene_sha256": scene_digest(rec["canonical"])}}
    with open(world_copy / "corpus/corpus_00000.jsonl", "a") as f:
        f.write(json.dumps(doc) + "\n")
    assert check_world(world_copy).scene_leaks == [rec["path"]]


def test_detects_an_evaluation_image_listed_as_karpathy_train(world_copy):
    path = world_copy / "flickr30k/dataset_flickr30k.json"
    data = json.loads(path.read_text())
    test_entry = next(img for img in data["images"] if img["split"] == "test")
    test_entry["split"] = "train"
    path.write_text(json.dumps(data))
    report = check_world(world_copy)
    rel = f"flickr30k/images/{test_entry['filename']}"
    # Its own pixels and scene now count as training; nothing else leaks.
    assert report.ok and rel not in report.image_leaks
    # Planting its bytes under a held-out name shows it is treated as training data.
    shutil.copy(world_copy / rel, world_copy / "coco/val2014/COCO_val2014_000000999999.jpg")
    assert check_world(world_copy).image_leaks == ["coco/val2014/COCO_val2014_000000999999.jpg"]
