"""COCO caption metrics through pycocoevalcap (needs Java for the PTB tokenizer).

Golden values for the five-image fixture (tests/fixtures/official/coco/annotations/captions_val2014.json
with results/coco_captions_results.json) were computed with pycocoevalcap 1.2 and pycocotools 2.0.11
on their own, without this repository's code: ``COCO(ann)``, ``coco.loadRes(results)``, gts/res built
from ``imgToAnns`` as ``COCOEvalCap.evaluate`` does, ``PTBTokenizer().tokenize`` on each, then
``Bleu(4).compute_score`` and ``Cider().compute_score`` (METEOR and SPICE left out). The values are
pure-Python float arithmetic on the same inputs, so they are compared to 1e-12.
"""
import json
import shutil
from pathlib import Path

import pytest

from evaluation.metrics.caption import bleu, caption_metrics, cider_d, ptb_tokenize

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "official"
GOLDEN_BLEU = [0.8874100176935643, 0.8492974141025992, 0.7347899727003151, 0.529739466515738]
GOLDEN_CIDER = 2.001940784643772
GOLDEN_CIDER_PER_IMAGE = {42: 2.7362992346462214, 73: 2.2172477546021088, 74: 1.8187330086371727,
                          133: 2.5586484264198806, 136: 0.6787754989134762}

pytestmark = pytest.mark.skipif(shutil.which("java") is None, reason="PTBTokenizer needs Java")


def load_fixture():
    ann = json.loads((FIXTURES / "coco/annotations/captions_val2014.json").read_text())
    refs: dict[int, list[str]] = {}
    for a in ann["annotations"]:
        refs.setdefault(a["image_id"], []).append(a["caption"])
    res = json.loads((FIXTURES / "results/coco_captions_results.json").read_text())
    return {r["image_id"]: r["caption"] for r in res}, refs


def test_five_image_fixture_matches_pycocoevalcap_golden():
    preds, refs = load_fixture()
    out = caption_metrics(preds, refs)
    assert [out[f"Bleu_{n}"] for n in range(1, 5)] == pytest.approx(GOLDEN_BLEU, abs=1e-12)
    assert out["CIDEr"] == pytest.approx(GOLDEN_CIDER, abs=1e-12)
    _, per_image = cider_d(ptb_tokenize(refs), ptb_tokenize({k: [v] for k, v in preds.items()}))
    assert per_image == pytest.approx(GOLDEN_CIDER_PER_IMAGE, abs=1e-12)


def test_cider_idf_comes_from_the_evaluated_set():
    preds, refs = load_fixture()
    alone = caption_metrics({k: preds[k] for k in (42, 73)}, {k: refs[k] for k in (42, 73)})
    assert alone["CIDEr"] != pytest.approx((GOLDEN_CIDER_PER_IMAGE[42] + GOLDEN_CIDER_PER_IMAGE[73]) / 2)


def test_identical_caption_gives_bleu4_one():
    # One reference equal to the prediction: every n-gram precision is 1 and there is no brevity
    # penalty; pycocoevalcap's smoothing constants (1e-15, 1e-9) move it by < 1e-8.
    refs = {1: ["a brown dog runs fast"], 2: ["two grey cats sleep soundly"]}
    preds = {1: "A brown dog runs fast.", 2: "Two grey cats sleep soundly."}
    out = caption_metrics(preds, refs)
    assert out["Bleu_4"] == pytest.approx(1.0, abs=1e-8)


def test_cider_d_hand_case_disjoint_identical_captions():
    # Two images, each with one reference equal to its prediction and no n-gram shared between
    # them: every n-gram has df = 1, idf = log(2); the hypothesis and reference tf-idf vectors are
    # equal (cosine 1 for n = 1..4), no length penalty, no clipping -> 10 * mean(1, 1, 1, 1) = 10.
    refs = {1: ["a brown dog runs fast"], 2: ["two grey cats sleep soundly"]}
    hyps = {1: ["a brown dog runs fast"], 2: ["two grey cats sleep soundly"]}
    score, per_image = cider_d(refs, hyps)
    assert score == pytest.approx(10.0, abs=1e-9)
    assert per_image == pytest.approx({1: 10.0, 2: 10.0}, abs=1e-9)


def test_tokenizer_lowercases_and_drops_punctuation():
    out = ptb_tokenize({7: ["A man, riding a horse.", "Two dogs' toys!"]})
    assert out == {7: ["a man riding a horse", "two dogs toys"]}


def test_mismatched_ids_and_counts_are_errors():
    with pytest.raises(ValueError, match="ids differ"):
        bleu({1: ["a b"]}, {2: ["a b"]})
    with pytest.raises(ValueError, match="exactly one caption"):
        cider_d({1: ["a b"]}, {1: ["a b", "c d"]})
    with pytest.raises(ValueError, match="no caption"):
        ptb_tokenize({1: []})
