"""RedPajama-style JSONL reading: raw text out, bad lines skipped, counted and logged once."""
from __future__ import annotations

import gzip
import json
import logging
from pathlib import Path

import pytest
from torch.utils.data import DataLoader

from lavit_pl.data.skip_ledger import ShardSummary
from lavit_pl.data.text_corpus import TextCorpusReaderConfig, build_text_pipeline, count_documents, scan_text_files

READER = TextCorpusReaderConfig()


def _doc(i: int) -> bytes:
    return json.dumps({"text": f"document {i}: a red circle.", "meta": {"source": "shapes", "i": i}}).encode() + b"\n"


def write_corpus(root: Path) -> tuple[list[str], list[str], int]:
    """Two files; returns (paths, good texts in file order, number of bad lines)."""
    a = [_doc(0), _doc(1), b'{"text": "cut off\n', _doc(2), b'["a", "list"]\n', b'{"meta": {}}\n', b"\n", _doc(3),
         b'{"text": "x", "meta": "not an object"}\n', b"\xff\xfe not utf-8\n"]
    b = [_doc(4), _doc(5), _doc(6), _doc(7)[:25]]  # a file truncated inside its last line
    paths = [root / "corpus_00000.jsonl", root / "corpus_00001.jsonl.gz"]
    paths[0].write_bytes(b"".join(a))
    with gzip.open(paths[1], "wb") as handle:
        handle.write(b"".join(b))
    texts = [json.loads(_doc(i))["text"] for i in range(7)]
    return [str(p) for p in paths], texts, 6


def test_bad_lines_are_skipped_counted_and_logged_with_file_and_line(tmp_path: Path, caplog):
    files, texts, n_bad = write_corpus(tmp_path)
    with caplog.at_level(logging.WARNING, logger="lavit_pl.data.skip_ledger"):
        samples, summary = scan_text_files(files, READER)
    assert [s["text"] for s in samples] == texts
    assert samples[2]["key"] == "corpus_00000.jsonl:4" and samples[2]["meta"] == {"source": "shapes", "i": 2}
    assert summary == {files[0]: ShardSummary(None, 4, 5), files[1]: ShardSummary(None, 3, 1)}
    assert sum(s["n_skipped"] for s in samples) == n_bad - 1  # the last bad line has no later document
    logged = [r.getMessage() for r in caplog.records if "skipping sample" in r.getMessage()]
    for key in ["corpus_00000.jsonl:3", "corpus_00000.jsonl:5", "corpus_00000.jsonl:6", "corpus_00000.jsonl:9",
                "corpus_00000.jsonl:10", "corpus_00001.jsonl.gz:4"]:
        assert sum(f"'{key}'" in m for m in logged) == 1, key
    assert count_documents(files) == {files[0]: 9, files[1]: 4}  # non-blank lines


def test_bad_line_count_survives_two_workers(tmp_path: Path):
    files, texts, n_bad = write_corpus(tmp_path)
    pipeline = build_text_pipeline(files, READER, batch_size=3)
    batches = list(DataLoader(pipeline, batch_size=None, num_workers=2))
    assert sum(b["n_skipped"] for b in batches) == n_bad
    assert sorted(t for b in batches for t in b["text"]) == sorted(texts)


def test_reader_config_names_the_field():
    with pytest.raises(ValueError, match="meta_field"):
        TextCorpusReaderConfig(meta_field="text")
