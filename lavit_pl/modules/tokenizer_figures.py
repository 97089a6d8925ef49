"""Figures of a trained tokenizer (like the paper's Figure 5), drawn with PIL from plain tensors.

- :func:`draw_kept_patches`: validation images with the dropped patches dimmed.
- :func:`draw_code_groups`: for a few frequent codes, a row of image patches assigned to that code.
- :func:`draw_token_histogram` / :func:`token_histogram_csv`: tokens kept per image, overall and
  per complexity level.

Images are (I, 3, H, W) float in [0, 1]; ``keep`` (I, N) bool and ``codes`` (I, N) long in raster
order over a square grid of N patches.
"""
from __future__ import annotations

import math
from typing import Optional, Sequence

import torch
from PIL import Image, ImageDraw, ImageFont
from torch import Tensor

BACKGROUND = (255, 255, 255)
INK = (20, 20, 20)
BAR_COLOURS = [(70, 110, 180), (220, 120, 40), (60, 160, 90), (190, 60, 70), (130, 90, 170), (120, 120, 120)]


def _font(size: int = 12) -> ImageFont.ImageFont:
    return ImageFont.load_default(size=size)


def _grid(n: int) -> int:
    g = math.isqrt(n)
    if g * g != n:
        raise ValueError(f"figures need a square patch grid, got N = {n}")
    return g


def _to_pil(image: Tensor, scale: int) -> Image.Image:
    """(3, H, W) in [0, 1] -> PIL RGB upscaled ``scale`` times (nearest: patches stay sharp)."""
    arr = (image.clamp(0, 1) * 255).round().to(torch.uint8).permute(1, 2, 0).contiguous().numpy()
    pil = Image.fromarray(arr, "RGB")
    return pil.resize((pil.width * scale, pil.height * scale), Image.NEAREST)


def dim_dropped(image: Tensor, keep: Tensor, dim: float = 0.25) -> Tensor:
    """image (3, H, W) in [0, 1], keep (N,) bool -> image whose dropped patches are blended towards
    black: ``dim * x`` (kept patches unchanged)."""
    g = _grid(keep.numel())
    ph, pw = image.shape[1] // g, image.shape[2] // g
    mask = keep.view(g, g).float().repeat_interleave(ph, 0).repeat_interleave(pw, 1)  # (H, W)
    return image * (mask + (1.0 - mask) * dim)


