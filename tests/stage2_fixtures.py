"""Shared by the stage-2 tests: a micro world copy and tiny random checkpoints in the real formats.

- stage-0 LLaMA: ``save_pretrained`` folder (safetensors) + LLaMA-layout tokenizer trained on the
  world's corpus and captions (V_text = 400);
- stage-0 encoder: a tiny CLIP image tower saved in the OpenAI/open_clip layout
  (``open_clip_pytorch_model.bin``), read by the same converter as a real CLIP;
- stage-1 tokenizer: the release's ``tokenizer_encoder.bin`` / ``tokenizer_decoder.bin``.
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import torch

from lavit_pl.config import load_config
from lavit_pl.data.image_shards import scan_image_shards
from lavit_pl.models.convert import ours_to_lavit_tokenizer_decoder, ours_to_lavit_tokenizer_encoder, timm_to_openai_clip
from lavit_pl.models.llm import LlamaShape, build_random_llama
from lavit_pl.models.text_tokenizer import TextTokenizerConfig, save_llama_tokenizer, train_text_tokenizer
from lavit_pl.models.tokenizer import DynamicVisualTokenizer, DynamicVisualTokenizerConfig

MICRO = Path("/work/main/data/shapes/micro")
REPO = Path(__file__).resolve().parents[1]
V_TEXT = 400
SHAPE = LlamaShape(hidden_size=32, num_layers=2, num_heads=4, num_kv_heads=2, intermediate_size=64, max_positions=256)


def micro_world(root: Path) -> Path:
    """Training/validation shards and the corpus of the micro world under ``root`` (generated if
    /work/main has none)."""
    if MICRO.is_dir():
        for part in ("train", "val", "corpus"):
            shutil.copytree(MICRO / part, root / part)
        return root
    import subprocess
    import sys

    subprocess.run([sys.executable, "-m", "lavit_pl", "world", "-c", str(REPO / "experiments/world/shapes_micro.yaml"),
                    f"output_dir={root}"], check=True, cwd=REPO)
    return root


def micro_config(*overrides: str):
    """experiments/stage2/unified_micro.yaml with ``overrides`` (key=value)."""
    from lavit_pl.modules.unified_lm_config import UnifiedRunConfig

    return load_config(UnifiedRunConfig, REPO / "experiments/stage2/unified_micro.yaml", list(overrides))


def tokenizer_config() -> DynamicVisualTokenizerConfig:
    """The micro YAML's stage-1 architecture (what the saved files must match)."""
    return micro_config().visual.tokenizer


def _texts(world: Path) -> list[str]:
    texts = [json.loads(line)["text"] for line in (world / "corpus" / "corpus_00000.jsonl").read_text().splitlines()]
    return texts + ["Two shapes: a purple square at the bottom and a green circle on the left."] * 5


def world_pixels(world: Path, count: int = 32) -> tuple[torch.Tensor, list[str]]:
    """The first ``count`` training images of the world as the reader gives them, and their keys."""
    shard = sorted((world / "train" / "shards").glob("*.tar"))[0]
    samples, _ = scan_image_shards([str(shard)], micro_config().data.image_text.reader, True, keep_samples=True)
    return torch.stack([s["image"] for s in samples[:count]]), [s["key"] for s in samples[:count]]


@torch.no_grad()
def calibrate_selector(tokenizer: DynamicVisualTokenizer, world: Path) -> None:
    """Shift the random selector's keep logit so ~1/3 of the world's patches are kept (T_b varies)."""
    pixels, _ = world_pixels(world)
    log_probs = tokenizer.token_selector.log_probs(tokenizer.encoder.features(pixels))  # (B, N, 2)
    margin = log_probs[..., 0] - log_probs[..., 1]
    tokenizer.token_selector.out_mlp[4].bias[0] -= torch.quantile(margin.flatten(), 2 / 3)


def save_checkpoints(world: Path, out: Path) -> dict[str, Path]:
    """Write the three stage-0/1 artefacts under ``out``; returns their paths."""
    torch.manual_seed(0)
    llama_dir = out / "stage0_llama" / "export" / "llama"
    save_llama_tokenizer(train_text_tokenizer(_texts(world), TextTokenizerConfig(vocab_size=V_TEXT)), llama_dir)
    build_random_llama(SHAPE, V_TEXT, seed=0).save_pretrained(llama_dir)
    clip_file = out / "stage0_clip" / "export" / "open_clip_pytorch_model.bin"
    cfg = tokenizer_config()
    tokenizer = DynamicVisualTokenizer(cfg)
    for p in tokenizer.parameters():
        p.data.add_(0.3 * torch.randn_like(p))
    calibrate_selector(tokenizer, world)
    sd = tokenizer.state_dict()
    clip_file.parent.mkdir(parents=True)
    vit = {k[len("encoder.vit."):]: v for k, v in sd.items() if k.startswith("encoder.vit.")}
    torch.save(timm_to_openai_clip(vit) | {"visual.proj": torch.randn(cfg.encoder.width, 16), "logit_scale": torch.tensor(1.0)}, clip_file)
    vt_dir = out / "stage1_tokenizer" / "export" / "visual_tokenizer"
    vt_dir.mkdir(parents=True)
    torch.save(ours_to_lavit_tokenizer_encoder({k: v for k, v in sd.items() if k.startswith(("token_", "quantizer."))}),
               vt_dir / "tokenizer_encoder.bin")
    torch.save(ours_to_lavit_tokenizer_decoder({k: v for k, v in sd.items() if k.startswith("decoder.")}),
               vt_dir / "tokenizer_decoder.bin")
    return {"llama": llama_dir, "clip": clip_file, "tokenizer_dir": vt_dir}


def run_config(tmp: Path, world: Path, ckpt: dict[str, Path], *overrides: str):
    """The micro YAML pointed at the tmp world and checkpoints (``overrides``: key=value)."""
    return micro_config(*[
        f"output_dir={tmp / 'run'}", f"lm.llm_path={ckpt['llama']}", f"visual.tokenizer_dir={ckpt['tokenizer_dir']}",
        f"visual.tokenizer.encoder.weights_path={ckpt['clip']}", f"data.text.data_root={world}",
        f"data.image_text.data_root={world}", f"cache.dir={tmp / 'cache'}", *overrides,
    ])
