"""The task registry run with fake "models": plain functions from a request to text."""
import pytest

from evaluation.protocols import GenerationRequest, get_task, one_at_a_time, results_entries, run_task
from evaluation.protocols.spec import apply_ops


def _recorder(answers):
    """A fake model: ``answers(request) -> str``; every request is kept in ``calls``."""
    calls: list[GenerationRequest] = []

    def generate(requests):
        calls.extend(requests)
        return [answers(r) for r in requests]

    return generate, calls


def test_describe_then_answer_chains_the_caption_into_the_question_prompt():
    def answers(r):
        return {"caption": "  a red circle left of a blue square. It is small.", "answer": "Red, I think."}[r.step]

    generate, calls = _recorder(answers)
    records = [{"image": "img0.jpg", "question": "What color is the circle?", "question_id": 7}]
    (out,) = run_task(get_task("describe_then_answer/vqav2"), records, generate)
    assert [c.step for c in calls] == ["caption", "answer"]
    assert calls[0].text == "There is"  # captioning: the image, then the caption's start (v3)
    assert calls[1].text == "There is a red circle left of a blue square.\nQuestion: What color is the circle? Answer:"  # case kept (v2)
    assert all(c.image == "img0.jpg" for c in calls)  # the image stays before every step's text
    assert (calls[0].generation.num_beams, calls[0].generation.min_new_tokens, calls[0].generation.max_new_tokens) == (2, 8, 36)
    assert (calls[1].generation.num_beams, calls[1].generation.max_new_tokens, calls[1].generation.length_penalty) == (5, 10, 0.0)
    assert out.outputs == {"caption": "There is a red circle left of a blue square", "answer": "red"}
    assert out.prediction == "red" and out.exited_at is None
    assert results_entries(get_task("describe_then_answer/vqav2"), records, [out]) == [{"question_id": 7, "answer": "red"}]


def test_vizwiz_release_rule_unanswerable_when_the_first_answer_contains_no():
    judgements = {"q0": "No.", "q1": "yes", "q2": "I do not know", "q3": "Yes, it is"}

    def answers(r):
        if r.step == "answerable":
            return judgements[r.image]
        return "Coca Cola. A can"

    generate, calls = _recorder(answers)
    records = [{"image": k, "question": "What is THIS?"} for k in judgements]
    outs = run_task(get_task("release/vizwiz"), records, generate)
    # "not"/"know" contain "no": the release's substring test marks q2 unanswerable too
    assert [o.prediction for o in outs] == ["unanswerable", "coca cola", "unanswerable", "coca cola"]
    assert [o.exited_at for o in outs] == ["answerable", None, "answerable", None]
    assert calls[0].text == 'Question: Is the question: "what is this?" answerable? Answer:'
    answered = [c.image for c in calls if c.step == "answer"]
    assert answered == ["q1", "q3"]  # the second step runs only for answerable questions
    assert calls[-1].text == "Question: what is this? Answer:"


def test_paper_vizwiz_is_the_single_vqa_prompt():
    generate, calls = _recorder(lambda r: "no")
    (out,) = run_task(get_task("paper/vizwiz"), [{"image": "a", "question": "Is it open?"}], generate)
    assert [c.step for c in calls] == ["answer"] and out.prediction == "no"


@pytest.mark.parametrize(
    "raw, expected",
    [
        ('What is "THIS" (thing)?!  ', "what is this thing?"),
        ("Is it 3.5 inches; or #2~ : *x*?", "is it 35 inches or 2  x?"),
        (" ".join(f"w{i}" for i in range(60)), " ".join(f"w{i}" for i in range(50))),
    ],
)
def test_questions_are_lowercased_stripped_and_truncated(raw, expected):
    generate, calls = _recorder(lambda r: "x")
    run_task(get_task("release/vqav2"), [{"image": 0, "question": raw}], generate)
    assert calls[0].text == f"Question: {expected} Answer:"


@pytest.mark.parametrize(
    "raw, expected",
    [(" a dog on a sofa. the dog is brown.", "a dog on a sofa"), ("two cats ", "two cats"), (".", "")],
)
def test_captions_are_cut_at_the_first_period(raw, expected):
    generate, calls = _recorder(lambda r: raw)
    (out,) = run_task(get_task("release/nocaps"), [{"image": 3, "image_id": 3}], generate)
    assert calls[0].text == "" and out.prediction == expected
    assert results_entries(get_task("release/nocaps"), [{"image": 3, "image_id": 3}], [out]) == [
        {"image_id": 3, "caption": expected}
    ]


