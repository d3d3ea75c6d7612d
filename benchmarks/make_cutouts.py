"""Make the real cut-outs' masks from their hand-placed seeds, and an overlay sheet to check them by eye.

Reads ``src/xmem/data/real/cutouts.json`` (a box and strokes of sure foreground / background per cut-out,
see :mod:`xmem.data.cutouts`), runs OpenCV's GrabCut on the source photograph (inside the box: probable
foreground; outside it, and under background strokes: background; under foreground strokes: foreground),
keeps the largest connected parts that touch a foreground stroke, and writes the box-sized 1-bit mask to
``src/xmem/data/real/cutouts/<name>.png``. The sheet shows each cut-out's box with the mask tinted, its
outline, and the strokes (green: foreground, red: background). Fix a wrong mask by adding strokes and
running again.

    python benchmarks/install_real_photos.py       # the photographs first
    python benchmarks/make_cutouts.py --sheet out/cutouts.png [--only NAME ...]
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import cv2
import numpy as np
from PIL import Image, ImageDraw

from xmem.data.cutouts import Cutout, cutouts, load_source, mask_path
from xmem.io.atomic import atomic_write


def _draw_strokes(target: np.ndarray, strokes, value: int, width: int, offset=(0, 0)) -> None:
    for stroke in strokes:
        pts = np.array([(x - offset[0], y - offset[1]) for x, y in stroke], dtype=np.int32)
        if len(pts) == 1:
            cv2.circle(target, tuple(int(v) for v in pts[0]), max(1, width // 2), value, -1)
        else:
            cv2.polylines(target, [pts], False, value, width)


def grabcut(image: np.ndarray, cutout: Cutout, iterations: int = 6) -> np.ndarray:
    """The box-sized bool mask of ``cutout`` on ``image`` (H×W×3 uint8 RGB)."""
    h, w = image.shape[:2]
    x0, y0, x1, y1 = cutout.box
    margin = max(8, (x1 - x0 + y1 - y0) // 8)
    cx0, cy0, cx1, cy1 = max(0, x0 - margin), max(0, y0 - margin), min(w, x1 + margin), min(h, y1 + margin)
    crop = np.ascontiguousarray(image[cy0:cy1, cx0:cx1, ::-1])  # BGR for OpenCV
    labels = np.full(crop.shape[:2], cv2.GC_BGD, np.uint8)
    labels[y0 - cy0 : y1 - cy0, x0 - cx0 : x1 - cx0] = cv2.GC_PR_FGD
    _draw_strokes(labels, cutout.background, cv2.GC_BGD, cutout.stroke_width, (cx0, cy0))
    _draw_strokes(labels, cutout.foreground, cv2.GC_FGD, cutout.stroke_width, (cx0, cy0))
    bgd, fgd = np.zeros((1, 65), np.float64), np.zeros((1, 65), np.float64)
    cv2.grabCut(crop, labels, None, bgd, fgd, iterations, cv2.GC_INIT_WITH_MASK)
    mask = (labels == cv2.GC_FGD) | (labels == cv2.GC_PR_FGD)
    mask = mask[y0 - cy0 : y1 - cy0, x0 - cx0 : x1 - cx0]
    # keep the connected parts that hold a foreground stroke, fill their holes
    _, parts = cv2.connectedComponents(mask.astype(np.uint8), connectivity=8)
    sure = np.zeros_like(mask, dtype=np.uint8)
    _draw_strokes(sure, cutout.foreground, 1, cutout.stroke_width, (x0, y0))
    keep = np.unique(parts[(sure > 0) & mask])
    mask = np.isin(parts, keep[keep > 0])
    contours, _ = cv2.findContours(mask.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
    filled = np.zeros(mask.shape, np.uint8)
    cv2.drawContours(filled, contours, -1, 1, -1)
    return filled > 0


def overlay(image: np.ndarray, cutout: Cutout, mask: np.ndarray, tile: int) -> Image.Image:
    x0, y0, x1, y1 = cutout.box
    crop = image[y0:y1, x0:x1].astype(np.float32)
    tinted = np.where(mask[..., None], 0.6 * crop + 0.4 * np.array([255, 0, 255]), 0.5 * crop)
    out = tinted.clip(0, 255).astype(np.uint8)
    contours, _ = cv2.findContours(mask.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
    cv2.drawContours(out, contours, -1, (255, 255, 0), 1)
    _draw_strokes(out, cutout.foreground, (0, 255, 0), 2, (x0, y0))
    _draw_strokes(out, cutout.background, (255, 0, 0), 2, (x0, y0))
    img = Image.fromarray(out)
    img.thumbnail((tile, tile))
    card = Image.new("RGB", (tile, tile + 14), (255, 255, 255))
    card.paste(img, (0, 14))
    ImageDraw.Draw(card).text((2, 1), f"{cutout.name} ({cutout.kind.value})", fill=(0, 0, 0))
    return card


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", nargs="*", help="cut-out names (default: all)")
    parser.add_argument("--sheet", type=Path, help="write the overlay sheet here (PNG)")
    parser.add_argument("--tile", type=int, default=220)
    parser.add_argument("--check", action="store_true", help="draw the committed masks; run no GrabCut")
    args = parser.parse_args()
    chosen = [c for c in cutouts() if not args.only or c.name in args.only]
    if args.only and len(chosen) != len(set(args.only)):
        raise SystemExit(f"unknown cut-out names: {sorted(set(args.only) - {c.name for c in chosen})}")
    cards = []
    for c in chosen:
        image = np.asarray(load_source(c.photo))
        if (image.shape[1], image.shape[0]) != c.size:
            raise SystemExit(f"{c.name}: {c.photo} reads as {image.shape[1::-1]}, the seeds are for {c.size}")
        if args.check:
            with Image.open(mask_path(c)) as img:
                mask = np.array(img.convert("L")) > 127
        else:
            mask = grabcut(image, c)
            with atomic_write(mask_path(c)) as f:
                Image.fromarray(mask).convert("1").save(f, format="PNG", optimize=True)
        box_area = (c.box[2] - c.box[0]) * (c.box[3] - c.box[1])
        print(f"{c.name}: {mask.sum() / box_area:.0%} of its box")
        cards.append(overlay(image, c, mask, args.tile))
    if args.sheet is not None and cards:
        cols = min(6, len(cards))
        rows = math.ceil(len(cards) / cols)
        sheet = Image.new("RGB", (cols * args.tile, rows * (args.tile + 14)), (255, 255, 255))
        for i, card in enumerate(cards):
            sheet.paste(card, ((i % cols) * args.tile, (i // cols) * (args.tile + 14)))
        args.sheet.parent.mkdir(parents=True, exist_ok=True)
        sheet.save(args.sheet)
    return 0


if __name__ == "__main__":
    sys.exit(main())
