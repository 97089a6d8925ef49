"""MMLU k-shot (default 5) over any ``transformers`` causal LM, the Hendrycks/LLaMA protocol.

Prompt per test question of subject ``s`` (``_`` in ``s`` read as spaces)::

    The following are multiple choice questions (with answers) about {s}.\\n\\n
    {dev question}\\nA. {a}\\nB. {b}\\nC. {c}\\nD. {d}\\nAnswer: {X}\\n\\n      (x k, the first k dev rows)
    {test question}\\nA. {a}\\nB. {b}\\nC. {c}\\nD. {d}\\nAnswer:

(Hendrycks et al.'s ``format_subject`` leaves a leading space, i.e. "about  abstract algebra"; we
write one space, as lm-eval does.) The prompt is tokenized with the tokenizer's special tokens (BOS
for LLaMA). If it is longer than the context, shots are dropped from the end one at a time, as the
Hendrycks code does; if even the zero-shot prompt is too long, it is cut from the left.

The prediction is the letter whose *answer token* has the highest next-token log-likelihood after
``Answer:``. The answer token is the one the tokenizer appends when ``Answer:`` becomes
``Answer: X``, i.e. exactly how the letter is written in the shots: ``▁A`` for LLaMA's SentencePiece
(what ``tokenizer("A").input_ids[-1]`` gives there), ``ĠA`` (" A") for GPT-2 style BPE, ``A`` for a
whitespace-splitting word-level tokenizer. A tokenizer that spends more than one token on " X"
is refused.

CLI: ``python -m evaluation.mmlu --model DIR --data DIR [--ntrain 5] [--out results.json]``
prints one JSON object (accuracies in percent; see ``evaluation.metrics.mmlu``).
"""
from __future__ import annotations

import argparse
import inspect
import json
import sys
from dataclasses import dataclass
from typing import Any, Sequence

import torch

from evaluation.benchmarks.mmlu import CHOICES, MCQuestion, MMLUSet, load_mmlu
from evaluation.metrics.mmlu import mmlu_accuracy


def format_subject(subject: str) -> str:
    return subject.replace("_", " ")


def format_question(q: MCQuestion, with_answer: bool) -> str:
    text = q.question + "".join(f"\n{letter}. {choice}" for letter, choice in zip(CHOICES, q.choices)) + "\nAnswer:"
    return (text + f" {q.answer}\n\n") if with_answer else text


def few_shot_prompt(subject: str, shots: Sequence[MCQuestion], question: MCQuestion) -> str:
    header = f"The following are multiple choice questions (with answers) about {format_subject(subject)}.\n\n"
    return header + "".join(format_question(s, True) for s in shots) + format_question(question, False)


def answer_token_ids(tokenizer: Any) -> list[int]:
    """Ids of the tokens that follow ``Answer:`` for A, B, C, D (see the module docstring)."""
    base = tokenizer("Answer:", add_special_tokens=False)["input_ids"]
    ids = []
    for letter in CHOICES:
        full = tokenizer(f"Answer: {letter}", add_special_tokens=False)["input_ids"]
        if full[: len(base)] != base or len(full) != len(base) + 1:
            pieces = tokenizer.convert_ids_to_tokens(full)
            raise ValueError(
                f"{type(tokenizer).__name__}: 'Answer: {letter}' tokenizes as {pieces}, expected the tokens of "
                f"'Answer:' plus one answer token"
            )
        ids.append(full[-1])
    if len(set(ids)) != len(ids):
        raise ValueError(f"{type(tokenizer).__name__}: answer letters share token ids {ids}")
    return ids


@dataclass(frozen=True)
class FittedPrompt:
    input_ids: list[int]
    shots: int  # few-shot examples kept
    left_truncated: bool


def fit_prompt(tokenizer: Any, subject: str, dev: Sequence[MCQuestion], question: MCQuestion, ntrain: int,
               max_length: int) -> FittedPrompt:
    """The longest prompt with at most ``ntrain`` shots that fits ``max_length`` tokens."""
    k = min(ntrain, len(dev))
    while True:
        ids = tokenizer(few_shot_prompt(subject, dev[:k], question))["input_ids"]
        if len(ids) <= max_length:
            return FittedPrompt(ids, k, False)
        if k == 0:
            return FittedPrompt(ids[-max_length:], 0, True)
        k -= 1


def _accepts_logits_to_keep(model: torch.nn.Module) -> bool:
    return "logits_to_keep" in inspect.signature(model.forward).parameters


