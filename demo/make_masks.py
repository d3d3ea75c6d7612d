"""How the demo's masks were made (run once; the PNGs are committed, checked by eye on overlays).

    python demo/make_masks.py            # writes demo/cup-mask.png and demo/cup-annotations/*.png

cup.mp4 (OpenCV's sample clip, from Debian's opencv-doc: opencv4/html/cup.mp4.gz) shows a dark, nearly
colourless cup held by a hand against a light wall. A pixel is the cup when it is dark (max channel below
130) and not skin-coloured (red minus blue below 18); the largest such regions are kept (fingers
may cut the cup in two), smoothed by an
opening and a closing, and its small colourless holes (reflections on the cup) are filled. Frame 0 gives
the first-frame mask; frames 25, 50, 75, 100, 125, 175, 200 and 216 are the annotations, checked by eye, used to score J on the
demo (``python benchmarks/demo_quality.py``). The thumb in front of the cup is not the cup. (Frame 150,
where the cup turns and a long reflection crosses it, fails this rule and is left out.)
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from scipy import ndimage as ndi

from xmem.io.masks import write_index_mask
from xmem.io.video import VideoFile

HERE = Path(__file__).resolve().parent
ANNOTATED = (25, 50, 75, 100, 125, 175, 200, 216)


def cup_mask(frame: np.ndarray, max_hole: int = 3000) -> np.ndarray:
    f = frame.astype(np.float32)
    chroma = f[..., 0] - f[..., 2]
    mask = (f.max(axis=2) < 130) & (chroma < 18)
    mask = ndi.binary_opening(mask, iterations=2)
    labels, count = ndi.label(mask)
    sizes = ndi.sum(mask, labels, range(1, count + 1))
    mask = np.isin(labels, 1 + np.flatnonzero(sizes >= 0.15 * sizes.max()))  # fingers may cut the cup
    mask = ndi.binary_closing(mask, iterations=2)
    holes, count = ndi.label(ndi.binary_fill_holes(mask) & ~mask)
    for i in range(1, count + 1):
        hole = holes == i
        if hole.sum() < max_hole and chroma[hole].mean() < 18:
            mask |= hole
    return mask


def main() -> None:
    wanted = {0, *ANNOTATED}
    (HERE / "cup-annotations").mkdir(exist_ok=True)
    for index, frame in enumerate(VideoFile(HERE / "cup.mp4")):
        if index in wanted:
            mask = cup_mask(frame).astype(np.uint8)
            if index == 0:
                write_index_mask(HERE / "cup-mask.png", mask)
            else:
                write_index_mask(HERE / "cup-annotations" / f"{index:05d}.png", mask)
            print(f"frame {index}: {int(mask.sum())} cup pixels")


if __name__ == "__main__":
    main()
