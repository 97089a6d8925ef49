"""LavitGenerator: protocol requests -> [IMG] features [/IMG] text -> generate_text, checked against
hand-built prompts decoded one at a time; settings pass-through; blind variant; describe-then-answer."""
from __future__ import annotations

import pytest
import torch
from PIL import Image

from evaluation.protocols import GenerationRequest, GenerationSettings, get_task, run_task
from evaluation.protocols.tasks import CAPTION_GENERATION, VQA_GENERATION
from lavit_pl.data.sequences import FEATURE_PLACEHOLDER_ID
from lavit_pl.generation.lavit_generator import (
    LavitGenerator, build_prompt, noise_image, noise_image_encoder, text_config,
)
from lavit_pl.generation.text import TextGenerationConfig, generate_text

from lavit_eval_fixtures import FakeEncoder, jpeg, tiny_lm, tiny_tokenizer

SHORT_BEAM = GenerationSettings(num_beams=3, min_new_tokens=2, max_new_tokens=6, length_penalty=0.0,
                                early_stopping=True)


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    return tiny_lm(seed=0), tiny_tokenizer(tmp_path_factory.mktemp("tok"))


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    folder = tmp_path_factory.mktemp("img")
    paths = []
    for i in range(5):
        path = folder / f"im{i}.jpg"
        path.write_bytes(jpeg(path.name))
        paths.append(str(path))
    return paths


def test_build_prompt_is_img_slots_end_then_text_without_bos(model):
    lm, tokenizer = model
    vocab = lm.vocab
    text = "Question: is there a red circle? Answer:"
    with_bos = tokenizer(text)["input_ids"]
    assert with_bos[0] == vocab.bos_id  # the tokenizer adds <s> by default ...
    prompt = build_prompt(vocab, tokenizer, 3, text)
    expected = ([vocab.image_start_id] + [FEATURE_PLACEHOLDER_ID] * 3 + [vocab.image_end_id] + with_bos[1:])
    assert prompt.input_ids.tolist() == expected  # ... the prompt does not (release)
    assert prompt.feature_slot.tolist() == [-1, 0, 1, 2, -1] + [-1] * (len(with_bos) - 1)
    caption = build_prompt(vocab, tokenizer, 2, "")
    assert caption.input_ids.tolist() == [vocab.image_start_id, 0, 0, vocab.image_end_id]


def test_generator_equals_hand_built_prompts_decoded_one_at_a_time(model, images):
    lm, tokenizer = model
    encoder = FakeEncoder()
    texts = ["Question: what color is the circle? Answer:", "", "Question: how many squares? Answer:",
             "Question: is there a triangle? Answer:", ""]
    requests = [GenerationRequest(im, t, "answer", SHORT_BEAM) for im, t in zip(images, texts)]
    got = LavitGenerator(lm, tokenizer, encoder, batch_size=2)(requests)
    feats = FakeEncoder()(images)
    assert len({f.shape[0] for f in feats}) > 1  # T_b differs across the batch
    config = TextGenerationConfig(num_beams=3, min_new_tokens=2, max_new_tokens=6, length_penalty=0.0,
                                  early_stopping=True)
    expected = [generate_text(lm, tokenizer, [build_prompt(lm.vocab, tokenizer, f.shape[0], t)], f, config)[0]
                for f, t in zip(feats, texts)]
    assert got == expected
    assert all(got) and all(isinstance(t, str) for t in got)
    assert [len(c) for c in encoder.calls] == [2, 2, 1]  # batches of 2, each image encoded once


def test_each_image_is_encoded_once_across_questions_and_calls(model, images):
    lm, tokenizer = model
    encoder = FakeEncoder()
    generator = LavitGenerator(lm, tokenizer, encoder, batch_size=8, cache_size=2)
    short = GenerationSettings(num_beams=1, min_new_tokens=1, max_new_tokens=2)
    ask = [images[0], images[0], images[1], images[0]]
    generator([GenerationRequest(im, "Question: a? Answer:", "answer", short) for im in ask])
    assert encoder.calls == [[images[0], images[1]]]
    generator([GenerationRequest(im, "", "caption", short) for im in (images[1], images[2])])
    assert encoder.calls[1] == [images[2]]  # images[1] came from the cache
    generator([GenerationRequest(images[0], "", "caption", short)])  # evicted: cache holds 2 images
    assert encoder.calls[2] == [images[0]]


