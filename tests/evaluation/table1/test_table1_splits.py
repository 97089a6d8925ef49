"""Table-1 splits: first-n selection, official-layout subset files the official readers accept,
runner records, and errors that name the split."""
from __future__ import annotations

import json

import pytest

from evaluation.benchmarks.gqa import read_gqa
from evaluation.benchmarks.karpathy import read_karpathy
from evaluation.benchmarks.nocaps import read_nocaps
from evaluation.benchmarks.vizwiz import read_vizwiz
from evaluation.benchmarks.vqa import read_vqa
from evaluation.table1.paths import Table1Paths
from evaluation.table1.splits import SPLITS, prepare_split

from lavit_eval_fixtures import write_official_world


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    return write_official_world(tmp_path_factory.mktemp("world"))


def reread(name, files):
    """Ids of the (subset) files, through the official readers."""
    if name == "nocaps":
        return [r.image_id for r in read_nocaps(files["annotations"])]
    if name == "flickr30k":
        return [r.image_id for r in read_karpathy(files["annotations"], "test")]
    if name in ("vqav2", "okvqa"):
        return [r.question_id for r in read_vqa(files["questions"], files["annotations"])]
    if name == "gqa":
        return [r.question_id for r in read_gqa(files["questions"], balanced_only=False)]
    return [r.image for r in read_vizwiz(files["annotations"])]


@pytest.mark.parametrize("name", SPLITS)
def test_first_examples_and_their_subset_files(root, tmp_path, name):
    paths = Table1Paths(root=str(root))
    full = prepare_split(name, paths, None, tmp_path)
    assert not full.subset and reread(name, full.files) == full.ids and len(full.ids) == full.num_in_file
    assert not (tmp_path / name).exists()  # the whole split: the original files are scored
    cut = prepare_split(name, paths, 1, tmp_path)
    per_domain = 3 if name == "nocaps" else 1
    assert cut.subset and len(cut.records) == per_domain
    assert all(str(p).startswith(str(tmp_path / name)) for p in cut.files.values())
    assert reread(name, cut.files) == cut.ids
    expected = full.ids[:1] if name != "nocaps" else [0, 2, 4]  # fixture: two images per domain, in order
    assert cut.ids == expected
    for record in cut.records:
        assert (root / record["image"]).is_file()
        assert ("question" in record) == (name not in ("nocaps", "flickr30k"))
    entries = cut.results(["x"] * len(cut.records))
    assert [e[cut.id_key] for e in entries] == cut.ids and all(e[cut.value_key] == "x" for e in entries)


def test_subset_keeps_the_other_top_level_fields(root, tmp_path):
    cut = prepare_split("vqav2", Table1Paths(root=str(root)), 2, tmp_path)
    original = json.loads((root / "vqav2/v2_OpenEnded_mscoco_val2014_questions.json").read_text())
    subset = json.loads(cut.files["questions"].read_text())
    assert {k: v for k, v in subset.items() if k != "questions"} == {k: v for k, v in original.items() if k != "questions"}
    assert subset["questions"] == original["questions"][:2]


def test_errors_name_the_split(root, tmp_path):
    paths = Table1Paths(root=str(root))
    with pytest.raises(ValueError, match="split: expected one of"):
        prepare_split("coco", paths, None, tmp_path)
    with pytest.raises(ValueError, match="max_examples of split gqa"):
        prepare_split("gqa", paths, 0, tmp_path)
    (root / "vizwiz/val/VizWiz_val_00000002.jpg").rename(tmp_path / "moved.jpg")
    try:
        with pytest.raises(FileNotFoundError, match=r"split vizwiz: image file not found: .*VizWiz_val_00000002.jpg"):
            prepare_split("vizwiz", paths, None, tmp_path)
        prepare_split("vizwiz", paths, 2, tmp_path)  # the first two images are there
    finally:
        (tmp_path / "moved.jpg").rename(root / "vizwiz/val/VizWiz_val_00000002.jpg")
    with pytest.raises(ValueError, match="set exactly one"):
        Table1Paths(train_caption_shards="")
