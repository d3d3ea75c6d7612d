"""J&F by the DAVIS protocol: ``from xmem.metrics import region_and_boundary, score_video, ...``.

The implementation lives in ``xmem.eval``; this module gathers its public functions.
"""

from xmem.eval import (
    BOUNDARY_THRESHOLD,
    DatasetResult,
    ObjectResult,
    ObjectRule,
    Protocol,
    Statistics,
    Summary,
    VideoResult,
    VideoScorer,
    boundary_f_measure,
    boundary_map,
    boundary_tolerance,
    evaluate_dataset,
    evaluate_video,
    region_and_boundary,
    region_similarity,
    score_video,
    statistics,
    summarize,
)

__all__ = [
    "BOUNDARY_THRESHOLD",
    "DatasetResult",
    "ObjectResult",
    "ObjectRule",
    "Protocol",
    "Statistics",
    "Summary",
    "VideoResult",
    "VideoScorer",
    "boundary_f_measure",
    "boundary_map",
    "boundary_tolerance",
    "evaluate_dataset",
    "evaluate_video",
    "region_and_boundary",
    "region_similarity",
    "score_video",
    "statistics",
    "summarize",
]
