"""COCO caption metrics (CIDEr-D, BLEU-1..4) through pycocoevalcap, as ``COCOEvalCap`` computes them.

The COCO caption evaluation (pycocoevalcap 1.2, ``eval.py``) lower-cases and tokenises every
reference and prediction with Stanford's PTBTokenizer (Java), drops punctuation tokens, then scores:

- CIDEr-D (pycocoevalcap's ``Cider``): corpus-level, n = 1..4, sigma = 6, the IDF taken from the
  references of exactly the images being evaluated, so the score of an image depends on the set.
  The corpus score is the mean of the per-image scores.
- BLEU (``Bleu(4)``): corpus-level BLEU with the "closest" reference length.

Values are returned on pycocoevalcap's own scale (CIDEr 1.142 is the "114.2" of paper tables).
"""
from __future__ import annotations

import contextlib
import sys
from typing import Hashable, Mapping, Sequence

from pycocoevalcap.bleu.bleu import Bleu
from pycocoevalcap.cider.cider import Cider
from pycocoevalcap.tokenizer.ptbtokenizer import PTBTokenizer

CAPTION_METRICS = ("Bleu_1", "Bleu_2", "Bleu_3", "Bleu_4", "CIDEr")


def ptb_tokenize(captions: Mapping[Hashable, Sequence[str]]) -> dict[Hashable, list[str]]:
    """PTB-tokenise ``{id: [caption, ...]}`` in one Java call; returns ``{id: [tokenised, ...]}``.

    Raises if Java is missing or if an id comes back with a different number of captions.
    """
    for key, caps in captions.items():
        if not caps:
            raise ValueError(f"captions: id {key!r} has no caption")
    payload = {key: [{"caption": c} for c in caps] for key, caps in captions.items()}
    try:
        tokenized = PTBTokenizer().tokenize(payload)
    except FileNotFoundError as err:
        raise RuntimeError("pycocoevalcap's PTBTokenizer needs Java on PATH (e.g. default-jre-headless)") from err
    for key, caps in captions.items():
        got = len(tokenized.get(key, []))
        if got != len(caps):
            raise RuntimeError(f"PTBTokenizer returned {got} captions for id {key!r}, expected {len(caps)}")
    return tokenized


def _check_keys(references: Mapping, predictions: Mapping) -> None:
    if set(references) != set(predictions):
        missing = [k for k in references if k not in predictions]
        extra = [k for k in predictions if k not in references]
        raise ValueError(f"ids differ: first id without prediction {missing[:1]}, first extra id {extra[:1]}")
    for key, preds in predictions.items():
        if len(preds) != 1:
            raise ValueError(f"predictions: id {key!r} must have exactly one caption, got {len(preds)}")


def cider_d(
    references: Mapping[Hashable, Sequence[str]], predictions: Mapping[Hashable, Sequence[str]]
) -> tuple[float, dict[Hashable, float]]:
    """CIDEr-D of tokenised captions: ``(corpus score, {id: image score})``."""
    _check_keys(references, predictions)
    keys = list(references)
    refs = {k: list(references[k]) for k in keys}
    hyps = {k: list(predictions[k]) for k in keys}
    score, scores = Cider().compute_score(refs, hyps)
    return float(score), {k: float(s) for k, s in zip(keys, scores)}


def bleu(
    references: Mapping[Hashable, Sequence[str]], predictions: Mapping[Hashable, Sequence[str]], n: int = 4
) -> list[float]:
    """Corpus BLEU-1..n of tokenised captions (pycocoevalcap ``Bleu(n)``, closest ref length)."""
    _check_keys(references, predictions)
    refs = {k: list(v) for k, v in references.items()}
    hyps = {k: list(predictions[k]) for k in references}
    # BleuScorer prints its length statistics on stdout; keep stdout for the caller's JSON.
    with contextlib.redirect_stdout(sys.stderr):
        scores, _ = Bleu(n).compute_score(refs, hyps, verbose=0)
    return [float(s) for s in scores]


def caption_metrics(
    predictions: Mapping[Hashable, str], references: Mapping[Hashable, Sequence[str]]
) -> dict[str, float]:
    """COCO caption evaluation of raw (untokenised) captions: ``{"Bleu_1".."Bleu_4", "CIDEr"}``.

    ``predictions``: one caption per image id; ``references``: the human captions per id. Both must
    hold the same ids. References and predictions are tokenised in separate calls, as ``COCOEvalCap``.
    """
    if set(predictions) != set(references):
        _check_keys(references, {k: [v] for k, v in predictions.items()})
    refs_tok = ptb_tokenize(references)
    hyps_tok = ptb_tokenize({k: [predictions[k]] for k in references})
    out = dict(zip(CAPTION_METRICS[:4], bleu(refs_tok, hyps_tok, 4)))
    out["CIDEr"], _ = cider_d(refs_tok, hyps_tok)
    return out
