"""Stitching overlapping window predictions back into one per-recording track."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


class RecordAccumulator:
    """Per-record running sum and count of window probabilities: the one stitcher.

    The stitched track of a record is the mean of the windows covering each sample.
    Validation feeds it one batch at a time (windows of many records, in any order);
    :func:`stitch_windows` feeds it all of one record's windows at once. Arrays are
    allocated on a record's first window: ``sum`` in ``dtype`` and ``count`` uint8 (a
    sample is covered by at most 60 s / stride windows).

    Args:
        n_samples: length of each record at 256 Hz, by record index.
        dtype: of the running sums: float32 (validation, where every dev record is held
            until the epoch ends) or float64 (:func:`stitch_windows`, one record at a time).
    """

    def __init__(self, n_samples: Sequence[int], dtype: type = np.float32) -> None:
        self.n_samples = [int(n) for n in n_samples]
        self.dtype = dtype
        self.sums: dict[int, np.ndarray] = {}
        self.counts: dict[int, np.ndarray] = {}

    def add(self, probs: np.ndarray, records: np.ndarray, starts: np.ndarray) -> None:
        """Add ``probs`` (B, L) of windows starting at ``starts`` (B,) in ``records`` (B,).

        Window samples past the end of their record (the zero padding of a record shorter
        than one window) are ignored.
        """
        length = probs.shape[1]
        for p, r, s in zip(
            probs, np.asarray(records).tolist(), np.asarray(starts).tolist(), strict=True
        ):
            n = self.n_samples[r]
            if r not in self.sums:
                self.sums[r] = np.zeros(n, dtype=self.dtype)
                self.counts[r] = np.zeros(n, dtype=np.uint8)
            stop = min(s + length, n)
            self.sums[r][s:stop] += p[: stop - s]
            self.counts[r][s:stop] += 1

    def pop_track(self, record: int) -> tuple[np.ndarray | None, int | None]:
        """Remove ``record`` and return its ``(n_samples,)`` float32 track, or ``None`` and
        the first sample no window covered (0 for a record no window reached)."""
        if record not in self.sums:
            return None, 0
        count = self.counts.pop(record)
        total = self.sums.pop(record)
        uncovered = np.flatnonzero(count == 0)
        if uncovered.size:
            return None, int(uncovered[0])
        return (total / count).astype(np.float32), None

    def complete_tracks(self) -> tuple[dict[int, np.ndarray], list[int]]:
        """Stitched ``(n_samples,)`` float32 tracks of the records every sample of which was
        covered, and the indices of records seen only in part (``limit_val_batches``)."""
        tracks: dict[int, np.ndarray] = {}
        partial: list[int] = []
        for r in sorted(self.sums):
            track, _ = self.pop_track(r)
            if track is None:
                partial.append(r)
            else:
                tracks[r] = track
        return tracks, partial


def stitch_windows(window_probs: np.ndarray, starts: np.ndarray, n_samples: int) -> np.ndarray:
    """Mean of the windows covering each sample of a recording (:class:`RecordAccumulator`
    over all of its windows).

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
    acc = RecordAccumulator([n_samples], dtype=np.float64)
    acc.add(probs, np.zeros(len(starts), dtype=np.int64), starts)
    track, first = acc.pop_track(0)
    if track is None:
        raise ValueError(
            f"stitch_windows: sample {first} of {n_samples} is covered by no window; "
            "evaluation windows must tile the whole recording (last window aligned to its end)"
        )
    return track
