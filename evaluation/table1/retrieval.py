"""The Table-1 ``retrieval`` row: a retrieval captioner over the stage-0 CLIP, on the same (possibly
subset) examples and scored by the same code as the model (``score_split``).

No LaVIT model is used; the stage-0 CLIP export (``lavit_pl.utils.clip_export``) embeds images and
captions, with the data readers' preprocessing (bicubic squash, the export's mean/std).

- NoCaps / Flickr30k: each eval image gets the training caption (the captions of the training
  image-text pairs, the constant-caption baseline's source: ``paths.train_caption_shards`` or
  ``paths.train_caption_annotations``) nearest to it by image-text cosine, among a seeded sample
  of at most ``max_captions`` distinct captions.
- VQAv2, OK-VQA, GQA, VizWiz: each eval question gets the answer of the training question with the
  same normalised text whose image is nearest to the eval image (image-image cosine). Training
  questions: VQAv2 train (also for OK-VQA, whose train split the Shapes world does not write: the
  ``okvqa_train_*`` paths), GQA train, VizWiz train; answers ``multiple_choice_answer``, ``answer``
  and the majority of the ten answers. A training question whose image file is absent is no
  candidate (the Shapes world writes no GQA or VizWiz training images). A question with no candidate
  gets the answer-prior baseline's answer (``evaluation.baselines`` prior-vqa / prior-gqa /
  prior-vizwiz, the ``prior`` row's settings). The metrics entry counts ``num_retrieved``: the
  questions answered by retrieval rather than by the prior.

Files (``<out>/predictions/retrieval/``): ``<split>.json`` (official results), ``.meta.json``,
``.summary.json`` (pool sizes, counts), ``.prior.json`` (the fallback answers).
"""
from __future__ import annotations

import dataclasses
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import torch
from PIL import Image

from evaluation.baseline_priors import majority
from evaluation.baseline_retrieval import caption_pool, nearest, question_key, retrieve_answers
from evaluation.benchmarks.gqa import read_gqa
from evaluation.benchmarks.img2dataset_captions import read_shard_captions
from evaluation.benchmarks.results import read_results
from evaluation.benchmarks.vizwiz import read_vizwiz
from evaluation.benchmarks.vqa import read_vqa
from evaluation.caption import load_references
from evaluation.table1.baselines import BaselineSettings, write_baseline
from evaluation.table1.paths import Table1Paths
from evaluation.table1.predictions import SplitFiles, ensure_results
from evaluation.table1.run import RowMetrics, score_split
from evaluation.table1.splits import PreparedSplit
from lavit_pl.data.image_shards import image_transform
from lavit_pl.models.clip import ClipTextTokenizer
from lavit_pl.utils.atomic import atomic_write_json
from lavit_pl.utils.clip_export import ClipExport, export_files, load_clip_export
from lavit_pl.utils.stage1_io import file_digest

log = logging.getLogger("evaluation.table1")
ROW = "retrieval"


@dataclass
class RetrievalSettings:
    enabled: bool = field(default=False, metadata={
        "help": "evaluate the retrieval baseline (metrics/retrieval.json) instead of model.path"})
    clip_export: str = field(default="", metadata={"help": "stage-0 CLIP export folder (open_clip layout)"})
    max_captions: int = field(default=5000, metadata={"help": "captioning: training captions searched (seeded sample)"})
    seed: int = 0
    batch_size: int = field(default=64, metadata={"help": "images / captions per CLIP forward"})
    device: str = "cpu"

    def __post_init__(self) -> None:
        if self.enabled and not self.clip_export:
            raise ValueError("retrieval.clip_export: expected the stage-0 CLIP export folder when retrieval.enabled")
        if self.max_captions < 1:
            raise ValueError(f"retrieval.max_captions: expected >= 1, got {self.max_captions}")
        if self.batch_size < 1:
            raise ValueError(f"retrieval.batch_size: expected >= 1, got {self.batch_size}")


