"""Config of the Shapes world generator (``experiments/world/shapes_*.yaml``)."""
from __future__ import annotations

from dataclasses import dataclass, field, fields

from lavit_pl.data.shapes.scene import COLORS, KINDS, MAX_SHAPES

DEFAULT_COLORS = ["red", "green", "blue", "yellow", "purple", "orange", "pink", "black"]
MIN_COLORS = 6
MIN_KNOWN_KINDS = 4  # the quiz needs three distractor kinds besides the answer


def _help(text: str) -> dict[str, str]:
    return {"help": text}


@dataclass
class SplitCounts:
    """How many images / questions / documents each split gets."""

    train: int = field(default=16000, metadata=_help("training image-text pairs (train/shards)"))
    val: int = field(default=2000, metadata=_help("held-out images for tokenizer validation (val/shards)"))
    coco: int = field(default=1000, metadata=_help("COCO-like caption / text-to-image reference images"))
    flickr_test: int = field(default=500, metadata=_help("Karpathy test images (captioning evaluation)"))
    flickr_train: int = field(default=1000, metadata=_help("Karpathy train entries (copies of training pairs)"))
    nocaps_per_domain: int = field(default=200, metadata=_help("NoCaps-like images per domain (in/near/out)"))
    vqav2_val_images: int = field(default=300, metadata=_help("VQAv2-like evaluation images"))
    vqav2_train_images: int = field(default=1500, metadata=_help("VQAv2-like train images (answer prior only)"))
    vqa_questions_per_image: int = field(default=3, metadata=_help("questions per VQAv2-like image"))
    okvqa_images: int = field(default=300, metadata=_help("OK-VQA-like images"))
    okvqa_questions_per_image: int = field(default=2, metadata=_help("knowledge questions per OK-VQA-like image"))
    gqa_testdev_images: int = field(default=300, metadata=_help("GQA-like testdev images"))
    gqa_train_images: int = field(default=1000, metadata=_help("GQA-like train scenes (questions only, prior)"))
    gqa_questions_per_image: int = field(default=3, metadata=_help("questions per GQA-like image"))
    vizwiz_val: int = field(default=500, metadata=_help("VizWiz-like val images (one question each)"))
    vizwiz_train: int = field(default=2000, metadata=_help("VizWiz-like train questions (prior only, no images)"))
    vizwiz_unanswerable: float = field(default=0.25, metadata=_help("share of VizWiz questions on blank/blurred images"))
    corpus_fact_docs: int = field(default=3000, metadata=_help("corpus documents stating world facts"))
    corpus_reading_docs: int = field(default=4000, metadata=_help("corpus reading-comprehension docs (training scenes)"))
    corpus_reading_questions: int = field(default=4, metadata=_help("questions after each reading doc's scene description"))
    corpus_existence_pairs: int = field(default=0, metadata=_help(
        "contrastive existence pairs per reading doc: 'Is there a <kind> in the image?' for a named and an unnamed kind"))
    quiz_test_per_subject: int = field(default=25, metadata=_help("MMLU-like test rows per subject (capped by facts)"))

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name == "vizwiz_unanswerable":
                if not 0.0 <= value <= 1.0:
                    raise ValueError(f"counts.vizwiz_unanswerable must be in [0, 1], got {value}")
            elif f.name == "corpus_existence_pairs":
                if value < 0:
                    raise ValueError(f"counts.corpus_existence_pairs must be >= 0, got {value}")
            elif value < 1:
                raise ValueError(f"counts.{f.name} must be >= 1, got {value}")
        if self.flickr_train > self.train:
            raise ValueError(f"counts.flickr_train ({self.flickr_train}) must be <= counts.train ({self.train})")