def test_step_settings_reach_generate(model, images, monkeypatch):
    lm, tokenizer = model
    seen = []
    real = lm.llm.generate

    def spy(**kwargs):
        seen.append({k: kwargs[k] for k in ("num_beams", "min_new_tokens", "max_new_tokens", "length_penalty",
                                            "early_stopping", "do_sample")})
        return real(**kwargs)

    monkeypatch.setattr(lm.llm, "generate", spy)
    generator = LavitGenerator(lm, tokenizer, FakeEncoder(), batch_size=4)
    mixed = [GenerationRequest(images[0], "Question: a? Answer:", "answer", VQA_GENERATION),
             GenerationRequest(images[1], "", "caption", CAPTION_GENERATION),
             GenerationRequest(images[2], "Question: b? Answer:", "answer", VQA_GENERATION)]
    out = generator(mixed)
    assert seen == [  # release VQA then release captioning (DESIGN.md section 2), one call per setting
        {"num_beams": 5, "min_new_tokens": 2, "max_new_tokens": 10, "length_penalty": 0.0, "early_stopping": True,
         "do_sample": False},
        {"num_beams": 2, "min_new_tokens": 8, "max_new_tokens": 36, "length_penalty": 1.0, "early_stopping": False,
         "do_sample": False},
    ]
    monkeypatch.setattr(lm.llm, "generate", real)
    one_by_one = [generator([r])[0] for r in mixed]
    assert out == one_by_one  # grouping keeps the request order
    with pytest.raises(ValueError, match="do_sample"):
        text_config(GenerationSettings(do_sample=True))


def test_blind_variant_is_only_another_encoder(model, images):
    lm, tokenizer = model
    inner = FakeEncoder()
    blind = noise_image_encoder(inner, seed=3)
    noise = [noise_image(p, seed=3) for p in images[:2]]
    assert noise[0].size == Image.open(images[0]).size == (16, 16)
    assert noise[0].tobytes() == noise_image(images[0], seed=3).tobytes()  # deterministic
    assert noise[0].tobytes() != noise[1].tobytes() != noise_image(images[1], seed=4).tobytes()
    requests = [GenerationRequest(p, "", "caption", SHORT_BEAM) for p in images[:2]]
    got = LavitGenerator(lm, tokenizer, blind)(requests)
    assert all(isinstance(x, Image.Image) for x in inner.calls[0])  # the encoder saw noise, not the files
    direct = LavitGenerator(lm, tokenizer, lambda ims: FakeEncoder()(noise))(requests)
    assert got == direct
    assert got != LavitGenerator(lm, tokenizer, FakeEncoder())(requests)


def test_bad_features_name_the_image(model, images):
    lm, tokenizer = model
    wrong = LavitGenerator(lm, tokenizer, lambda ims: [torch.zeros(2, 5) for _ in ims])
    with pytest.raises(ValueError, match=rf"{images[0]}.*\(T_b >= 1, D=8\), got \(2, 5\)"):
        wrong([GenerationRequest(images[0], "", "caption", SHORT_BEAM)])
    short = LavitGenerator(lm, tokenizer, lambda ims: [])
    with pytest.raises(ValueError, match="returned 0 tensors for 1 images"):
        short([GenerationRequest(images[0], "", "caption", SHORT_BEAM)])


def test_describe_then_answer_feeds_the_caption_into_the_question_prompt(model, images):
    lm, tokenizer = model
    seen = []
    generator = LavitGenerator(lm, tokenizer, FakeEncoder(), batch_size=4)

    def spy(requests):
        seen.extend(requests)
        return generator(requests)

    records = [{"image": images[0], "question": "What COLOR is the circle?", "question_id": 1},
               {"image": images[1], "question": "How many squares (in all)?", "question_id": 2}]
    outputs = run_task(get_task("describe_then_answer/vqav2"), records, spy, batch_size=4)
    captions = [r for r in seen if r.step == "caption"]
    answers = [r for r in seen if r.step == "answer"]
    assert [r.text for r in captions] == ["There is", "There is"] and [r.image for r in captions] == images[:2]
    assert [r.image for r in answers] == images[:2]  # the image is still before the caption
    for out, request, question in zip(outputs, answers, ["What COLOR is the circle?", "How many squares in all?"]):
        assert out.outputs["caption"]  # a non-empty caption was generated ...
        assert request.text == f"{out.outputs['caption']}.\nQuestion: {question} Answer:"  # ... and fed to step 2
        assert out.prompts["answer"] == request.text
    # step 1 is the release captioning's decoding continuing "There is" after the same image
    alone = generator([GenerationRequest(images[0], "There is", "caption", CAPTION_GENERATION)])[0]
    assert outputs[0].outputs["caption"] == f"There is {alone.lstrip()}".split(".")[0].strip()
