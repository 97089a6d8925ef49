"""Stage 0 text LM through the ``fit`` command, on a corpus and shards written in a tmp folder."""
from __future__ import annotations

import csv
import io
import json
import math
import random
from pathlib import Path

import pytest
import torch
from PIL import Image

from evaluation.mmlu import answer_token_ids
from lavit_pl.cli import main
from lavit_pl.config import load_config
from lavit_pl.data.img2dataset_writer import Img2DatasetShardWriter
from lavit_pl.models.llm import build_random_llama, load_llama, load_text_tokenizer
from lavit_pl.modules.text_lm_module import TextLMRunConfig

REPO = Path(__file__).resolve().parents[2]
MICRO_YAML = REPO / "experiments" / "stage0" / "llama_micro.yaml"
COLORS = ["red", "green", "blue", "yellow", "purple", "orange"]
KINDS = ["circle", "square", "triangle", "diamond"]
CITIES = ["Arnholt", "Bexley", "Corvane", "Dunmere", "Elsworth", "Fenwick"]


def _fact(rng: random.Random) -> str:
    c, k, city = rng.choice(COLORS), rng.choice(KINDS), rng.choice(CITIES)
    return rng.choice([
        f"The {c} Guild was founded in {1200 + COLORS.index(c) * 37} in {city}.",
        f"People of {city} revere the {k} and wear {c} robes.",
        f"Statues of the {k} are forged from {c} bronze.",
        f"Question: Which color does the {c} Guild wear? Answer: {c}",
    ])


def write_toy_world(root: Path, docs: int = 120, seed: int = 0, repeat: str | None = None) -> None:
    """``corpus/corpus_0000{0,1}.jsonl`` (RedPajama style) and two img2dataset shards of 8x8 images.

    ``repeat``: every document is this one text (a corpus a model can memorise).
    """
    rng = random.Random(seed)
    corpus = root / "corpus"
    corpus.mkdir(parents=True)
    texts = [repeat or " ".join(_fact(rng) for _ in range(rng.randint(2, 5))) for _ in range(docs)]
    for part in range(2):
        lines = [json.dumps({"text": t, "meta": {"source": "toy"}}) for t in texts[part::2]]
        (corpus / f"corpus_{part:05d}.jsonl").write_text("\n".join(lines) + "\n")
    with Img2DatasetShardWriter(root / "train" / "shards", samples_per_shard=10) as writer:
        for i in range(20):
            buf = io.BytesIO()
            Image.new("RGB", (8, 8), (i * 12, 40, 200 - i * 9)).save(buf, format="JPEG")
            captions = [f"a {rng.choice(COLORS)} {rng.choice(KINDS)} on a plain background." for _ in range(5)]
            writer.write(buf.getvalue(), captions[0], 8, 8, extra_json={"captions": captions})


def fit(root: Path, run: Path, *overrides: str) -> int:
    return main(["fit", "-c", str(MICRO_YAML), f"data.data_root={root}", f"output_dir={run}",
                 "tokenizer.vocab_size=384", "trainer.progress_bar=false", "trainer.log_every_n_steps=1",
                 "data.loader.batch_size=4", "data.loader.batches_per_epoch=8", "heldout_fraction=0.1",
                 "model.hidden_size=32", "model.intermediate_size=64", "context_length=64", "model.max_positions=64",
                 *overrides])


def metric_rows(run: Path, name: str, session: int = -1) -> list[tuple[int, float]]:
    """Rows of one session's log (logs/version_N/metrics.csv; the last session by default)."""
    sessions = sorted((run / "logs").glob("version_*"), key=lambda p: int(p.name.split("_")[1]))
    with open(sessions[session] / "metrics.csv", newline="") as handle:
        return [(int(r["step"]), float(r[name])) for r in csv.DictReader(handle) if r.get(name)]


