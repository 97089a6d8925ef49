"""Stage-0 CLIP: colour-word dropout (kinds must matter for the contrastive match) and a micro fit."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from lavit_pl.cli import main
from lavit_pl.models.clip import contrastive_loss
from lavit_pl.modules.clip_module import caption_tags, drop_color_words, swap_kind_words

REPO = Path(__file__).resolve().parents[2]


def test_drop_color_words_keeps_kinds_sizes_and_backgrounds():
    colors = ["red", "green", "purple", "black"]
    cap = "A large purple circle, a small green circle and a black shape on a beige background."
    assert drop_color_words(cap, colors) == "A large circle, a small circle and a shape on a beige background."
    assert drop_color_words("There is a Red square.", colors) == "There is a square."
    assert drop_color_words("A reddish square.", colors) == "A reddish square."  # whole words only


def test_contrastive_loss_hand_computed():
    # Two orthogonal pairs, logit scale 1: logits = I, each row's CE = log(1 + e^-1) - ... computed directly.
    img = torch.eye(2)
    loss = contrastive_loss(img, img.clone(), torch.tensor(1.0))
    expected = -torch.log(torch.exp(torch.tensor(1.0)) / (torch.exp(torch.tensor(1.0)) + 1.0))
    torch.testing.assert_close(loss, expected)


def test_micro_fit_exports_open_clip_layout(tmp_path):
    world = tmp_path / "world"
    assert main(["world", "-c", str(REPO / "experiments/world/shapes_micro.yaml"), f"output_dir={world}"]) == 0
    run = tmp_path / "run"
    assert main(["fit", "-c", str(REPO / "experiments/stage0/clip_micro.yaml"), f"output_dir={run}",
                 f"data.data_root={world}", "trainer.progress_bar=false", "trainer.max_steps=3"]) == 0
    state = torch.load(run / "export/open_clip_pytorch_model.bin", weights_only=True)
    assert "visual.conv1.weight" in state and "visual.transformer.resblocks.0.attn.in_proj_weight" in state
    metrics = json.loads((run / "export/metrics.json").read_text())
    # chance = 1 / classes: 8 colours, 6 kinds named in training text (the novel kind is excluded);
    # logged as float32, hence the tolerance.
    assert abs(metrics["val/zero_shot_color_chance"] - 1 / 8) < 1e-6
    assert abs(metrics["val/zero_shot_kind_chance"] - 1 / 6) < 1e-6
    assert json.loads((run / "DONE.json").read_text())["global_step"] == 3


def test_swap_kind_words_changes_every_kind_and_keeps_number():
    kinds = ["circle", "square", "cross", "hexagon"]
    gen = torch.Generator().manual_seed(0)
    for _ in range(20):
        out = swap_kind_words("Two red circles and a cross on a white background.", kinds, gen)
        words = out.rstrip(".").split(" ")
        assert words[0] == "Two" and words[1] == "red" and words[3:] == ["and", "a", words[5], "on", "a", "white", "background"]
        assert words[2] in {"squares", "crosses", "hexagons"}  # plural kept, never the original kind
        assert words[5] in {"circle", "square", "hexagon"}
    assert swap_kind_words("A red shape.", kinds, gen) is None  # nothing to swap: no negative


def test_contrastive_loss_with_hard_negatives_hand_computed():
    # One pair (cosine 1) and one negative caption at cosine 0, logit scale 1:
    # image->text = -log(e / (e + 1)); text->image = -log(e / e) = 0 (one image only).
    img = torch.tensor([[1.0, 0.0]])
    neg = torch.tensor([[0.0, 1.0]])
    loss = contrastive_loss(img, img.clone(), torch.tensor(1.0), neg)
    e = torch.exp(torch.tensor(1.0))
    torch.testing.assert_close(loss, 0.5 * -torch.log(e / (e + 1.0)))


def test_kind_negatives_count_per_caption_and_config_check():
    from lavit_pl.config import ConfigError, load_config
    from lavit_pl.modules.clip_module import ClipModule, ClipRunConfig

    overrides = ["augment.kind_negatives=2", "zero_shot.kinds=[circle,square,cross]", "zero_shot.colors=[red,blue]"]
    cfg = load_config(ClipRunConfig, REPO / "experiments/stage0/clip_micro.yaml", overrides)
    negatives = ClipModule(cfg)._kind_negatives(["A red circle.", "A blue shape.", "Two squares."])
    # two rounds over the captions; "A blue shape." names no kind and gives none
    assert len(negatives) == 4
    assert all(n not in ("A red circle.", "Two squares.") for n in negatives)
    assert {n.split(" ")[0] for n in negatives} == {"A", "Two"}
    with pytest.raises(ConfigError, match="augment.kind_negatives must be >= 0"):
        load_config(ClipRunConfig, REPO / "experiments/stage0/clip_micro.yaml", ["augment.kind_negatives=-1"])


def test_caption_tags_whole_words_singular_and_plural():
    words = ["circle", "square", "cross"]
    tags = caption_tags(["Two red circles and a Cross.", "A squared shape.", "Three squares, a circle."], words)
    torch.testing.assert_close(tags, torch.tensor([[1.0, 0.0, 1.0], [0.0, 0.0, 0.0], [1.0, 1.0, 0.0]]))


def test_tag_loss_adds_weighted_bce_of_caption_tags():
    """training_step = contrastive term + tags.weight * BCE(tag head on the raw image embedding, caption tags)."""
    import torch.nn.functional as F

    from lavit_pl.config import load_config
    from lavit_pl.modules.clip_module import ClipModule, ClipRunConfig

    overrides = ["tags.weight=3.0", "augment.color_dropout=0.0", "augment.kind_negatives=0",
                 "zero_shot.kinds=[circle,square,cross]", "zero_shot.colors=[red,blue]"]
    cfg = load_config(ClipRunConfig, REPO / "experiments/stage0/clip_micro.yaml", overrides)
    torch.manual_seed(0)
    module = ClipModule(cfg)
    assert module.tag_words == ["circle", "square", "cross"]
    captions = ["A red circle.", "Two blue squares and a cross.", "A blue shape."]
    images = torch.randn(3, 3, cfg.model.image_size, cfg.model.image_size)
    loss = module.training_step({"image": images, "caption": captions}, 0)
    with torch.no_grad():
        emb = module.model.encode_image(images)
        txt = F.normalize(module.model.encode_text(module.tokenizer(captions)), dim=-1)
        contrastive = contrastive_loss(F.normalize(emb, dim=-1), txt, module.model.logit_scale.exp())
        target = torch.tensor([[1.0, 0, 0], [0, 1, 1], [0, 0, 0]])
        logits = module.tag_head(emb)
        bce = -(target * F.logsigmoid(logits) + (1 - target) * F.logsigmoid(-logits)).mean()
    torch.testing.assert_close(loss.detach(), contrastive + 3.0 * bce)
    assert "tag_head.weight" not in module.model.state_dict()  # the head is not part of the exported CLIP
    off = ClipModule(load_config(ClipRunConfig, REPO / "experiments/stage0/clip_micro.yaml", ["tags.weight=0"] + overrides[1:]))
    assert off.tag_head is None
