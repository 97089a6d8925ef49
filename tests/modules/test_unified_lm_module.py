"""Stage 2 (UnifiedLMModule): loss masks by hand, LR groups and the new rows' lr, fit + resume on the
micro world with tiny random checkpoints in the real formats, Table 7a/7b options, the blind switch,
and the export reloaded with identical features and logits."""
from __future__ import annotations

import io
import json
import tarfile

import pytest
import torch
from lightning.pytorch import Callback
from PIL import Image

from lavit_pl.commands.fit import run
from lavit_pl.data.sequences import pack_examples
from lavit_pl.data.stage2_documents import (
    IMAGE_TO_TEXT, TEXT, TEXT_TO_IMAGE_CAPTION, TEXT_TO_IMAGE_VISUAL, PairDocument, SequenceConfig,
    build_stage2_batch, draw_direction,
)
from lavit_pl.generation.stage2_export import load_stage2_export
from lavit_pl.models.llm import UnifiedVocab, load_llama
from lavit_pl.models.stage2_visual import merge_kept
from lavit_pl.modules.trainer import build_trainer
from lavit_pl.modules.unified_lm_module import UnifiedLMModule, build, export
from stage2_fixtures import micro_world, run_config, save_checkpoints, world_pixels
from two_rank_launch import run_two_rank_script

VOCAB = UnifiedVocab(300, 16)
IMG, END, X = 300, 301, -100
QUIET = ("trainer.progress_bar=false", "trainer.log_every_n_steps=1")


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("stage2_module")
    world = micro_world(tmp / "world")
    return tmp, world, save_checkpoints(world, tmp / "ckpt")


# -- documents and loss masks ------------------------------------------------------------------------
def test_loss_masks_by_hand():
    pairs = [PairDocument([5, 6], torch.tensor([3, 4, 5]), "a"), PairDocument([9], torch.tensor([1, 2]), "b")]
    cfg = SequenceConfig(context_length=16, balance_rows=False)
    b = build_stage2_batch(VOCAB, cfg, [[20, 21]], pairs, [("image_to_text",), ("text_to_image",)], quantized_input=False)
    # balanced rows (the default): 8 | 6 + 4 tokens, width 10 instead of first-fit's 8 + 6 | 4 (width 14)
    balanced = build_stage2_batch(VOCAB, SequenceConfig(context_length=16), [[20, 21]], pairs,
                                  [("image_to_text",), ("text_to_image",)], quantized_input=False).packed
    assert balanced.input_ids.shape == (2, 10) and balanced.placements == [(0, 0), (1, 0), (1, 6)]
    p = b.packed
    # row 0: [IMG] x x x [/IMG] 5 6 </s> | <s> 9 [IMG] v1 v2 [/IMG]   (no BOS before [IMG]); row 1: <s> 20 21 </s>
    assert p.input_ids[0].tolist() == [IMG, 0, 0, 0, END, 5, 6, 2, 1, 9, IMG, 303, 304, END]
    assert p.feature_slot[0].tolist() == [-1, 0, 1, 2] + [-1] * 10 and b.feature_images == [0]
    assert p.position_ids[0].tolist() == [*range(8), *range(6)]
    # image -> text: nothing before the first caption token is a target ([/IMG] predicts it);
    # text -> image: caption, codes and [/IMG] are targets, predicting [IMG] (after 9) is not
    assert p.targets[0].tolist() == [X, X, X, X, 5, 6, 2, X, 9, X, 303, 304, END, X]
    i, c, v = IMAGE_TO_TEXT, TEXT_TO_IMAGE_CAPTION, TEXT_TO_IMAGE_VISUAL
    assert b.target_kind[0].tolist() == [-1, -1, -1, -1, i, i, i, -1, c, -1, v, v, v, -1]
    assert p.input_ids[1, :4].tolist() == [1, 20, 21, 2] and p.targets[1, :4].tolist() == [20, 21, 2, X]
    assert b.target_kind[1].tolist() == [TEXT] * 3 + [-1] * 11 and p.targets[1, 3:].eq(X).all()
    assert b.documents == {"text": 1, "image_to_text": 1, "text_to_image": 1} and b.input_tokens == 18
    # Table 7a: the codes' ids replace the feature slots
    q = build_stage2_batch(VOCAB, cfg, [], pairs[:1], [("image_to_text",)], quantized_input=True)
    assert q.packed.input_ids[0].tolist() == [IMG, 305, 306, 307, END, 5, 6, 2] and q.feature_images == []
    assert q.packed.targets[0].tolist() == [X, X, X, X, 5, 6, 2, X]
    # a pair that cannot fit the context is skipped and counted
    long_pair = [PairDocument([5, 6, 7], torch.tensor([3, 4, 5]), "c")]  # <s> 5 6 7 [IMG] v v v [/IMG]: 9 > 8
    small = build_stage2_batch(VOCAB, SequenceConfig(context_length=8), [[20]], long_pair, [("text_to_image",)], False)
    assert small.skipped == 1 and small.documents["text_to_image"] == 0


