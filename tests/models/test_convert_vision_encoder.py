"""Vision-encoder loaders on tiny random models saved in each real format (same key names, same file
types, read back with weights_only=True): strict load, dropped keys by name, forward parity, round trips."""
from __future__ import annotations

import pytest
import timm
import torch
from open_clip.model import CLIP, CLIPTextCfg, CLIPVisionCfg
from safetensors.torch import save_file
from timm.models.vision_transformer import checkpoint_filter_fn as vit_filter

from lavit_pl.models.convert import (
    ConversionError,
    openai_clip_to_timm,
    timm_to_eva_format,
    timm_to_openai_clip,
    vision_encoder_state_dict,
)
from lavit_pl.models.visual_encoder import VisionEncoder, eva_vitg14_config, tiny_clip_encoder_config, tiny_eva_encoder_config
from lavit_pl.utils.checkpoint_io import load_vision_encoder_weights, read_state_dict

PIXELS = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(0))


def tiny_timm_eva(num_classes: int = 16):
    """A tiny model of the release's EVA layout (timm Eva, CLIP head of ``num_classes``)."""
    cfg = tiny_eva_encoder_config()
    torch.manual_seed(1)
    return timm.create_model(
        cfg.timm_name, num_classes=num_classes, img_size=64, patch_size=8, embed_dim=cfg.width, depth=cfg.depth,
        num_heads=cfg.num_heads, mlp_ratio=(cfg.mlp_dim + 0.5) / cfg.width,
    ).eval()


def eva_reference(model) -> torch.Tensor:
    with torch.no_grad():
        (ref,) = model.forward_intermediates(
            PIXELS, indices=[len(model.blocks) - 1], norm=False, output_fmt="NLC", intermediates_only=True
        )
    return ref


def our_encoder(cfg, path) -> tuple[VisionEncoder, list[str]]:
    torch.manual_seed(99)  # different random init: parity must come from the loaded weights
    enc = VisionEncoder(cfg)
    dropped = load_vision_encoder_weights(enc, path)
    return enc, dropped


def test_lavit_release_eva_bin(tmp_path):
    src = tiny_timm_eva()
    path = tmp_path / "eva_vitg_psz14.bin"
    torch.save(src.state_dict(), path)  # the release's layout: timm Eva keys, pickled
    enc, dropped = our_encoder(tiny_eva_encoder_config(weights_format="lavit_eva"), path)
    assert dropped == ["head.weight", "head.bias"]
    with torch.no_grad():
        torch.testing.assert_close(enc.features(PIXELS), eva_reference(src), rtol=0, atol=0)
    # round trip: our state dict back in the release naming equals the file minus the dropped head
    back = timm_to_eva_format(enc.vit.state_dict(), "lavit_eva")
    original = {k: v for k, v in read_state_dict(path).items() if k not in dropped}
    assert back.keys() == original.keys() and all(torch.equal(back[k], original[k]) for k in back)


def test_eva_clip_visual_prefix_safetensors(tmp_path):
    src = tiny_timm_eva()
    sd = timm_to_eva_format(src.state_dict(), "eva_clip")
    sd |= {"text.token_embedding.weight": torch.randn(10, 8), "logit_scale": torch.tensor(4.6)}  # other tower
    path = tmp_path / "EVA01_CLIP_tiny.safetensors"
    save_file(sd, str(path))
    enc, dropped = our_encoder(tiny_eva_encoder_config(weights_format="eva_clip"), path)
    assert dropped == ["visual.head.weight", "visual.head.bias"]
    with torch.no_grad():
        torch.testing.assert_close(enc.features(PIXELS), eva_reference(src), rtol=0, atol=0)


def test_open_clip_timm_trunk(tmp_path):
    src = tiny_timm_eva(num_classes=0)
    sd = timm_to_eva_format(src.state_dict(), "open_clip") | {"visual.head.proj.weight": torch.randn(16, 96)}
    path = tmp_path / "open_clip_pytorch_model.bin"
    torch.save({"state_dict": sd}, path)  # wrapped, as open_clip training checkpoints are
    enc, dropped = our_encoder(tiny_eva_encoder_config(weights_format="open_clip"), path)
    assert dropped == ["visual.head.proj.weight"]
    with torch.no_grad():
        torch.testing.assert_close(enc.features(PIXELS), eva_reference(src), rtol=0, atol=0)


