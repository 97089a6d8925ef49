"""Token merger: batched paths vs a per-image Python loop, side by side in one process.

For each width (the paper's 1408 with 16 heads and MLP 6144, and a tiny one) the same inputs
(B images of N patch features, keep masks ~ Bernoulli(1/3), >= 1 kept) go through
- the masked training path (``TokenMerger.forward``: all N positions, policy-weighted SDPA),
- the gathered padded inference path (``TokenMerger.forward_padded``: kept/dropped tokens packed),
- a Python loop running the inference path on one image at a time (no padding, B calls),
forward only under ``torch.no_grad`` in eval mode, after one warm-up call each; the median of
``--repeats`` (tiny) / ``--paper-repeats`` (paper width) timed calls is reported. The paper width runs ``--paper-depth`` blocks (default 1 of
the paper's 12: per-block cost is identical, so the ratios carry over). Output lines end with the
speed-up of each batched path over the loop, e.g. ``merger inference-padded vs loop (tiny): 2.3x``.

    python benchmarks/merger_parallel.py            # B=64, N=256 on CPU (a few minutes on 2 cores)
    python benchmarks/merger_parallel.py --quick    # B=16, for a smoke run
    python benchmarks/merger_parallel.py --device cuda --paper-depth 12 [--dtype bfloat16]
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this checkout's lavit_pl, run as a script
from lavit_pl.models.tokenizer.merger import TokenMerger, TokenMergerConfig


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _time(fn, repeats: int, device: torch.device):
    """(median seconds of ``repeats`` calls after one warm-up call, the warm-up call's output)."""
    out = fn()
    _sync(device)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        _sync(device)
        times.append(time.perf_counter() - start)
    return statistics.median(times), out


def make_inputs(batch: int, patches: int, width: int, device: torch.device, dtype: torch.dtype = torch.float32,
                seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, patches, width, generator=g)
    keep = torch.rand(batch, patches, generator=g) < 1.0 / 3.0
    keep[:, 0] |= ~keep.any(dim=1)  # at least one kept token per image
    return x.to(device, dtype), keep.to(device)


def run_width(label: str, cfg: TokenMergerConfig, batch: int, patches: int, repeats: int, device: torch.device,
              dtype: torch.dtype = torch.float32) -> None:
    torch.manual_seed(0)
    merger = TokenMerger(cfg).to(device, dtype).eval()
    x, keep = make_inputs(batch, patches, cfg.width, device, dtype)

    def masked():
        return merger(x, keep)

    def padded():
        return merger.forward_padded(x, keep)

    def loop():
        return [merger.forward_padded(x[b : b + 1], keep[b : b + 1])[0] for b in range(batch)]

    with torch.no_grad():
        t_masked, out_masked = _time(masked, repeats, device)
        t_padded, (ref, valid) = _time(padded, repeats, device)
        t_loop, out_loop = _time(loop, repeats, device)
        # Same numbers from all three paths (rounding of the dtype only).
        diff_masked = (out_masked[keep] - ref[valid]).abs().max().item()
        diff_loop = max((o[0] - ref[b][valid[b]]).abs().max().item() for b, o in enumerate(out_loop))
    kept = keep.sum(dim=1).float()
    print(f"# {label}: {str(dtype).removeprefix('torch.')} B={batch} N={patches} D={cfg.width} heads={cfg.num_heads} mlp={cfg.mlp_dim} blocks={cfg.depth} "
          f"kept/image mean={kept.mean():.1f} max={kept.max():.0f}; max |diff| vs padded: masked {diff_masked:.1e}, loop {diff_loop:.1e}")
    print(f"# {label}: seconds per call: masked {t_masked:.3f}, padded {t_padded:.3f}, loop {t_loop:.3f}")
    print(f"merger masked-training vs loop ({label}): {t_loop / t_masked:.2f}x")
    print(f"merger inference-padded vs loop ({label}): {t_loop / t_padded:.2f}x")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu", help="cpu or cuda[:i]")
    parser.add_argument("--dtype", default="float32", choices=("float32", "bfloat16"),
                        help="weights and inputs (bfloat16: what a bf16 GPU run computes in)")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--patches", type=int, default=256)
    parser.add_argument("--paper-depth", type=int, default=1, help="blocks at paper width (paper: 12)")
    parser.add_argument("--tiny-width", type=int, default=128)
    parser.add_argument("--tiny-depth", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3, help="timed calls per path at the tiny width")
    parser.add_argument("--paper-repeats", type=int, default=1, help="timed calls per path at paper width")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch default)")
    parser.add_argument("--skip-paper", action="store_true", help="tiny width only")
    parser.add_argument("--quick", action="store_true", help="B=16, one repeat: a smoke run")
    args = parser.parse_args(argv)
    if args.quick:
        args.batch, args.repeats, args.paper_repeats = 16, 1, 1
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    print(f"# torch {torch.__version__}, device {device}, CPU threads {torch.get_num_threads()}")
    tiny = TokenMergerConfig(width=args.tiny_width, depth=args.tiny_depth, num_heads=4, mlp_dim=4 * args.tiny_width)
    dtype = getattr(torch, args.dtype)
    run_width("tiny", tiny, args.batch, args.patches, args.repeats, device, dtype)
    if not args.skip_paper:
        paper = TokenMergerConfig(width=1408, depth=args.paper_depth, num_heads=16, mlp_dim=6144)
        run_width("paper width", paper, args.batch, args.patches, args.paper_repeats, device, dtype)


if __name__ == "__main__":
    main()