def test_directions_are_drawn_one_to_one_and_reproducibly():
    draws = [draw_direction(0, 7, f"{k:09d}", 0.5) for k in range(4000)]
    share = draws.count("image_to_text") / len(draws)
    assert 0.47 < share < 0.53  # binomial sd 0.008: a fair coin passes, a biased one does not
    assert draws == [draw_direction(0, 7, f"{k:09d}", 0.5) for k in range(4000)]
    assert draws != [draw_direction(0, 8, f"{k:09d}", 0.5) for k in range(4000)]  # a new draw each step
    assert {draw_direction(0, 1, "k", 1.0), draw_direction(0, 1, "k", 0.0)} == {"image_to_text", "text_to_image"}


# -- optimiser --------------------------------------------------------------------------------------
def test_lr_groups_and_the_new_rows_learning_rate(setup):
    tmp, world, ckpt = setup
    module = UnifiedLMModule(run_config(tmp, world, ckpt))
    module.configure_model()
    optimizer = module.configure_optimizers()["optimizer"]
    groups = {g["name"]: g for g in optimizer.param_groups}
    names = {k: set(g["param_names"]) for k, g in groups.items()}
    assert set(groups) == {"llm_decay", "llm_no_decay", "visual_decay", "visual_no_decay"}
    assert "model.layers.0.self_attn.q_proj.weight" in names["llm_decay"]
    assert {"model.embed_tokens.weight", "lm_head.weight", "model.norm.weight"} <= names["llm_no_decay"]
    assert not any("embed" in n or "lm_head" in n or "norm" in n for n in names["llm_decay"])
    assert {"vit_proj.weight", "token_merger.blocks.0.self_attn.qkv.weight"} <= names["visual_decay"]
    assert {"vit_proj.bias", "token_merger.norm_out.weight"} <= names["visual_no_decay"]
    o = module.cfg.optim
    assert [groups[k]["initial_lr"] for k in ("llm_decay", "visual_decay")] == [o.lr_llm, o.lr_visual]
    assert groups["llm_decay"]["weight_decay"] == 0.1 and groups["llm_no_decay"]["weight_decay"] == 0.0
    trainable = {id(p) for p in [*module.lm.parameters(), *module.token_merger.parameters()] if p.requires_grad}
    grouped = [id(p) for g in optimizer.param_groups for p in g["params"]]
    assert sorted(grouped) == sorted(trainable)  # every trainable parameter exactly once; frozen side absent
    assert not any(id(p) in trainable for p in module.frozen_tokenizer.parameters())
    # one AdamW step with gradient +1 everywhere: |change| = lr / (1 + eps) per element (wd 0 on
    # embeddings): text rows move by lr_llm, the new rows ([IMG], [/IMG], codes) by lr_visual
    for g in optimizer.param_groups:
        g["lr"] = g["initial_lr"]  # skip the warm-up's zero first step
    emb = module.lm.llm.get_input_embeddings().weight
    before = emb.detach().clone()
    for p in optimizer.param_groups[0]["params"] + [q for g in optimizer.param_groups[1:] for q in g["params"]]:
        p.grad = torch.ones_like(p)
    optimizer.step()
    change = (before - emb.detach()).double()
    v_text = module.lm.vocab.text_size
    # float32 weights: a difference of two floats of magnitude <= 1 is exact to a few ulp (< 2e-8), far
    # below the lr gap (4e-4) the assertion is about
    assert before.abs().max() < 1
    torch.testing.assert_close(change[:v_text], torch.full_like(change[:v_text], o.lr_llm / (1 + o.eps)), rtol=0, atol=2e-8)
    torch.testing.assert_close(change[v_text:], torch.full_like(change[v_text:], o.lr_visual / (1 + o.eps)), rtol=0, atol=2e-8)