@torch.no_grad()
def choice_logprobs(model: torch.nn.Module, prompts: Sequence[list[int]], letter_ids: Sequence[int]) -> torch.Tensor:
    """Next-token log-probabilities of the letters after each prompt: ``(B, 4)``, float32.

    Prompts are left-padded into one ``(B, S)`` batch; position ids count real tokens only, so each
    row gives what it gives unpadded. Log-softmax is over the full vocabulary.
    """
    device = next(model.parameters()).device
    longest = max(len(p) for p in prompts)
    input_ids = torch.zeros(len(prompts), longest, dtype=torch.long)  # (B, S); pad id is irrelevant: masked
    mask = torch.zeros(len(prompts), longest, dtype=torch.long)
    for row, ids in enumerate(prompts):
        input_ids[row, longest - len(ids):] = torch.tensor(ids, dtype=torch.long)
        mask[row, longest - len(ids):] = 1
    position_ids = (mask.cumsum(-1) - 1).clamp(min=0)
    kwargs = {"logits_to_keep": 1} if _accepts_logits_to_keep(model) else {}
    out = model(input_ids=input_ids.to(device), attention_mask=mask.to(device), position_ids=position_ids.to(device),
                use_cache=False, **kwargs)
    last = out.logits[:, -1, :].float()  # (B, V)
    return torch.log_softmax(last, dim=-1)[:, list(letter_ids)].cpu()  # (B, 4)


def evaluate_mmlu(model: torch.nn.Module, tokenizer: Any, data: MMLUSet, ntrain: int = 5, batch_size: int = 8,
                  max_length: int | None = None, limit: int | None = None) -> tuple[dict[str, Any], list[dict]]:
    """Score every test question of ``data``; returns (summary, one record per question)."""
    if ntrain < 0 or batch_size < 1:
        raise ValueError(f"ntrain must be >= 0 and batch_size >= 1, got {ntrain}, {batch_size}")
    if max_length is None:
        max_length = int(getattr(model.config, "max_position_embeddings", 2048))
    letter_ids = answer_token_ids(tokenizer)
    items = []  # (question, fitted prompt)
    for subject in data.subjects:
        for q in data.test[subject][:limit]:
            items.append((q, fit_prompt(tokenizer, subject, data.dev[subject], q, ntrain, max_length)))
    # longest first: fewer pad tokens per batch, and an out-of-memory error shows up at once
    order = sorted(range(len(items)), key=lambda i: -len(items[i][1].input_ids))
    logprobs: list[torch.Tensor | None] = [None] * len(items)
    for start in range(0, len(order), batch_size):
        chunk = order[start: start + batch_size]
        scores = choice_logprobs(model, [items[i][1].input_ids for i in chunk], letter_ids)
        for row, i in enumerate(chunk):
            logprobs[i] = scores[row]
    records = []
    for (q, fitted), lp in zip(items, logprobs):
        pred = CHOICES[int(torch.argmax(lp))]  # ties go to the earlier letter
        records.append({"subject": q.subject, "source": q.source, "answer": q.answer, "prediction": pred,
                        "correct": pred == q.answer, "logprobs": [round(float(x), 6) for x in lp],
                        "shots": fitted.shots, "left_truncated": fitted.left_truncated})
    summary = mmlu_accuracy([r["subject"] for r in records], [r["correct"] for r in records], data.categories)
    summary = {
        "benchmark": "mmlu",
        "unit": "percent",
        "ntrain": ntrain,
        **summary,
        "answer_tokens": dict(zip(CHOICES, tokenizer.convert_ids_to_tokens(letter_ids))),
        "category_source": data.category_source,
        "prompts": {
            "max_length": max_length,
            "fewer_shots": sum(r["shots"] < min(ntrain, len(data.dev[r["subject"]])) for r in records),
            "left_truncated": sum(r["left_truncated"] for r in records),
        },
    }
    return summary, records


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m evaluation.mmlu", description="MMLU k-shot accuracy of a causal LM"
    )
    parser.add_argument("--model", required=True, help="folder of a transformers causal LM")
    parser.add_argument("--tokenizer", help="tokenizer folder (default: --model)")
    parser.add_argument("--data", required=True, help="folder holding data/dev and data/test (MMLU layout)")
    parser.add_argument("--ntrain", type=int, default=5, help="few-shot examples per prompt")
    parser.add_argument("--out", help="write the summary JSON here (atomically)")
    parser.add_argument("--predictions", help="write one JSON line per question here")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--max-length", type=int, help="context length (default: config.max_position_embeddings)")
    parser.add_argument("--subjects", help="comma-separated subset of subjects")
    parser.add_argument("--limit", type=int, help="first N test questions per subject (quick runs)")
    parser.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "float16"])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args(argv)

    from transformers import AutoModelForCausalLM, AutoTokenizer

    from lavit_pl.utils.atomic import atomic_write_json, atomic_write_text

    data = load_mmlu(args.data, args.subjects.split(",") if args.subjects else None)
    tokenizer = AutoTokenizer.from_pretrained(args.tokenizer or args.model, local_files_only=True)
    model = AutoModelForCausalLM.from_pretrained(args.model, dtype=getattr(torch, args.dtype), local_files_only=True)
    model.to(args.device).eval()
    summary, records = evaluate_mmlu(model, tokenizer, data, args.ntrain, args.batch_size, args.max_length, args.limit)
    summary = {"model": str(args.model), "data": str(args.data), **summary}
    if args.out:
        atomic_write_json(args.out, summary)
    if args.predictions:
        atomic_write_text(args.predictions, "".join(json.dumps(r) + "\n" for r in records))
    json.dump(summary, sys.stdout)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
