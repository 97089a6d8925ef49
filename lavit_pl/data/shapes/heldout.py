"""Write the evaluation, prior and text files of a Shapes world in the official layouts.

Each ``write_*`` function takes already-sampled scenes and their JPEG bytes, writes one
benchmark's folder under ``ctx.root`` and returns that split's counts for ``world.json``. Every
image written outside the training shards is recorded in ``ctx.scene_records`` (for
``scenes.jsonl``), which the leakage check compares against the training scenes.
"""
from __future__ import annotations

import hashlib
import json
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from lavit_pl.data.shapes import writers
from lavit_pl.data.shapes.answers import QA, annotate
from lavit_pl.data.shapes.captions import scene_captions
from lavit_pl.data.shapes.config import ShapesWorldConfig
from lavit_pl.data.shapes.corpus import fact_documents, reading_document
from lavit_pl.data.shapes.gqa import gqa_questions
from lavit_pl.data.shapes.lore import Lore, lore_facts
from lavit_pl.data.shapes.questions import (
    QUESTION_TYPES, okvqa_questions, unanswerable_question, vizwiz_phrasing, vqa_questions,
)
from lavit_pl.data.shapes.quiz import SUBJECT_CATEGORIES, build_quiz
from lavit_pl.data.shapes.scene import Scene, canonical

SCENES_FILE = "scenes.jsonl"
# Image-id bases keep the ids of different splits apart (real VQAv2 shares COCO's ids; we do not).
COCO_ID_BASE, VQA_VAL_ID_BASE, VQA_TRAIN_ID_BASE, OKVQA_ID_BASE = 100_000, 200_000, 300_000, 400_000
FLICKR_NAME_BASE, GQA_TEST_ID_BASE, GQA_TRAIN_ID_BASE, GQA_QID_BASE = 1_000_000, 500_000, 600_000, 20_000_000


def read_scenes(root: Path, prefix: str) -> dict[str, Scene]:
    """Image path below ``prefix`` (e.g. "vqav2/val2014/") -> its scene, from ``root``'s scenes.jsonl."""
    path = Path(root) / SCENES_FILE
    out = {}
    with path.open() as f:
        for line_no, line in enumerate(f, 1):
            record = json.loads(line)
            if record["path"].startswith(prefix):
                try:
                    out[record["path"][len(prefix):]] = Scene.from_json(record["scene"])
                except (KeyError, TypeError, ValueError) as e:
                    raise ValueError(f"{path}:{line_no}: not a scene record ({e})") from e
    if not out:
        raise ValueError(f"{path}: no scene under '{prefix}'")
    return out


def split_rng(seed: int, *names: str) -> np.random.Generator:
    """An independent stream per (purpose, split), so resizing one split leaves the others unchanged."""
    return np.random.default_rng([seed, *(zlib.crc32(n.encode()) for n in names)])


@dataclass
class Context:
    root: Path
    cfg: ShapesWorldConfig
    lore: Lore
    scene_records: list[dict[str, Any]] = field(default_factory=list)

    def rng(self, *names: str) -> np.random.Generator:
        return split_rng(self.cfg.seed, *names)

    def put_image(self, rel: str, data: bytes, scene: Scene, split: str, role: str = "heldout") -> None:
        writers.write_image(self.root / rel, data)
        self.scene_records.append(
            {"path": rel, "split": split, "role": role, "canonical": canonical(scene), "scene": scene.to_json()}
        )

    def image_entry(self, image_id: int, file_name: str) -> dict[str, Any]:
        s = self.cfg.image_size
        return {"id": image_id, "file_name": file_name, "height": s, "width": s, "license": 1,
                "date_captured": "2024-01-01 00:00:00"}


def write_coco(ctx: Context, scenes: Sequence[Scene], images: Sequence[bytes]) -> dict[str, int]:
    rng = ctx.rng("captions", "coco")
    entries, caps = [], {}
    for i, (scene, data) in enumerate(zip(scenes, images)):
        image_id = COCO_ID_BASE + i
        name = f"COCO_val2014_{image_id:012d}.jpg"
        ctx.put_image(f"coco/val2014/{name}", data, scene, "coco")
        entries.append(ctx.image_entry(image_id, name))
        caps[image_id] = scene_captions(scene, rng)
    writers.write_coco_captions(ctx.root / "coco/annotations/captions_val2014.json", entries, caps)
    return {"images": len(entries), "captions": sum(len(c) for c in caps.values())}


