"""From a per-sample seizure probability track to seizure events.

Order of operations (every step works on runs of samples, never on single samples in
Python, and the values come from ``conf/post/default.yaml`` through :class:`PostConfig`):

1. **Hysteresis.** An event starts at the first sample with ``p >= tau_on`` and continues
   while ``p >= tau_off``; it ends at the first sample below ``tau_off``. A new event needs
   ``tau_on`` again. (So a stretch above ``tau_off`` that never reaches ``tau_on`` gives no
   event, and the samples of a stretch before its first ``tau_on`` sample are not included.)
2. **Opening** with a flat kernel of ``opening_samples`` samples: detections shorter than
   ``opening_samples`` samples vanish, longer ones are unchanged.
3. **Closing** with a flat kernel of ``closing_samples`` samples: gaps shorter than
   ``closing_samples`` samples between two detections of the recording are filled. Both
   steps equal ``scipy.ndimage.binary_opening`` / ``binary_closing`` with an odd kernel on
   the mask padded with zeros, which a test checks; unlike scipy on the unpadded mask,
   closing never shaves detections at the recording's edges.
4. **Minimum duration**: events shorter than ``min_duration_s`` are dropped.
5. **Maximum duration**: events longer than ``max_duration_s`` are cut into consecutive
   pieces of ``max_duration_s`` (the last piece holds the rest).
6. **Merging**: neighbours separated by a gap shorter than ``merge_gap_s`` become one event.
   The cuts made in step 5 are not gaps and stay cut, so a merged event can exceed
   ``max_duration_s`` only by joining a piece with a separate neighbouring detection.

Events are ``annotations.Event(start_s, stop_s, "seiz", confidence)`` with ``stop_s``
exclusive (``stop_sample / sfreq``) and ``confidence`` the mean probability over the event.

:class:`ProbabilityTracks` runs the same steps for many recordings at once, which is what
threshold sweeps use: the tracks live in one padded array with a per-block maximum, so a
threshold only touches the blocks that can hold a sample above ``tau_off``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from brain_go_brr.annotations import Event


@dataclass(frozen=True)
class PostConfig:
    """Post-processing settings (``conf/post/default.yaml``); see the module docstring."""

    tau_on: float = 0.86  # an event starts where p >= tau_on ...
    tau_off: float = 0.78  # ... and continues while p >= tau_off
    opening_samples: int = 11  # detections shorter than this many samples are removed
    closing_samples: int = 31  # gaps shorter than this many samples are filled
    min_duration_s: float = 3.0  # shorter events are dropped
    max_duration_s: float = 600.0  # longer events are cut into pieces of this length
    merge_gap_s: float = 2.0  # neighbours closer than this are merged
    sfreq: float = 256.0  # sampling rate of the probability track, Hz

    def __post_init__(self) -> None:
        if not 0.0 <= self.tau_off <= self.tau_on <= 1.0:
            raise ValueError(
                f"post: need 0 <= tau_off <= tau_on <= 1, got tau_on={self.tau_on}, "
                f"tau_off={self.tau_off}; set post.tau_on / post.tau_off accordingly"
            )
        for name in ("opening_samples", "closing_samples"):
            value = getattr(self, name)
            if int(value) != value or value < 1:
                raise ValueError(f"post.{name} must be a positive integer, got {value!r}")
        if self.sfreq <= 0 or self.min_duration_s < 0 or self.merge_gap_s < 0:
            raise ValueError(
                f"post: sfreq must be positive and min_duration_s, merge_gap_s non-negative, "
                f"got {self.sfreq}, {self.min_duration_s}, {self.merge_gap_s}"
            )
        if self.max_duration_s * self.sfreq < 1:
            raise ValueError(
                f"post.max_duration_s must be at least one sample, got {self.max_duration_s}"
            )

    def with_thresholds(self, tau_on: float, tau_off: float) -> PostConfig:
        """A copy with other hysteresis thresholds (what threshold sweeps vary)."""
        return dataclasses.replace(self, tau_on=float(tau_on), tau_off=float(tau_off))


class Runs(NamedTuple):
    """Detections of many recordings, sorted by (record, start); sample indices, stop exclusive."""

    record: np.ndarray  # (E,) int64 record index
    start: np.ndarray  # (E,) int64 first sample
    stop: np.ndarray  # (E,) int64 one past the last sample

    @staticmethod
    def empty() -> Runs:
        z = np.zeros(0, dtype=np.int64)
        return Runs(z, z.copy(), z.copy())


def _join_close(runs: Runs, max_gap: float, keep_cut: np.ndarray | None = None) -> Runs:
    """Join neighbours of the same record whose gap (samples) is below ``max_gap``.

    ``keep_cut[i]`` True forbids joining event ``i`` to its predecessor.
    """
    n = runs.start.size
    if n < 2:
        return runs
    gap = runs.start[1:] - runs.stop[:-1]
    join = (runs.record[1:] == runs.record[:-1]) & (gap < max_gap)
    if keep_cut is not None:
        join &= ~keep_cut[1:]
    first = np.flatnonzero(np.concatenate(([True], ~join)))
    last = np.concatenate((first[1:] - 1, [n - 1]))
    return Runs(runs.record[first], runs.start[first], runs.stop[last])


def refine_runs(runs: Runs, cfg: PostConfig) -> Runs:
    """Steps 2–6 of the module docstring on hysteresis runs (sorted, disjoint per record)."""
    length = runs.stop - runs.start
    runs = Runs(*(a[length >= cfg.opening_samples] for a in runs))  # 2. opening
    runs = _join_close(runs, cfg.closing_samples)  # 3. closing
    length = runs.stop - runs.start
    runs = Runs(*(a[length >= cfg.min_duration_s * cfg.sfreq] for a in runs))  # 4. minimum
    max_len = max(1, round(cfg.max_duration_s * cfg.sfreq))  # 5. split
    length = runs.stop - runs.start
    n_pieces = -(-length // max_len)
    owner = np.repeat(np.arange(length.size), n_pieces)
    piece = np.arange(owner.size) - np.repeat(np.cumsum(n_pieces) - n_pieces, n_pieces)
    start = runs.start[owner] + piece * max_len
    stop = np.minimum(start + max_len, runs.stop[owner])
    split = Runs(runs.record[owner], start, stop)
    return _join_close(split, cfg.merge_gap_s * cfg.sfreq, keep_cut=piece > 0)  # 6. merge


class ProbabilityTracks:
    """The probability tracks of many recordings, packed for fast hysteresis at any threshold.

    Every track is copied into one float32 array, followed by at least one pad sample of -1
    (below any threshold, so no run crosses into the next recording) and padded to a whole
    number of blocks. ``block_max`` holds each block's maximum: a threshold ``tau_off`` only
    reads the blocks whose maximum reaches it, which for a sensible detector is a small part
    of a corpus except at the lowest thresholds.

    Args:
        tracks: per recording, a ``(n_samples,)`` array of probabilities in [0, 1].
        block_samples: block length in samples (256 = 1 s at 256 Hz).
    """

    def __init__(self, tracks: Sequence[np.ndarray], block_samples: int = 256) -> None:
        self.block = int(block_samples)
        self.lengths = np.array([np.asarray(t).shape[0] for t in tracks], dtype=np.int64)
        padded = -(-(self.lengths + 1) // self.block) * self.block
        self.offsets = np.concatenate(([0], np.cumsum(padded)[:-1])).astype(np.int64)
        self.data = np.full(int(padded.sum()), -1.0, dtype=np.float32)
        for i, track in enumerate(tracks):
            arr = np.asarray(track, dtype=np.float32)
            if arr.ndim != 1 or arr.size == 0:
                raise ValueError(f"record {i}: probability track must be 1-D and non-empty")
            lo, hi = float(arr.min()), float(arr.max())
            if not (lo >= 0.0 and hi <= 1.0):  # also catches NaN
                raise ValueError(
                    f"record {i}: probabilities must lie in [0, 1], found {lo}..{hi}; "
                    "apply a sigmoid to the logits first"
                )
            self.data[self.offsets[i] : self.offsets[i] + arr.size] = arr
        self.block_max = self.data.reshape(-1, self.block).max(axis=1)

    def __len__(self) -> int:
        return int(self.lengths.size)

    def hysteresis(self, tau_on: float, tau_off: float) -> Runs:
        """Step 1 of the module docstring for every record at once."""
        cand = np.flatnonzero(self.block_max >= tau_off)
        if cand.size == 0:
            return Runs.empty()
        blocks = self.data.reshape(-1, self.block)
        values = (blocks if cand.size == blocks.shape[0] else blocks[cand]).reshape(-1)
        above = values >= tau_off
        edge = np.diff(above.view(np.int8), prepend=np.int8(0), append=np.int8(0))
        starts, stops = np.flatnonzero(edge == 1), np.flatnonzero(edge == -1)
        # Between two candidate blocks that are not adjacent lie samples below tau_off.
        jump = (np.flatnonzero(np.diff(cand) != 1) + 1) * self.block
        cross = jump[above[jump - 1] & above[jump]]
        if cross.size:
            starts = np.sort(np.concatenate((starts, cross)))
            stops = np.sort(np.concatenate((stops, cross)))
        high = np.flatnonzero(values >= tau_on)
        first = np.searchsorted(high, starts)
        ok = first < high.size
        ok[ok] = high[first[ok]] < stops[ok]
        if not ok.any():
            return Runs.empty()
        g_start = self._global(cand, high[first[ok]])
        g_stop = self._global(cand, stops[ok] - 1) + 1
        record = np.searchsorted(self.offsets, g_start, side="right") - 1
        return Runs(record, g_start - self.offsets[record], g_stop - self.offsets[record])

    def _global(self, cand: np.ndarray, pos: np.ndarray) -> np.ndarray:
        """Index in ``data`` of position ``pos`` in the gathered candidate blocks."""
        return cand[pos // self.block] * self.block + pos % self.block

    def runs(self, cfg: PostConfig) -> Runs:
        """Final detections (steps 1–6) of every record, in samples."""
        return refine_runs(self.hysteresis(cfg.tau_on, cfg.tau_off), cfg)

    def mean_probability(self, runs: Runs) -> np.ndarray:
        """``(E,)`` mean probability over each run (float64 accumulation)."""
        if runs.start.size == 0:
            return np.zeros(0)
        g_start = self.offsets[runs.record] + runs.start
        g_stop = self.offsets[runs.record] + runs.stop
        bounds = np.stack((g_start, g_stop), axis=1).reshape(-1)
        sums = np.add.reduceat(self.data, bounds, dtype=np.float64)[::2]
        return sums / (runs.stop - runs.start)

    def events(self, cfg: PostConfig) -> list[list[Event]]:
        """Per record, its seizure events (seconds, mean-probability confidence)."""
        runs = self.runs(cfg)
        conf = self.mean_probability(runs)
        out: list[list[Event]] = [[] for _ in range(len(self))]
        for rec, a, b, c in zip(
            runs.record.tolist(),
            runs.start.tolist(),
            runs.stop.tolist(),
            conf.tolist(),
            strict=True,
        ):
            out[rec].append(Event(a / cfg.sfreq, b / cfg.sfreq, "seiz", c))
        return out


def postprocess(prob: np.ndarray, cfg: PostConfig) -> list[Event]:
    """Seizure events of one recording from its ``(n_samples,)`` probability track."""
    return ProbabilityTracks([prob]).events(cfg)[0]
