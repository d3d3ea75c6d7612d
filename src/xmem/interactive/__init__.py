"""Interactive annotation: a user's clicks, box or scribbles on one frame turned into an object mask
(:mod:`xmem.interactive.clicks`; SAM and SAM 2 through their own packages in :mod:`xmem.interactive.sam`),
and video sessions that propagate such masks forward and backward from any frame and take corrections
(:mod:`xmem.interactive.session`). The built-in predictors need the ``interactive`` extra (``pip install
'xmem-vos[interactive]'``: OpenCV for :class:`GrabCutPredictor`, scikit-image for
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
from xmem.interactive.export import ExportOptions, ExportStopped, export_session
from xmem.interactive.session import Direction, FrameCache, VideoSession

__all__ = [
    "Click",
    "Direction",
    "ExportOptions",
    "ExportStopped",
    "FrameCache",
    "GrabCutPredictor",
    "MaskPredictor",
    "Prompt",
    "ProtocolResult",
    "RandomWalkerPredictor",
    "VideoSession",
    "export_session",
    "iou",
    "next_click",
    "noc",
    "run_protocol",
]