def tiny_open_clip(pool_type: str = "tok") -> CLIP:
    """The stage-0 layout: an open_clip CLIP whose state dict uses OpenAI's key names."""
    torch.manual_seed(2)
    return CLIP(
        embed_dim=32,
        vision_cfg=CLIPVisionCfg(image_size=64, layers=4, width=64, head_width=16, patch_size=8, pool_type=pool_type),
        text_cfg=CLIPTextCfg(context_length=16, vocab_size=100, width=32, heads=2, layers=1),
    ).eval()


@pytest.mark.parametrize("pool_type", ["tok", "avg"])  # stage 0 may pool by class token or patch mean: same keys
def test_openai_clip_layout_matches_open_clip_forward(tmp_path, pool_type):
    clip = tiny_open_clip(pool_type)
    for p in clip.visual.parameters():  # perturb zero-initialised biases/LN so every term is tested
        p.data.add_(0.05 * torch.randn_like(p))
    path = tmp_path / "openai_clip_tiny.bin"
    torch.save(clip.state_dict(), path)
    enc, dropped = our_encoder(tiny_clip_encoder_config(), path)
    assert dropped == ["visual.proj"]
    with torch.no_grad():
        ref = clip.visual.forward_intermediates(PIXELS, indices=[3], intermediates_only=True, output_fmt="NLC")
        (expected,) = ref["image_intermediates"]
        # fp32 on CPU: open_clip's nn.MultiheadAttention and timm's SDPA sum in different orders
        torch.testing.assert_close(enc.features(PIXELS), expected, rtol=1e-5, atol=1e-5)


def test_openai_clip_key_map_agrees_with_timm_and_round_trips():
    sd = tiny_open_clip().state_dict()
    ours, dropped = openai_clip_to_timm(sd)
    model = VisionEncoder(tiny_clip_encoder_config()).vit
    theirs = vit_filter(dict(sd), model)  # timm's own OpenAI-CLIP filter
    assert set(theirs) - set(ours) == {"head.weight", "head.bias"}  # timm keeps the projection as a head
    assert all(torch.equal(ours[k], theirs[k]) for k in ours)
    visual = {k: v for k, v in sd.items() if k.startswith("visual.") and k not in dropped}
    back = timm_to_openai_clip(ours)
    assert back.keys() == visual.keys() and all(torch.equal(back[k], visual[k]) for k in back)


def test_strict_loading_names_missing_and_unknown_keys(tmp_path):
    sd = tiny_open_clip().state_dict()
    missing = dict(sd)
    del missing["visual.transformer.resblocks.1.ln_2.weight"]
    path = tmp_path / "broken.bin"
    torch.save(missing, path)
    with pytest.raises(ValueError, match=r"(?s)broken.bin.*blocks\.1\.norm2\.weight"):
        our_encoder(tiny_clip_encoder_config(), path)
    odd = dict(sd) | {"visual.transformer.resblocks.0.attn.extra": torch.zeros(1)}
    with pytest.raises(ConversionError, match="visual.transformer.resblocks.0.attn.extra"):
        openai_clip_to_timm(odd)
    with pytest.raises(ConversionError, match="not a lavit_eva checkpoint"):
        vision_encoder_state_dict(sd, "lavit_eva", VisionEncoder(tiny_eva_encoder_config()).vit)


def test_pickles_load_weights_only(tmp_path):
    path = tmp_path / "evil.bin"
    torch.save({"w": torch.zeros(1), "f": print}, path)  # a callable is refused by weights_only
    with pytest.raises(ValueError, match="weights-only"):
        read_state_dict(path)
    with pytest.raises(FileNotFoundError, match="nothing.bin"):
        read_state_dict(tmp_path / "nothing.bin")


def test_release_eva_key_set_maps_onto_the_paper_encoder():
    # Paper scale without allocating 4 GB: meta tensors carry names and shapes only.
    with torch.device("meta"):
        release = timm.create_model("eva_giant_patch14_clip_224", num_classes=1024).state_dict()
        ours = VisionEncoder(eva_vitg14_config())
    assert len(release) == 528
    converted, dropped = vision_encoder_state_dict(release, "lavit_eva", ours.vit)
    assert dropped == ["head.weight", "head.bias"]
    expected = ours.vit.state_dict()
    assert converted.keys() == expected.keys()
    assert all(converted[k].shape == expected[k].shape for k in expected)