def write_flickr(
    ctx: Context,
    test_scenes: Sequence[Scene],
    test_images: Sequence[bytes],
    train_samples: Sequence[tuple[Scene, bytes, list[str]]],
) -> dict[str, int]:
    """Karpathy file: ``train`` entries are training pairs (same bytes, same hidden-kind captions)."""
    rng = ctx.rng("captions", "flickr30k")
    entries = []
    for scene, data, captions in train_samples:
        name = f"{FLICKR_NAME_BASE + len(entries)}.jpg"
        ctx.put_image(f"flickr30k/images/{name}", data, scene, "flickr30k_train", role="train")
        entries.append((name, "train", captions))
    for scene, data in zip(test_scenes, test_images):
        name = f"{FLICKR_NAME_BASE + len(entries)}.jpg"
        ctx.put_image(f"flickr30k/images/{name}", data, scene, "flickr30k_test")
        entries.append((name, "test", scene_captions(scene, rng)))
    writers.write_karpathy(ctx.root / "flickr30k/dataset_flickr30k.json", "flickr30k", entries)
    return {"test_images": len(test_scenes), "train_entries": len(train_samples)}


def write_nocaps(ctx: Context, domains: dict[str, tuple[Sequence[Scene], Sequence[bytes]]]) -> dict[str, int]:
    rng = ctx.rng("captions", "nocaps")
    entries, caps, counts = [], {}, {}
    for domain, (scenes, images) in domains.items():
        counts[domain] = len(scenes)
        for scene, data in zip(scenes, images):
            image_id = len(entries)
            oid = hashlib.sha1(f"shapes-nocaps-{ctx.cfg.seed}-{image_id}".encode()).hexdigest()[:16]
            ctx.put_image(f"nocaps/images/{oid}.jpg", data, scene, f"nocaps_{domain}")
            entry = ctx.image_entry(image_id, f"{oid}.jpg")
            entry.update({"open_images_id": oid, "domain": domain})
            entries.append(entry)
            caps[image_id] = scene_captions(scene, rng)  # names the novel kind: these are references
    writers.write_coco_captions(ctx.root / "nocaps/nocaps_val_4500_captions.json", entries, caps)
    return counts


def _vqa_record(rng: np.random.Generator, qa: QA, image_id: int, question_id: int) -> dict[str, Any]:
    answers, most_common = annotate(rng, qa)
    if qa.kind == "knowledge":
        question_type, answer_type = qa.extra["question_type"], "other"
    else:
        question_type, answer_type = QUESTION_TYPES[qa.kind]
    return {"image_id": image_id, "question_id": question_id, "question": qa.question, "question_type": question_type,
            "answer_type": answer_type, "multiple_choice_answer": most_common, "answers": answers}


def _vqa_split(ctx: Context, folder: str, subtype: str, id_base: int, scenes: Sequence[Scene],
               images: Sequence[bytes], knowledge: bool) -> list[dict[str, Any]]:
    cfg, rng = ctx.cfg, ctx.rng("questions", folder, subtype)
    records = []
    for i, (scene, data) in enumerate(zip(scenes, images)):
        image_id = id_base + i
        ctx.put_image(f"{folder}/{subtype}/COCO_{subtype}_{image_id:012d}.jpg", data, scene, f"{folder}_{subtype}",
                      role="prior" if subtype == "train2014" else "heldout")
        if knowledge:
            qas = okvqa_questions(scene, rng, cfg.counts.okvqa_questions_per_image, ctx.lore)
        else:
            qas = vqa_questions(scene, rng, cfg.counts.vqa_questions_per_image, cfg.known_kinds, cfg.colors)
        records += [_vqa_record(rng, qa, image_id, image_id * 1000 + j) for j, qa in enumerate(qas)]
    return records


def write_vqav2(ctx: Context, val: tuple[Sequence[Scene], Sequence[bytes]],
                train: tuple[Sequence[Scene], Sequence[bytes]]) -> dict[str, int]:
    root = ctx.root / "vqav2"
    val_recs = _vqa_split(ctx, "vqav2", "val2014", VQA_VAL_ID_BASE, *val, knowledge=False)
    writers.write_vqa(root / "v2_OpenEnded_mscoco_val2014_questions.json", root / "v2_mscoco_val2014_annotations.json",
                      val_recs, "val2014")
    train_recs = _vqa_split(ctx, "vqav2", "train2014", VQA_TRAIN_ID_BASE, *train, knowledge=False)
    writers.write_vqa(root / "v2_OpenEnded_mscoco_train2014_questions.json", root / "v2_mscoco_train2014_annotations.json",
                      train_recs, "train2014")
    return {"val_images": len(val[0]), "val_questions": len(val_recs), "train_images": len(train[0]),
            "train_questions": len(train_recs)}


def write_okvqa(ctx: Context, scenes: Sequence[Scene], images: Sequence[bytes]) -> dict[str, int]:
    recs = _vqa_split(ctx, "okvqa", "val2014", OKVQA_ID_BASE, scenes, images, knowledge=True)
    root = ctx.root / "okvqa"
    writers.write_vqa(root / "OpenEnded_mscoco_val2014_questions.json", root / "mscoco_val2014_annotations.json", recs, "val2014")
    return {"images": len(scenes), "questions": len(recs)}


