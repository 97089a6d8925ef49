"""Results-file readers, id alignment, COCO-30K prompt sampling and img2dataset shard captions."""
import hashlib
import io
import json
import tarfile
from pathlib import Path

import pytest

from evaluation.benchmarks.coco30k import sample_t2i_prompts
from evaluation.benchmarks.errors import BenchmarkFileError
from evaluation.benchmarks.img2dataset_captions import read_shard_captions
from evaluation.benchmarks.results import align_predictions, read_results

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "official"
COCO = FIXTURES / "coco/annotations/captions_val2014.json"


def write(tmp_path: Path, name: str, obj) -> Path:
    path = tmp_path / name
    path.write_text(json.dumps(obj))
    return path


def test_read_results_each_schema():
    vqa = read_results(FIXTURES / "results/vqav2_val_results.json", "vqa")
    assert vqa[42000] == "Yes" and len(vqa) == 6
    assert read_results(FIXTURES / "results/coco_captions_results.json", "caption")[136] == "a cat sitting on a desk"
    assert read_results(FIXTURES / "results/gqa_testdev_results.json", "gqa")["201640615"] == "Left"
    assert read_results(FIXTURES / "results/vizwiz_val_results.json", "vizwiz")["VizWiz_val_00000002.jpg"] == "20"


def test_gqa_integer_ids_become_strings(tmp_path):
    path = write(tmp_path, "r.json", [{"questionId": 20968379, "prediction": "yes"}])
    assert read_results(path, "gqa") == {"20968379": "yes"}


def test_results_errors(tmp_path):
    path = write(tmp_path, "r.json", [{"question_id": 1, "answer": "a"}, {"question_id": 1, "answer": "b"}])
    with pytest.raises(BenchmarkFileError, match=r"record \[1\].*duplicate question_id 1 \(first at \[0\]\)"):
        read_results(path, "vqa")
    path = write(tmp_path, "r2.json", [{"question_id": 1, "answer": "a"}, {"question_id": 2}])
    with pytest.raises(BenchmarkFileError, match=r"record \[1\] \(question_id 2\).*key 'answer'"):
        read_results(path, "vqa")
    path = write(tmp_path, "r3.json", {"question_id": 1, "answer": "a"})
    with pytest.raises(BenchmarkFileError, match="top level must be a list"):
        read_results(path, "vqa")
    path = write(tmp_path, "r4.json", [{"image_id": "42", "caption": "x"}])
    with pytest.raises(BenchmarkFileError, match="key 'image_id'.*expected an integer"):
        read_results(path, "caption")


def test_align_names_first_missing_and_first_extra(tmp_path):
    preds = {1: "a", 2: "b", 9: "z"}
    with pytest.raises(BenchmarkFileError, match="no prediction for 1 of 3 question_ids; first missing question_id 3"):
        align_predictions(preds, [1, 2, 3], tmp_path / "r.json", "question_id")
    with pytest.raises(BenchmarkFileError, match="first extra question_id 9"):
        align_predictions(preds, [1, 2], tmp_path / "r.json", "question_id")
    assert align_predictions({2: "b", 1: "a"}, [1, 2], tmp_path / "r.json", "question_id") == ["a", "b"]


def test_t2i_prompts_are_deterministic_nested_and_seeded():
    every = sample_t2i_prompts(COCO, None, seed=0)
    assert [p.image_id for p in every] == [42, 73, 74, 133, 136]
    three = sample_t2i_prompts(COCO, 3, seed=0)
    assert three == sample_t2i_prompts(COCO, 3, seed=0)
    assert set(p.image_id for p in three) <= set(p.image_id for p in every)
    chosen = {p.image_id: p.caption for p in every}
    assert all(chosen[p.image_id] == p.caption for p in three)  # caption does not depend on the subset size
    # Pinned draw (SHA-256 of "seed:purpose:image_id"), so a change of the rule is noticed.
    assert [p.image_id for p in three] == PINNED_SEED0_IDS
    assert [p.annotation_id for p in every] == PINNED_SEED0_ANNS
    other = sample_t2i_prompts(COCO, None, seed=1)
    assert [p.annotation_id for p in other] != [p.annotation_id for p in every]
    with pytest.raises(BenchmarkFileError, match="asked for 6 prompts but the file has 5 images"):
        sample_t2i_prompts(COCO, 6, seed=0)
    with pytest.raises(ValueError, match="num_prompts"):
        sample_t2i_prompts(COCO, 0, seed=0)


def _tar(path: Path, members: dict[str, bytes]) -> None:
    with tarfile.open(path, "w") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))


def test_shard_captions(tmp_path):
    _tar(tmp_path / "00000.tar", {
        "000000000.jpg": b"x", "000000000.txt": b"a red circle",
        "000000000.json": json.dumps({"caption": "a red circle",
                                      "captions": ["a red circle", "one red circle"]}).encode(),
        "000000001.jpg": b"x", "000000001.txt": b"a blue square", "000000001.json": b'{"caption": "a blue square"}',
    })
    records = read_shard_captions([tmp_path / "00000.tar"])
    assert [(r.key, r.captions) for r in records] == [
        ("000000000", ("a red circle", "one red circle")), ("000000001", ("a blue square",))]
    (tmp_path / "00001.tar").write_bytes(b"not a tar at all")
    with pytest.raises(BenchmarkFileError, match="00001.tar: unreadable tar shard"):
        read_shard_captions([tmp_path / "00001.tar"])


PINNED_SEED0_IDS = [42, 73, 74]
PINNED_SEED0_ANNS = [1000, 1005, 1013, 1016, 1020]


def test_t2i_caption_draw_rule_by_hand():
    # Image 74 has annotation ids 1010..1014; the rule picks index sha256("0:caption:74")[:8] % 5.
    digest = hashlib.sha256(b"0:caption:74").digest()
    index = int.from_bytes(digest[:8], "big") % 5
    prompt = next(p for p in sample_t2i_prompts(COCO, None, seed=0) if p.image_id == 74)
    assert prompt.annotation_id == 1010 + index
