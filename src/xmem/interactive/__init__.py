"""Interactive annotation: a user's clicks, box or scribbles on one frame turned into an object mask.

See :mod:`xmem.interactive.clicks`. The built-in predictors need the ``interactive`` extra
(``pip install 'xmem-vos[interactive]'``: OpenCV for :class:`GrabCutPredictor`, scikit-image for
:class:`RandomWalkerPredictor`); both are imported only when a prediction is made.
"""

from xmem.interactive.clicks import (
    Click,
    GrabCutPredictor,
    MaskPredictor,
    Prompt,
    ProtocolResult,
    RandomWalkerPredictor,
    iou,
    next_click,
    noc,
    run_protocol,
)

__all__ = [
    "Click",
    "GrabCutPredictor",
    "MaskPredictor",
    "Prompt",
    "ProtocolResult",
    "RandomWalkerPredictor",
    "iou",
    "next_click",
    "noc",
    "run_protocol",
]
