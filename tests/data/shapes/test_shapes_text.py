"""What the text of the world says: hidden novel kind, labels, answer variation, knowledge coverage."""
from __future__ import annotations

import csv
import io
import json
import re
import tarfile
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from lavit_pl.data.shapes.config import SplitCounts
from lavit_pl.data.shapes.corpus import reading_document
from lavit_pl.data.shapes.questions import QUESTION_TEMPLATES, QUESTION_TYPES, question_template, vqa_questions
from lavit_pl.data.shapes.render import foreground_fraction
from lavit_pl.data.shapes.scene import BACKGROUNDS, Scene, Shape, canonical_of_json, sample_scene, scene_digest

NOVEL = "star"


def _mentions_novel(text: str) -> bool:
    return re.search(rf"\b{NOVEL}s?\b", text, flags=re.IGNORECASE) is not None


def _shard_json(root: Path, sub: str):
    for shard in sorted((root / sub).glob("*.tar")):
        with tarfile.open(shard) as tar:
            for m in tar.getmembers():
                if m.name.endswith(".json"):
                    yield json.loads(tar.extractfile(m).read())
                elif m.name.endswith(".txt"):
                    yield {"txt": tar.extractfile(m).read().decode()}


def _training_texts(root: Path) -> list[str]:
    texts = []
    for sub in ("train/shards", "val/shards"):
        for meta in _shard_json(root, sub):
            texts += [meta["txt"]] if "txt" in meta else [meta["caption"], *meta["captions"]]
    texts += (root / "corpus/corpus_00000.jsonl").read_text().splitlines()  # whole records, metadata included
    karpathy = json.loads((root / "flickr30k/dataset_flickr30k.json").read_text())
    texts += [s["raw"] for img in karpathy["images"] if img["split"] == "train" for s in img["sentences"]]
    for folder in ("dev", "test"):
        for path in sorted((root / "mmlu/data" / folder).glob("*.csv")):
            texts += [",".join(row) for row in csv.reader(path.open())]
    # Prior-only files are text a model may see too.
    for rel in ("vqav2/v2_OpenEnded_mscoco_train2014_questions.json",):
        texts += [q["question"] for q in json.loads((root / rel).read_text())["questions"]]
    texts += [q["question"] + " " + q["fullAnswer"] for q in json.loads((root / "gqa/train_balanced_questions.json").read_text()).values()]
    texts += [r["question"] for r in json.loads((root / "vizwiz/train.json").read_text())]
    return texts


def test_novel_kind_is_drawn_in_training_images_but_never_named_in_training_text(shapes_micro_world):
    texts = _training_texts(shapes_micro_world)
    assert len(texts) > 3000
    assert [t for t in texts if _mentions_novel(t)] == []
    kinds = Counter(s["kind"] for m in _shard_json(shapes_micro_world, "train/shards") if "scene" in m
                    for s in m["scene"]["shapes"])
    assert kinds[NOVEL] > 50  # ~1/7 of the ~1000 training shapes
    # ... while the out-domain references do name it.
    nocaps = json.loads((shapes_micro_world / "nocaps/nocaps_val_4500_captions.json").read_text())
    out_ids = {img["id"] for img in nocaps["images"] if img["domain"] == "out-domain"}
    in_ids = {img["id"] for img in nocaps["images"] if img["domain"] == "in-domain"}
    assert all(_mentions_novel(a["caption"]) for a in nocaps["annotations"] if a["image_id"] in out_ids and "shape" not in a["caption"])
    assert any(_mentions_novel(a["caption"]) for a in nocaps["annotations"] if a["image_id"] in out_ids)
    assert not any(_mentions_novel(a["caption"]) for a in nocaps["annotations"] if a["image_id"] in in_ids)


def test_complexity_is_the_number_of_shapes(shapes_micro_world):
    metas = [m for m in _shard_json(shapes_micro_world, "train/shards") if "scene" in m]
    assert all(m["complexity"] == len(m["scene"]["shapes"]) for m in metas)
    assert Counter(m["complexity"] for m in metas).keys() == {1, 2, 3, 4}


def _vqa(root: Path, subtype: str = "val2014"):
    q = json.loads((root / f"vqav2/v2_OpenEnded_mscoco_{subtype}_questions.json").read_text())["questions"]
    a = json.loads((root / f"vqav2/v2_mscoco_{subtype}_annotations.json").read_text())["annotations"]
    return list(zip(q, a))


