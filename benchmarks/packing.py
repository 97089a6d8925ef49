"""Stage-2 training throughput, side by side in one process on the same documents.

1. Packed rows (documents packed into rows of at most S tokens, attention confined to each
   document, no compute on padding beyond a row's tail) vs padding each batch to its longest
   document, in non-padding tokens per second of forward + backward. The packed path is the
   training configuration (balanced rows, ``sdpa_packed``: SDPA per document on the CPU, the
   block-diagonal mask on a GPU); greedy first-fit rows with transformers' block-diagonal ``sdpa``
   mask are timed beside it for reference.
2. Dynamic vs fixed visual tokens: image->text documents with T_b ~ the paper's 94/256 of N
   visual features vs all N, at equal batch size, in samples per second.

Documents follow the tiny mixture: text : image-text = 2 : 1, directions 1 : 1. Caption and corpus
lengths come from the Shapes world when ``--world`` exists (whitespace words x 1.3 as token
counts), else from a seeded distribution of the same means. Prints lines ending with the ratio.

    python benchmarks/packing.py [--world data/shapes/tiny] [--steps 5]
    python benchmarks/packing.py --device cuda --dtype bfloat16 --steps 20   # bf16 autocast on a GPU
"""
from __future__ import annotations

import argparse
import contextlib
import json
import random
import time
from pathlib import Path

import torch

from lavit_pl.data.sequences import Example, image_to_text_example, pack_examples, text_examples, text_to_image_example
from lavit_pl.models.llm import LlamaShape, UnifiedLM, UnifiedVocab, build_random_llama, packed_lm_loss
from lavit_pl.models.packed_attention import PACKED_SDPA


def world_lengths(world: Path) -> tuple[list[int], list[int]]:
    """Token-count estimates of corpus documents and captions (words x 1.3)."""
    corpus = [json.loads(l)["text"] for l in (world / "corpus/corpus_00000.jsonl").read_text().splitlines()]
    coco = json.loads((world / "coco/annotations/captions_val2014.json").read_text())["annotations"]
    docs = [max(4, int(1.3 * len(t.split()))) for t in corpus]
    caps = [max(3, int(1.3 * len(a["caption"].split()))) for a in coco]
    return docs, caps


def make_documents(vocab: UnifiedVocab, doc_lens: list[int], cap_lens: list[int], n_pairs: int,
                   visual_tokens, rng: random.Random, max_len: int) -> list[Example]:
    def ids(n: int) -> list[int]:
        return [rng.randrange(3, vocab.text_size) for _ in range(n)]

    docs: list[Example] = []
    for i in range(n_pairs):
        t = visual_tokens()
        caption = ids(rng.choice(cap_lens))
        if i % 2 == 0:
            docs.append(image_to_text_example(vocab, caption, num_features=t))
        else:
            docs.append(text_to_image_example(vocab, caption, torch.randint(0, vocab.codebook_size, (t,))))
    for _ in range(2 * n_pairs):
        docs.extend(text_examples(vocab, ids(rng.choice(doc_lens)), max_length=max_len))
    rng.shuffle(docs)
    return docs


def packed_step(lm: UnifiedLM, docs: list[Example], context: int, dim: int, balance: bool = True) -> None:
    device = lm.llm.device
    batch = pack_examples(docs, context, balance=balance)
    features = torch.randn(int((batch.feature_slot >= 0).sum()), dim, device=device)
    logits = lm(batch.input_ids.to(device), batch.position_ids.to(device), batch.feature_slot.to(device), features)
    packed_lm_loss(logits, batch.targets.to(device)).backward()


def padded_step(lm: UnifiedLM, docs: list[Example], dim: int) -> None:
    """Each document its own row, right-padded to the longest, with an attention mask."""
    rows = [pack_examples([d], len(d)) for d in docs]
    width = max(r.input_ids.shape[1] for r in rows)

    def pad(t: torch.Tensor, value: int) -> torch.Tensor:
        return torch.nn.functional.pad(t, (0, width - t.shape[1]), value=value)

    slots, total = [], 0
    for r in rows:
        s = r.feature_slot
        slots.append(pad(torch.where(s >= 0, s + total, s), -1))
        total += int((s >= 0).sum())
    input_ids = torch.cat([pad(r.input_ids, 0) for r in rows])
    targets = torch.cat([pad(r.targets, -100) for r in rows])
    mask = torch.cat([pad(torch.ones_like(r.input_ids), 0) for r in rows])
    positions = torch.arange(width).expand(len(rows), width)
    device = lm.llm.device
    logits = lm(input_ids.to(device), positions.to(device), torch.cat(slots).to(device),
                torch.randn(total, dim, device=device), attention_mask=mask.to(device))
    packed_lm_loss(logits, targets.to(device)).backward()