@pytest.fixture(scope="module")
def toy_world(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("world")
    write_toy_world(root)
    return root


def test_fit_exports_a_llama_folder_with_the_trained_weights(toy_world, tmp_path):
    run = tmp_path / "run"
    assert fit(toy_world, run, "trainer.max_steps=3", "trainer.checkpoint_every_n_steps=3",
               "trainer.val_check_interval=3") == 0
    done = json.loads((run / "DONE.json").read_text())
    assert done["global_step"] == 3 and done["stopped_by_time_budget"] is False
    export = run / "export" / "llama"
    assert (export / "model.safetensors").is_file() and not list(export.glob("*.bin"))
    # the checkpoint of the last step holds plain tensors only, and the exported weights are its weights
    ckpt = torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)
    assert ckpt["global_step"] == 3
    cfg = load_config(TextLMRunConfig, run / "config.yaml")  # the resolved config saved beside the run
    reference = build_random_llama(cfg.model, cfg.tokenizer.vocab_size, seed=123)
    reference.load_state_dict({k.removeprefix("model."): v for k, v in ckpt["state_dict"].items()}, strict=True)
    loaded = load_llama(export)
    tokenizer = load_text_tokenizer(export)
    assert len(tokenizer) == 384 and tokenizer.bos_token_id == 1 and tokenizer.eos_token_id == 2
    assert len(set(answer_token_ids(tokenizer))) == 4  # the MMLU protocol's one-token answer letters
    ids = torch.tensor([tokenizer("The red Guild was founded in 1200 in Arnholt.")["input_ids"]])
    with torch.no_grad():
        torch.testing.assert_close(loaded(ids).logits, reference(ids).logits, rtol=0, atol=0)
    # export/metrics.json: held-out perplexity of the exported folder; a 3-step model is near uniform
    metrics = json.loads((run / "export" / "metrics.json").read_text())
    assert metrics["val_tokens"] > 0 and metrics["global_step"] == 3
    assert metrics["val_perplexity"] == pytest.approx(torch.tensor(metrics["val_loss"]).exp().item(), rel=1e-6)
    assert 0.3 * 384 < metrics["val_perplexity"] < 3 * 384
    # the tokenizer was trained once, in the run folder, and the export holds the same files
    assert (run / "tokenizer" / "tokenizer.json").read_text() == (export / "tokenizer.json").read_text()
    # logged: train loss / perplexity / tokens per second, validation perplexity, skipped samples
    for name in ("train/loss", "train/perplexity", "train/tokens_per_s", "val/perplexity", "data/skipped_samples"):
        assert metric_rows(run, name), name
    assert all(v == 0 for _, v in metric_rows(run, "data/skipped_samples"))



def test_interrupted_run_resumes_from_last_ckpt(toy_world, tmp_path, capsys):
    run = tmp_path / "run"
    assert fit(toy_world, run, "trainer.max_steps=2", "trainer.checkpoint_every_n_steps=1",
               "trainer.val_check_interval=8") == 0
    first = torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)
    assert first["global_step"] == 2
    # A run stopped after step 2 leaves exactly this on disk, minus DONE.json (written only at the end).
    (run / "DONE.json").unlink()
    capsys.readouterr()
    assert fit(toy_world, run, "trainer.max_steps=4", "trainer.checkpoint_every_n_steps=1",
               "trainer.val_check_interval=8") == 0
    assert f"resuming from {run / 'checkpoints' / 'last.ckpt'}" in capsys.readouterr().err
    assert json.loads((run / "DONE.json").read_text())["global_step"] == 4
    second = torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)
    assert second["global_step"] == 4
    assert all(int(s["step"]) == 4 for s in second["optimizer_states"][0]["state"].values())  # AdamW's count
    # A fresh start with max_steps=4 would also end at step 4; what tells them apart is the steps the
    # second session ran. Each session logs to its own folder, and the first one's log is kept.
    assert sorted(s for s, _ in metric_rows(run, "train/loss")) == [2, 3]
    assert sorted(s for s, _ in metric_rows(run, "train/loss", session=0)) == [0, 1]


def test_loss_falls_on_a_repeated_document(tmp_path):
    root = tmp_path / "world"
    write_toy_world(root, docs=40, repeat="The red Guild was founded in 1200 in Arnholt. "
                                          "People of Bexley revere the square and wear blue robes.")
    run = tmp_path / "run"
    assert fit(root, run, "trainer.max_steps=25", "trainer.checkpoint_every_n_steps=25", "heldout_fraction=0.0",
               "data.val_files=[]", "optim.lr=1e-2", "optim.warmup_steps=2", "trainer.val_check_interval=8") == 0
    losses = [v for _, v in sorted(metric_rows(run, "train/loss"))]
    assert len(losses) == 25
    # Random init (std 0.02) predicts almost uniformly: ln(384) = 5.95. The same ~30-token document
    # 100 times over gets memorised: measured 1.11-1.18 for the last three steps (lr 1e-6 instead:
    # 5.96 throughout), so a bound at 30% of the first loss fails if training does nothing.
    assert losses[0] == pytest.approx(math.log(384), abs=0.05)
    assert max(losses[-3:]) < 0.3 * losses[0]


def test_rerunning_a_finished_run_does_nothing(toy_world, tmp_path, capsys):
    run = tmp_path / "run"
    assert fit(toy_world, run, "trainer.max_steps=1", "trainer.val_check_interval=8") == 0
    stamps = {p: p.stat().st_mtime_ns for p in run.rglob("*") if p.is_file()}
    capsys.readouterr()
    assert fit(toy_world, run, "trainer.max_steps=1", "trainer.val_check_interval=8") == 0
    assert "is finished" in capsys.readouterr().err
    assert {p: p.stat().st_mtime_ns for p in run.rglob("*") if p.is_file()} == stamps


def test_config_checks_name_the_field(tmp_path):
    with pytest.raises(ValueError, match="context_length"):
        TextLMRunConfig(output_dir=str(tmp_path), context_length=4096)
    with pytest.raises(ValueError, match="data.val_files"):
        TextLMRunConfig(output_dir=str(tmp_path), heldout_fraction=0.1)
    assert main(["fit", "-c", str(MICRO_YAML), "output_dir=/tmp/x", "optim.lr=0"]) == 2