@pytest.mark.parametrize("raw, expected", [
    (" a red circle on the left. It is small.", "There is a red circle on the left"),
    ("a red circle", "There is a red circle"),
    ("", "There is"),
])
def test_describe_then_answer_captions_keep_their_start(raw, expected):
    step = get_task("describe_then_answer/vqav2").steps[0]
    assert apply_ops(step.output_ops, raw) == expected


@pytest.mark.parametrize(
    "raw, expected",
    [("Blue\nQuestion: x", "blue"), ("two, maybe three", "two"), ("Yes question: why", "yes"),
     ("  Left Long answer: the left", "left")],
)
def test_release_answer_cut(raw, expected):
    (out,) = run_task(get_task("release/gqa"), [{"image": 0, "question": "q"}], one_at_a_time(lambda r: raw))
    assert out.prediction == expected


def test_batches_respect_batch_size_and_keep_order():
    sizes = []

    def generate(requests):
        sizes.append(len(requests))
        return [f"{r.image} {r.step}" for r in requests]

    records = [{"image": f"i{k}", "question": f"q{k}", "questionId": k} for k in range(5)]
    outs = run_task(get_task("describe_then_answer/gqa"), records, generate, batch_size=2)
    assert sizes == [2, 2, 1, 2, 2, 1]
    assert outs[3].prompts["answer"] == "There is i3 caption.\nQuestion: q3 Answer:"
    assert results_entries(get_task("describe_then_answer/gqa"), records, outs)[4] == {"questionId": 4, "prediction": "i4 answer"}


def test_bad_records_and_generators_are_named():
    task = get_task("release/vqav2")
    with pytest.raises(KeyError, match=r"release/vqav2: record 1 lacks \['question'\]"):
        run_task(task, [{"image": 0, "question": "a"}, {"image": 1}], one_at_a_time(lambda r: "x"))
    with pytest.raises(ValueError, match="generator returned 0 texts for 1 requests"):
        run_task(task, [{"image": 0, "question": "a"}], lambda requests: [])
    with pytest.raises(KeyError, match="results id key 'question_id'"):
        results_entries(task, [{"image": 0, "question": "a"}], run_task(task, [{"image": 0, "question": "a"}], one_at_a_time(lambda r: "x")))


def test_questions_on_one_image_share_one_caption_generation():
    generate, calls = _recorder(lambda r: f"{r.image} {r.step} {len(r.text)}")
    records = [{"image": img, "question": q, "question_id": k}
               for k, (img, q) in enumerate([("img_a", "Q1?"), ("img_b", "Q1?"), ("img_a", "Q2?"), ("img_a", "Q1?")])]
    answered = []
    outs = run_task(get_task("describe_then_answer/vqav2"), records, generate, batch_size=2, on_batch=answered.append)
    captions = [c for c in calls if c.step == "caption"]
    assert [c.image for c in captions] == ["img_a", "img_b"]  # one caption per image, in first-seen order
    assert [o.outputs["caption"] for o in outs] == ["There is img_a caption 8", "There is img_b caption 8",
                                                    "There is img_a caption 8", "There is img_a caption 8"]
    # step 2: record 3 repeats record 0 (same image, same question), record 2 asks another question
    assert [c.image for c in calls if c.step == "answer"] == ["img_a", "img_b", "img_a"]
    assert outs[3].prediction == outs[0].prediction and outs[3].prompts == outs[0].prompts
    assert answered == [4, 3, 1]  # records answered per batch: every record is counted once per step


def test_sampled_steps_and_unhashable_images_are_never_shared():
    import dataclasses

    from evaluation.protocols.spec import GenerationSettings

    task = get_task("release/vqav2")
    sampled = dataclasses.replace(task, steps=tuple(dataclasses.replace(s, generation=GenerationSettings(do_sample=True))
                                                    for s in task.steps))
    generate, calls = _recorder(lambda r: "x")
    run_task(sampled, [{"image": "a.jpg", "question": "q"}] * 3, generate)
    assert len(calls) == 3  # each record gets its own sample
    generate, calls = _recorder(lambda r: "x")
    run_task(task, [{"image": ["pixels"], "question": "q"}] * 2, generate)
    assert len(calls) == 2  # an in-memory image has no identity to share by
