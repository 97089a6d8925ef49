"""Every JSON / CSV / JSONL / shard the world writes has the official keys (docs/data_layout.md).

Parsed with json / csv / tarfile only: the real readers are tested elsewhere.
"""
from __future__ import annotations

import csv
import json
import tarfile
from pathlib import Path

VQA_ANSWER_TYPES = {"other", "number", "yes/no"}
CONFIDENCES = {"yes", "maybe", "no"}


def _load(root: Path, rel: str):
    return json.loads((root / rel).read_text())


def _check_coco(data: dict, root: Path, image_folder: str, extra_image_keys: set[str] = frozenset()) -> None:
    assert {"info", "licenses", "images", "annotations"} <= set(data)
    ids = set()
    for img in data["images"]:
        assert {"id", "file_name", "height", "width"} | extra_image_keys <= set(img)
        assert (root / image_folder / img["file_name"]).is_file()
        ids.add(img["id"])
    per_image = {}
    for ann in data["annotations"]:
        assert {"id", "image_id", "caption"} <= set(ann) and ann["image_id"] in ids
        per_image[ann["image_id"]] = per_image.get(ann["image_id"], 0) + 1
    assert set(per_image.values()) == {5} and len(per_image) == len(ids)


def test_coco_and_nocaps(shapes_micro_world):
    root = shapes_micro_world
    _check_coco(_load(root, "coco/annotations/captions_val2014.json"), root, "coco/val2014")
    nocaps = _load(root, "nocaps/nocaps_val_4500_captions.json")
    _check_coco(nocaps, root, "nocaps/images", {"domain", "open_images_id"})
    assert {img["domain"] for img in nocaps["images"]} == {"in-domain", "near-domain", "out-domain"}
    name = _load(root, "coco/annotations/captions_val2014.json")["images"][0]["file_name"]
    assert name.startswith("COCO_val2014_") and len(name) == len("COCO_val2014_000000000042.jpg")


def test_karpathy(shapes_micro_world):
    data = _load(shapes_micro_world, "flickr30k/dataset_flickr30k.json")
    assert data["dataset"] == "flickr30k"
    splits = {img["split"] for img in data["images"]}
    assert splits == {"train", "test"}
    sentids = []
    for imgid, img in enumerate(data["images"]):
        assert {"filename", "imgid", "split", "sentids", "sentences"} <= set(img) and img["imgid"] == imgid
        assert (shapes_micro_world / "flickr30k/images" / img["filename"]).is_file()
        for s in img["sentences"]:
            assert {"raw", "tokens", "imgid", "sentid"} <= set(s) and s["imgid"] == imgid
            assert s["tokens"] == [t for t in s["tokens"] if t.isalnum() and t == t.lower()]
        assert img["sentids"] == [s["sentid"] for s in img["sentences"]]
        sentids += img["sentids"]
    assert sentids == list(range(len(sentids)))


def _check_vqa(root: Path, questions: str, annotations: str, subtype: str, folder: str) -> list[dict]:
    q, a = _load(root, questions), _load(root, annotations)
    assert {"info", "task_type", "data_type", "data_subtype", "license", "questions"} <= set(q)
    assert q["task_type"] == "Open-Ended" and q["data_type"] == "mscoco" and q["data_subtype"] == subtype
    assert {"info", "license", "data_subtype", "annotations"} <= set(a)
    assert [x["question_id"] for x in q["questions"]] == [x["question_id"] for x in a["annotations"]]
    assert len({x["question_id"] for x in q["questions"]}) == len(q["questions"]) > 0
    for qq in q["questions"]:
        assert set(qq) == {"image_id", "question", "question_id"}
        assert (root / folder / f"COCO_{subtype}_{qq['image_id']:012d}.jpg").is_file()
    for ann in a["annotations"]:
        assert {"question_id", "image_id", "question_type", "answer_type", "multiple_choice_answer", "answers"} <= set(ann)
        assert ann["answer_type"] in VQA_ANSWER_TYPES
        assert [x["answer_id"] for x in ann["answers"]] == list(range(1, 11))
        assert all(set(x) == {"answer", "answer_confidence", "answer_id"} for x in ann["answers"])
        assert all(x["answer_confidence"] in CONFIDENCES for x in ann["answers"])
        assert ann["multiple_choice_answer"] in [x["answer"] for x in ann["answers"]]
    return a["annotations"]


def test_vqav2_and_okvqa(shapes_micro_world):
    root = shapes_micro_world
    _check_vqa(root, "vqav2/v2_OpenEnded_mscoco_val2014_questions.json", "vqav2/v2_mscoco_val2014_annotations.json",
               "val2014", "vqav2/val2014")
    _check_vqa(root, "vqav2/v2_OpenEnded_mscoco_train2014_questions.json", "vqav2/v2_mscoco_train2014_annotations.json",
               "train2014", "vqav2/train2014")
    anns = _check_vqa(root, "okvqa/OpenEnded_mscoco_val2014_questions.json", "okvqa/mscoco_val2014_annotations.json",
                      "val2014", "okvqa/val2014")
    assert {a["answer_type"] for a in anns} == {"other"}
    assert {a["question_type"] for a in anns} <= {"two", "three", "five", "six"}


