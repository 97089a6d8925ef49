"""Stage-2 configs: checks that name the keys, the paper numbers, ablations as diffs of the tiny run."""
from __future__ import annotations

import pytest

from lavit_pl.config import ConfigError, load_config
from lavit_pl.modules.unified_lm_config import UnifiedRunConfig
from stage2_fixtures import REPO, micro_config


def test_config_checks_name_the_keys():
    with pytest.raises(ConfigError, match="lm.codebook_size=65 must equal visual.tokenizer.quantizer.codebook_size=64"):
        micro_config("lm.codebook_size=65")
    with pytest.raises(ConfigError, match="selector.inference must be one of \('argmax', 'expected_topk'\) in stage 2"):
        micro_config("visual.tokenizer.selector.inference=gumbel")
    with pytest.raises(ConfigError, match="reader.image_size=64 must equal"):
        micro_config("data.image_text.reader.image_size=64")
    with pytest.raises(ConfigError, match="visual.input must be one of"):
        micro_config("visual.input=discrete")


def _flat(cfg) -> dict:
    from omegaconf import OmegaConf

    def walk(node, prefix=""):
        for k, v in node.items():
            if isinstance(v, dict):
                yield from walk(v, f"{prefix}{k}.")
            else:
                yield f"{prefix}{k}", v
    return dict(walk(OmegaConf.to_container(OmegaConf.structured(cfg))))


@pytest.mark.parametrize("name, changed", [
    ("unified_quantized_input_tiny", {"visual.input": "quantized"}),
    ("unified_frozen_llm_tiny", {"lm.freeze_llm": True}),
    ("unified_blind_tiny", {"visual.blind": True, "cache.dir": "runs/tiny/stage2_cache_blind"}),
    ("unified_paper_mix_tiny", {"data.weights.text": 2.0}),
])
def test_ablations_change_only_the_keys_under_study(name, changed):
    base = _flat(load_config(UnifiedRunConfig, REPO / "experiments/stage2/unified_tiny.yaml"))
    ablation = _flat(load_config(UnifiedRunConfig, REPO / f"experiments/ablations/{name}.yaml"))
    diff = {k: v for k, v in ablation.items() if base[k] != v}
    assert diff == {**changed, "name": name, "output_dir": diff["output_dir"]}
    assert diff["output_dir"] != base["output_dir"]


def test_paper_config_holds_the_paper_numbers():
    cfg = load_config(UnifiedRunConfig, REPO / "experiments/stage2/unified_paper.yaml")
    o, t = cfg.optim, cfg.trainer
    assert (cfg.lm.codebook_size, cfg.lm.visual_dim, cfg.sequences.context_length, cfg.data.batch_size) == (16384, 1408, 2048, 2048)
    assert (o.lr_llm, o.lr_visual, o.betas, o.eps, o.weight_decay, o.warmup_steps) == (5e-5, 1.5e-4, [0.9, 0.95], 1e-6, 0.1, 2000)
    assert (t.max_steps, t.precision, t.strategy, t.gradient_clip_val) == (20000, "bf16-mixed", "fsdp2", 1.0)
    assert cfg.data.weights == {"text": 2.0, "image_text": 1.0} and cfg.sequences.image_to_text_share == 0.5
    tok = cfg.visual.tokenizer
    assert (tok.encoder.num_patches, tok.merger.depth, tok.quantizer.codebook_size, tok.encoder.weights_format) == (256, 12, 16384, "lavit_eva")