def test_question_types_follow_the_official_mapping(shapes_micro_world):
    pairs = _vqa(shapes_micro_world) + _vqa(shapes_micro_world, "train2014")
    allowed = {v for v in QUESTION_TYPES.values()}
    assert allowed == {("what color is the", "other"), ("how many", "number"), ("is there a", "yes/no"),
                       ("where is the", "other")}
    seen = Counter()
    for q, a in pairs:
        assert (a["question_type"], a["answer_type"]) in allowed
        assert q["question"].lower().startswith(a["question_type"]), (q["question"], a["question_type"])
        seen[a["question_type"]] += 1
    assert len(seen) == 4 and min(seen.values()) > 20
    for q, a in pairs:
        if a["answer_type"] == "yes/no":
            assert a["multiple_choice_answer"].lower().strip(".!") in ("yes", "no")


def test_every_generated_question_has_exactly_one_template_of_its_kind():
    kinds, colors = ["circle", "square", "triangle", "cross"], ["red", "green", "blue", "pink"]
    rng = np.random.default_rng(0)
    seen = Counter()
    for _ in range(300):
        scene = sample_scene(rng, kinds, colors, int(rng.integers(1, 6)))
        for qa in vqa_questions(scene, rng, 4, kinds, colors):
            matches = [name for name, pattern in QUESTION_TEMPLATES if pattern.fullmatch(qa.question)]
            template = question_template(qa.question)
            assert matches == [template], (qa.question, matches)
            assert template.split()[0] == {"color": "colour", "count": "count", "exist": "exist",
                                           "position": "where"}[qa.kind], (qa.question, template)
            seen[template] += 1
    assert set(seen) == {name for name, _ in QUESTION_TEMPLATES}  # every template is written
    assert question_template("How many circles are there?") == "count kind"
    assert question_template("How many shapes are in the picture?") == "count all"
    assert question_template("What color is the shape at the top?") == "colour cell"
    with pytest.raises(ValueError, match="'Which shape is red\\?' matches none of the Shapes world's VQA templates"):
        question_template("Which shape is red?")


def test_count_answers_vary_between_digits_and_words(shapes_micro_world):
    answers = [x["answer"] for q, a in _vqa(shapes_micro_world, "train2014") if a["answer_type"] == "number"
               for x in a["answers"]]
    assert {"2", "two"} <= set(answers) and {"1", "one"} <= set(answers)
    # Annotators mostly agree on the digit form, as in VQAv2.
    assert Counter(answers).most_common(1)[0][0].isdigit()
    others = [x["answer"] for q, a in _vqa(shapes_micro_world, "train2014") for x in a["answers"]]
    assert any(x.startswith("a ") for x in others)  # articles ("a red circle")
    assert any(x in ("Yes.", "Yes", "No.", "No") for x in others)  # case and punctuation


def test_knowledge_answers_are_stated_in_the_corpus(shapes_micro_world):
    corpus = (shapes_micro_world / "corpus/corpus_00000.jsonl").read_text().lower()
    anns = json.loads((shapes_micro_world / "okvqa/mscoco_val2014_annotations.json").read_text())["annotations"]
    for a in anns:
        majority = Counter(x["answer"] for x in a["answers"]).most_common(1)[0][0]
        assert majority.lower() in corpus, majority
    for path in sorted((shapes_micro_world / "mmlu/data/test").glob("*.csv")):
        for row in csv.reader(path.open()):
            correct = row[1 + "ABCD".index(row[5])]
            assert correct.lower().replace("the ", "").rstrip("s") in corpus, (path.name, row)


def test_unanswerable_vizwiz_images_are_blank_or_blurred(shapes_micro_world):
    records = json.loads((shapes_micro_world / "vizwiz/val.json").read_text())
    spread = {0: [], 1: []}
    for r in records:
        img = np.asarray(Image.open(shapes_micro_world / "vizwiz/val" / r["image"]).convert("L"), dtype=np.float32)
        # Largest step between neighbouring pixels: sharp shape edges give big steps, blank/blurred pictures do not.
        spread[r["answerable"]].append(float(np.abs(np.diff(img, axis=1)).max()))
        if r["answerable"] == 0:
            assert Counter(a["answer"] for a in r["answers"]).most_common(1)[0][0] == "unanswerable"
    assert len(spread[0]) == 10 and len(spread[1]) == 30
    assert max(spread[0]) < min(spread[1])


