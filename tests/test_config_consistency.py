"""The stages of one preset must agree: stage 2 loads stage 1's tokenizer strictly, and stage 1
loads the stage-0 CLIP's image tower. A mismatch would only surface after an hour of training, so
it is checked here, on the YAMLs, for every preset."""
from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from lavit_pl.config import load_config
from lavit_pl.modules.clip_module import ClipRunConfig
from lavit_pl.modules.tokenizer_module import TokenizerRunConfig
from lavit_pl.modules.unified_lm_config import UnifiedRunConfig

EXP = Path(__file__).resolve().parents[1] / "experiments"


def _architecture(tok) -> dict:
    arch = dataclasses.asdict(tok)
    arch["encoder"].pop("weights_path")
    arch["encoder"].pop("weights_format")
    return arch


# preset -> (stage-0 CLIP, stage-1 tokenizer, stage-2 unified) YAMLs of one chain
CHAINS = {
    "micro": ("stage0/clip_micro.yaml", "stage1/tokenizer_micro.yaml", "stage2/unified_micro.yaml"),
    "tiny": ("stage0/clip_tiny.yaml", "stage1/tokenizer_tiny.yaml", "stage2/unified_tiny.yaml"),
    "tiny_clip_regions": ("stage0/clip_tiny_regions.yaml", "ablations/tokenizer_clip_regions_tiny.yaml",
                          "ablations/unified_clip_regions_tiny.yaml"),
}


@pytest.mark.parametrize("preset", CHAINS)
def test_stage2_tokenizer_equals_stage1(preset):
    _, tokenizer_yaml, unified_yaml = CHAINS[preset]
    stage1 = load_config(TokenizerRunConfig, EXP / tokenizer_yaml)
    stage2 = load_config(UnifiedRunConfig, EXP / unified_yaml)
    assert _architecture(stage2.visual.tokenizer) == _architecture(stage1.model)
    assert stage2.visual.tokenizer_dir == f"{stage1.output_dir}/export/visual_tokenizer"


@pytest.mark.parametrize("preset", CHAINS)
def test_stage1_encoder_is_the_stage0_clip_tower(preset):
    clip_yaml, tokenizer_yaml, unified_yaml = CHAINS[preset]
    clip = load_config(ClipRunConfig, EXP / clip_yaml)
    enc = load_config(TokenizerRunConfig, EXP / tokenizer_yaml).model.encoder
    assert load_config(UnifiedRunConfig, EXP / unified_yaml).visual.tokenizer.encoder.weights_path == enc.weights_path
    m = clip.model
    assert (enc.image_size, enc.patch_size, enc.width, enc.depth) == (m.image_size, m.patch_size, m.vision_width, m.vision_layers)
    assert enc.num_heads == m.vision_width // m.vision_head_width and enc.mlp_dim == 4 * m.vision_width
    assert enc.weights_path == f"{clip.output_dir}/export/open_clip_pytorch_model.bin"