def draw_kept_patches(images: Tensor, keep: Tensor, labels: Sequence[str], scale: int = 4, columns: int = 4) -> Image.Image:
    """A grid of images with dropped patches dimmed and a label above each."""
    count = images.shape[0]
    if count == 0:
        raise ValueError("draw_kept_patches: no images")
    columns = min(columns, count)
    rows = math.ceil(count / columns)
    w, h = images.shape[3] * scale, images.shape[2] * scale
    pad, label_h = 8, 18
    canvas = Image.new("RGB", (columns * (w + pad) + pad, rows * (h + pad + label_h) + pad), BACKGROUND)
    draw, font = ImageDraw.Draw(canvas), _font()
    for i in range(count):
        x = pad + (i % columns) * (w + pad)
        y = pad + (i // columns) * (h + pad + label_h)
        draw.text((x, y), labels[i], fill=INK, font=font)
        canvas.paste(_to_pil(dim_dropped(images[i], keep[i]), scale), (x, y + label_h))
    return canvas


def patch_at(image: Tensor, index: int, grid: int) -> Tensor:
    """(3, H, W) -> patch ``index`` in raster order, (3, H/grid, W/grid)."""
    ph, pw = image.shape[1] // grid, image.shape[2] // grid
    r, c = divmod(index, grid)
    return image[:, r * ph : (r + 1) * ph, c * pw : (c + 1) * pw]


def frequent_codes(keep: Tensor, codes: Tensor, count: int) -> list[tuple[int, int]]:
    """The ``count`` most frequent codes among kept tokens: [(code, occurrences)], most frequent first."""
    hist = torch.bincount(codes[keep], minlength=int(codes.max()) + 1 if codes.numel() else 1)
    top = torch.argsort(hist, descending=True, stable=True)[:count]
    return [(int(c), int(hist[c])) for c in top if hist[c] > 0]


def draw_code_groups(images: Tensor, keep: Tensor, codes: Tensor, num_codes: int = 8, per_code: int = 12, scale: int = 4) -> Image.Image:
    """One row per frequent code: its label, then up to ``per_code`` kept patches assigned to it,
    taken from distinct images first (then any) in dataset order."""
    g = _grid(keep.shape[1])
    groups = frequent_codes(keep, codes, num_codes)
    if not groups:
        raise ValueError("draw_code_groups: no kept tokens")
    ph, pw = images.shape[2] // g * scale, images.shape[3] // g * scale
    pad, label_w = 4, 120
    canvas = Image.new("RGB", (label_w + per_code * (pw + pad) + pad, len(groups) * (ph + pad) + pad), BACKGROUND)
    draw, font = ImageDraw.Draw(canvas), _font()
    for row, (code, n) in enumerate(groups):
        y = pad + row * (ph + pad)
        draw.text((pad, y + ph // 2 - 6), f"code {code} (n={n})", fill=INK, font=font)
        where = ((codes == code) & keep).nonzero().tolist()  # [(image, patch)] in dataset order
        seen: set[int] = set()
        first = [p for p in where if not (p[0] in seen or seen.add(p[0]))]
        chosen = (first + [p for p in where if p not in first])[:per_code]
        for col, (img, idx) in enumerate(chosen):
            canvas.paste(_to_pil(patch_at(images[img], idx, g), scale), (label_w + col * (pw + pad), y))
    return canvas


def token_histogram(tokens: Tensor, num_patches: int) -> Tensor:
    """tokens (I,) -> counts (num_patches + 1,) of images keeping 0..N tokens."""
    return torch.bincount(tokens.long(), minlength=num_patches + 1)[: num_patches + 1]


def _groups(tokens: Tensor, complexity: Optional[Tensor]) -> list[tuple[str, Tensor]]:
    groups = [("all", tokens)]
    if complexity is not None:
        for level in sorted({int(c) for c in complexity.tolist()}):
            groups.append((f"complexity {level}", tokens[complexity.long() == level]))
    return groups


def token_histogram_csv(tokens: Tensor, complexity: Optional[Tensor], num_patches: int) -> str:
    """CSV: ``tokens,all[,complexity_<c>...]``, one row per token count 0..N."""
    groups = _groups(tokens, complexity)
    hists = [token_histogram(t, num_patches) for _, t in groups]
    header = ["tokens"] + [name.replace(" ", "_") for name, _ in groups]
    lines = [",".join(header)]
    for t in range(num_patches + 1):
        lines.append(",".join([str(t)] + [str(int(h[t])) for h in hists]))
    return "\n".join(lines) + "\n"


def draw_token_histogram(tokens: Tensor, complexity: Optional[Tensor], num_patches: int, rho: Optional[float] = None) -> Image.Image:
    """One bar chart per group (all images, then each complexity level), shared x axis 0..N; a
    vertical line marks rho * N and each panel's mean."""
    groups = _groups(tokens, complexity)
    bar_w, panel_h, left, pad = max(2, 480 // (num_patches + 1)), 90, 110, 10
    width = left + bar_w * (num_patches + 1) + pad
    canvas = Image.new("RGB", (width, len(groups) * (panel_h + pad) + pad + 16), BACKGROUND)
    draw, font = ImageDraw.Draw(canvas), _font(11)
    for row, (name, t) in enumerate(groups):
        top = pad + row * (panel_h + pad)
        base = top + panel_h
        hist = token_histogram(t, num_patches).float()
        peak = float(hist.max()) if hist.numel() and hist.max() > 0 else 1.0
        mean = float(t.double().mean()) if t.numel() else float("nan")
        draw.text((pad, top + 4), name, fill=INK, font=font)
        draw.text((pad, top + 20), f"n={t.numel()}", fill=INK, font=font)
        draw.text((pad, top + 36), f"mean={mean:.1f}", fill=INK, font=font)
        colour = BAR_COLOURS[row % len(BAR_COLOURS)]
        for k in range(num_patches + 1):
            hgt = int(round(float(hist[k]) / peak * (panel_h - 4)))
            if hgt:
                x = left + k * bar_w
                draw.rectangle([x, base - hgt, x + bar_w - 1, base], fill=colour)
        draw.line([left, base, width - pad, base], fill=INK)
        if rho is not None:
            xr = left + int(rho * num_patches * bar_w + bar_w / 2)
            draw.line([xr, top, xr, base], fill=(200, 0, 0))
        if not math.isnan(mean):
            xm = left + int(mean * bar_w + bar_w / 2)
            draw.line([xm, top + panel_h // 3, xm, base], fill=INK, width=2)
    axis_y = len(groups) * (panel_h + pad) + pad
    for k in range(0, num_patches + 1, max(1, num_patches // 8)):
        draw.text((left + k * bar_w, axis_y), str(k), fill=INK, font=font)
    return canvas
