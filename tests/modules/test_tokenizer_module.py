"""Stage-1 TokenizerModule end to end on a micro world: fit through the CLI, the release-layout export
reloads with identical codes and matches metrics.json, resume continues the global step from a
weights-only checkpoint, the two-phase schedule, and every stage-1 / ablation YAML builds."""
from __future__ import annotations

import json
from pathlib import Path

import lightning as L
import pytest
import torch
import yaml

from lavit_pl.cli import main
from lavit_pl.config import load_config
from lavit_pl.data.image_datamodules import ImagesDataModule
from lavit_pl.data.shapes.config import ShapesWorldConfig
from lavit_pl.data.shapes.world import generate_world
from lavit_pl.models.clip import TinyClipConfig, build_clip
from lavit_pl.models.convert import openai_clip_to_timm
from lavit_pl.models.tokenizer import DynamicVisualTokenizer
from lavit_pl.modules.tokenizer_export import load_exported_tokenizer
from lavit_pl.modules.tokenizer_module import (
    TokenizerRunConfig,
    build,
    check_reader_matches_encoder,
)
from lavit_pl.utils.checkpoint_io import load_lavit_tokenizer
from two_rank_launch import run_two_rank_script

REPO = Path(__file__).resolve().parents[2]
MICRO = REPO / "experiments/stage1/tokenizer_micro.yaml"
TINY_YAMLS = [
    REPO / "experiments/stage1/tokenizer_tiny.yaml",
    REPO / "experiments/ablations/tokenizer_fixed_length_tiny.yaml",
    REPO / "experiments/ablations/tokenizer_no_merger_tiny.yaml",
    REPO / "experiments/ablations/tokenizer_bidirectional_tiny.yaml",
    REPO / "experiments/ablations/tokenizer_clip_regions_tiny.yaml",
]
EMA_KEYS = ("quantizer.ema_count", "quantizer.ema_sum", "quantizer.initialized")


def save_clip(path: Path, **sizes) -> Path:
    """A seeded open_clip CLIP saved as its state dict: the OpenAI key layout of stage 0's export."""
    torch.manual_seed(0)
    clip = build_clip(TinyClipConfig(**sizes))
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(clip.state_dict(), path)
    return path


@pytest.fixture(scope="module")
def micro(tmp_path_factory):
    """(world folder, micro CLIP checkpoint): the micro world and clip_micro.yaml's architecture."""
    root = tmp_path_factory.mktemp("tokenizer_module")
    world = root / "shapes_micro"
    generate_world(load_config(ShapesWorldConfig, REPO / "experiments/world/shapes_micro.yaml", [f"output_dir={world}", "workers=0"]))
    clip = save_clip(root / "clip_micro/open_clip_pytorch_model.bin", image_size=32, vision_width=32, vision_layers=1,
                     vision_head_width=16, text_width=32, text_layers=1, text_heads=2, embed_dim=32)
    return world, clip


def micro_overrides(micro, out: Path, *extra: str) -> list[str]:
    world, clip = micro
    return [f"output_dir={out}", f"data.data_root={world}", f"model.encoder.weights_path={clip}",
            "trainer.progress_bar=false", *extra]


def fit(micro, out: Path, *extra: str) -> int:
    return main(["fit", "-c", str(MICRO), *micro_overrides(micro, out, *extra)])


