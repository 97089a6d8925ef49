"""Model-free baselines that write official-format results files for an eval split.

    python -m evaluation.baselines prior-vqa --train-questions Qtr.json --train-annotations Atr.json \
        --questions Q.json --out R.json
    python -m evaluation.baselines prior-gqa --train-questions train_balanced_questions.json \
        --questions testdev_balanced_questions.json --out R.json
    python -m evaluation.baselines prior-vizwiz --train train.json --annotations val.json --out R.json \
        [--group-by answer_type|none]
    python -m evaluation.baselines constant-caption (--train-annotations A.json [--train-karpathy-split train]
        | --train-shards S.tar ...) --annotations EVAL.json [--karpathy-split test] --out R.json \
        [--num-candidates 100] [--num-reference-images 200] [--seed 0]

Each writes R.json (atomically) in the benchmark's results schema, to be scored by the same
``python -m evaluation.<benchmark>`` as a model, and prints one JSON summary on stdout.

- prior-vqa: most frequent ``multiple_choice_answer`` per ``question_type`` of the VQA *train*
  split. An eval question's type is read from its text (longest training type that begins it), so
  the eval annotations are not consulted; questions of no known type get the overall majority.
- prior-gqa: most frequent training answer per ``types.detailed`` (a field of the questions file).
- prior-vizwiz: most frequent training answer per ``answer_type``. VizWiz derives ``answer_type``
  from the ten answers, so grouping by it uses annotation information (an upper bound for a blind
  prior); ``--group-by none`` gives the plain majority answer.
- constant-caption: the training caption that, given to every image of a seeded sample of
  training images, maximises CIDEr-D against their references (candidates come from other training
  images). The chosen caption is then written for every eval image. The eval split is never
  searched.
"""
from __future__ import annotations

import argparse
import logging
import random
import sys
from pathlib import Path

from evaluation.baseline_priors import best_constant_caption, fit_answer_prior, majority, question_type_of
from evaluation.benchmarks.gqa import read_gqa
from evaluation.benchmarks.img2dataset_captions import read_shard_captions
from evaluation.benchmarks.vizwiz import read_vizwiz
from evaluation.benchmarks.vqa import read_vqa, read_vqa_questions
from evaluation.caption import load_references
from evaluation.cli_common import cli_main, new_parser
from evaluation.metrics.caption import ptb_tokenize
from lavit_pl.utils.atomic import atomic_write_json

log = logging.getLogger("evaluation.baselines")


def prior_vqa(args: argparse.Namespace) -> dict:
    train = read_vqa(args.train_questions, args.train_annotations)
    prior = fit_answer_prior([r.question_type for r in train], [r.multiple_choice_answer for r in train])
    questions = read_vqa_questions(args.questions)
    known = list(prior.by_group)
    groups = [question_type_of(q.question, known) for q in questions]
    results = [{"question_id": q.question_id, "answer": prior.predict(g)} for q, g in zip(questions, groups)]
    atomic_write_json(args.out, results)
    return {"baseline": "answer prior per question_type (VQA train split)", "out": str(args.out),
            "num_questions": len(results), "num_without_known_type": sum(g is None for g in groups),
            "fallback_answer": prior.fallback, "prior": prior.by_group}


def prior_gqa(args: argparse.Namespace) -> dict:
    train = read_gqa(args.train_questions, balanced_only=False)
    prior = fit_answer_prior([r.detailed for r in train], [r.answer for r in train])
    questions = read_gqa(args.questions, balanced_only=False)
    results = [{"questionId": q.question_id, "prediction": prior.predict(q.detailed)} for q in questions]
    atomic_write_json(args.out, results)
    return {"baseline": "answer prior per types.detailed (GQA train split)", "out": str(args.out),
            "num_questions": len(results), "num_unseen_type": sum(q.detailed not in prior.by_group for q in questions),
            "fallback_answer": prior.fallback, "prior": prior.by_group}


def prior_vizwiz(args: argparse.Namespace) -> dict:
    train = read_vizwiz(args.train)
    by_type = args.group_by == "answer_type"
    answers = [majority(r.answers) for r in train]
    prior = fit_answer_prior([r.answer_type if by_type else "all" for r in train], answers)
    records = read_vizwiz(args.annotations)
    results = [{"image": r.image, "answer": prior.predict(r.answer_type if by_type else "all")} for r in records]
    atomic_write_json(args.out, results)
    return {"baseline": f"answer prior per {args.group_by} (VizWiz train split)", "out": str(args.out),
            "num_questions": len(results), "fallback_answer": prior.fallback, "prior": prior.by_group}


