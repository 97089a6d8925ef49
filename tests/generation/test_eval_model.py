"""Evaluation folders: save -> load gives the same LM, vit_proj and visual side; bad folders are named."""
from __future__ import annotations

import json

import pytest
import torch

from lavit_pl.generation.eval_model import MANIFEST, load_lavit_for_eval, save_lavit_for_eval
from lavit_pl.generation.pixel_encoder import PixelPatchEncoder, PixelPatchEncoderConfig
from lavit_pl.models.llm import build_random_llama

from lavit_eval_fixtures import D_VIS, K, SHAPE, V_TEXT, jpeg, tiny_lm, tiny_tokenizer

FACTORY = "lavit_pl.generation.pixel_encoder:build_pixel_patch_encoder"
ENCODER_ARGS = {"image_size": 16, "patch_size": 8, "dim": D_VIS, "seed": 5}


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    folder = tmp_path_factory.mktemp("model")
    lm, tokenizer = tiny_lm(seed=2), tiny_tokenizer(tmp_path_factory.mktemp("tok"))
    save_lavit_for_eval(folder, lm, tokenizer, FACTORY, ENCODER_ARGS,
                        visual_state={"token_merger.blocks.0.weight": torch.ones(2, 2)})
    return folder, lm, tokenizer


def test_round_trip_gives_the_same_model_and_visual_side(saved, tmp_path):
    folder, lm, tokenizer = saved
    loaded = load_lavit_for_eval(folder)
    assert loaded.lm.vocab == lm.vocab and len(loaded.tokenizer) == V_TEXT
    assert loaded.lm.vocab.size == V_TEXT + 2 + K
    ids = torch.tensor([[lm.vocab.image_start_id, 0, 0, lm.vocab.image_end_id, 260, 270]])
    slot = torch.tensor([[-1, 0, 1, -1, -1, -1]])
    feats = torch.randn(2, D_VIS, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        # same weights, same code: bit-identical
        torch.testing.assert_close(loaded.lm(ids, None, slot, feats), lm(ids, None, slot, feats), rtol=0, atol=0)
    image = tmp_path / "x.jpg"
    image.write_bytes(jpeg("x"))
    expected = PixelPatchEncoder(PixelPatchEncoderConfig(**ENCODER_ARGS))([str(image)])
    got = loaded.encode_images([str(image)])
    assert got[0].shape == (4, D_VIS)  # (16 / 8)^2 patches
    torch.testing.assert_close(got[0], expected[0], rtol=0, atol=0)
    manifest = json.loads((folder / MANIFEST).read_text())
    assert manifest["visual_encoder"] == {"factory": FACTORY, "args": ENCODER_ARGS}


def test_pickled_visual_weights_load_with_weights_only(saved, tmp_path):
    folder, lm, _ = saved
    from safetensors.torch import load_file

    (tmp_path / "language_model").symlink_to(folder / "language_model")
    torch.save(load_file(folder / "visual.safetensors"), tmp_path / "visual.pt")
    manifest = json.loads((folder / MANIFEST).read_text())
    (tmp_path / MANIFEST).write_text(json.dumps({**manifest, "visual_weights": "visual.pt"}))
    loaded = load_lavit_for_eval(tmp_path)
    torch.testing.assert_close(loaded.lm.vit_proj.weight, lm.vit_proj.weight, rtol=0, atol=0)


def _variant(folder, tmp_path, **changes):
    tmp_path.mkdir()
    (tmp_path / "language_model").symlink_to(folder / "language_model")
    (tmp_path / "visual.safetensors").symlink_to(folder / "visual.safetensors")
    manifest = json.loads((folder / MANIFEST).read_text())
    manifest.update(changes)
    (tmp_path / MANIFEST).write_text(json.dumps(manifest))
    return tmp_path


def test_bad_folders_are_named(saved, tmp_path):
    folder, lm, tokenizer = saved
    with pytest.raises(FileNotFoundError, match=f"no {MANIFEST}"):
        load_lavit_for_eval(tmp_path)
    outside = _variant(folder, tmp_path / "a", visual_encoder={"factory": "os:system", "args": {}})
    with pytest.raises(ValueError, match="visual_encoder.factory: expected 'lavit_pl.<module>:<function>'"):
        load_lavit_for_eval(outside)
    with pytest.raises(ValueError, match="key 'codebook_size' must be a int"):
        load_lavit_for_eval(_variant(folder, tmp_path / "b", codebook_size="16"))
    with pytest.raises(ValueError, match=r"318 embedding rows.*300 text \+ 2 \+ 17 codes = 319"):
        load_lavit_for_eval(_variant(folder, tmp_path / "c", codebook_size=K + 1))
    text_only = tmp_path / "d"
    text_only.mkdir()
    model = build_random_llama(SHAPE, V_TEXT)
    model.save_pretrained(text_only / "language_model")
    tokenizer.save_pretrained(text_only / "language_model")
    (text_only / "visual.safetensors").symlink_to(folder / "visual.safetensors")
    (text_only / MANIFEST).write_text((folder / MANIFEST).read_text())
    with pytest.raises(ValueError, match="has 300 embedding rows"):
        load_lavit_for_eval(text_only)
    with pytest.raises(ValueError, match=r"visual_state must not hold \['vit_proj.bias'\]"):
        save_lavit_for_eval(tmp_path / "e", lm, tokenizer, FACTORY, visual_state={"vit_proj.bias": torch.zeros(1)})
