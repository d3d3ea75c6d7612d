"""Per-block figures of an ``xmem bench`` run, from its bench.csv (``xmem.eval.bench.block_figures``): the
median engine time per frame (robust to frames slowed by other jobs sharing the CPU), and the RSS and
long-term memory size at each block's end.

    python benchmarks/bench_blocks.py benchmarks/results/bench_10k/bench.csv --block 1000

prints the table of README's "10,000 frames with the default model" as Markdown.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from xmem.eval.bench import block_figures, read_csv


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("csv", type=Path, help="bench.csv of an xmem bench run")
    parser.add_argument("--block", type=int, default=1000, help="frames per block (default 1000)")
    args = parser.parse_args(argv)
    table = block_figures(read_csv(args.csv), args.block)
    print("| frames | " + " | ".join(f"{b.start:,}-{b.stop:,}" for b in table) + " |")
    print("|---|" + "---|" * len(table))
    print("| median ms per frame | " + " | ".join(f"{b.median_ms_per_frame:.1f}" for b in table) + " |")
    print("| RSS at the block's end (MiB) | " + " | ".join(f"{b.rss_mb_at_end:.0f}" for b in table) + " |")
    print(
        "| long-term elements at the end | "
        + " | ".join(f"{b.long_term_elements_at_end:,}" for b in table)
        + " |"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