# -- fit, resume, export --------------------------------------------------------------------------------
class StateProbe(Callback):
    """Records the trainable state when training (re)starts, after any checkpoint was restored."""

    def on_train_start(self, trainer, module):
        self.state = {k: v.detach().clone() for k, v in module.state_dict().items()}
        self.step = trainer.global_step


def _i2t_logits(lm, vocab, features: list[torch.Tensor], caption: list[int]):
    from lavit_pl.data.sequences import image_to_text_example

    examples = [image_to_text_example(vocab, caption, num_features=len(f)) for f in features]
    p = pack_examples(examples, 256)
    return lm(p.input_ids, position_ids=p.position_ids, feature_slot=p.feature_slot, features=torch.cat(features))


def _pil_images(world, keys):
    wanted, out = set(keys), {}
    with tarfile.open(sorted((world / "train" / "shards").glob("*.tar"))[0]) as tar:
        for member in tar.getmembers():
            key, ext = member.name.split(".", 1)
            if key in wanted and ext == "jpg":
                out[key] = Image.open(io.BytesIO(tar.extractfile(member).read())).convert("RGB")
    return [out[k] for k in keys]


def test_fit_resume_and_export_reload_with_identical_logits(setup):
    tmp, world, ckpt = setup
    run_dir = tmp / "run_main"
    overrides = (*QUIET, f"output_dir={run_dir}", "trainer.checkpoint_every_n_steps=2", "trainer.val_check_interval=2")
    assert run(run_config(tmp, world, ckpt, *overrides, "trainer.max_steps=4")) == 0
    assert json.loads((run_dir / "DONE.json").read_text())["global_step"] == 4
    saved = torch.load(run_dir / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    keys = list(saved["state_dict"])
    assert any(k.startswith("model.token_merger.blocks.0.") for k in keys) and "model.lm.vit_proj.weight" in keys
    assert any(k.startswith("model.lm.llm.model.layers.") for k in keys)
    assert not any("encoder.vit" in k or "quantizer" in k or "token_selector" in k for k in keys)  # frozen side not saved
    log = (run_dir / "logs" / "version_0" / "metrics.csv").read_text().splitlines()  # the first session
    header = log[0].split(",")
    for name in ("train/loss_text", "train/loss_image_to_text", "train/loss_text_to_image_visual",
                 "train/tokens_per_s", "data/skipped_samples", "val/loss_image_to_text", "val/loss_text_to_image_visual",
                 "lr-AdamW/llm_decay", "lr-AdamW/visual_decay"):
        assert name in header, name
    # resume to 6 steps from last.ckpt: the restored state is exactly the saved one
    cfg = run_config(tmp, world, ckpt, *overrides, "trainer.max_steps=6")
    module, datamodule = build(cfg)
    probe = StateProbe()
    trainer = build_trainer(cfg.trainer, run_dir, extra_callbacks=[probe])
    trainer.fit(module, datamodule=datamodule, ckpt_path=str(run_dir / "checkpoints" / "last.ckpt"), weights_only=True)
    assert probe.step == 4 and trainer.global_step == 6
    assert set(probe.state) == set(saved["state_dict"])
    for k, v in saved["state_dict"].items():
        assert torch.equal(probe.state[k], v), k
    assert trainer.optimizers[0].state  # AdamW moments restored and stepped
    # export -> load_stage2_export: same features (tensor or PIL input) and same logits
    out = export(module, cfg, run_dir)
    lm, text_tokenizer, encode = load_stage2_export(out["export"])
    pixels, keys = world_pixels(world, 6)
    module.eval()
    with torch.no_grad():
        targets = module.compute_frozen_targets(pixels, keys)
        ours = merge_kept(module.token_merger, targets.patch_features, targets.keep_mask)
        theirs = encode(pixels)
        from_pil = encode(_pil_images(world, keys))
        for a, b, c in zip(ours, theirs, from_pil):
            assert torch.equal(a, b) and torch.equal(a, c)
        caption = module.text_tokenizer("Two shapes: a red circle.", add_special_tokens=False)["input_ids"]
        assert text_tokenizer("Two shapes: a red circle.", add_special_tokens=False)["input_ids"] == caption
        reference = _i2t_logits(module.lm, module.lm.vocab, ours, caption)
        # safetensors round trip in float32 and the same ops: identical up to summation order (none here)
        torch.testing.assert_close(_i2t_logits(lm, lm.vocab, theirs, caption), reference, rtol=0, atol=1e-6)
    manifest = json.loads((run_dir / "export" / "lavit_eval.json").read_text())
    assert manifest["format"] == "lavit-pl-eval" and manifest["visual_weights"] == "language_model/visual_weight.bin"
    weights = torch.load(run_dir / "export" / "language_model" / "visual_weight.bin", weights_only=True)
    assert "vit_proj.weight" in weights and any(k.startswith("causal_encoder.blocks.0.") for k in weights)


def test_export_loads_with_the_evaluation_loader_too(setup):
    """The eval harness's own loader (evalwiring branch) reads the same folder, when present."""
    eval_model = pytest.importorskip("lavit_pl.generation.eval_model")
    tmp, world, ckpt = setup
    run_dir = tmp / "run_evalloader"
    assert run(run_config(tmp, world, ckpt, *QUIET, f"output_dir={run_dir}", "trainer.max_steps=1")) == 0
    loaded = eval_model.load_lavit_for_eval(run_dir / "export")
    lm, _, encode = load_stage2_export(run_dir / "export")
    pixels, _ = world_pixels(world, 3)
    for a, b in zip(loaded.encode_images(pixels), encode(pixels)):
        assert torch.equal(a, b)
    assert torch.equal(loaded.lm.vit_proj.weight, lm.vit_proj.weight)


def test_frozen_llm_changes_only_the_new_rows(setup):
    tmp, world, ckpt = setup
    run_dir = tmp / "run_frozen"
    assert run(run_config(tmp, world, ckpt, *QUIET, f"output_dir={run_dir}", "lm.freeze_llm=true",
                          "trainer.max_steps=3", "trainer.val_check_interval=100")) == 0
    source, trained = load_llama(ckpt["llama"]), load_llama(run_dir / "export" / "language_model")
    v_text = source.get_input_embeddings().weight.shape[0]
    src, new = source.state_dict(), trained.state_dict()
    for name, value in src.items():
        if name in ("model.embed_tokens.weight", "lm_head.weight"):
            assert torch.equal(new[name][:v_text], value), name  # text rows untouched
            assert new[name].shape[0] == v_text + 2 + 64
        else:
            assert torch.equal(new[name], value), name
    module = UnifiedLMModule(run_config(tmp, world, ckpt, "lm.freeze_llm=true"))
    module.configure_model()
    init_rows = module.lm.llm.get_input_embeddings().weight[v_text:].detach()
    assert not torch.equal(new["model.embed_tokens.weight"][v_text:], init_rows)  # the new rows trained
    groups = {g["name"]: g["param_names"] for g in module.configure_optimizers()["optimizer"].param_groups}
    assert groups["llm_no_decay"] == ["model.embed_tokens.weight", "lm_head.weight"] and "llm_decay" not in groups


def test_quantized_input_feeds_the_code_rows(setup):
    tmp, world, ckpt = setup
    run_dir = tmp / "run_quantized"
    cfg = run_config(tmp, world, ckpt, *QUIET, f"output_dir={run_dir}", "visual.input=quantized", "trainer.max_steps=2")
    assert run(cfg) == 0
    module = UnifiedLMModule(cfg)
    module.configure_model()
    assert module.token_merger is None and not module.lm.vit_proj.weight.requires_grad
    pixels, keys = world_pixels(world, 4)
    batch = {"image_text": {"image": pixels, "key": keys, "caption": ["a red circle."] * 4}}
    docs, targets = module.build_documents(batch, step=0, both_directions=True)
    vocab = module.lm.vocab
    for example_codes in targets.codes:  # every code id sits in the input, no feature slot anywhere
        ids = vocab.code_to_id(example_codes)
        row = docs.packed.input_ids.flatten().tolist()
        assert any(row[i:i + len(ids)] == ids.tolist() for i in range(len(row)))
    assert docs.feature_images == [] and (docs.packed.feature_slot < 0).all()
    # the export: encode_images gives the LLM's embedding rows of the codes; vit_proj is the identity
    lm, _, encode = load_stage2_export(run_dir / "export")
    rows = encode(pixels)
    embed = lm.llm.get_input_embeddings().weight
    for codes, feats in zip(targets.codes, rows):
        assert torch.equal(feats, embed[vocab.code_to_id(codes)].detach())
    with torch.no_grad():
        from lavit_pl.data.sequences import image_to_text_example
        caption = [5, 6, 7]
        by_ids = pack_examples([image_to_text_example(vocab, caption, codes=c) for c in targets.codes], 256)
        reference = lm(by_ids.input_ids, position_ids=by_ids.position_ids)
        torch.testing.assert_close(_i2t_logits(lm, vocab, rows, caption), reference, rtol=0, atol=1e-5)


def test_blind_switch_replaces_images_before_the_tokenizer(setup):
    tmp, world, ckpt = setup
    module = UnifiedLMModule(run_config(tmp, world, ckpt, "visual.blind=true"))
    module.configure_model()
    pixels, keys = world_pixels(world, 6)
    a = module.compute_frozen_targets(pixels, keys)
    b = module.compute_frozen_targets(torch.zeros_like(pixels), keys)  # other images, same keys
    assert torch.equal(a.patch_features, b.patch_features) and torch.equal(a.keep_mask, b.keep_mask)
    seeing = UnifiedLMModule(run_config(tmp, world, ckpt))
    seeing.configure_model()
    assert not torch.equal(seeing.compute_frozen_targets(pixels, keys).patch_features, a.patch_features)
    other = module.compute_frozen_targets(pixels, [k + "x" for k in keys])  # per-key noise
    assert not torch.equal(other.patch_features, a.patch_features)


FSDP2_SCRIPT = """
import json, sys
sys.path.insert(0, {tests!r})
from pathlib import Path
from stage2_fixtures import run_config
from lavit_pl.commands.fit import run
ckpt = {{k: Path(v) for k, v in json.loads({ckpt!r}).items()}}
cfg = run_config(Path({tmp!r}), Path({world!r}), ckpt, "output_dir={out}", "trainer.devices=2", "trainer.strategy=fsdp2",
                 "trainer.progress_bar=false", "trainer.max_steps=4", "data.image_text.val_shards=[]")
sys.exit(run(cfg))
"""


@pytest.mark.slow
def test_fsdp2_on_two_cpu_processes_trains_checkpoints_and_exports(setup):
    """The paper's strategy (FSDP2 through ModelParallelStrategy) on gloo: each rank's batch differs
    (some without image->text documents), the merger copy and vit_proj live in the root unit, the
    new-row lr hook works on the local shards, and the full state is gathered for the export."""
    from pathlib import Path

    tmp, world, ckpt = setup
    corpus = tmp / "world2"  # two ranks need two corpus files
    if not corpus.exists():
        import shutil
        shutil.copytree(world, corpus)
        lines = (corpus / "corpus" / "corpus_00000.jsonl").read_text().splitlines()
        (corpus / "corpus" / "corpus_00000.jsonl").write_text("\n".join(lines[0::2]) + "\n")
        (corpus / "corpus" / "corpus_00001.jsonl").write_text("\n".join(lines[1::2]) + "\n")
    out = tmp / "run_fsdp2"
    script = FSDP2_SCRIPT.format(tests=str(Path(__file__).parents[1]), ckpt=json.dumps({k: str(v) for k, v in ckpt.items()}),
                                 tmp=str(tmp), world=str(corpus), out=str(out))
    done = run_two_rank_script(script, tmp)
    assert done.returncode == 0, done.stderr[-3000:]
    assert json.loads((out / "DONE.json").read_text())["global_step"] == 4
    assert {"__0_0.distcp", "__1_0.distcp"} <= {p.name for p in (out / "checkpoints" / "last.ckpt").iterdir()}  # sharded
    lm, _, encode = load_stage2_export(out / "export")
    source = load_llama(ckpt["llama"]).state_dict()
    trained = lm.llm.state_dict()
    assert all(not torch.equal(trained[k], v) for k, v in source.items() if ".layers." in k)  # full unlock trained
    assert len(encode(world_pixels(world, 2)[0])) == 2
