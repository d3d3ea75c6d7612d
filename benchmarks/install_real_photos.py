"""Fetch the real photographs of ``xmem/data/real/photos.tsv`` into the photo cache (nothing at run time).

For every Debian package of the manifest whose files are neither installed nor cached, ``apt-get download``
fetches the .deb (the manifest's version when the archive still has it, else the current one, with a
warning), ``dpkg -x`` unpacks it in a temporary folder, and only the manifest's files are kept, under
``<cache>/<package>/<path>``. Then every photograph found (installed or cached) gets a reduced copy,
``<cache>/reduced/<name>.png`` (longer side ≤ 1024), which training reads fastest.

    python benchmarks/install_real_photos.py                  # cache: $XMEM_PHOTO_CACHE or ~/.cache/xmem/photos
    python benchmarks/install_real_photos.py --cache /data/photos --package opencv-doc

Needs apt-get and dpkg (Debian / Ubuntu); no root rights (nothing is installed system-wide).
"""

from __future__ import annotations

import argparse
import collections
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from PIL import Image

from xmem.data.realphotos import default_cache, locate, manifest, reduce_image
from xmem.io.atomic import atomic_write


def _download(package: str, version: str, folder: Path) -> Path:
    for spec in (f"{package}={version}", package):
        done = subprocess.run(["apt-get", "download", spec], cwd=folder, capture_output=True, text=True)
        if done.returncode == 0:
            if spec == package:
                print(f"warning: {package} {version} is no longer in the archive; took the current version")
            return next(folder.glob(f"{package}_*.deb"))
    raise SystemExit(f"apt-get download {package} failed: {done.stderr.strip()}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cache", type=Path, default=None, help="cache folder (default: %(default)s)")
    parser.add_argument("--package", action="append", help="only these packages (repeatable)")
    args = parser.parse_args()
    cache = args.cache if args.cache is not None else default_cache()
    photos = [p for p in manifest() if args.package is None or p.package in args.package]
    if not photos:
        raise SystemExit(f"no photograph of the manifest comes from {args.package}")
    by_package = collections.defaultdict(list)
    for p in photos:
        by_package[(p.package, p.version)].append(p)

    for (package, version), members in sorted(by_package.items()):
        missing = [p for p in members if locate(p, cache) is None]
        if not missing:
            continue
        if shutil.which("apt-get") is None or shutil.which("dpkg") is None:
            raise SystemExit("apt-get and dpkg are needed to fetch the photographs' Debian packages")
        with tempfile.TemporaryDirectory() as tmp:
            tmp = Path(tmp)
            deb = _download(package, version, tmp)
            subprocess.run(["dpkg", "-x", str(deb), str(tmp / "root")], check=True)
            for p in missing:
                source = tmp / "root" / p.path.lstrip("/")
                if not source.is_file():
                    print(f"warning: {package} has no {p.path}; {p.name} stays absent")
                    continue
                target = cache / package / p.path.lstrip("/")
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(source, target)
        print(f"{package}: {len(missing)} photographs extracted into {cache / package}")

    reduced = cache / "reduced"
    reduced.mkdir(parents=True, exist_ok=True)
    counts = collections.Counter()
    for p in photos:
        path = locate(p, cache)
        if path is None:
            continue
        target = reduced / f"{p.name}.png"
        if not target.is_file():
            with Image.open(path) as img:
                small = reduce_image(img)
            with atomic_write(target) as f:
                small.save(f, format="PNG")
        counts[p.package] += 1
    for package, n in sorted(counts.items()):
        print(f"{package}: {n} photographs ready")
    absent = len(photos) - sum(counts.values())
    print(
        f"{sum(counts.values())} of {len(photos)} photographs in {reduced}"
        + (f"; {absent} absent" if absent else "")
    )
    return 0 if not absent else 1


if __name__ == "__main__":
    sys.exit(main())