@pytest.fixture(scope="module")
def fitted(micro, tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "micro_tokenizer"
    assert fit(micro, out) == 0
    return out


def test_fit_exports_release_layout_that_reloads_with_identical_codes(micro, fitted):
    export = fitted / "export"
    cfg = load_config(TokenizerRunConfig, MICRO, micro_overrides(micro, fitted))
    done = json.loads((fitted / "DONE.json").read_text())
    assert done["global_step"] == cfg.trainer.max_steps == 6
    # the frozen encoder is the stage-0 checkpoint, read by the real-weights loader and never changed
    exported_vit = torch.load(export / "visual_tokenizer/eva_vitg_psz14.bin", weights_only=True)
    original_vit, _ = openai_clip_to_timm(torch.load(micro[1], weights_only=True))
    assert exported_vit.keys() == original_vit.keys()
    assert all(torch.equal(exported_vit[k], original_vit[k]) for k in original_vit)

    ours = load_exported_tokenizer(export)
    release = DynamicVisualTokenizer(cfg.model)
    assert load_lavit_tokenizer(release, export / "visual_tokenizer") == []
    release.eval()
    theirs_sd, ours_sd = release.state_dict(), ours.state_dict()
    assert all(torch.equal(theirs_sd[k], ours_sd[k]) for k in ours_sd if k not in EMA_KEYS)

    metrics = json.loads((export / "metrics.json").read_text())
    dm = ImagesDataModule(cfg.data)
    dm.setup()
    kept, images = 0, 0
    with torch.no_grad():
        for batch in dm.val_dataloader():
            codes_a, feats_a = ours.encode_features(ours.encoder.features(batch["image"]))
            codes_b, feats_b = release.encode_features(release.encoder.features(batch["image"]))
            assert [len(c) for c in codes_a] == [len(c) for c in codes_b]
            assert all(torch.equal(a, b) for a, b in zip(codes_a, codes_b))
            kept += sum(len(c) for c in codes_a)
            images += len(codes_a)
    # metrics.json describes this very model: same images, same number of kept tokens
    assert metrics["images"] == images == 160
    assert metrics["tokens"] == kept
    assert metrics["keep_ratio"] == pytest.approx(kept / (images * cfg.model.encoder.num_patches))
    assert not cfg.loss.ratio_per_image  # micro inherits the tiny recipe's batch-mean penalty
    assert metrics["ratio_penalty"] == "batch_mean" and metrics["schedule"] == "joint"
    for key in ("spearman_complexity_tokens", "codebook_usage", "perplexity", "rec_cosine", "tokens_p50"):
        assert key in metrics
    assert 0 < metrics["codebook_usage"] <= 1 and 1 <= metrics["perplexity"] <= cfg.model.quantizer.codebook_size
    for name in ("kept_patches.png", "code_groups.png", "tokens_per_image.png", "tokens_per_image.csv"):
        assert (export / "figures" / name).stat().st_size > 0
    csv_rows = (export / "figures/tokens_per_image.csv").read_text().splitlines()
    assert csv_rows[0].startswith("tokens,all,complexity_1")
    assert sum(int(r.split(",")[1]) for r in csv_rows[1:]) == images


def test_resume_continues_the_global_step_from_a_weights_only_checkpoint(micro, tmp_path, capsys):
    out = tmp_path / "run"
    assert fit(micro, out, "trainer.max_steps=3", "eval.full_pass_at_export=false") == 0
    last = out / "checkpoints/last.ckpt"
    first = torch.load(last, weights_only=True)
    assert first["global_step"] == 3
    assert not any(k.startswith("tokenizer.encoder.") for k in first["state_dict"])  # re-read from its file
    assert isinstance(first["hyper_parameters"]["config"], dict)
    assert bool(first["state_dict"]["tokenizer.quantizer.initialized"])
    (out / "DONE.json").unlink()  # as if the run had been interrupted at step 3
    capsys.readouterr()
    assert fit(micro, out, "trainer.max_steps=5", "eval.full_pass_at_export=false") == 0
    assert f"resuming from {last}" in capsys.readouterr().err
    assert json.loads((out / "DONE.json").read_text())["global_step"] == 5
    second = torch.load(last, weights_only=True)
    assert second["global_step"] == 5
    assert len(second["optimizer_states"][0]["state"]) > 0
    # finished runs are not trained again
    assert fit(micro, out, "trainer.max_steps=5") == 0
    assert "nothing to do" in capsys.readouterr().err


class PhaseProbe(L.Callback):
    """Snapshots around every training step: selector / merger parameters, codebook, logged losses."""

    def __init__(self) -> None:
        self.steps: list[dict] = []

    @staticmethod
    def _params(module) -> dict[str, torch.Tensor]:
        return {n: p.detach().clone() for n, p in module.named_parameters()}

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        tok = pl_module.tokenizer
        self.before = (self._params(tok.token_selector), self._params(tok.token_merger), tok.quantizer.codebook.clone())
        assert not tok.encoder.vit.training and not any(p.requires_grad for p in tok.encoder.parameters())

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        tok = pl_module.tokenizer
        sel, mer, codebook = self.before
        m = {k: float(v) for k, v in trainer.callback_metrics.items()}
        self.steps.append({
            "phase": m["train/phase"],
            "selector_changed": any(not torch.equal(v, p) for v, p in zip(sel.values(), self._params(tok.token_selector).values())),
            "merger_changed": any(not torch.equal(v, p) for v, p in zip(mer.values(), self._params(tok.token_merger).values())),
            "selector_training": tok.token_selector.training,
            "codebook_changed": not torch.equal(codebook, tok.quantizer.codebook),
            "initialized": bool(tok.quantizer.initialized),
            "loss": float(outputs["loss"]),
            "rec_plus_ratio": m["train/rec_loss"] + 2.0 * m["train/ratio_loss"],
            "commitment": m.get("train/commitment"),
        })


def test_two_phase_schedule_freezes_the_selector_after_a_quantizer_free_phase_1(micro, tmp_path):
    cfg = load_config(TokenizerRunConfig, MICRO, micro_overrides(
        micro, tmp_path, "schedule.mode=two_phase", "schedule.phase1_steps=2", "trainer.max_steps=4"))
    module, datamodule = build(cfg)
    probe = PhaseProbe()
    trainer = L.Trainer(max_steps=4, accelerator="cpu", logger=False, enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False, limit_val_batches=0, callbacks=[probe])
    trainer.fit(module, datamodule=datamodule)
    phase1, phase2 = probe.steps[:2], probe.steps[2:]
    assert [s["phase"] for s in probe.steps] == [1.0, 1.0, 2.0, 2.0]
    for s in phase1:  # selector trains; no quantisation: loss = equation (4) only, codebook untouched
        assert s["selector_changed"] and s["merger_changed"] and s["selector_training"]
        assert s["commitment"] is None and not s["codebook_changed"] and not s["initialized"]
        assert s["loss"] == pytest.approx(s["rec_plus_ratio"], abs=1e-6)
    for s in phase2:  # selector frozen (eval-mode selection), quantizer k-means initialised and trained
        assert not s["selector_changed"] and s["merger_changed"] and not s["selector_training"]
        assert s["initialized"] and s["commitment"] is not None and s["commitment"] > 0
        assert s["loss"] == pytest.approx(s["rec_plus_ratio"] + s["commitment"], abs=1e-6)


@pytest.mark.parametrize("path", TINY_YAMLS, ids=lambda p: p.stem)
def test_tiny_and_ablation_yamls_load_and_build(path, tmp_path, capsys):
    assert main(["fit", "-c", str(path), "--print-config"]) == 0
    printed = yaml.safe_load(capsys.readouterr().out)
    assert printed["stage"] == "tokenizer" and printed["model"]["quantizer"]["codebook_size"] == 1024
    assert printed["model"]["encoder"]["image_size"] == 64 and printed["model"]["decoder"]["num_patches"] == 64
    clip = save_clip(tmp_path / "clip.bin", vision_width=64, vision_layers=4, vision_head_width=16, text_width=32, text_layers=1, text_heads=2, embed_dim=32)
    cfg = load_config(TokenizerRunConfig, path, [f"model.encoder.weights_path={clip}"])
    assert cfg.trainer.max_minutes <= 15
    module, _ = build(cfg)
    module.configure_model()
    tok = module.tokenizer.train()
    out = tok(patch_features=torch.randn(2, 64, 64, generator=torch.Generator().manual_seed(0)))
    assert out.reconstruction.shape == (2, 64, 64)
    name = path.stem
    if "fixed_length" in name:
        assert tok.token_selector is None and bool((out.keep_mask == 1).all()) and cfg.loss.ratio_weight == 0
    else:
        assert tok.token_selector is not None and cfg.loss.ratio_weight == (10.0 if "clip_regions" in name else 2.0)
    assert tok.token_merger.cfg.merge_dropped == ("no_merger" not in name)
    assert not hasattr(tok.token_merger.blocks[0], "cross_attn") if "no_merger" in name else True
    assert tok.token_merger.blocks[0].self_attn.causal == ("bidirectional" not in name)


def test_paper_yaml_has_the_paper_values(capsys):
    assert main(["fit", "-c", str(REPO / "experiments/stage1/tokenizer_paper.yaml"), "--print-config"]) == 0
    cfg = yaml.safe_load(capsys.readouterr().out)
    m, o, t = cfg["model"], cfg["optim"], cfg["trainer"]
    assert (m["encoder"]["timm_name"], m["encoder"]["image_size"], m["decoder"]["num_patches"]) == ("eva_giant_patch14_clip_224", 224, 256)
    assert (m["quantizer"]["codebook_size"], m["merger"]["depth"], m["decoder"]["depth"]) == (16384, 12, 12)
    assert (o["lr"], o["betas"], o["eps"], o["weight_decay"], o["warmup_steps"]) == (2e-4, [0.9, 0.99], 1e-6, 0.01, 4000)
    assert (t["max_steps"], t["strategy"], t["precision"], t["gradient_clip_val"]) == (50000, "fsdp2", "bf16-mixed", 1.0)
    assert cfg["data"]["loader"]["batch_size"] * int(t["devices"]) * t["num_nodes"] * t["accumulate_grad_batches"] == 2048
    assert cfg["loss"] == {"rho": pytest.approx(1 / 3), "ratio_weight": 2.0, "ratio_per_image": True}
    module, _ = build(load_config(TokenizerRunConfig, REPO / "experiments/stage1/tokenizer_paper.yaml"))
    assert module.tokenizer is None  # the 1B-parameter model is only built in configure_model


def test_reader_encoder_mismatch_is_named():
    cfg = load_config(TokenizerRunConfig, MICRO, ["data.reader.image_size=64"])
    with pytest.raises(ValueError, match="data.reader.image_size=64 must equal model.encoder.image_size=32"):
        check_reader_matches_encoder(cfg)
    cfg = load_config(TokenizerRunConfig, MICRO, ["data.reader.metadata_fields=[]"])
    with pytest.raises(ValueError, match="eval.complexity_field 'complexity' must be listed"):
        check_reader_matches_encoder(cfg)


FSDP2_FIT = """
import json, sys
from lavit_pl.cli import main
sys.exit(main(json.loads({argv!r})))
"""


@pytest.mark.slow
def test_fsdp2_on_two_cpu_processes_exports_the_gathered_full_tokenizer(micro, tmp_path):
    """ModelParallelStrategy on gloo: the sharded tokenizer's full state is gathered at the end of
    training and rank 0 exports and evaluates an unsharded copy (the sharded module cannot run alone)."""
    out = tmp_path / "fsdp2"
    argv = ["fit", "-c", str(MICRO), *micro_overrides(micro, out, "trainer.devices=2", "trainer.strategy=fsdp2",
                                                                 "trainer.limit_val_batches=0")]  # 1 val shard, 2 ranks
    done = run_two_rank_script(FSDP2_FIT.format(argv=json.dumps(argv)), tmp_path)
    assert done.returncode == 0, "\n".join(l for l in done.stderr.splitlines() if "lavit_pl" in l or "Error" in l)[-3000:]
    assert json.loads((out / "DONE.json").read_text())["global_step"] == 6
    export = out / "export"
    ours = load_exported_tokenizer(export)  # strict: full shapes under the unsharded key names
    exported_vit = torch.load(export / "visual_tokenizer/eva_vitg_psz14.bin", weights_only=True)
    original_vit, _ = openai_clip_to_timm(torch.load(micro[1], weights_only=True))
    assert all(torch.equal(exported_vit[k], original_vit[k]) for k in original_vit)
    metrics = json.loads((export / "metrics.json").read_text())
    cfg = load_config(TokenizerRunConfig, MICRO, micro_overrides(micro, out))
    dm = ImagesDataModule(cfg.data)
    dm.setup()
    with torch.no_grad():
        kept = sum(len(c) for batch in dm.val_dataloader()
                   for c in ours.encode_features(ours.patch_features(batch["image"]))[0])
    assert metrics["images"] == 160 and metrics["tokens"] == kept and metrics["global_step"] == 6
