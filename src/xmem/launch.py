"""The ``xmem`` command's entry point: :func:`xmem.cli.main` in a process set up for a short life.

Importing PyTorch and the rest of the command creates about 200,000 Python objects that live as long as
the process. The garbage collector would traverse them again and again while they are created (about
0.2 s of a run) and once more when the interpreter exits (about 0.3 s). The collector is paused during
the imports and these objects are then frozen (``gc.freeze``) out of every later collection; objects made
afterwards are collected as usual.
"""

from __future__ import annotations

import gc
import sys


def main() -> int:
    gc.disable()
    try:
        from xmem.cli import main as cli_main
    finally:
        gc.freeze()
        gc.enable()
    return cli_main()


if __name__ == "__main__":
    sys.exit(main())
