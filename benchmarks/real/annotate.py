"""Masks of the real benchmark from hand-placed seeds: GrabCut (OpenCV) in each object's box, steered by
foreground and background strokes, and contact sheets of the result for checking by eye.

    python benchmarks/real/annotate.py --clip cup --grid /tmp/cup-grid.png    # frames with a pixel grid
    python benchmarks/real/annotate.py --clip cup --sheet /tmp/cup-check.png  # masks from the seeds + overlays
    python benchmarks/real/annotate.py --all                                  # every clip's masks again

A clip's seeds (``<clip>/seeds.json``) hold, per key frame (local index) and object id, an entry:

- ``box``: ``[x0, y0, x1, y1]`` (pixels, inclusive) around the object; GrabCut models the inside as probable
  foreground and everything outside as background. On an annotated frame without an entry of its own the
  box is interpolated linearly between the object's nearest key frames before and after (held after the
  last one);
- ``fg`` / ``bg``: strokes, each a list of ``[x, y]`` points drawn as a polyline of radius ``r`` (default 3),
  that are certainly the object / certainly not;
- ``poly``: polygons that are certainly the object (filled), given to GrabCut as seeds;
- ``add``: polygons added to GrabCut's result without steering it (for parts whose colours are the
  background's, such as dark hair on a dark wall);
- ``only_poly``: the mask is the union of ``poly``, no GrabCut (for what GrabCut cannot separate);
- ``absent``: the object is hidden or out of the frame (also on the frames after, until the next entry).

Per object (``options``): ``bg``, background strokes on every frame (for background that does not move);
``core``, a fraction: an ellipse of that fraction of the box's size at its centre is certainly the object
(for small compact objects); ``keep`` (``seeded``: the connected parts that touch a foreground seed, or the
largest part when there is none; ``all``: every part), ``fill`` (fill holes). Objects are painted in id
order, a later one over an earlier one, unless the file gives an ``order`` (front-most last). The resolved
seeds of every annotated frame are written next to the masks (``seeds-resolved.json``) so that each mask's
seeds can be read without the interpolation rule.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

sys.path.insert(0, str(Path(__file__).resolve().parent))

from realclips import (
    DEFAULT_CACHE,
    Clip,
    ClipError,
    annotation_path,
    clip_frames,
    load_manifest,
    seeds_path,
    select,
)

from xmem.io.atomic import atomic_write
from xmem.io.masks import write_index_mask

GC_ITERATIONS = 5


@dataclass
class ObjectSeeds:
    """The seeds of one object on one frame (see the module's docstring)."""

    box: tuple[int, int, int, int] | None = None
    fg: list[list[tuple[int, int]]] = field(default_factory=list)
    bg: list[list[tuple[int, int]]] = field(default_factory=list)
    poly: list[list[tuple[int, int]]] = field(default_factory=list)
    add: list[list[tuple[int, int]]] = field(default_factory=list)
    r: int = 3
    only_poly: bool = False
    absent: bool = False
    keep: str = "seeded"
    fill: bool = False
    core: float = 0.0

    def to_json(self) -> dict:
        if self.absent:
            return {"absent": True}
        out: dict = {"box": list(self.box) if self.box else None}
        for key in ("fg", "bg", "poly", "add"):
            if getattr(self, key):
                out[key] = [[list(p) for p in s] for s in getattr(self, key)]
        if self.only_poly:
            out["only_poly"] = True
        out.update(r=self.r, keep=self.keep, fill=self.fill)
        if self.core:
            out["core"] = self.core
        return out


def _cv2():
    import cv2

    return cv2


def _draw_strokes(canvas: np.ndarray, strokes, radius: int, value: int, offset=(0, 0)) -> None:
    cv2 = _cv2()
    ox, oy = offset
    for stroke in strokes:
        pts = np.array([[x - ox, y - oy] for x, y in stroke], dtype=np.int32)
        if len(pts) == 1:
            cv2.circle(canvas, tuple(int(v) for v in pts[0]), radius, value, -1)
        else:
            cv2.polylines(canvas, [pts], False, value, thickness=2 * radius + 1)


def _fill_polys(canvas: np.ndarray, polys, value: int, offset=(0, 0)) -> None:
    cv2 = _cv2()
    ox, oy = offset
    for poly in polys:
        pts = np.array([[x - ox, y - oy] for x, y in poly], dtype=np.int32)
        cv2.fillPoly(canvas, [pts], value)


def object_mask(image: np.ndarray, seeds: ObjectSeeds) -> np.ndarray:
    """The H×W bool mask of one object on ``image`` (H×W×3 uint8 RGB) from its ``seeds``."""
    cv2 = _cv2()
    h, w = image.shape[:2]
    out = np.zeros((h, w), dtype=bool)
    if seeds.absent:
        return out
    if seeds.only_poly:
        canvas = np.zeros((h, w), dtype=np.uint8)
        _fill_polys(canvas, seeds.poly, 1)
        return canvas.astype(bool)
    if seeds.box is None:
        raise ValueError("an object's seeds need a box (or only_poly)")
    x0, y0, x1, y1 = (round(v) for v in seeds.box)
    x0, x1 = sorted((max(0, min(w - 1, x0)), max(0, min(w - 1, x1))))
    y0, y1 = sorted((max(0, min(h - 1, y0)), max(0, min(h - 1, y1))))
    # work on a crop around the box: GrabCut's colour models stay local, and large frames stay fast
    mx, my = max(16, (x1 - x0) // 3), max(16, (y1 - y0) // 3)
    cx0, cy0, cx1, cy1 = max(0, x0 - mx), max(0, y0 - my), min(w, x1 + mx + 1), min(h, y1 + my + 1)
    crop = np.ascontiguousarray(image[cy0:cy1, cx0:cx1, ::-1])  # BGR for OpenCV
    gc = np.full(crop.shape[:2], cv2.GC_BGD, dtype=np.uint8)
    gc[y0 - cy0 : y1 - cy0 + 1, x0 - cx0 : x1 - cx0 + 1] = cv2.GC_PR_FGD
    offset = (cx0, cy0)
    _draw_strokes(gc, seeds.bg, seeds.r, cv2.GC_BGD, offset)
    _fill_polys(gc, seeds.poly, cv2.GC_FGD, offset)
    _draw_strokes(gc, seeds.fg, seeds.r, cv2.GC_FGD, offset)
    if seeds.core > 0:  # an ellipse at the box's centre, certainly the object
        centre = ((x0 + x1) // 2 - cx0, (y0 + y1) // 2 - cy0)
        axes = (max(1, int(seeds.core * (x1 - x0) / 2)), max(1, int(seeds.core * (y1 - y0) / 2)))
        cv2.ellipse(gc, centre, axes, 0, 0, 360, int(cv2.GC_FGD), -1)
    has_bg = (gc == cv2.GC_BGD).any()
    if has_bg and (gc != cv2.GC_BGD).any():
        bgd, fgd = np.zeros((1, 65), np.float64), np.zeros((1, 65), np.float64)
        cv2.grabCut(crop, gc, None, bgd, fgd, GC_ITERATIONS, cv2.GC_INIT_WITH_MASK)
    fg = (gc == cv2.GC_FGD) | (gc == cv2.GC_PR_FGD)
    fg = _keep_parts(fg, seeds, offset)
    if seeds.fill:
        fg = _fill_holes(fg)
    out[cy0:cy1, cx0:cx1] = fg
    if seeds.add:
        extra = np.zeros((h, w), dtype=np.uint8)
        _fill_polys(extra, seeds.add, 1)
        out |= extra.astype(bool)
    return out


def _keep_parts(fg: np.ndarray, seeds: ObjectSeeds, offset) -> np.ndarray:
    cv2 = _cv2()
    if seeds.keep == "all" or not fg.any():
        return fg
    count, labels = cv2.connectedComponents(fg.astype(np.uint8), connectivity=8)
    marks = np.zeros(fg.shape, dtype=np.uint8)
    _draw_strokes(marks, seeds.fg, seeds.r, 1, offset)
    _fill_polys(marks, seeds.poly, 1, offset)
    if seeds.core > 0 and seeds.box is not None:
        x0, y0, x1, y1 = seeds.box
        marks[max(0, (y0 + y1) // 2 - offset[1]), max(0, (x0 + x1) // 2 - offset[0])] = 1
    touched = {int(v) for v in np.unique(labels[(marks > 0) & fg])} - {0}
    if not touched:
        sizes = np.bincount(labels.ravel(), minlength=count)
        sizes[0] = 0
        touched = {int(np.argmax(sizes))}
    return np.isin(labels, sorted(touched))


def _fill_holes(mask: np.ndarray) -> np.ndarray:
    from scipy.ndimage import binary_fill_holes

    return binary_fill_holes(mask)


def seeds_to_mask(
    image: np.ndarray, objects: dict[int, ObjectSeeds], order: list[int] | None = None
) -> np.ndarray:
    """The H×W uint8 index mask of ``image`` from each object's seeds; objects painted in ``order`` (default:
    id order), each over the ones before."""
    mask = np.zeros(image.shape[:2], dtype=np.uint8)
    for obj_id in order or sorted(objects):
        mask[object_mask(image, objects[obj_id])] = obj_id
    return mask


def _entry(raw: dict) -> ObjectSeeds:
    def pts(strokes):
        return [[(int(x), int(y)) for x, y in s] for s in strokes]

    return ObjectSeeds(
        box=tuple(raw["box"]) if raw.get("box") else None,
        fg=pts(raw.get("fg", [])),
        bg=pts(raw.get("bg", [])),
        poly=pts(raw.get("poly", [])),
        add=pts(raw.get("add", [])),
        r=int(raw.get("r", 3)),
        only_poly=bool(raw.get("only_poly", False)),
        absent=bool(raw.get("absent", False)),
    )


def resolve_seeds(seeds: dict, frame: int, object_ids: list[int]) -> dict[int, ObjectSeeds]:
    """Each object's seeds on local ``frame`` from a clip's seeds file contents (the interpolation rule
    of the module's docstring). An object with no key frame at or before ``frame`` is absent."""
    keyframes = {int(k): v for k, v in seeds["frames"].items()}
    options = {int(k): v for k, v in seeds.get("options", {}).items()}
    resolved = {}
    for obj in object_ids:
        keys = sorted(f for f, entries in keyframes.items() if str(obj) in entries)
        before = [f for f in keys if f <= frame]
        if not before:
            resolved[obj] = ObjectSeeds(absent=True)
            continue
        raw = keyframes[before[-1]][str(obj)]
        if before[-1] == frame:
            entry = _entry(raw)
            if entry.box is None and not entry.absent and not entry.only_poly:
                entry.box = _interpolated_box(keyframes, obj, frame, keys)
        else:
            entry = ObjectSeeds(absent=bool(raw.get("absent", False)))
            if not entry.absent:
                if raw.get("only_poly"):
                    raise ValueError(f"object {obj}: frame {frame} has no entry after an only_poly key frame")
                entry.box = _interpolated_box(keyframes, obj, frame, keys)
        opts = options.get(obj, {})
        entry.keep = opts.get("keep", "seeded")
        entry.fill = bool(opts.get("fill", False))
        if not entry.absent:
            entry.core = float(opts.get("core", 0.0))
            entry.bg = entry.bg + [[(int(x), int(y)) for x, y in s] for s in opts.get("bg", [])]
        resolved[obj] = entry
    return resolved


def _interpolated_box(keyframes: dict, obj: int, frame: int, keys: list[int]) -> tuple[int, ...]:
    with_box = [f for f in keys if keyframes[f][str(obj)].get("box")]
    before = [f for f in with_box if f <= frame]
    after = [f for f in with_box if f >= frame]
    if not before:
        raise ValueError(f"object {obj}: no box at or before frame {frame}")
    a = before[-1]
    box_a = np.array(keyframes[a][str(obj)]["box"], dtype=float)
    if not after or keyframes[after[0]][str(obj)].get("absent"):
        return tuple(int(v) for v in box_a)
    b = after[0]
    if b == a:
        return tuple(int(v) for v in box_a)
    box_b = np.array(keyframes[b][str(obj)]["box"], dtype=float)
    t = (frame - a) / (b - a)
    return tuple(round(v) for v in (1 - t) * box_a + t * box_b)


# ----------------------------------------------------------------------------------------------- pictures


def _palette_colour(k: int) -> tuple[int, int, int]:
    from xmem.io.masks import _davis_palette

    return tuple(int(v) for v in _davis_palette()[k])


def overlay_tile(frame: np.ndarray, mask: np.ndarray, seeds: dict[int, ObjectSeeds] | None, label: str):
    """The frame with each object tinted and outlined, its box and strokes drawn (a PIL image)."""
    from xmem.io.overlay import overlay_frame

    image = Image.fromarray(overlay_frame(frame, mask, alpha=0.45))
    draw = ImageDraw.Draw(image)
    for k, s in (seeds or {}).items():
        colour = _palette_colour(k)
        if s.box is not None and not s.absent:
            draw.rectangle(s.box, outline=colour, width=1)
        for stroke in s.fg:
            draw.line(
                [tuple(p) for p in stroke] * (1 if len(stroke) > 1 else 2), fill=(255, 255, 255), width=2
            )
        for stroke in s.bg:
            draw.line([tuple(p) for p in stroke] * (1 if len(stroke) > 1 else 2), fill=(0, 0, 0), width=2)
    draw.text((4, 4), label, fill=(255, 255, 0))
    return image


def grid_tile(frame: np.ndarray, label: str, step: int = 50):
    """The frame with a labelled pixel grid every ``step`` pixels (for placing seeds)."""
    image = Image.fromarray(frame)
    draw = ImageDraw.Draw(image)
    h, w = frame.shape[:2]
    for x in range(0, w, step):
        draw.line([(x, 0), (x, h)], fill=(255, 0, 255) if x % (2 * step) == 0 else (0, 255, 255), width=1)
        draw.text((x + 2, 2), str(x), fill=(255, 255, 0))
    for y in range(0, h, step):
        draw.line([(0, y), (w, y)], fill=(255, 0, 255) if y % (2 * step) == 0 else (0, 255, 255), width=1)
        draw.text((2, y + 2), str(y), fill=(255, 255, 0))
    draw.text((w - 60, h - 14), label, fill=(255, 255, 0))
    return image


def contact_sheet(tiles: list, path: Path, width: int = 480, columns: int = 3) -> None:
    if not tiles:
        return
    scale = width / tiles[0].width
    size = (width, round(tiles[0].height * scale))
    rows = (len(tiles) + columns - 1) // columns
    sheet = Image.new("RGB", (size[0] * columns, size[1] * rows), "white")
    for k, tile in enumerate(tiles):
        sheet.paste(tile.resize(size, Image.BILINEAR), ((k % columns) * size[0], (k // columns) * size[1]))
    with atomic_write(path) as out:
        sheet.save(out, format="PNG")


# ----------------------------------------------------------------------------------------------- command


def annotate_clip(clip: Clip, cache: Path, sheet: Path | None, frames: list[int] | None, write: bool) -> None:
    path = seeds_path(clip)
    try:
        seeds = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise ClipError(f"{path}: cannot read the seeds: {exc}") from None
    ids = [o.id for o in clip.objects]
    wanted = set(frames) if frames else set(clip.annotated)
    tiles, resolved_all = [], {}
    for local, frame in enumerate(clip_frames(clip, cache)):
        if local not in clip.annotated:
            continue
        try:
            resolved = resolve_seeds(seeds, local, ids)
        except ValueError as exc:
            raise ClipError(f"{path}: frame {local}: {exc}") from None
        resolved_all[str(local)] = {str(k): v.to_json() for k, v in resolved.items()}
        if local not in wanted:
            continue
        mask = seeds_to_mask(frame, resolved, seeds.get("order"))
        if write:
            annotation_path(clip, local).parent.mkdir(parents=True, exist_ok=True)
            write_index_mask(annotation_path(clip, local), mask)
        areas = " ".join(f"{k}:{100 * (mask == k).mean():.1f}%" for k in ids)
        print(f"{clip.name} frame {local:4d}: {areas}")
        tiles.append(overlay_tile(frame, mask, resolved, f"{clip.name} {local}"))
    if write:
        with atomic_write(clip.folder / "seeds-resolved.json", "w") as out:
            json.dump({"clip": clip.name, "frames": resolved_all}, out, indent=1)
    if sheet is not None:
        contact_sheet(tiles, sheet)


def grid_sheet(clip: Clip, cache: Path, path: Path, frames: list[int] | None) -> None:
    wanted = set(frames) if frames else set(clip.annotated)
    tiles = [grid_tile(f, str(i)) for i, f in enumerate(clip_frames(clip, cache)) if i in wanted]
    contact_sheet(tiles, path, width=min(960, tiles[0].width), columns=2)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clip", action="append", help="a clip of clips.json (repeatable)")
    parser.add_argument("--all", action="store_true", help="every clip of the manifest")
    parser.add_argument(
        "--cache", type=Path, default=DEFAULT_CACHE, help="where fetch_clips.py put the videos"
    )
    parser.add_argument(
        "--frames", help="only these local frames, comma-separated (default: every annotated)"
    )
    parser.add_argument("--sheet", type=Path, help="write a contact sheet of overlays (one clip)")
    parser.add_argument("--grid", type=Path, help="write the frames with a pixel grid instead (one clip)")
    parser.add_argument("--no-write", action="store_true", help="do not write the masks")
    args = parser.parse_args(argv)
    frames = [int(x) for x in args.frames.split(",")] if args.frames else None
    try:
        if not (args.all or args.clip):
            parser.error("name a clip with --clip, or --all")
        _, clips = load_manifest()
        chosen = select(clips, "all", None if args.all else args.clip)  # unknown names: ClipError
        for clip in chosen:
            if args.grid is not None:
                grid_sheet(clip, args.cache, args.grid, frames)
            else:
                annotate_clip(clip, args.cache, args.sheet, frames, write=not args.no_write)
    except ClipError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
