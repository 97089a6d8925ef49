"""Registered tasks: pinned settings, fingerprints against the recorded versions, validation."""
import dataclasses
import json

import pytest

from evaluation.protocols import (
    ExitRule, GenerationSettings, PromptStep, Task, TextOp, all_tasks, fingerprint, fingerprint_problems, get_task,
    load_recorded, protocols_for, record_fingerprints, register_task, task_keys,
)


def test_every_task_matches_the_fingerprint_recorded_for_its_version():
    # Fails when a prompt, decoding setting, post-processing or metric changes without a version bump.
    assert fingerprint_problems(all_tasks(), load_recorded()) == []


def test_registry_lists_three_protocols():
    assert task_keys("release") == [f"release/{b}" for b in ("flickr30k", "gqa", "nocaps", "okvqa", "vizwiz", "vqav2")]
    assert len(task_keys("paper")) == 6 and len(task_keys("describe_then_answer")) == 4
    with pytest.raises(KeyError, match="no task 'release/coco'"):
        get_task("release/coco")
    # captioning has no describe-then-answer task; an unknown benchmark has none at all
    assert protocols_for("vqav2") == ["describe_then_answer", "paper", "release"]
    assert protocols_for("flickr30k") == ["paper", "release"] and protocols_for("coco") == []


def test_release_settings_are_the_authors():
    cap = get_task("release/flickr30k").steps[0]
    assert cap.template == "" and cap.generation == GenerationSettings(2, 8, 36, 1.0, False, False)
    vqa = get_task("release/okvqa")
    assert [s.template for s in vqa.steps] == ["Question: {question} Answer:"]
    assert vqa.steps[0].generation == GenerationSettings(5, 2, 10, 0.0, True, False)
    assert vqa.question_ops[1] == TextOp("delete_chars", '.!"()*#:;~')
    wiz = get_task("release/vizwiz")
    assert wiz.steps[0].template == 'Question: Is the question: "{question}" answerable? Answer:'
    assert wiz.steps[0].exit_rule == ExitRule("no", "unanswerable")
    dta = get_task("describe_then_answer/vizwiz")
    assert [s.template for s in dta.steps] == [
        'Question: Is the question: "{question}" answerable? Answer:', "There is", "{caption}.\nQuestion: {question} Answer:"
    ]
    # v3: the caption step is the release's captioning with the start "There is" kept in its output
    caption = get_task("release/flickr30k").steps[0]
    assert dta.steps[1].generation == caption.generation
    assert dta.steps[1].output_ops == (TextOp("prefix", "There is"), *caption.output_ops)
    # ours keeps the question's case (v2); everything else the release does to a question stays
    assert dta.version == 3 and dta.question_ops == tuple(op for op in vqa.question_ops if op.kind != "lowercase")
    assert vqa.question_ops[0] == TextOp("lowercase")
    # paper: same as release except VizWiz (one VQA step)
    for name in ("nocaps", "flickr30k", "vqav2", "okvqa", "gqa"):
        assert get_task(f"paper/{name}").steps == get_task(f"release/{name}").steps


def test_a_change_without_a_bump_is_caught_and_a_bump_needs_recording():
    task = get_task("release/vqav2")
    step = dataclasses.replace(task.steps[0], template="Q: {question} A:")
    changed = dataclasses.replace(task, steps=(step,))
    assert fingerprint(changed) != fingerprint(task)
    (msg,) = fingerprint_problems([changed], load_recorded())
    assert msg.startswith("release/vqav2 v1: definition changed")
    (msg,) = fingerprint_problems([dataclasses.replace(changed, version=2)], load_recorded())
    assert msg.startswith("release/vqav2 v2: no recorded fingerprint")
    for tweak in (dict(metrics=("vqa_accuracy",)), dict(question_ops=()), dict(split="test-dev2015")):
        assert fingerprint(dataclasses.replace(task, **tweak)) != fingerprint(task)


def test_fingerprint_ignores_description_and_number_spelling():
    task = get_task("release/vqav2")
    assert fingerprint(dataclasses.replace(task, description="other words")) == fingerprint(task)
    step = dataclasses.replace(task.steps[0], generation=GenerationSettings(5, 2, 10, 0, True))  # int 0
    assert fingerprint(dataclasses.replace(task, steps=(step,))) == fingerprint(task)


def test_record_adds_new_versions_and_refuses_rewrites(tmp_path):
    path = tmp_path / "fp.json"
    task = get_task("release/gqa")
    assert record_fingerprints([task], path) == ["release/gqa v1"]
    assert json.loads(path.read_text()) == {"release/gqa": {"1": fingerprint(task)}}
    changed = dataclasses.replace(task, metrics=("exact_match",))
    with pytest.raises(ValueError, match="bump Task.version"):
        record_fingerprints([changed], path)
    assert record_fingerprints([dataclasses.replace(changed, version=2)], path) == ["release/gqa v2"]
    assert set(json.loads(path.read_text())["release/gqa"]) == {"1", "2"}


def test_validation_names_the_field():
    gen = GenerationSettings()
    with pytest.raises(ValueError, match=r"step 'answer' uses \{caption\}"):
        Task("x", "p", 1, "r", "s", (PromptStep("answer", "{caption} {question}", gen),), ("m",), ("id", "a"))
    with pytest.raises(ValueError, match="TextOp.kind: unknown 'upper'"):
        TextOp("upper")
    with pytest.raises(ValueError, match="TextOp.arg: 'cut_at' needs"):
        TextOp("cut_at", ("",))
    with pytest.raises(ValueError, match="TextOp.arg: 'prefix' needs a non-empty"):
        TextOp("prefix", " ")
    with pytest.raises(ValueError, match="GenerationSettings.max_new_tokens"):
        GenerationSettings(min_new_tokens=8, max_new_tokens=4)
    with pytest.raises(ValueError, match="already registered with a different definition"):
        register_task(dataclasses.replace(get_task("release/vqav2"), split="test"))
