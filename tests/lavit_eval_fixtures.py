"""Shared by the evaluation-wiring tests: a tiny LaVIT (random LLaMA + UnifiedVocab), a fake image
encoder that records its calls, and a small benchmark world in the official layout built from
``tests/fixtures/official`` (images drawn here, one training shard for the constant caption)."""
from __future__ import annotations

import hashlib
import io
import json
import shutil
from pathlib import Path

import torch
from PIL import Image

from lavit_pl.data.img2dataset_writer import Img2DatasetShardWriter
from lavit_pl.models.llm import LlamaShape, UnifiedLM, UnifiedVocab, build_random_llama, extend_vocabulary
from lavit_pl.models.text_tokenizer import TextTokenizerConfig, save_llama_tokenizer, train_text_tokenizer
from lavit_pl.models.llm import load_text_tokenizer

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "official"
V_TEXT, K, D_VIS = 300, 16, 8
SHAPE = LlamaShape(hidden_size=32, num_heads=4, num_kv_heads=2, intermediate_size=64, max_positions=256)
WORDS = "a the red blue green yellow circle square triangle left right of above below two three yes no is there".split()


def tiny_tokenizer(folder: Path):
    """LLaMA-layout tokenizer (V_text = 300) saved in ``folder`` and loaded as the loader does."""
    texts = [" ".join(WORDS[(i * 7 + j * 3) % len(WORDS)] for j in range(2 + i % 9)) for i in range(300)]
    save_llama_tokenizer(train_text_tokenizer(texts, TextTokenizerConfig(vocab_size=V_TEXT)), folder)
    return load_text_tokenizer(folder)


def tiny_lm(seed: int = 0) -> UnifiedLM:
    """Random LLaMA extended to the unified vocabulary. The lm_head rows of the 256 byte pieces are
    zeroed so that generations are (almost always) learned word pieces, not undecodable bytes; the
    visual rows are scaled x20 so that, unsuppressed, visual ids would win."""
    llm = build_random_llama(SHAPE, V_TEXT, seed=seed)
    vocab = UnifiedVocab(V_TEXT, K)
    extend_vocabulary(llm, vocab, seed=seed)
    with torch.no_grad():
        llm.lm_head.weight[3:259] = 0
        llm.lm_head.weight[V_TEXT:] *= 20
    return UnifiedLM(llm, vocab, D_VIS, seed=seed).eval()


class FakeEncoder:
    """``encode_images(images) -> list of (T_b, D_VIS)``: T_b in 1..3 and N(0, 1) features, both drawn
    from the image's pixels (a path is opened). Records every call (the list of inputs)."""

    def __init__(self):
        self.calls: list[list] = []

    def __call__(self, images):
        self.calls.append(list(images))
        out = []
        for image in images:
            if not isinstance(image, Image.Image):
                with Image.open(image) as opened:
                    image = opened.convert("RGB")
            seed = int(hashlib.sha256(image.convert("RGB").tobytes()).hexdigest(), 16)
            generator = torch.Generator().manual_seed(seed % 2**63)
            out.append(torch.randn(1 + seed % 3, D_VIS, generator=generator))  # (T_b, D_VIS)
        return out


def jpeg(name: str, size: int = 16) -> bytes:
    """A small JPEG whose colour depends on ``name``."""
    digest = hashlib.sha256(name.encode()).digest()
    image = Image.new("RGB", (size, size), tuple(digest[:3]))
    image.paste(tuple(digest[3:6]), (0, 0, size // 2, size // 2))
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()


def _put(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(jpeg(path.name))


TRAIN_CAPTIONS = [
    ["a red circle", "one red circle", "a red circle on grey", "a circle that is red", "red circle"],
    ["a blue square", "one blue square", "a square that is blue", "blue square", "a blue square on grey"],
    ["two green triangles", "green triangles", "two triangles that are green", "a pair of green triangles",
     "two green triangles on grey"],
    ["a yellow circle left of a red square", "a yellow circle and a red square", "red square and yellow circle",
     "a circle and a square", "a yellow circle next to a red square"],
    ["a red circle above a blue circle", "two circles", "a red and a blue circle", "a circle above a circle",
     "red circle over blue circle"],
    ["three blue squares", "blue squares", "three squares that are blue", "some blue squares", "3 blue squares"],
]


def write_official_world(root: Path) -> Path:
    """Copy the official-layout fixtures into ``root`` as docs/data_layout.md places them; draw
    every image they name; write one training shard. Returns ``root``."""
    for rel in ("nocaps/nocaps_val_4500_captions.json", "flickr30k/dataset_flickr30k.json",
                "vqav2/v2_OpenEnded_mscoco_val2014_questions.json", "vqav2/v2_mscoco_val2014_annotations.json",
                "vqav2/v2_OpenEnded_mscoco_train2014_questions.json", "vqav2/v2_mscoco_train2014_annotations.json",
                "okvqa/OpenEnded_mscoco_val2014_questions.json", "okvqa/mscoco_val2014_annotations.json",
                "gqa/testdev_balanced_questions.json", "gqa/train_balanced_questions.json",
                "vizwiz/val.json", "vizwiz/train.json"):
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(FIXTURES / rel, root / rel)
    for image in json.loads((root / "nocaps/nocaps_val_4500_captions.json").read_text())["images"]:
        _put(root / "nocaps/images" / image["file_name"])
    for image in json.loads((root / "flickr30k/dataset_flickr30k.json").read_text())["images"]:
        _put(root / "flickr30k/images" / image["filename"])
    for name in ("vqav2", "okvqa"):
        questions = next((root / name).glob("*OpenEnded_mscoco_val2014_questions.json"))
        for q in json.loads(questions.read_text())["questions"]:
            _put(root / name / "val2014" / f"COCO_val2014_{q['image_id']:012d}.jpg")
    for q in json.loads((root / "gqa/testdev_balanced_questions.json").read_text()).values():
        _put(root / "gqa/images" / f"{q['imageId']}.jpg")
    for item in json.loads((root / "vizwiz/val.json").read_text()):
        _put(root / "vizwiz/val" / item["image"])
    with Img2DatasetShardWriter(root / "train/shards", samples_per_shard=100) as writer:
        for i, captions in enumerate(TRAIN_CAPTIONS):
            writer.write(jpeg(f"train{i}"), captions[0], 16, 16, extra_json={"captions": captions})
    return root
