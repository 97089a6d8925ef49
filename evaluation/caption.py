"""Score a captioning results file with the COCO caption evaluation (CIDEr-D, BLEU-1..4).

    python -m evaluation.caption --annotations A.json --results R.json \
        [--karpathy-split test] [--nocaps-domains in-domain,near-domain,out-domain] [--image-root DIR]

A.json is either COCO layout (``captions_val2014.json``; NoCaps val is COCO layout with a
``domain`` per image) or a Karpathy split file (``dataset_flickr30k.json``), for which
``--karpathy-split`` is required: the Flickr30k number of the papers is the 1K ``test`` split,
not every image of the file. Karpathy images are named by their ``imgid``.

Results: ``[{"image_id": int, "caption": str}]``, exactly one per evaluated image. Prints one JSON
object with ``Bleu_1``..``Bleu_4`` and ``CIDEr`` on pycocoevalcap's scale (CIDEr 1.142 is the
"114.2" of paper tables). For NoCaps, ``perDomain`` holds the same metrics per domain, each
computed on that domain's images alone (CIDEr's IDF comes from the evaluated set).
"""
from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from evaluation.benchmarks.coco_captions import read_coco_captions
from evaluation.benchmarks.errors import BenchmarkFileError, load_json
from evaluation.benchmarks.karpathy import KARPATHY_SPLITS, is_karpathy_layout, read_karpathy
from evaluation.benchmarks.nocaps import NOCAPS_DOMAINS, read_nocaps
from evaluation.benchmarks.results import align_predictions, read_results
from evaluation.cli_common import cli_main, new_parser
from evaluation.metrics.caption import caption_metrics

log = logging.getLogger("evaluation.caption")


def build_parser() -> argparse.ArgumentParser:
    parser = new_parser("python -m evaluation.caption", __doc__)
    parser.add_argument("--annotations", required=True, help="COCO-layout, NoCaps or Karpathy captions JSON")
    parser.add_argument("--results", required=True, help='results JSON: [{"image_id", "caption"}]')
    parser.add_argument("--karpathy-split", choices=KARPATHY_SPLITS,
                        help="split of a Karpathy file to evaluate (required for Karpathy files)")
    parser.add_argument("--nocaps-domains", help="comma-separated NoCaps domains to keep (default: all three)")
    parser.add_argument("--image-root", help="if given, check that every evaluated image exists there")
    return parser


def load_references(
    annotations: str | Path,
    karpathy_split: str | None = None,
    nocaps_domains: str | None = None,
    image_root: str | Path | None = None,
) -> tuple[str, dict[int, tuple[str, ...]], dict[int, str] | None]:
    """Read any caption layout: (layout name, image_id -> reference captions, image_id -> NoCaps
    domain or None). ``nocaps_domains`` is comma-separated."""
    path = Path(annotations)
    data = load_json(path)
    if is_karpathy_layout(data):
        if karpathy_split is None:
            raise BenchmarkFileError(path, "a Karpathy split file needs --karpathy-split (Flickr30k's 1K test "
                                     "split is 'test'); refusing to score every image of the file")
        records = read_karpathy(path, karpathy_split, image_root=image_root)
        return f"karpathy:{karpathy_split}", {r.image_id: r.captions for r in records}, None
    if karpathy_split is not None:
        raise BenchmarkFileError(path, "--karpathy-split given but the file is not a Karpathy split file")
    images = data.get("images") if isinstance(data, dict) else None
    if isinstance(images, list) and images and isinstance(images[0], dict) and "domain" in images[0]:
        domains = None if nocaps_domains is None else [d.strip() for d in nocaps_domains.split(",")]
        records = read_nocaps(path, domains=domains, image_root=image_root)
        return "nocaps", {r.image_id: r.captions for r in records}, {r.image_id: r.domain for r in records}
    if nocaps_domains is not None:
        raise BenchmarkFileError(path, "--nocaps-domains given but the images carry no 'domain'")
    records = read_coco_captions(path, image_root=image_root)
    return "coco", {r.image_id: r.captions for r in records}, None


def evaluate(args: argparse.Namespace) -> dict:
    layout, references, domains = load_references(args.annotations, args.karpathy_split, args.nocaps_domains,
                                                  args.image_root)
    ids = list(references)
    predictions = dict(zip(ids, align_predictions(read_results(args.results, "caption"), ids, args.results,
                                                  "image_id")))
    log.info("scoring %d images of %s (%s layout)", len(ids), args.annotations, layout)
    out: dict = {"metric": "COCO caption evaluation (pycocoevalcap 1.2)", "layout": layout,
                 **caption_metrics(predictions, references), "num_images": len(ids)}
    if domains is not None:
        out["perDomain"] = {}
        for domain in NOCAPS_DOMAINS:
            subset = [i for i in ids if domains[i] == domain]
            if subset:
                scores = caption_metrics({i: predictions[i] for i in subset}, {i: references[i] for i in subset})
                out["perDomain"][domain] = {**scores, "num_images": len(subset)}
    return out


def main(argv: list[str] | None = None) -> int:
    return cli_main(build_parser, evaluate, argv)


if __name__ == "__main__":
    sys.exit(main())