@dataclass
class ShapesWorldConfig:
    """One Shapes world preset; every file is a function of these values and ``seed``."""

    preset: str = field(default="tiny", metadata=_help("preset name recorded in world.json (micro/tiny/small)"))
    output_dir: str = field(default="data/shapes/tiny", metadata=_help("folder the world is written to (replaced)"))
    seed: int = field(default=0, metadata=_help("same seed -> identical bytes in every file"))
    image_size: int = field(default=64, metadata=_help("image side in pixels (H = W)"))
    patch_size: int = field(default=8, metadata=_help("visual-tokenizer patch side; recorded in world.json"))
    supersample: int = field(default=4, metadata=_help("drawing canvas scale for anti-aliased edges"))
    jpeg_quality: int = field(default=90, metadata=_help("PIL JPEG quality (4:4:4 chroma)"))
    kinds: list[str] = field(default_factory=lambda: list(KINDS), metadata=_help("shape kinds drawn"))
    colors: list[str] = field(default_factory=lambda: list(DEFAULT_COLORS), metadata=_help("shape colours"))
    novel_kind: str = field(default="star", metadata=_help("kind seen in training images but never named in training text"))
    max_shapes: int = field(default=MAX_SHAPES, metadata=_help("complexity is uniform in 1..max_shapes (>= 2: near-domain mixes kinds)"))
    samples_per_shard: int = field(default=2000, metadata=_help("img2dataset samples per tar shard"))
    docs_per_corpus_file: int = field(default=10000, metadata=_help("documents per corpus_NNNNN.jsonl"))
    workers: int = field(default=2, metadata=_help("rendering processes (<= 1: in-process); bytes do not depend on it"))
    counts: SplitCounts = field(default_factory=SplitCounts, metadata=_help("split sizes"))

    def __post_init__(self) -> None:
        if not self.preset:
            raise ValueError("preset must be a non-empty name")
        if not self.output_dir:
            raise ValueError("output_dir must be a folder path")
        if self.patch_size < 1 or self.image_size % self.patch_size:
            raise ValueError(f"image_size ({self.image_size}) must be a multiple of patch_size ({self.patch_size})")
        if self.image_size < 16:
            raise ValueError(f"image_size must be >= 16 pixels, got {self.image_size}")
        if not 1 <= self.supersample <= 8:
            raise ValueError(f"supersample must be in [1, 8], got {self.supersample}")
        if not 1 <= self.jpeg_quality <= 95:
            raise ValueError(f"jpeg_quality must be in [1, 95] (PIL's useful range), got {self.jpeg_quality}")
        bad = [k for k in self.kinds if k not in KINDS]
        if bad or len(set(self.kinds)) != len(self.kinds):
            raise ValueError(f"kinds must be distinct names from {list(KINDS)}, got {self.kinds}")
        if self.novel_kind not in self.kinds:
            raise ValueError(f"novel_kind '{self.novel_kind}' must be one of kinds {self.kinds}")
        if len(self.kinds) - 1 < MIN_KNOWN_KINDS:
            raise ValueError(f"kinds needs >= {MIN_KNOWN_KINDS} kinds besides novel_kind, got {self.kinds}")
        bad = [c for c in self.colors if c not in COLORS]
        if bad or len(set(self.colors)) != len(self.colors) or len(self.colors) < MIN_COLORS:
            raise ValueError(f"colors must be >= {MIN_COLORS} distinct names from {list(COLORS)}, got {self.colors}")
        if not 2 <= self.max_shapes <= MAX_SHAPES:
            raise ValueError(f"max_shapes must be in [2, {MAX_SHAPES}] (near-domain scenes mix two kinds), got {self.max_shapes}")
        if not 1 <= self.samples_per_shard <= 9999:
            raise ValueError(f"samples_per_shard must be in [1, 9999] (4-digit sample index), got {self.samples_per_shard}")
        if self.docs_per_corpus_file < 1:
            raise ValueError(f"docs_per_corpus_file must be >= 1, got {self.docs_per_corpus_file}")
        if self.workers < 0:
            raise ValueError(f"workers must be >= 0, got {self.workers}")

    @property
    def known_kinds(self) -> list[str]:
        return [k for k in self.kinds if k != self.novel_kind]
