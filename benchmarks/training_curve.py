"""Loss and held-out J&F of a training run, from its log.jsonl (written by `xmem train`).

    xmem train configs/lite-synthetic.toml --run-dir runs/lite
    python benchmarks/training_curve.py runs/lite --name lite-synthetic

Copies the log to benchmarks/results/<name>-log.jsonl and draws benchmarks/results/<name>-curve.png.
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

HERE = Path(__file__).resolve().parent


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--name", required=True)
    parser.add_argument("--out", type=Path, default=HERE / "results")
    args = parser.parse_args()
    from matplotlib.figure import Figure

    rows = [
        json.loads(line) for line in (args.run_dir / "log.jsonl").read_text().splitlines() if line.strip()
    ]
    train = [r for r in rows if "loss" in r]
    val = [r for r in rows if "heldout_jf" in r]
    args.out.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(args.run_dir / "log.jsonl", args.out / f"{args.name}-log.jsonl")
    fig = Figure(figsize=(8, 3.5), layout="constrained")
    ax = fig.add_subplot(1, 2, 1)
    ax.plot([r["iteration"] for r in train], [r["loss"] for r in train], label="total")
    ax.plot([r["iteration"] for r in train], [r["ce"] for r in train], label="cross-entropy (bootstrapped)")
    ax.plot([r["iteration"] for r in train], [r["dice"] for r in train], label="dice")
    ax.set_xlabel("iteration")
    ax.set_ylabel("loss per clip (mean over logging window)")
    ax.legend()
    ax = fig.add_subplot(1, 2, 2)
    ax.plot([r["iteration"] for r in val], [100 * r["heldout_jf"] for r in val], marker="o")
    ax.set_xlabel("iteration")
    ax.set_ylabel("held-out J&F")
    ax.set_ylim(0, 100)
    fig.suptitle(args.name)
    fig.savefig(args.out / f"{args.name}-curve.png", dpi=100)
    first, last = train[0], train[-1]
    print(
        f"loss {first['loss']:.3f} (iteration {first['iteration']}) -> {last['loss']:.3f} ({last['iteration']})"
    )
    for r in val:
        print(f"held-out J&F at {r['iteration']}: {100 * r['heldout_jf']:.1f}")


if __name__ == "__main__":
    main()