def _training_captions(args: argparse.Namespace) -> list[tuple[str, tuple[str, ...]]]:
    if (args.train_annotations is None) == (not args.train_shards):
        raise ValueError("give exactly one of --train-annotations and --train-shards")
    if args.train_shards:
        return [(r.key, r.captions) for r in read_shard_captions(args.train_shards)]
    _, refs, _ = load_references(args.train_annotations, args.train_karpathy_split)
    return [(str(k), caps) for k, caps in refs.items()]


def constant_caption(args: argparse.Namespace) -> dict:
    if args.num_candidates < 1 or args.num_reference_images < 2:
        raise ValueError("--num-candidates must be >= 1 and --num-reference-images >= 2 (CIDEr's IDF is zero "
                         "on a single image)")
    train = sorted(_training_captions(args))
    _, eval_refs, _ = load_references(args.annotations, args.karpathy_split)
    if len(train) < 3:
        raise ValueError(f"training captions: need at least 3 training images (2 as references, 1 for "
                         f"candidates), got {len(train)}")
    rng = random.Random(args.seed)
    n_ref = min(args.num_reference_images, len(train) - 1)
    order = rng.sample(range(len(train)), len(train))
    ref_items = [train[i] for i in order[:n_ref]]
    pool = [c for i in order[n_ref:] for c in train[i][1]]
    candidates = rng.sample(pool, min(args.num_candidates, len(pool)))
    log.info("searching %d candidate captions on %d training images", len(candidates), len(ref_items))
    refs_tok = ptb_tokenize({key: caps for key, caps in ref_items})
    cands_tok = ptb_tokenize({"candidates": candidates})["candidates"]
    best, score = best_constant_caption(cands_tok, refs_tok)
    caption = candidates[best]
    results = [{"image_id": image_id, "caption": caption} for image_id in eval_refs]
    atomic_write_json(args.out, results)
    return {"baseline": "best constant caption (chosen by CIDEr-D on training captions)", "out": str(args.out),
            "caption": caption, "train_sample_cider": score, "num_candidates": len(candidates),
            "num_reference_images": len(ref_items), "seed": args.seed, "num_eval_images": len(results)}


def build_parser() -> argparse.ArgumentParser:
    parser = new_parser("python -m evaluation.baselines", __doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("prior-vqa", help="VQAv2/OK-VQA answer prior per question type")
    p.add_argument("--train-questions", required=True)
    p.add_argument("--train-annotations", required=True)
    p.add_argument("--questions", required=True, help="eval questions JSON (annotations not read)")
    p.add_argument("--out", required=True, type=Path)
    p.set_defaults(fn=prior_vqa)
    p = sub.add_parser("prior-gqa", help="GQA answer prior per detailed type")
    p.add_argument("--train-questions", required=True)
    p.add_argument("--questions", required=True)
    p.add_argument("--out", required=True, type=Path)
    p.set_defaults(fn=prior_gqa)
    p = sub.add_parser("prior-vizwiz", help="VizWiz answer prior per answer type")
    p.add_argument("--train", required=True, help="VizWiz train.json")
    p.add_argument("--annotations", required=True, help="VizWiz val.json (the split to predict)")
    p.add_argument("--group-by", choices=("answer_type", "none"), default="answer_type")
    p.add_argument("--out", required=True, type=Path)
    p.set_defaults(fn=prior_vizwiz)
    p = sub.add_parser("constant-caption", help="best constant caption chosen on training captions")
    p.add_argument("--train-annotations", help="training captions: COCO layout or Karpathy file")
    p.add_argument("--train-karpathy-split", choices=("train", "restval"),
                   help="split of a Karpathy --train-annotations file")
    p.add_argument("--train-shards", nargs="+", help="training captions: img2dataset .tar shards")
    p.add_argument("--annotations", required=True, help="eval captions (COCO, NoCaps or Karpathy layout)")
    p.add_argument("--karpathy-split", choices=("val", "test"), help="eval split of a Karpathy file")
    p.add_argument("--num-candidates", type=int, default=100)
    p.add_argument("--num-reference-images", type=int, default=200)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", required=True, type=Path)
    p.set_defaults(fn=constant_caption)
    return parser


def main(argv: list[str] | None = None) -> int:
    return cli_main(build_parser, lambda args: args.fn(args), argv)


if __name__ == "__main__":
    sys.exit(main())
