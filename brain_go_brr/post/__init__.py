"""Post-processing: stitch window predictions, then hysteresis → morphology → event rules.

Public interface (shared with the data, training and evaluation code)::

    stitch_windows(window_probs (W, 15360), starts (W,), n_samples) -> (n_samples,) float32
    RecordAccumulator(n_samples per record): the same mean, fed batch by batch
    PostConfig(tau_on=0.86, tau_off=0.78, opening_samples=11, closing_samples=31,
               min_duration_s=3, max_duration_s=600, merge_gap_s=2, sfreq=256)
    postprocess(prob (n,), cfg) -> list[annotations.Event]

The exact order of operations is in :mod:`brain_go_brr.post.postprocess`.
"""

from brain_go_brr.post.postprocess import (
    PostConfig,
    ProbabilityTracks,
    Runs,
    postprocess,
    refine_runs,
)
from brain_go_brr.post.stitch import RecordAccumulator, stitch_windows

__all__ = [
    "PostConfig",
    "ProbabilityTracks",
    "RecordAccumulator",
    "Runs",
    "postprocess",
    "refine_runs",
    "stitch_windows",
]
