"""Long segmentation jobs: a video in, mask files out, resumable after a fault; datasets across ranks."""

from xmem.jobs.segment import JobSummary, OutputOptions, SegmentJob, prepare_output_folder

__all__ = ["JobSummary", "OutputOptions", "SegmentJob", "prepare_output_folder"]
