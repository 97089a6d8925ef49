"""Readers of the VQAv2 / OK-VQA, GQA and VizWiz layouts on the official-layout fixtures."""
import json
from pathlib import Path

import pytest

from evaluation.benchmarks.errors import BenchmarkFileError, MissingImageError
from evaluation.benchmarks.gqa import read_gqa
from evaluation.benchmarks.vizwiz import read_vizwiz
from evaluation.benchmarks.vqa import read_vqa, read_vqa_questions

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "official"
VQA_Q = FIXTURES / "vqav2/v2_OpenEnded_mscoco_val2014_questions.json"
VQA_A = FIXTURES / "vqav2/v2_mscoco_val2014_annotations.json"
OK_Q = FIXTURES / "okvqa/OpenEnded_mscoco_val2014_questions.json"
OK_A = FIXTURES / "okvqa/mscoco_val2014_annotations.json"


def write(tmp_path: Path, name: str, obj) -> Path:
    path = tmp_path / name
    path.write_text(json.dumps(obj))
    return path


def test_vqa_join():
    records = read_vqa(VQA_Q, VQA_A)
    assert [r.question_id for r in records] == [42000, 42001, 73000, 73001, 74000, 74001]
    first = records[0]
    assert (first.question, first.question_type, first.answer_type) == ("Is there a dog?", "is there a", "yes/no")
    assert first.answers == ("yes",) * 10 and first.image_file == "COCO_val2014_000000000042.jpg"
    assert records[2].answers[2] == "two"


def test_okvqa_same_layout():
    records = read_vqa(OK_Q, OK_A)
    assert [r.question_type for r in records] == ["one", "eight", "other"]
    assert records[1].answers.count("leather") == 6
    # OK-VQA has no multiple_choice_answer: the most frequent answer, ties to the smallest string
    # (question 1: motocross 4, race 4, riding 2 -> "motocross").
    assert [r.multiple_choice_answer for r in records] == ["motocross", "leather", "italy"]


def test_vqa_id_mismatches_name_the_first_offender(tmp_path):
    ann = json.loads(VQA_A.read_text())
    ann["annotations"] = ann["annotations"][:3] + ann["annotations"][4:]
    path = write(tmp_path, "a.json", ann)
    with pytest.raises(BenchmarkFileError, match=r"no annotation for question_id 73001 \(questions\[3\]"):
        read_vqa(VQA_Q, path)
    q = json.loads(VQA_Q.read_text())
    q["questions"] = q["questions"][1:]
    with pytest.raises(BenchmarkFileError, match="question_id 42000 is not in"):
        read_vqa(write(tmp_path, "q.json", q), VQA_A)
    ann = json.loads(VQA_A.read_text())
    ann["annotations"][1]["image_id"] = 43
    with pytest.raises(BenchmarkFileError, match=r"annotations\[1\] \(question_id 42001\).*key 'image_id'"):
        read_vqa(VQA_Q, write(tmp_path, "a2.json", ann))


def test_vqa_bad_annotation_records(tmp_path):
    ann = json.loads(VQA_A.read_text())
    ann["annotations"][2]["answers"] = ann["annotations"][2]["answers"][:9]
    with pytest.raises(BenchmarkFileError, match=r"question_id 73000.*key 'answers'.*expected 10 answers, got 9"):
        read_vqa(VQA_Q, write(tmp_path, "a.json", ann))
    ann = json.loads(VQA_A.read_text())
    del ann["annotations"][5]["answers"][7]["answer"]
    with pytest.raises(BenchmarkFileError, match=r"answers\[7\].*key 'answer'"):
        read_vqa(VQA_Q, write(tmp_path, "a2.json", ann))
    ann = json.loads(VQA_A.read_text())
    ann["annotations"][0].pop("question_type")
    with pytest.raises(BenchmarkFileError, match="key 'question_type'"):
        read_vqa(VQA_Q, write(tmp_path, "a3.json", ann))
    ann = json.loads(VQA_A.read_text())
    ann["data_subtype"] = "train2014"
    with pytest.raises(BenchmarkFileError, match="data_subtype"):
        read_vqa(VQA_Q, write(tmp_path, "a4.json", ann))


def test_vqa_duplicate_question_and_images(tmp_path):
    q = json.loads(VQA_Q.read_text())
    q["questions"].append(q["questions"][0])
    with pytest.raises(BenchmarkFileError, match=r"questions\[6\].*duplicate question_id 42000"):
        read_vqa_questions(write(tmp_path, "q.json", q))
    (tmp_path / "COCO_val2014_000000000042.jpg").write_bytes(b"jpg")
    with pytest.raises(MissingImageError, match="COCO_val2014_000000000073.jpg"):
        read_vqa(VQA_Q, VQA_A, image_root=tmp_path)


def test_gqa():
    records = read_gqa(FIXTURES / "gqa/testdev_balanced_questions.json")
    assert [r.question_id for r in records] == ["20968379", "20968380", "201640614", "201640615", "201640616"]
    r = records[3]
    assert (r.image_id, r.answer, r.structural, r.semantic, r.detailed) == (
        "n161313", "left", "choose", "rel", "positionChoose")
    assert r.image_file == "n161313.jpg"
    train = FIXTURES / "gqa/train_balanced_questions.json"
    assert len(read_gqa(train)) == 8 and len(read_gqa(train, balanced_only=False)) == 9


def test_gqa_bad_record(tmp_path):
    data = json.loads((FIXTURES / "gqa/testdev_balanced_questions.json").read_text())
    del data["201640614"]["types"]["detailed"]
    with pytest.raises(BenchmarkFileError, match=r"questionId 201640614\.types.*key 'detailed'"):
        read_gqa(write(tmp_path, "g.json", data))
    with pytest.raises(BenchmarkFileError, match="keyed by questionId"):
        read_gqa(write(tmp_path, "g2.json", [1, 2]))


def test_vizwiz():
    records = read_vizwiz(FIXTURES / "vizwiz/val.json")
    assert [r.answer_type for r in records] == ["unanswerable", "yes/no", "number", "other"]
    assert records[0].answerable == 0 and records[0].answers == ("unanswerable",) * 10
    assert records[2].image == "VizWiz_val_00000002.jpg"


def test_vizwiz_bad_records(tmp_path):
    data = json.loads((FIXTURES / "vizwiz/val.json").read_text())
    data[1]["answer_type"] = "boolean"
    with pytest.raises(BenchmarkFileError, match=r"\[1\] \(image VizWiz_val_00000001.jpg\).*key 'answer_type'"):
        read_vizwiz(write(tmp_path, "v.json", data))
    data = json.loads((FIXTURES / "vizwiz/val.json").read_text())
    data[2]["answerable"] = True
    with pytest.raises(BenchmarkFileError, match="key 'answerable'"):
        read_vizwiz(write(tmp_path, "v2.json", data))
    data = json.loads((FIXTURES / "vizwiz/val.json").read_text())
    data[3]["answers"].pop()
    with pytest.raises(BenchmarkFileError, match="expected 10 answers, got 9"):
        read_vizwiz(write(tmp_path, "v3.json", data))