def _gqa_file(ctx: Context, scenes: Sequence[Scene], id_base: int, qid_start: int, rng: np.random.Generator) -> dict[str, Any]:
    cfg, out, qid = ctx.cfg, {}, qid_start
    for i, scene in enumerate(scenes):
        for rec in gqa_questions(scene, rng, cfg.counts.gqa_questions_per_image, cfg.known_kinds, cfg.colors):
            out[str(qid)] = {"imageId": f"n{id_base + i}", **rec}
            out[str(qid)]["equivalent"] = [str(qid)]
            qid += 1
    return out


def write_gqa(ctx: Context, test: tuple[Sequence[Scene], Sequence[bytes]], train_scenes: Sequence[Scene]) -> dict[str, int]:
    for i, (scene, data) in enumerate(zip(*test)):
        ctx.put_image(f"gqa/images/n{GQA_TEST_ID_BASE + i}.jpg", data, scene, "gqa_testdev")
    testdev = _gqa_file(ctx, test[0], GQA_TEST_ID_BASE, GQA_QID_BASE, ctx.rng("questions", "gqa", "testdev"))
    train = _gqa_file(ctx, train_scenes, GQA_TRAIN_ID_BASE, GQA_QID_BASE + len(testdev), ctx.rng("questions", "gqa", "train"))
    writers.write_json(ctx.root / "gqa/testdev_balanced_questions.json", testdev)
    writers.write_json(ctx.root / "gqa/train_balanced_questions.json", train)
    return {"testdev_images": len(test[0]), "testdev_questions": len(testdev), "train_questions": len(train)}


def _vizwiz_record(rng: np.random.Generator, cfg: ShapesWorldConfig, image: str, scene: Scene | None) -> dict[str, Any]:
    """``scene`` None (blank or blurred image): the question cannot be answered."""
    if scene is None:
        qa, answer_type, answerable = unanswerable_question(rng), "unanswerable", 0
    else:
        qa = vqa_questions(scene, rng, 1, cfg.known_kinds, cfg.colors)[0]
        qa.question = vizwiz_phrasing(rng, qa.question)
        answer_type, answerable = QUESTION_TYPES[qa.kind][1], 1
    answers, _ = annotate(rng, qa, with_ids=False)
    return {"image": image, "question": qa.question, "answerable": answerable, "answer_type": answer_type, "answers": answers}


def write_vizwiz(ctx: Context, val: Sequence[tuple[Scene, bool]], val_images: Sequence[bytes],
                 train: Sequence[tuple[Scene, bool]]) -> dict[str, int]:
    """``val``/``train``: (scene, answerable); unanswerable val images are blank or heavily blurred."""
    rng = ctx.rng("questions", "vizwiz", "val")
    records = []
    for i, ((scene, answerable), data) in enumerate(zip(val, val_images)):
        name = f"VizWiz_val_{i:08d}.jpg"
        ctx.put_image(f"vizwiz/val/{name}", data, scene, "vizwiz_val")
        records.append(_vizwiz_record(rng, ctx.cfg, name, scene if answerable else None))
    writers.write_json(ctx.root / "vizwiz/val.json", records)
    rng = ctx.rng("questions", "vizwiz", "train")
    train_recs = [_vizwiz_record(rng, ctx.cfg, f"VizWiz_train_{i:08d}.jpg", s if a else None) for i, (s, a) in enumerate(train)]
    writers.write_json(ctx.root / "vizwiz/train.json", train_recs)
    return {"val": len(records), "val_unanswerable": sum(1 - r["answerable"] for r in records), "train": len(train_recs)}


def write_text(ctx: Context, train_scenes: Sequence[Scene]) -> dict[str, Any]:
    """Corpus (facts + reading docs about training scenes) and the MMLU-like quiz."""
    cfg = ctx.cfg
    facts = lore_facts(ctx.lore)
    docs = fact_documents(facts, ctx.rng("corpus", "facts"), cfg.counts.corpus_fact_docs)
    rng = ctx.rng("corpus", "reading")
    n = cfg.counts.corpus_reading_docs
    picks = rng.choice(len(train_scenes), size=n, replace=n > len(train_scenes))
    docs += [reading_document(train_scenes[int(i)], rng, cfg.known_kinds, cfg.colors, cfg.novel_kind,
                             cfg.counts.corpus_reading_questions, cfg.counts.corpus_existence_pairs) for i in picks]
    order = ctx.rng("corpus", "order").permutation(len(docs))
    paths = writers.write_corpus(ctx.root / "corpus", [docs[int(i)] for i in order], cfg.docs_per_corpus_file)
    quiz = build_quiz(ctx.lore, ctx.rng("quiz"), cfg.counts.quiz_test_per_subject)
    writers.write_mmlu(ctx.root / "mmlu", quiz, SUBJECT_CATEGORIES)
    return {
        "corpus": {"fact_docs": cfg.counts.corpus_fact_docs, "reading_docs": n, "files": len(paths), "facts": len(facts)},
        "mmlu": {s: {"dev": len(v["dev"]), "test": len(v["test"])} for s, v in quiz.items()},
    }


def write_scene_records(ctx: Context) -> None:
    writers.write_jsonl(ctx.root / SCENES_FILE, ctx.scene_records)
