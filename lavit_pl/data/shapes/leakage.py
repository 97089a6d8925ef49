"""Check that no held-out image or scene of a written Shapes world is in a training file.

Training files: the train and val shards (image pixels + ``scene`` json), the corpus (reading
documents carry the sha256 of their scene's canonical description in ``meta``) and the Karpathy ``train`` /
``restval`` entries. Held-out: every other ``.jpg`` in the world (compared by a hash of the
decoded pixels, so a re-encoded copy is caught too) and every non-training record of
``scenes.jsonl`` (compared by canonical scene description).
"""
from __future__ import annotations

import hashlib
import io
import json
import tarfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

from PIL import Image

from lavit_pl.data.shapes.scene import canonical_of_json, scene_digest

SHARD_FOLDERS = ("train/shards", "val/shards")
KARPATHY_FILE = "flickr30k/dataset_flickr30k.json"
KARPATHY_IMAGES = "flickr30k/images"
KARPATHY_TRAIN_SPLITS = ("train", "restval")
SCENES_FILE = "scenes.jsonl"


class LeakageError(RuntimeError):
    """A world whose training files contain held-out images or scenes."""


def pixel_hash(data: bytes) -> str:
    """sha256 of the decoded RGB pixels (and size): equal for byte-different encodings of one picture."""
    with Image.open(io.BytesIO(data)) as img:
        rgb = img.convert("RGB")
        return hashlib.sha256(f"{rgb.size}".encode() + rgb.tobytes()).hexdigest()


@dataclass
class LeakageReport:
    train_images: int = 0
    heldout_images: int = 0
    train_scenes: int = 0
    heldout_scenes: int = 0
    image_leaks: list[str] = field(default_factory=list)  # held-out image paths found in training
    scene_leaks: list[str] = field(default_factory=list)  # held-out paths whose scene a training file has

    @property
    def ok(self) -> bool:
        return not self.image_leaks and not self.scene_leaks

    def summary(self) -> str:
        head = (f"{self.heldout_images} held-out images vs {self.train_images} training images; "
                f"{self.heldout_scenes} held-out scenes vs {self.train_scenes} training scene descriptions")
        if self.ok:
            return head + ": no leakage"
        lines = [head]
        lines += [f"  image in training files: {p}" for p in self.image_leaks[:20]]
        lines += [f"  scene in training files: {p}" for p in self.scene_leaks[:20]]
        extra = len(self.image_leaks) + len(self.scene_leaks) - min(20, len(self.image_leaks)) - min(20, len(self.scene_leaks))
        if extra > 0:
            lines.append(f"  ... and {extra} more")
        return "\n".join(lines)

    def to_json(self) -> dict[str, Any]:
        return {"ok": self.ok, "train_images": self.train_images, "heldout_images": self.heldout_images,
                "train_scenes": self.train_scenes, "heldout_scenes": self.heldout_scenes,
                "image_leaks": self.image_leaks, "scene_leaks": self.scene_leaks}


def _shard_members(folder: Path) -> Iterator[tuple[str, str, bytes]]:
    """(shard path, member name, bytes) for every member of every ``*.tar`` in ``folder``."""
    for shard in sorted(folder.glob("*.tar")):
        with tarfile.open(shard, "r") as tar:
            for member in tar:
                if member.isfile():
                    handle = tar.extractfile(member)
                    if handle is not None:
                        yield str(shard), member.name, handle.read()


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise LeakageError(f"{path}: cannot read JSON for the leakage check: {err}") from err


def _jsonl(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    for i, line in enumerate(path.read_text().splitlines()):
        if line.strip():
            try:
                yield i + 1, json.loads(line)
            except json.JSONDecodeError as err:
                raise LeakageError(f"{path}:{i + 1}: not valid JSON: {err}") from err


def check_world(root: str | Path) -> LeakageReport:
    """Compare every held-out image and scene of the world at ``root`` with its training files."""
    root = Path(root)
    train_pixels: set[str] = set()
    train_scenes: set[str] = set()
    for sub in SHARD_FOLDERS:
        for shard, name, data in _shard_members(root / sub):
            if name.endswith((".jpg", ".jpeg", ".png", ".webp")):
                train_pixels.add(pixel_hash(data))
            elif name.endswith(".json"):
                meta = json.loads(data)
                if "scene" in meta:
                    try:
                        train_scenes.add(canonical_of_json(meta["scene"]))
                    except ValueError as err:
                        raise LeakageError(f"{shard}:{name}: {err}") from err
    train_digests: set[str] = set()  # corpus reading docs identify their scene by digest only
    for corpus in sorted((root / "corpus").glob("*.jsonl")):
        for line, doc in _jsonl(corpus):
            digest = doc.get("meta", {}).get("scene_sha256")
            if digest:
                train_digests.add(digest)

    karpathy_train: set[str] = set()
    if (root / KARPATHY_FILE).is_file():
        for img in _read_json(root / KARPATHY_FILE)["images"]:
            if img["split"] in KARPATHY_TRAIN_SPLITS:
                rel = f"{KARPATHY_IMAGES}/{img['filename']}"
                karpathy_train.add(rel)
                if (root / rel).is_file():
                    train_pixels.add(pixel_hash((root / rel).read_bytes()))

    records = list(_jsonl(root / SCENES_FILE)) if (root / SCENES_FILE).is_file() else []
    for _, rec in records:
        if rec["path"] in karpathy_train or rec.get("role") == "train":
            train_scenes.add(canonical_of_json(rec["scene"]))

    train_digests |= {scene_digest(c) for c in train_scenes}
    report = LeakageReport(train_images=len(train_pixels), train_scenes=len(train_digests))
    for path in sorted(root.rglob("*.jpg")):
        rel = path.relative_to(root).as_posix()
        if rel in karpathy_train:
            continue
        report.heldout_images += 1
        if pixel_hash(path.read_bytes()) in train_pixels:
            report.image_leaks.append(rel)
    for _, rec in records:
        if rec["path"] in karpathy_train or rec.get("role") == "train":
            continue
        report.heldout_scenes += 1
        # Recompute from the scene itself rather than trusting the stored string.
        if scene_digest(canonical_of_json(rec["scene"])) in train_digests:
            report.scene_leaks.append(rec["path"])
    return report