def seconds(fn, steps: int, device: torch.device = torch.device("cpu"), dtype: torch.dtype = torch.float32) -> float:
    """Mean seconds per call of ``fn`` over ``steps`` calls after one warm-up call (bf16: under autocast)."""
    def call() -> None:
        autocast = torch.autocast(device.type, dtype=dtype) if dtype != torch.float32 else contextlib.nullcontext()
        with autocast:
            fn()

    call()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    start = time.perf_counter()
    for _ in range(steps):
        call()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return (time.perf_counter() - start) / steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--world", default="data/shapes/tiny")
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--docs-per-step", type=int, default=24, help="documents per step (tiny: 24)")
    parser.add_argument("--context", type=int, default=512)
    parser.add_argument("--patches", type=int, default=64, help="N (tiny: 64)")
    parser.add_argument("--device", default="cpu", help="cpu or cuda[:i]")
    parser.add_argument("--dtype", default="float32", choices=("float32", "bfloat16"), help="bfloat16: autocast")
    parser.add_argument("--hidden-size", type=int, default=256, help="LLaMA width (tiny: 256)")
    parser.add_argument("--layers", type=int, default=4, help="LLaMA blocks (tiny: 4)")
    args = parser.parse_args()
    device, dtype = torch.device(args.device), getattr(torch, args.dtype)
    torch.manual_seed(0)
    rng = random.Random(0)
    world = Path(args.world)
    if world.joinpath("world.json").is_file():
        doc_lens, cap_lens = world_lengths(world)
        source = str(world)
    else:
        doc_lens = [max(4, int(rng.gauss(60, 25))) for _ in range(1000)]
        cap_lens = [max(3, int(rng.gauss(14, 5))) for _ in range(1000)]
        source = "synthetic lengths (no world found)"
    vocab = UnifiedVocab(text_size=1024, codebook_size=1024)
    if args.hidden_size % 64:
        parser.error(f"--hidden-size must be a multiple of 64 (heads of 64), got {args.hidden_size}")
    heads = args.hidden_size // 64
    shape = LlamaShape(hidden_size=args.hidden_size, num_layers=args.layers, num_heads=heads, num_kv_heads=heads,
                       intermediate_size=int(args.hidden_size * 2.75), max_positions=args.context)
    lm = UnifiedLM(build_random_llama(shape, vocab.size, attn_implementation=PACKED_SDPA), vocab, visual_dim=64).to(device)
    dim = 64
    n_pairs = max(1, args.docs_per_step // 3)
    dynamic = round(args.patches * 94 / 256)  # the paper's mean keep ratio: 94 of 256
    docs = make_documents(vocab, doc_lens, cap_lens, n_pairs,
                          lambda: max(1, int(rng.gauss(dynamic, dynamic / 3))), rng, args.context)
    tokens = sum(len(d) for d in docs)
    print(f"# {len(docs)} documents per step, {tokens} tokens; lengths from {source}; LLaMA {args.layers} x "
          f"{args.hidden_size} on {device}, {args.dtype}")
    balanced, greedy = pack_examples(docs, args.context), pack_examples(docs, args.context, balance=False)
    print(f"# packed rows: balanced {tuple(balanced.input_ids.shape)}, first-fit {tuple(greedy.input_ids.shape)}")
    t_packed = seconds(lambda: packed_step(lm, docs, args.context, dim), args.steps, device, dtype)
    t_padded = seconds(lambda: padded_step(lm, docs, dim), args.steps, device, dtype)  # masked batch: plain SDPA
    lm.llm.set_attn_implementation("sdpa")
    t_mask = seconds(lambda: packed_step(lm, docs, args.context, dim, balance=False), args.steps, device, dtype)
    lm.llm.set_attn_implementation(PACKED_SDPA)
    print(f"packed: {tokens / t_packed:,.0f} non-padding tokens/s; padded: {tokens / t_padded:,.0f}; "
          f"first-fit rows + block-diagonal sdpa mask: {tokens / t_mask:,.0f}")
    print(f"first-fit rows + sdpa mask vs padded-to-longest (non-padding tokens/s): {t_padded / t_mask:.1f}x")
    print(f"stage-2 packed vs padded-to-longest (non-padding tokens/s): {t_padded / t_packed:.1f}x")

    batch = args.docs_per_step
    caption = [vocab.bos_id] * 14
    dyn = [image_to_text_example(vocab, caption, num_features=dynamic) for _ in range(batch)]
    fixed = [image_to_text_example(vocab, caption, num_features=args.patches) for _ in range(batch)]
    t_dyn = seconds(lambda: packed_step(lm, dyn, args.context, dim), args.steps, device, dtype)
    t_fix = seconds(lambda: packed_step(lm, fixed, args.context, dim), args.steps, device, dtype)
    print(f"dynamic ({dynamic}) vs fixed ({args.patches}) visual tokens, {batch} samples/step: "
          f"{batch / t_dyn:.1f} vs {batch / t_fix:.1f} samples/s: {t_fix / t_dyn:.1f}x")


if __name__ == "__main__":
    main()
