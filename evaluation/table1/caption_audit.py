"""Grade the model's own "There is ..." captions against the Shapes world's ground-truth scenes.

Describe-then-answer VQA can only be as good as the caption it starts from, so this audit says which
part of a caption fails: the number of shapes, their cells, or, given a right cell, the size, colour
or kind. It reads the captions the describe-then-answer run already wrote
(``predictions/describe_then_answer/vqav2.trace.json``) and the world's ``scenes.jsonl``; nothing is
generated again. A caption that does not follow the world's "There is" grammar counts as zero shapes.

    python -m evaluation.table1.caption_audit --eval-dir runs/tiny/eval_table1 [--data data/shapes/tiny]
"""
from __future__ import annotations

import argparse
import json
import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

from evaluation.benchmarks.errors import load_json
from evaluation.benchmarks.vqa import read_vqa_questions
from evaluation.table1.paths import Table1Paths
from evaluation.table1.predictions import SplitFiles
from lavit_pl.data.shapes.heldout import read_scenes
from lavit_pl.data.shapes.scene import CELL_PHRASES, SIZES, Scene

NOVEL_WORD = "shape"  # training text names the novel kind "shape"
_PHRASE = re.compile(
    r"^(?:a|an) (?P<size>" + "|".join(SIZES) + r") (?P<color>[a-z]+) (?P<kind>[a-z]+) (?P<place>"
    + "|".join(re.escape(p) for p in CELL_PHRASES) + r")$"
)


@dataclass(frozen=True)
class CaptionShape:
    size: str
    color: str
    kind: str  # a kind word of the world, or "shape" for the novel kind
    cell: int  # index into CELL_PHRASES


def parse_there_is(caption: str) -> list[CaptionShape]:
    """"There is a small red circle in the top left corner and ..." -> its shapes, in caption order.
    Parts that do not follow the grammar are skipped (a caption in another template gives [])."""
    body = caption.strip().rstrip(".").strip()
    if not body.lower().startswith("there is "):
        return []
    body = body[len("there is "):]
    parts = [p.strip() for chunk in body.split(", ") for p in chunk.split(" and ")]
    shapes = []
    for part in parts:
        m = _PHRASE.match(part.lower())
        if m:
            shapes.append(CaptionShape(m["size"], m["color"], m["kind"], CELL_PHRASES.index(m["place"])))
    return shapes


def audit_captions(captions: Mapping[str, str], scenes: Mapping[str, Scene], novel_kind: str | None,
                   kinds: Sequence[str], colors: Sequence[str]) -> dict[str, Any]:
    """captions, scenes: image key -> caption / scene (the same keys) -> counts and rates.

    ``cell_precision``: share of the caption's shapes placed in a cell that holds a shape;
    ``cell_recall``: share of the scene's shapes whose cell the caption names. ``size|cell``,
    ``color|cell``, ``kind|cell``: over the caption's shapes in a right cell, the share whose
    attribute matches that cell's shape (the novel kind matches "shape"). ``chance`` gives each
    attribute's uniform guess for comparison."""
    missing = sorted(set(captions) - set(scenes))
    if missing:
        raise KeyError(f"no ground-truth scene for {len(missing)} captioned images, e.g. {missing[0]!r}")
    c: Counter[str] = Counter()
    for key, caption in captions.items():
        truth = {s.cell: s for s in scenes[key].shapes}
        said = parse_there_is(caption)
        c["images"] += 1
        c["parsed"] += bool(said)
        c["count_right"] += len(said) == len(truth)
        c["caption_shapes"] += len(said)
        c["scene_shapes"] += len(truth)
        c["cells_recalled"] += len(truth.keys() & {s.cell for s in said})
        for s in said:
            if s.cell not in truth:
                continue
            t = truth[s.cell]
            c["cell_right"] += 1
            c["size_right"] += s.size == t.size
            c["color_right"] += s.color == t.color
            c["kind_right"] += s.kind == (NOVEL_WORD if t.kind == novel_kind else t.kind)

    def rate(num: str, den: str) -> float:
        return c[num] / c[den] if c[den] else float("nan")

    return {
        "counts": dict(c),
        "parsed": rate("parsed", "images"),
        "count_accuracy": rate("count_right", "images"),
        "cell_precision": rate("cell_right", "caption_shapes"),
        "cell_recall": rate("cells_recalled", "scene_shapes"),
        "size|cell": rate("size_right", "cell_right"),
        "color|cell": rate("color_right", "cell_right"),
        "kind|cell": rate("kind_right", "cell_right"),
        "chance": {"size|cell": 1 / len(SIZES), "color|cell": 1 / len(colors), "kind|cell": 1 / len(kinds)},
    }


def captions_by_image(eval_dir: Path, questions_file: Path) -> dict[str, str]:
    """The describe-then-answer captions of the VQAv2-like split, one per image file name (the
    first question's caption where an image has several)."""
    trace_path = SplitFiles.at(eval_dir, "describe_then_answer", "vqav2").trace
    if not trace_path.is_file():
        raise FileNotFoundError(f"{trace_path}: not found (run the describe-then-answer evaluation first)")
    image_of = {q.question_id: q.image_file for q in read_vqa_questions(questions_file)}
    out: dict[str, str] = {}
    for i, record in enumerate(load_json(trace_path)):
        try:
            qid, caption = record["id"], record["outputs"]["caption"]
        except (KeyError, TypeError):
            raise ValueError(f"{trace_path}: record {i} lacks 'id' or 'outputs.caption'") from None
        if qid not in image_of:
            raise ValueError(f"{trace_path}: record {i}: question_id {qid} is not in {questions_file}")
        out.setdefault(image_of[qid], caption)
    return out


def run(eval_dir: Path, data: Path) -> dict[str, Any]:
    paths = Table1Paths(root=str(data))
    world = load_json(data / "world.json")
    captions = captions_by_image(eval_dir, paths.resolve("vqav2_questions"))
    scenes = read_scenes(data, paths.vqav2_images.rstrip("/") + "/")
    result = audit_captions(captions, scenes, world.get("novel_kind"), world["kinds"], world["colors"])
    return {"eval_dir": str(eval_dir), "data": str(data)} | result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--eval-dir", type=Path, default=Path("runs/tiny/eval_table1"))
    parser.add_argument("--data", type=Path, default=Path("data/shapes/tiny"))
    args = parser.parse_args(argv)
    print(json.dumps(run(args.eval_dir, args.data), indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
