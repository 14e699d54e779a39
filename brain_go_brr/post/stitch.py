"""Stitching overlapping window predictions back into one per-recording track."""

from __future__ import annotations

import numpy as np


def stitch_windows(window_probs: np.ndarray, starts: np.ndarray, n_samples: int) -> np.ndarray:
    """Mean of the windows covering each sample of a recording.

    Args:
        window_probs: ``(W, L)`` per-sample probabilities of ``W`` windows of ``L`` samples
            (``L = 15360`` for 60 s at 256 Hz). A torch tensor works too (moved to numpy).
        starts: ``(W,)`` start sample of each window in the recording.
        n_samples: length of the recording in samples; window samples past it (the zero
            padding of a recording shorter than one window) are ignored.

    Returns:
        ``(n_samples,)`` float32 track. A sample that no window covers is an error, since a
        silent zero there would read as "no seizure".
    """
    probs = np.asarray(window_probs, dtype=np.float64)
    starts = np.asarray(starts, dtype=np.int64).reshape(-1)
    if probs.ndim != 2 or probs.shape[0] != starts.shape[0]:
        raise ValueError(
            f"stitch_windows: window_probs must be (W, L) with one start per window, "
            f"got shapes {probs.shape} and {starts.shape}"
        )
    if n_samples <= 0:
        raise ValueError(f"stitch_windows: n_samples must be positive, got {n_samples}")
    if starts.size and (starts.min() < 0 or starts.max() >= n_samples):
        raise ValueError(
            f"stitch_windows: window starts must lie in [0, {n_samples}), "
            f"got {starts.min()}..{starts.max()}"
        )
    length = probs.shape[1]
    index = starts[:, None] + np.arange(length)[None, :]  # (W, L) sample index in the record
    inside = index < n_samples
    total = np.bincount(index[inside], weights=probs[inside], minlength=n_samples)
    count = np.bincount(index[inside], minlength=n_samples)
    if (count == 0).any():
        first = int(np.flatnonzero(count == 0)[0])
        raise ValueError(
            f"stitch_windows: sample {first} of {n_samples} is covered by no window; "
            "evaluation windows must tile the whole recording (last window aligned to its end)"
        )
    return (total / count).astype(np.float32)