class ClipEmbedder:
    """Image and caption embeddings of the exported CLIP, loaded on first use; both are cached
    (images by path, captions by text), so splits sharing training images embed them once."""

    def __init__(self, folder: str | Path, batch_size: int, device: str = "cpu"):
        self.folder, self.batch_size, self.device = Path(folder), batch_size, torch.device(device)
        self._clip: ClipExport | None = None
        self._images: dict[str, torch.Tensor] = {}
        self._texts: dict[str, torch.Tensor] = {}

    @property
    def clip(self) -> ClipExport:
        if self._clip is None:
            self._clip = load_clip_export(self.folder)
            self._clip.model.to(self.device)
            self._transform = image_transform(self._clip.preprocess)
            self._tokenizer = ClipTextTokenizer(self._clip.config.context_length)
        return self._clip

    def _pixels(self, path: str) -> torch.Tensor:
        with Image.open(path) as image:
            return self._transform(image.convert("RGB"))  # (C, H, W)

    def _embed(self, items: Sequence[str], cache: dict[str, torch.Tensor], encode) -> torch.Tensor:
        todo = list(dict.fromkeys(i for i in items if i not in cache))
        for start in range(0, len(todo), self.batch_size):
            chunk = todo[start : start + self.batch_size]
            with torch.no_grad():
                out = encode(chunk).float().cpu()  # (B, E)
            cache.update(zip(chunk, out))
        return torch.stack([cache[i] for i in items]) if items else torch.zeros(0, self.clip.config.embed_dim)

    def images(self, paths: Sequence[str | Path]) -> torch.Tensor:
        """Image files -> (N, E) image-tower embeddings (not normalised)."""
        model = self.clip.model
        return self._embed([str(p) for p in paths], self._images,
                           lambda chunk: model.encode_image(torch.stack([self._pixels(p) for p in chunk]).to(self.device)))

    def texts(self, captions: Sequence[str]) -> torch.Tensor:
        """Captions -> (N, E) text-tower embeddings (not normalised)."""
        model = self.clip.model
        return self._embed(list(captions), self._texts,
                           lambda chunk: model.encode_text(self._tokenizer(chunk).to(self.device)))


def training_captions(paths: Table1Paths) -> list[tuple[str, ...]]:
    """Reference captions per training image, from the shards or a COCO / Karpathy file."""
    if paths.train_caption_shards:
        return [r.captions for r in read_shard_captions(paths.train_shards())]
    _, refs, _ = load_references(paths.resolve("train_caption_annotations"), paths.train_caption_karpathy_split or None)
    return [refs[k] for k in sorted(refs)]


@dataclass
class TrainQuestions:
    questions: list[str]
    answers: list[str]
    images: list[Path]


def train_questions(split: PreparedSplit, paths: Table1Paths) -> TrainQuestions:
    """The training questions (file order) of a VQA-type split, answers and image paths."""
    if split.kind == "vqa":
        root = paths.resolve(f"{split.name}_train_images")
        records = read_vqa(paths.resolve(f"{split.name}_train_questions"), paths.resolve(f"{split.name}_train_annotations"))
        rows = [(r.question, r.multiple_choice_answer, root / r.image_file) for r in records]
    elif split.kind == "gqa":
        root = paths.resolve("gqa_train_images")
        rows = [(r.question, r.answer, root / r.image_file)
                for r in read_gqa(paths.resolve("gqa_train_questions"), balanced_only=False)]
    elif split.kind == "vizwiz":
        root = paths.resolve("vizwiz_train_images")
        rows = [(r.question, majority(r.answers), root / r.image) for r in read_vizwiz(paths.resolve("vizwiz_train"))]
    else:
        raise ValueError(f"split {split.name}: kind {split.kind!r} has no training questions")
    return TrainQuestions([q for q, _, _ in rows], [a for _, a, _ in rows], [i for _, _, i in rows])


def _caption_results(split: PreparedSplit, paths: Table1Paths, settings: RetrievalSettings,
                     embedder: ClipEmbedder) -> tuple[list[str], dict[str, Any]]:
    pool = caption_pool(training_captions(paths), settings.max_captions, settings.seed)
    log.info("%s: nearest of %d training captions for %d images", split.name, len(pool), len(split.records))
    best = nearest(embedder.images([r["image"] for r in split.records]), embedder.texts(pool))
    captions = [pool[i] for i in best.tolist()]
    return captions, {"num_candidate_captions": len(pool), "num_distinct_captions_chosen": len(set(captions))}


