"""Per-block figures of an ``xmem bench`` run, from its bench.csv: the median engine time per frame (robust
to frames slowed by other jobs sharing the CPU), and the RSS and long-term memory size at each block's end.

    python benchmarks/bench_blocks.py benchmarks/results/bench_10k/bench.csv --block 1000

prints the table of README's "10,000 frames with the default model" as Markdown.
"""

from __future__ import annotations

import argparse
import csv
import statistics
from pathlib import Path


def blocks(rows: list[dict], size: int) -> list[dict]:
    out = []
    for start in range(0, len(rows), size):
        block = rows[start : start + size]
        out.append({
            "frames": f"{start:,}-{start + len(block):,}",
            "median_ms": statistics.median(1000 * float(r["seconds"]) for r in block),
            "rss_mb_end": float(block[-1]["rss_mb"]),
            "long_term_end": int(block[-1]["long_term_elements"]),
        })  # fmt: skip
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("csv", type=Path, help="bench.csv of an xmem bench run")
    parser.add_argument("--block", type=int, default=1000, help="frames per block (default 1000)")
    args = parser.parse_args(argv)
    with open(args.csv, newline="") as f:
        table = blocks(list(csv.DictReader(f)), args.block)
    print("| frames | " + " | ".join(b["frames"] for b in table) + " |")
    print("|---|" + "---|" * len(table))
    print("| median ms per frame | " + " | ".join(f"{b['median_ms']:.1f}" for b in table) + " |")
    print("| RSS at the block's end (MiB) | " + " | ".join(f"{b['rss_mb_end']:.0f}" for b in table) + " |")
    print("| long-term elements at the end | " + " | ".join(f"{b['long_term_end']:,}" for b in table) + " |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