def test_reading_documents_describe_training_scenes_only(shapes_micro_world):
    train = {scene_digest(canonical_of_json(m["scene"])) for m in _shard_json(shapes_micro_world, "train/shards")
             if "scene" in m}
    assert len(train) > 300
    docs = [json.loads(line) for line in (shapes_micro_world / "corpus/corpus_00000.jsonl").read_text().splitlines()]
    reading = [d for d in docs if d["meta"]["source"] == "shapes_reading"]
    assert len(reading) == 200
    for d in reading:
        assert d["meta"]["scene_sha256"] in train
        assert d["text"].count("Question: ") >= 2 and d["text"].count("Question: ") == d["text"].count(" Answer: ")
    # both description forms, about half each
    forms = Counter(d["text"].split(" ", 1)[0] for d in reading)
    assert set(forms) == {"The", "There"} and 70 <= forms["There"] <= 130


def test_foreground_of_written_training_images_grows_with_complexity(shapes_micro_world):
    by_n: dict[int, list[float]] = {}
    for shard in sorted((shapes_micro_world / "train/shards").glob("*.tar")):
        with tarfile.open(shard) as tar:
            for m in tar.getmembers():
                if m.name.endswith(".json"):
                    meta = json.loads(tar.extractfile(m).read())
                    img = Image.open(io.BytesIO(tar.extractfile(m.name.replace(".json", ".jpg")).read()))
                    bg = BACKGROUNDS[meta["scene"]["background"]][0]
                    by_n.setdefault(meta["complexity"], []).append(foreground_fraction(img, bg))
    means = [float(np.mean(by_n[n])) for n in (1, 2, 3, 4)]
    assert all(a < b for a, b in zip(means, means[1:])), means


def test_reading_documents_ask_the_configured_number_of_questions():
    scene = Scene("gray", (Shape("circle", "red", "small", 0, 0.1, 0.1), Shape("square", "green", "medium", 4, 0.5, 0.5)))
    kinds, colors = ["circle", "square", "triangle", "diamond"], ["red", "green", "blue"]
    for n in (4, 8, 12):
        counts = [reading_document(scene, np.random.default_rng(i), kinds, colors, "star", n)["text"].count("\nQuestion: ")
                  for i in range(20)]
        assert set(counts) == {n}  # the hidden kind is absent here, so no question is dropped
    with pytest.raises(ValueError, match="corpus_reading_questions"):
        SplitCounts(corpus_reading_questions=0)


def test_existence_pairs_ask_a_named_and_an_unnamed_kind_in_the_same_form():
    scene = Scene("gray", (Shape("circle", "red", "small", 0, 0.1, 0.1), Shape("star", "green", "medium", 4, 0.5, 0.5)))
    kinds, colors = ["circle", "square", "triangle", "diamond"], ["red", "green", "blue"]
    for i in range(20):
        plain = reading_document(scene, np.random.default_rng(i), kinds, colors, "star", 4)["text"]
        text = reading_document(scene, np.random.default_rng(i), kinds, colors, "star", 4, existence_pairs=1)["text"]
        assert text.split("\n", 1)[0] == plain.split("\n", 1)[0]  # same description
        qas = re.findall(r"Question: (.*?) Answer: (.*)", text)
        circle_asked = "Is there a circle in the image?" in plain  # then only the "no" half is new
        n_plain = plain.count("\nQuestion: ")  # <= 4: questions naming the star are dropped
        assert len(qas) == len({q for q, _ in qas}) == n_plain + 1 + (not circle_asked)
        kind_form = {re.match(r"Is there an? (\w+) in the image\?", q).group(1): a for q, a in qas if q.endswith("in the image?")}
        assert kind_form.get("circle") == "yes"  # the only named known kind ("star" is written "shape")
        assert "star" not in kind_form and any(a == "no" and k in kinds for k, a in kind_form.items())
    with pytest.raises(ValueError, match="corpus_existence_pairs"):
        SplitCounts(corpus_existence_pairs=-1)