def _answer_results(split: PreparedSplit, paths: Table1Paths, baseline_settings: BaselineSettings,
                    embedder: ClipEmbedder, prior_file: Path) -> tuple[list[str], dict[str, Any]]:
    write_baseline(split, paths, baseline_settings, prior_file)
    prior = read_results(prior_file, split.kind)
    train = train_questions(split, paths)
    wanted = {question_key(r["question"]) for r in split.records}
    same_text = [j for j, q in enumerate(train.questions) if question_key(q) in wanted]
    usable = [j for j in same_text if train.images[j].is_file()]
    if len(usable) < len(same_text):
        log.warning("%s: %d of %d same-text training questions have no image file (first: %s); they are no "
                    "candidates", split.name, len(same_text) - len(usable), len(same_text),
                    next(str(train.images[j]) for j in same_text if j not in set(usable)))
    found: list[str | None] = [None] * len(split.records)
    if usable:
        found = retrieve_answers([r["question"] for r in split.records], embedder.images([r["image"] for r in split.records]),
                                 [train.questions[j] for j in usable], embedder.images([train.images[j] for j in usable]),
                                 [train.answers[j] for j in usable])
    answers = [a if a is not None else prior[r["id"]] for a, r in zip(found, split.records)]
    summary = {"num_train_questions": len(train.questions), "num_same_text_train_questions": len(same_text),
               "num_candidates_with_image": len(usable), "num_retrieved": sum(a is not None for a in found),
               "num_prior_fallback": sum(a is None for a in found), "prior_file": str(prior_file)}
    return answers, summary


def write_retrieval(split: PreparedSplit, paths: Table1Paths, settings: RetrievalSettings,
                    baseline_settings: BaselineSettings, embedder: ClipEmbedder, out: Path) -> dict[str, Any]:
    """Write the split's retrieval results file ``out`` (official format); returns its summary."""
    if split.kind == "caption":
        predictions, summary = _caption_results(split, paths, settings, embedder)
    else:
        predictions, summary = _answer_results(split, paths, baseline_settings, embedder,
                                               out.with_name(f"{split.name}.prior.json"))
    atomic_write_json(out, split.results(predictions))
    return {"baseline": "retrieval (stage-0 CLIP nearest training caption / same-question answer)",
            "clip_export": str(settings.clip_export), "split": split.name, "num_examples": len(predictions), **summary}


def export_fingerprint(folder: str | Path) -> dict[str, str]:
    """What identifies the CLIP (a re-export at the same path regenerates): sha256 of both files."""
    return {name: file_digest(path) for name, path in export_files(folder).items()}


def run_retrieval_rows(splits: list[PreparedSplit], paths: Table1Paths, settings: RetrievalSettings,
                       baseline_settings: BaselineSettings, out_dir: str | Path) -> tuple[dict[str, RowMetrics], list[str]]:
    """The ``retrieval`` row's results per split (resumable like the model's), scored; returns the
    row's metrics and the splits generated in this call. VQA-type entries add ``num_retrieved``."""
    out_dir = Path(out_dir)
    clip = {"folder": str(Path(settings.clip_export).resolve()), **export_fingerprint(settings.clip_export)}
    embedder = ClipEmbedder(settings.clip_export, settings.batch_size, settings.device)
    metrics: RowMetrics = {}
    generated = []
    for split in splits:
        files = SplitFiles.at(out_dir, ROW, split.name)
        summary_file = files.predictions.with_name(f"{split.name}.summary.json")
        meta = {"baseline": ROW, "settings": dataclasses.asdict(settings), "clip": clip,
                "paths": dataclasses.asdict(paths), "split": split.name, "num_examples": len(split.records),
                "subset": split.subset}
        if split.kind != "caption":
            meta["prior_settings"] = dataclasses.asdict(baseline_settings)

        def produce(split=split, files=files, summary_file=summary_file) -> None:
            atomic_write_json(summary_file, write_retrieval(split, paths, settings, baseline_settings, embedder,
                                                            files.predictions))

        if ensure_results(files, split, meta, produce):
            generated.append(f"{ROW}/{split.name}")
        entry = score_split(split, files.predictions, out_dir, ROW)
        if split.kind != "caption" and summary_file.is_file():
            entry["num_retrieved"] = json.loads(summary_file.read_text())["num_retrieved"]
        metrics[split.name] = entry
    return {ROW: metrics}, generated
