"""Readers of the COCO captions, Karpathy and NoCaps layouts on the official-layout fixtures."""
import json
from pathlib import Path

import pytest

from evaluation.benchmarks.coco_captions import read_coco_captions
from evaluation.benchmarks.errors import BenchmarkFileError, MissingImageError
from evaluation.benchmarks.karpathy import is_karpathy_layout, read_karpathy
from evaluation.benchmarks.nocaps import read_nocaps

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "official"
COCO = FIXTURES / "coco/annotations/captions_val2014.json"
FLICKR = FIXTURES / "flickr30k/dataset_flickr30k.json"
NOCAPS = FIXTURES / "nocaps/nocaps_val_4500_captions.json"


def write(tmp_path: Path, name: str, obj) -> Path:
    path = tmp_path / name
    path.write_text(json.dumps(obj))
    return path


def test_coco_captions_join_images_and_annotations():
    records = read_coco_captions(COCO)
    assert [r.image_id for r in records] == [42, 73, 74, 133, 136]
    assert records[0].image_file == "COCO_val2014_000000000042.jpg"
    assert len(records[0].captions) == 5 and records[0].captions[0].startswith("A man riding a wave")
    assert records[0].annotation_ids == (1000, 1001, 1002, 1003, 1004)


@pytest.mark.parametrize("mutate, record, key", [
    (lambda d: d["annotations"][3].pop("caption"), "annotations[3]", "caption"),
    (lambda d: d["images"][1].pop("file_name"), "images[1]", "file_name"),
    (lambda d: d["annotations"][0].update(image_id="42"), "annotations[0]", "image_id"),
    (lambda d: d["annotations"][2].update(image_id=999), "annotations[2]", "image_id"),
    (lambda d: d.pop("annotations"), None, "annotations"),
])
def test_coco_bad_record_names_file_record_and_key(tmp_path, mutate, record, key):
    data = json.loads(COCO.read_text())
    mutate(data)
    path = write(tmp_path, "bad.json", data)
    with pytest.raises(BenchmarkFileError) as info:
        read_coco_captions(path)
    message = str(info.value)
    assert str(path) in message and f"key '{key}'" in message
    if record is not None:
        assert f"record {record}" in message


def test_coco_image_without_caption_and_duplicate_image(tmp_path):
    data = json.loads(COCO.read_text())
    data["annotations"] = [a for a in data["annotations"] if a["image_id"] != 74]
    with pytest.raises(BenchmarkFileError, match="image id 74.*no caption"):
        read_coco_captions(write(tmp_path, "a.json", data))
    data = json.loads(COCO.read_text())
    data["images"].append(dict(data["images"][0]))
    with pytest.raises(BenchmarkFileError, match="duplicate image id 42"):
        read_coco_captions(write(tmp_path, "b.json", data))


def test_missing_and_unparsable_files(tmp_path):
    with pytest.raises(BenchmarkFileError, match="file not found"):
        read_coco_captions(tmp_path / "nope.json")
    bad = tmp_path / "broken.json"
    bad.write_text('{"images": [')
    with pytest.raises(BenchmarkFileError, match="not valid JSON"):
        read_coco_captions(bad)


def test_missing_image_is_reported_by_path(tmp_path):
    for name in ("COCO_val2014_000000000042.jpg", "COCO_val2014_000000000073.jpg"):
        (tmp_path / name).write_bytes(b"jpg")
    with pytest.raises(MissingImageError) as info:
        read_coco_captions(COCO, image_root=tmp_path)
    assert info.value.image_path == tmp_path / "COCO_val2014_000000000074.jpg"
    assert info.value.n_missing == 3 and str(tmp_path / "COCO_val2014_000000000074.jpg") in str(info.value)


def test_karpathy_split_is_explicit_and_filters():
    assert is_karpathy_layout(json.loads(FLICKR.read_text()))
    assert not is_karpathy_layout(json.loads(COCO.read_text()))
    test = read_karpathy(FLICKR, "test")
    assert [(r.image_id, r.image_file) for r in test] == [(3, "1000344755.jpg"), (4, "1000366164.jpg")]
    assert len(read_karpathy(FLICKR, "train")) == 2 and len(read_karpathy(FLICKR, "restval")) == 1
    assert test[1].captions[2] == "Two men are cooking a meal."
    assert test[1].tokens[2] == ("two", "men", "are", "cooking", "a", "meal")
    with pytest.raises(TypeError):
        read_karpathy(FLICKR)  # no default split: "all images" is never implied
    with pytest.raises(ValueError, match="split"):
        read_karpathy(FLICKR, "all")


def test_karpathy_filepath_prefixes_the_image_file(tmp_path):
    data = json.loads(FLICKR.read_text())
    data["images"][3]["filepath"] = "val2014"  # dataset_coco.json carries one
    records = read_karpathy(write(tmp_path, "k.json", data), "test")
    assert [r.image_file for r in records] == ["val2014/1000344755.jpg", "1000366164.jpg"]


def test_karpathy_bad_sentence(tmp_path):
    data = json.loads(FLICKR.read_text())
    data["images"][4]["sentences"][1].pop("raw")
    path = write(tmp_path, "k.json", data)
    with pytest.raises(BenchmarkFileError, match=r"images\[4\] \(imgid 4\)\.sentences\[1\].*key 'raw'"):
        read_karpathy(path, "train")  # validated even though the image is in another split
    data = json.loads(FLICKR.read_text())
    data["images"][0]["split"] = "dev"
    with pytest.raises(BenchmarkFileError, match="key 'split'"):
        read_karpathy(write(tmp_path, "k2.json", data), "test")


def test_nocaps_domains():
    every = read_nocaps(NOCAPS)
    assert [r.domain for r in every] == ["in-domain", "in-domain", "near-domain", "near-domain",
                                         "out-domain", "out-domain"]
    assert every[0].open_images_id == "0013ea2087020901" and every[0].image_file == "0013ea2087020901.jpg"
    out = read_nocaps(NOCAPS, domains=["out-domain"])
    assert [r.image_id for r in out] == [4, 5] and len(out[0].captions) == 4
    with pytest.raises(ValueError, match="unknown NoCaps domain"):
        read_nocaps(NOCAPS, domains=["indomain"])


def test_nocaps_bad_domain(tmp_path):
    data = json.loads(NOCAPS.read_text())
    data["images"][2]["domain"] = "near"
    with pytest.raises(BenchmarkFileError, match=r"images\[2\] \(id 2\).*key 'domain'"):
        read_nocaps(write(tmp_path, "n.json", data))
