"""Reading back a stage-0 CLIP export: the same weights and config, the readers' preprocessing,
and errors that name the file and key."""
from __future__ import annotations

import dataclasses
import json

import pytest
import torch

from lavit_pl.data.image_shards import CLIP_MEAN, CLIP_STD
from lavit_pl.utils.clip_export import ClipExportError, load_clip_export

from clip_export_fixtures import SMALL_CLIP, write_clip_export


def test_round_trip_weights_config_and_preprocessing(tmp_path):
    folder = write_clip_export(tmp_path / "export", seed=3)
    export = load_clip_export(folder)
    assert export.config == SMALL_CLIP
    assert (export.preprocess.image_size, export.preprocess.mean, export.preprocess.std) == (16, CLIP_MEAN, CLIP_STD)
    saved = torch.load(folder / "open_clip_pytorch_model.bin", weights_only=True)
    loaded = export.model.state_dict()
    assert set(saved) == set(loaded) and all(torch.equal(saved[k], loaded[k]) for k in saved)
    assert not export.model.training and not any(p.requires_grad for p in export.model.parameters())


def test_pool_type_is_read_and_defaults_to_the_class_token(tmp_path):
    avg = write_clip_export(tmp_path / "avg", dataclasses.replace(SMALL_CLIP, pool_type="avg"))
    assert load_clip_export(avg).config.pool_type == "avg"
    old = write_clip_export(tmp_path / "old")
    config = json.loads((old / "open_clip_config.json").read_text())
    del config["model_cfg"]["vision_cfg"]["pool_type"]  # exports written before the key existed
    (old / "open_clip_config.json").write_text(json.dumps(config))
    assert load_clip_export(old).config.pool_type == "tok"


def test_missing_files_are_named(tmp_path):
    folder = write_clip_export(tmp_path / "export")
    (folder / "open_clip_pytorch_model.bin").unlink()
    with pytest.raises(FileNotFoundError, match=f"weights file {folder / 'open_clip_pytorch_model.bin'} not found"):
        load_clip_export(folder)
    with pytest.raises(FileNotFoundError, match="config file .*open_clip_config.json not found"):
        load_clip_export(tmp_path / "nowhere")


@pytest.mark.parametrize("edit, message", [
    (lambda c: c["model_cfg"]["vision_cfg"].pop("width"), "missing key model_cfg.vision_cfg.width"),
    (lambda c: c["model_cfg"]["text_cfg"].update(layers="2"), "model_cfg.text_cfg.layers must be int"),
    (lambda c: c["model_cfg"]["text_cfg"].update(vocab_size=1000), "vocab_size must be 49408"),
    (lambda c: c["preprocess_cfg"].update(size=32), r"preprocess_cfg.size \(32\) must equal"),
    (lambda c: c["preprocess_cfg"].update(resize_mode="shortest"), "preprocess_cfg.resize_mode must be 'squash'"),
    (lambda c: c["preprocess_cfg"].update(std=[1.0, 1.0]), "preprocess_cfg.mean/std"),
    (lambda c: c.pop("preprocess_cfg"), "missing key preprocess_cfg"),
])
def test_bad_config_names_file_and_key(tmp_path, edit, message):
    folder = write_clip_export(tmp_path / "export")
    path = folder / "open_clip_config.json"
    config = json.loads(path.read_text())
    edit(config)
    path.write_text(json.dumps(config))
    with pytest.raises(ClipExportError, match=message) as info:
        load_clip_export(folder)
    assert str(path) in str(info.value)