def test_gqa(shapes_micro_world):
    for rel in ("gqa/testdev_balanced_questions.json", "gqa/train_balanced_questions.json"):
        data = _load(shapes_micro_world, rel)
        assert len(data) > 0
        for qid, q in data.items():
            assert qid.isdigit()
            assert {"imageId", "question", "answer", "fullAnswer", "isBalanced", "types", "semantic", "annotations",
                    "equivalent", "entailed", "groups"} <= set(q)
            assert set(q["types"]) == {"structural", "semantic", "detailed"}
            assert q["types"]["structural"] in {"verify", "query", "choose", "logical", "compare"}
            assert q["types"]["semantic"] in {"obj", "attr", "rel", "cat", "global"}
            assert all({"operation", "argument", "dependencies"} == set(s) for s in q["semantic"])
            assert q["answer"] and " " not in q["answer"] and q["fullAnswer"].endswith(".")
            if rel.startswith("gqa/testdev"):
                assert (shapes_micro_world / "gqa/images" / f"{q['imageId']}.jpg").is_file()


def test_vizwiz(shapes_micro_world):
    for rel, image_dir in (("vizwiz/val.json", "vizwiz/val"), ("vizwiz/train.json", None)):
        records = _load(shapes_micro_world, rel)
        assert isinstance(records, list) and records
        for r in records:
            assert set(r) == {"image", "question", "answerable", "answer_type", "answers"}
            assert r["answer_type"] in {"other", "yes/no", "number", "unanswerable"}
            assert r["answerable"] in (0, 1) and (r["answerable"] == 0) == (r["answer_type"] == "unanswerable")
            assert len(r["answers"]) == 10 and all(set(a) == {"answer", "answer_confidence"} for a in r["answers"])
            if image_dir:
                assert r["image"].startswith("VizWiz_val_") and (shapes_micro_world / image_dir / r["image"]).is_file()


def test_mmlu(shapes_micro_world):
    root = shapes_micro_world / "mmlu"
    categories = json.loads((root / "subject_categories.json").read_text())
    assert set(categories.values()) == {"humanities", "STEM", "social sciences", "other"}
    for subject in categories:
        with open(root / "data/dev" / f"{subject}_dev.csv", newline="") as f:
            dev = list(csv.reader(f))
        with open(root / "data/test" / f"{subject}_test.csv", newline="") as f:
            test = list(csv.reader(f))
        assert len(dev) == 5 and len(test) >= 5
        for row in dev + test:
            assert len(row) == 6 and row[5] in "ABCD" and len(set(row[1:5])) == 4
        assert not {r[0] for r in dev} & {r[0] for r in test}


def test_corpus(shapes_micro_world):
    lines = (shapes_micro_world / "corpus/corpus_00000.jsonl").read_text().splitlines()
    sources = set()
    for line in lines:
        doc = json.loads(line)
        assert isinstance(doc["text"], str) and doc["text"] and isinstance(doc["meta"]["source"], str)
        sources.add(doc["meta"]["source"])
    assert sources == {"shapes_facts", "shapes_reading"} and len(lines) == 400


def test_shards(shapes_micro_world):
    root = shapes_micro_world
    for sub, n in (("train/shards", 400), ("val/shards", 160)):
        seen = 0
        for shard in sorted((root / sub).glob("*.tar")):
            stats = json.loads(shard.with_name(shard.stem + "_stats.json").read_text())
            assert {"count", "successes", "failed_to_download", "failed_to_resize", "start_time", "end_time",
                    "status_dict"} <= set(stats)
            with tarfile.open(shard) as tar:
                names = tar.getnames()
                assert all(m.mtime == 0 for m in tar.getmembers())
                keys = sorted({n.split(".")[0] for n in names})
                assert len(keys) == stats["successes"] and all(len(k) == 9 for k in keys)
                for key in keys:
                    meta = json.loads(tar.extractfile(f"{key}.json").read())
                    assert {"url", "key", "status", "error_message", "width", "height", "original_width",
                            "original_height", "exif", "sha256", "caption", "captions", "complexity", "scene"} <= set(meta)
                    assert tar.extractfile(f"{key}.txt").read().decode() == meta["caption"] in meta["captions"]
                    assert len(meta["captions"]) == 5 and meta["width"] == meta["height"] == 32
                    assert {"background", "shapes"} <= set(meta["scene"])
                    for s in meta["scene"]["shapes"]:
                        assert {"kind", "color", "size", "x", "y", "bbox"} <= set(s)
                seen += len(keys)
        assert seen == n
