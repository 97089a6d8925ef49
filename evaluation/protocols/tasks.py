"""The registered zero-shot tasks: three protocols over the six benchmarks of the paper's Table 1.

Every prompt is the text placed after ``[IMG] x̂_1 … x̂_T [/IMG]`` (no BOS, as in the release); the
image comes first in every step.

``release`` (facts from the authors' evaluation code, jy0205/LaVIT):
  - captioning (NoCaps val, Flickr30k Karpathy test): no text after ``[/IMG]``; beam 2, 8-36 new
    tokens, length penalty 1; output stripped and cut before the first ``.``.
  - VQA (VQAv2, OK-VQA, GQA, VizWiz): question lowercased, ``.!"()*#:;~`` deleted, trailing spaces
    removed, at most 50 words; prompt ``Question: {question} Answer:``; beam 5, 2-10 new tokens,
    length penalty 0, early stopping; output stripped, cut before the first of ``\\n``,
    ``question:``, ``Long answer:``, ``,``, ``.``, stripped, lowercased. (The release then
    lemmatises answers with spaCy: that is the metric ``vqa_accuracy_release``, not a prompt step.)
  - VizWiz first asks ``Question: Is the question: "{question}" answerable? Answer:`` (the release
    feeds ``Is the question: "{q}" answerable?`` through the same VQA prompt and decoding); if that
    answer contains the substring ``no`` (so also "not", "none", "know") the prediction is
    ``unanswerable``, otherwise the VQA prompt is asked. The release ran both steps for every
    question and overwrote the answer; skipping the second step gives the same predictions.

``paper`` (LaVIT paper §4.1): "For visual question answering tasks, we use a simple prompt:
  'Question: {} Answer: {}'"; decoding and captioning are not described, so they are the
  release's. The paper names one prompt for all VQA tasks and no answerability question, so
  VizWiz is the single VQA step here: the only difference from ``release``.

``describe_then_answer`` (ours): step 1 is the model's own caption of the image with the captioning
  settings above; step 2 is ``{caption}.\\nQuestion: {question} Answer:`` with the VQA settings, the
  image still before the caption. VizWiz keeps the release's
  answerability step first (three steps: answerable, caption, answer). Version 2 keeps the
  question's case (the release's other question operations stay): the question follows the
  model's own sentence, as in text, and a small LM reads it much better so. Measured with the tiny
  stage-0 LLaMA reading the world's ground-truth scene descriptions before 300 train-split VQAv2-like
  questions: 43.1 % lowercased, 60.7 % as written (`python -m evaluation.table1.reading_probe`).
  Version 3 starts the caption with ``There is`` (the prompt after ``[/IMG]``; the caption is that
  start and the model's continuation): of the world's caption templates, the one that names every
  shape with its size, colour, kind and position, which is what the questions ask about and what the
  corpus's reading documents describe. Left to itself a captioner picks whichever template is most
  likely (a longer-trained tiny model mostly writes "A picture of four shapes colored ...", which
  binds no colour to a shape). And it lays the question out as the reading documents do: the
  caption's sentence closed, the question on the next line (reading probe on ground-truth "There
  is" captions, train split: 49.4 % with a space between caption and question, 52.2 % so).
"""
from __future__ import annotations

from evaluation.protocols.registry import register_task
from evaluation.protocols.spec import ExitRule, GenerationSettings, PromptStep, Task, TextOp

QUESTION_OPS = (
    TextOp("lowercase"),
    TextOp("delete_chars", '.!"()*#:;~'),
    TextOp("rstrip", " "),
    TextOp("max_words", 50),
)
CAPTION_GENERATION = GenerationSettings(num_beams=2, min_new_tokens=8, max_new_tokens=36, length_penalty=1.0)
CAPTION_OPS = (TextOp("strip"), TextOp("cut_at", (".",)), TextOp("strip"))
VQA_GENERATION = GenerationSettings(
    num_beams=5, min_new_tokens=2, max_new_tokens=10, length_penalty=0.0, early_stopping=True
)
ANSWER_OPS = (
    TextOp("strip"),
    TextOp("cut_at", ("\n", "question:", "Long answer:", ",", ".")),
    TextOp("strip"),
    TextOp("lowercase"),
)

