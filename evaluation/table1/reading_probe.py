"""Reading probe: how well a text LM answers VQAv2-like questions from a perfect caption.

Describe-then-answer (evaluation/protocols/tasks.py) has the model caption the image, then answer
after its own caption. Its ceiling is the LM's reading: this probe puts the Shapes world's
ground-truth caption in the task's caption template (``there_is_caption``: every shape with size,
colour, kind and position, what the corpus's reading documents describe) in the caption step's
place and runs the registered task itself (its templates, decoding and cuts), under each question
form (the release's lowercased question, or the question as written), scored by the official VQA
rule. No image and no visual token is involved, so it runs on
the stage-0 LLaMA export (or any HF causal LM folder with its tokenizer).

    python -m evaluation.table1.reading_probe --model runs/tiny/stage0_llama/export/llama \\
        --data-root data/shapes/tiny --split train2014 --limit 300

Use the train split for decisions (the eval split's questions stay unseen); the world has no VQA
training data, so train questions are as unseen to the LM as val ones. ``--by-template`` also scores
each question template beside always giving that template's most common answer
(``evaluation.table1.templates``): an LM that matches it there answers from the template's prior
("How many <kind>s are there?" -> "1") instead of reading the caption.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path
from typing import Callable, Sequence

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedTokenizerBase

from evaluation.benchmarks.vqa import VQAQuestion, read_vqa
from evaluation.metrics.vqa import vqa_question_accuracy, vqa_score_summary
from evaluation.protocols.registry import get_task
from evaluation.protocols.runner import GenerationRequest, run_task
from evaluation.protocols.spec import GenerationSettings, TextOp
from evaluation.protocols.tasks import CASED_QUESTION_OPS, QUESTION_OPS
from evaluation.table1.templates import by_template
from lavit_pl.data.shapes.captions import there_is_caption
from lavit_pl.data.shapes.heldout import read_scenes

QUESTION_FORMS: dict[str, tuple[TextOp, ...]] = {"lowercased (release)": QUESTION_OPS, "as written": CASED_QUESTION_OPS}
TASK = "describe_then_answer/vqav2"
Answerer = Callable[[Sequence[str], GenerationSettings], list[str]]  # (prompts, decoding) -> raw texts


def ground_truth_captions(data_root: Path, split: str) -> dict[str, str]:
    """VQAv2-like image file name -> ground-truth "There is ..." caption, from the world's scenes.jsonl."""
    try:
        scenes = read_scenes(data_root, f"vqav2/{split}/")
    except ValueError as e:
        raise ValueError(f"{e} (expected the Shapes world's VQAv2-like split '{split}')") from e
    return {name: there_is_caption(scene) for name, scene in scenes.items()}


def question_scores(questions: Sequence[VQAQuestion], captions: dict[str, str], answer: Answerer,
                    question_ops: tuple[TextOp, ...]) -> list[float]:
    """Run the registered describe-then-answer task with ``question_ops``, the caption step answered by
    the ground-truth caption (its continuation of the step's prompt) and the answer step by ``answer``;
    each question's official VQA accuracy in [0, 1], in question order."""
    missing = [q.image_file for q in questions if q.image_file not in captions]
    if missing:
        raise ValueError(f"no ground-truth caption for {len(missing)} images, e.g. {missing[0]}")
    task = dataclasses.replace(get_task(TASK), question_ops=question_ops)

    def generate(requests: list[GenerationRequest]) -> list[str]:  # one step per call (run_task's batches)
        if requests[0].step == "caption":
            return [continuation(captions[r.image], r.text) for r in requests]
        return answer([r.text for r in requests], requests[0].generation)

    outputs = run_task(task, [{"image": q.image_file, "question": q.question} for q in questions], generate)
    return [vqa_question_accuracy(out.prediction, q.answers) for q, out in zip(questions, outputs, strict=True)]


def probe(questions: Sequence[VQAQuestion], captions: dict[str, str], answer: Answerer,
          question_ops: tuple[TextOp, ...]) -> dict:
    """:func:`question_scores` summarised by the official evaluator: ``overall``, ``perQuestionType``,
    ``num_questions``, in percent."""
    scores = question_scores(questions, captions, answer, question_ops)
    return vqa_score_summary(scores, [q.question_type for q in questions])


def continuation(caption: str, start: str) -> str:
    """What a captioner prompted with ``start`` would generate to write ``caption``."""
    if not caption.startswith(start):
        raise ValueError(f"the ground-truth caption {caption!r} does not begin with the caption step's prompt {start!r}")
    return caption[len(start):]


def hf_answerer(model_dir: str | Path) -> Answerer:
    """Decoding through ``generate`` with the step's settings; the prompt starts with BOS, as the
    corpus's reading documents do (text alone: there is no image before it)."""
    tokenizer: PreTrainedTokenizerBase = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir).eval()
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id

    @torch.no_grad()
    def answer(prompts: Sequence[str], settings: GenerationSettings) -> list[str]:
        out = []
        for prompt in prompts:  # one at a time: no padding side to get right for a left-to-right LM
            ids = tokenizer(prompt, return_tensors="pt").input_ids
            generated = model.generate(ids, pad_token_id=pad, **settings.generate_kwargs())
            out.append(tokenizer.decode(generated[0, ids.shape[1]:], skip_special_tokens=True))
        return out

    return answer


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", required=True, help="HF causal LM folder (e.g. the stage-0 LLaMA export)")
    parser.add_argument("--data-root", default="data/shapes/tiny", type=Path)
    parser.add_argument("--split", default="train2014", help="VQAv2-like split (train2014 or val2014)")
    parser.add_argument("--limit", type=int, default=300, help="first N questions of the split")
    parser.add_argument("--by-template", action="store_true",
                        help="also per question template, beside always giving the template's most common answer")
    args = parser.parse_args(argv)
    root = args.data_root / "vqav2"
    questions = read_vqa(root / f"v2_OpenEnded_mscoco_{args.split}_questions.json",
                         root / f"v2_mscoco_{args.split}_annotations.json")[: args.limit]
    captions = ground_truth_captions(args.data_root, args.split)
    answer = hf_answerer(args.model)
    for form, ops in QUESTION_FORMS.items():
        scores = question_scores(questions, captions, answer, ops)
        summary = vqa_score_summary(scores, [q.question_type for q in questions])
        per_type = ", ".join(f"{k} {v:.1f}" for k, v in sorted(summary["perQuestionType"].items()))
        print(f"{form:22s} {summary['overall']:5.1f}  ({per_type}; {len(questions)} questions)", flush=True)
        if args.by_template:
            for row in by_template(questions, scores):
                print(f"  {row['template']:18s} {row['accuracy']:5.1f}   always '{row['prior_answer']}' "
                      f"{row['prior_accuracy']:5.1f}   ({row['num_questions']} questions)", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