# describe-then-answer (ours): the release's question operations without lowercasing
CASED_QUESTION_OPS = tuple(op for op in QUESTION_OPS if op.kind != "lowercase")

VQA_TEMPLATE = "Question: {question} Answer:"
ANSWERABLE_TEMPLATE = 'Question: Is the question: "{question}" answerable? Answer:'
DESCRIBE_THEN_ANSWER_TEMPLATE = "{caption}.\nQuestion: {question} Answer:"

CAPTION_STEP = PromptStep("caption", "", CAPTION_GENERATION, CAPTION_OPS)
ANSWER_STEP = PromptStep("answer", VQA_TEMPLATE, VQA_GENERATION, ANSWER_OPS)
ANSWERABLE_STEP = PromptStep(
    "answerable", ANSWERABLE_TEMPLATE, VQA_GENERATION, ANSWER_OPS, ExitRule(contains="no", prediction="unanswerable")
)
ANSWER_AFTER_CAPTION_STEP = PromptStep("answer", DESCRIBE_THEN_ANSWER_TEMPLATE, VQA_GENERATION, ANSWER_OPS)
DESCRIBE_START = "There is"
DESCRIBE_CAPTION_STEP = PromptStep("caption", DESCRIBE_START, CAPTION_GENERATION,
                                   (TextOp("prefix", DESCRIBE_START), *CAPTION_OPS))

VQA_METRICS = ("vqa_accuracy", "vqa_accuracy_release")
# benchmark -> (reader, split, metrics, results-file keys)
CAPTION_BENCHMARKS = {
    "nocaps": ("nocaps", "val", ("cider",), ("image_id", "caption")),
    "flickr30k": ("flickr30k", "test", ("cider",), ("image_id", "caption")),
}
VQA_BENCHMARKS = {
    "vqav2": ("vqav2", "val2014", VQA_METRICS, ("question_id", "answer")),
    "okvqa": ("okvqa", "val2014", VQA_METRICS, ("question_id", "answer")),
    "gqa": ("gqa", "testdev_balanced", ("gqa_accuracy",), ("questionId", "prediction")),
    "vizwiz": ("vizwiz", "val", VQA_METRICS, ("image", "answer")),
}


def _task(protocol: str, name: str, steps: tuple[PromptStep, ...], description: str, question_ops=QUESTION_OPS,
          version: int = 1) -> Task:
    reader, split, metrics, result_keys = {**CAPTION_BENCHMARKS, **VQA_BENCHMARKS}[name]
    return Task(
        name=name,
        protocol=protocol,
        version=version,
        reader=reader,
        split=split,
        steps=steps,
        metrics=metrics,
        result_keys=result_keys,
        question_ops=question_ops if name in VQA_BENCHMARKS else (),
        description=description,
    )


def _register_all() -> None:
    for protocol, source in (("release", "authors' release"), ("paper", "paper §4.1; decoding from the release")):
        for name in CAPTION_BENCHMARKS:
            register_task(_task(protocol, name, (CAPTION_STEP,), f"captioning, {source}"))
        for name in VQA_BENCHMARKS:
            steps = (ANSWER_STEP,)
            if protocol == "release" and name == "vizwiz":
                steps = (ANSWERABLE_STEP, ANSWER_STEP)
            register_task(_task(protocol, name, steps, f"VQA, {source}"))
    for name in VQA_BENCHMARKS:
        steps = (DESCRIBE_CAPTION_STEP, ANSWER_AFTER_CAPTION_STEP)
        if name == "vizwiz":
            steps = (ANSWERABLE_STEP, *steps)
        register_task(_task("describe_then_answer", name, steps, "own caption first, then the VQA prompt after it",
                            question_ops=CASED_QUESTION_OPS, version=3))


_register_all()
