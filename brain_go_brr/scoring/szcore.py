"""SzCORE scoring: the figures of the official scorer, ``szcore-evaluation`` 0.0.7.

SzCORE (EpilepsyBench, epilepsybenchmarks.com) scores BIDS ``*_events.tsv`` files. This is
the project's own implementation of what ``szcore-evaluation`` 0.0.7 computes with
``epilepsy2bids`` 0.0.7 and ``timescoring`` 0.0.7; ``tests/test_szcore.py`` checks it against
figures of the official scorer, and against the scorer itself where it is installed.

The rules, per recording (one reference TSV and the hypothesis at the same relative path):

1. **1 Hz masks.** A recording of ``recordingDuration`` seconds (taken from the file's
   first row) becomes ``n = int(recordingDuration)`` one-second samples. A seizure row
   (``sz`` or a HED-SCORE ``sz_*`` subtype) sets samples ``int(onset)`` up to, not including,
   ``int(onset + duration)``, cut at ``n``; ``bckg`` rows set nothing. So an event that does
   not cross a whole second (onset 10.2, duration 0.5) vanishes, and everything below runs
   on whole seconds. The events are the runs of ones of the mask.
2. **A hypothesis that does not fit** its reference counts as no detection: one that is
   missing, that has no rows, or whose ``n`` differs from the reference's.
3. **Sample-based** scoring on the 1 Hz masks: true positives are seconds in both masks,
   false positives seconds only in the hypothesis, reference positives the seconds of the
   reference mask, and the duration is ``n`` seconds.
4. **Event-based** scoring: in the reference and the hypothesis alike, events less than
   90 s apart are merged, then events longer than 300 s are cut into 300 s pieces (the last
   piece keeps the rest). A reference event, extended 30 s before and 60 s after (within the
   recording), is a true positive when a hypothesis event overlaps it; a hypothesis event
   (after merging and cutting) that overlaps no extended true-positive reference event is a
   false positive. Reference positives are the reference events after merging and cutting.
5. **Per subject** (the ``sub-*`` folder): tp, fp, reference positives and duration are
   summed over its recordings, then sensitivity = tp / ref, precision = tp / (tp + fp),
   F1 = 2 tp / (2 tp + fp + (ref - tp)) and fpRate = fp per 24 h of recording; each is NaN
   where its denominator is zero (F1: when ref + fp is zero).
6. **Averaging** (``avg_per_subject``): the official default is the NaN-ignoring mean and
   (population) standard deviation over subjects of each figure (``*_std``); pooled sums
   every recording's counts first.

Results use the scorer's own structure and key names (``fpRate``, ``*_std``), with NaN
where it gives NaN; :func:`nan_to_none` turns them into JSON ``null``.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from brain_go_brr.annotations import Annotation, Event, events_tsv_rows

TOLERANCE_BEFORE_S = 30  # a detection up to 30 s before a seizure still counts
TOLERANCE_AFTER_S = 60  # ... and up to 60 s after it
MIN_GAP_S = 90  # events closer than this are merged
MAX_EVENT_S = 300  # events longer than this are cut into pieces of this length
METRICS: tuple[str, ...] = ("sensitivity", "precision", "f1", "fpRate")
_SECONDS_PER_DAY_FACTORS = (3600, 24)

Runs = tuple[tuple[int, int], ...]  # half-open [start, stop) spans in whole seconds


def mask_runs(spans: Iterable[tuple[float, float]], n_seconds: int) -> Runs:
    """Runs of the 1 Hz mask of seizure ``spans`` ``(onset_s, stop_s)`` (rule 1).

    ``stop_s`` is ``onset + duration`` as the file's numbers add up in floating point; both
    are truncated towards zero (onsets are never negative) and cut at ``n_seconds``.
    Overlapping and touching spans give one run, as they do on a mask.
    """
    cut = []
    for onset, stop in spans:
        a, b = int(onset), min(int(stop), n_seconds)
        if b > a:
            cut.append((a, b))
    cut.sort()
    runs: list[tuple[int, int]] = []
    for a, b in cut:
        if runs and a <= runs[-1][1]:
            if b > runs[-1][1]:
                runs[-1] = (runs[-1][0], b)
        else:
            runs.append((a, b))
    return tuple(runs)


@dataclass(frozen=True)
class SzcoreRecording:
    """One recording as the official scorer sees it: whole-second runs of both masks."""

    subject: str  # the sub-* folder (or the TUSZ patient)
    n_seconds: int  # int(recordingDuration) of the reference
    ref: Runs
    hyp: Runs  # already empty for a hypothesis that does not fit (rule 2)


@dataclass
class Counts:
    """Sums of one scoring mode over recordings (``duration_s`` in whole seconds)."""

    tp: int = 0
    fp: int = 0
    ref_true: int = 0
    duration_s: int = 0

    def __iadd__(self, other: Counts) -> Counts:
        self.tp += other.tp
        self.fp += other.fp
        self.ref_true += other.ref_true
        self.duration_s += other.duration_s
        return self

    def figures(self, fs: int) -> dict[str, float]:
        """sensitivity, precision, f1 and fpRate (rule 5), NaN where undefined.

        ``fs`` is the rate the scorer counts samples at (1 Hz sample-based, 10 Hz
        event-based); the FP rate is computed in the scorer's order of operations so that
        it matches to the last bit.
        """
        tp, fp, ref = self.tp, self.fp, self.ref_true
        n_samples = self.duration_s * fs
        days = n_samples / fs / _SECONDS_PER_DAY_FACTORS[0] / _SECONDS_PER_DAY_FACTORS[1]
        return {
            "sensitivity": tp / ref if ref > 0 else math.nan,
            "precision": tp / (tp + fp) if tp + fp > 0 else math.nan,
            "f1": math.nan if ref + fp == 0 else 2 * tp / (2 * tp + fp + (ref - tp)),
            "fpRate": fp / days if days else math.nan,
        }


def runs_from_events(events: Sequence[Event], duration_s: float) -> tuple[int, Runs]:
    """``(n_seconds, runs)`` of seizure ``events`` as the official scorer reads them back
    from the events.tsv that :func:`brain_go_brr.scoring.writers.write_events_tsv` writes
    (2-decimal onsets and durations, ``recordingDuration`` with 2 decimals)."""
    rows, recording = events_tsv_rows(list(events), duration_s)
    n_seconds = int(float(recording))
    spans = ((float(on), float(on) + float(dur)) for on, dur, kind, _ in rows if kind == "sz")
    return n_seconds, mask_runs(spans, n_seconds)


def recording_from_events(
    subject: str, ref: Sequence[Event], hyp: Sequence[Event], duration_s: float
) -> SzcoreRecording:
    """One recording of in-memory events (evaluation, validation, csv_bi files), scored as
    its written events.tsv pair would be by the official scorer."""
    n_seconds, ref_runs = runs_from_events(ref, duration_s)
    return SzcoreRecording(subject, n_seconds, ref_runs, runs_from_events(hyp, duration_s)[1])


def recording_from_files(
    subject: str, ref: Annotation, hyp: Annotation | None
) -> tuple[SzcoreRecording, str | None]:
    """One reference/hypothesis pair of parsed events.tsv files, and a note when the
    hypothesis counts as no detection because its length differs (rule 2).

    Raises ``ValueError`` for a reference without rows or shorter than one second (the
    official scorer stops on both).
    """
    if ref.duration_s is None:
        raise ValueError(
            f"{ref.path}: no rows; a reference events.tsv needs at least one row (one bckg row "
            "covering a recording without seizures)"
        )
    n_seconds = int(ref.duration_s)
    if n_seconds < 1:
        raise ValueError(
            f"{ref.path}: recordingDuration {ref.duration_s} s is under one second; SzCORE "
            "scores whole seconds, so remove this recording from the reference"
        )
    ref_runs = mask_runs(
        ((e.start_s, e.stop_s) for e in ref.events if e.label == "seiz"), n_seconds
    )
    note = None
    hyp_runs: Runs = ()
    if hyp is not None and hyp.duration_s is not None:
        if int(hyp.duration_s) != n_seconds:
            note = (
                f"{hyp.path}: recordingDuration {hyp.duration_s} s does not match the "
                f"reference's {ref.duration_s} s (whole seconds {int(hyp.duration_s)} and "
                f"{n_seconds}); scored as no detection, as szcore-evaluation does"
            )
        else:
            spans = ((e.start_s, e.stop_s) for e in hyp.events if e.label == "seiz")
            hyp_runs = mask_runs(spans, n_seconds)
    return SzcoreRecording(subject, n_seconds, ref_runs, hyp_runs), note


def _overlap(a: Runs, b: Runs) -> int:
    """Seconds covered by both sorted, disjoint run lists."""
    total, i, j = 0, 0, 0
    while i < len(a) and j < len(b):
        lo, hi = max(a[i][0], b[j][0]), min(a[i][1], b[j][1])
        if hi > lo:
            total += hi - lo
        if a[i][1] < b[j][1]:
            i += 1
        else:
            j += 1
    return total


def sample_counts(rec: SzcoreRecording) -> Counts:
    """Rule 3: seconds of agreement on the 1 Hz masks."""
    tp = _overlap(rec.ref, rec.hyp)
    return Counts(
        tp=tp,
        fp=sum(b - a for a, b in rec.hyp) - tp,
        ref_true=sum(b - a for a, b in rec.ref),
        duration_s=rec.n_seconds,
    )


def merge_and_cut(runs: Runs) -> list[tuple[int, int]]:
    """Rule 4's event preparation: merge gaps under 90 s, then cut events over 300 s."""
    merged: list[tuple[int, int]] = []
    for a, b in runs:
        if merged and a - merged[-1][1] < MIN_GAP_S:
            merged[-1] = (merged[-1][0], b)
        else:
            merged.append((a, b))
    pieces: list[tuple[int, int]] = []
    for a, b in merged:
        while b - a > MAX_EVENT_S:
            pieces.append((a, a + MAX_EVENT_S))
            a += MAX_EVENT_S
        pieces.append((a, b))
    return pieces


def _hits_any(lo: int, hi: int, spans: Sequence[tuple[int, int]]) -> bool:
    """Does ``[lo, hi)`` overlap one of the sorted ``spans``?"""
    for a, b in spans:
        if a >= hi:
            return False
        if b > lo:
            return True
    return False


def event_counts(rec: SzcoreRecording) -> Counts:
    """Rule 4: event counts of one recording."""
    ref_events = merge_and_cut(rec.ref)
    hyp_events = merge_and_cut(rec.hyp)
    # The hypothesis mask after merging covers the merged gaps; cutting changes no mask.
    tp, hit_spans = 0, []
    for a, b in ref_events:
        lo, hi = max(0, a - TOLERANCE_BEFORE_S), min(rec.n_seconds, b + TOLERANCE_AFTER_S)
        if _hits_any(lo, hi, hyp_events):
            tp += 1
            hit_spans.append((lo, hi))
    hit_spans.sort()
    fp = sum(1 for a, b in hyp_events if not _hits_any(a, b, hit_spans))
    return Counts(tp=tp, fp=fp, ref_true=len(ref_events), duration_s=rec.n_seconds)


def _nan_stats(values: list[float]) -> tuple[float, float]:
    """(nanmean, nanstd) as numpy gives them, NaN (without a warning) when all are NaN."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        arr = np.asarray(values, dtype=np.float64)
        return float(np.nanmean(arr)), float(np.nanstd(arr))


#: One recording's counts: (sample-based, event-based).
RecordingCounts = tuple[Counts, Counts]


def count_recordings(recordings: Sequence[SzcoreRecording]) -> list[RecordingCounts]:
    """Per recording, its sample- and event-based counts (rules 3 and 4), computed once for
    every figure and interval that follows."""
    return [(sample_counts(rec), event_counts(rec)) for rec in recordings]


def evaluate_recordings(
    recordings: Sequence[SzcoreRecording],
    avg_per_subject: bool = True,
    counts: Sequence[RecordingCounts] | None = None,
) -> dict[str, dict[str, float]]:
    """``{"sample_results": {...}, "event_results": {...}}`` as szcore-evaluation returns it.

    With ``avg_per_subject`` (the scorer's default) each block holds ``sensitivity``,
    ``sensitivity_std``, ``precision``, ``precision_std``, ``f1``, ``f1_std``, ``fpRate``,
    ``fpRate_std`` over subjects; without it, the four pooled figures. ``counts`` are
    :func:`count_recordings` of ``recordings``, when already computed.
    """
    if not recordings:
        raise ValueError("SzCORE: no recordings to score")
    per_subject: dict[str, tuple[Counts, Counts]] = {}
    for rec, (rec_sample, rec_event) in zip(
        recordings, counts if counts is not None else count_recordings(recordings), strict=True
    ):
        sample, event = per_subject.setdefault(rec.subject, (Counts(), Counts()))
        sample += rec_sample
        event += rec_event
    out: dict[str, dict[str, float]] = {}
    for mode, index, fs in (("sample_results", 0, 1), ("event_results", 1, 10)):
        block: dict[str, float] = {}
        if avg_per_subject:
            figures = [c[index].figures(fs) for _, c in sorted(per_subject.items())]
            for metric in METRICS:
                mean, std = _nan_stats([f[metric] for f in figures])
                block[metric], block[f"{metric}_std"] = mean, std
        else:
            total = Counts()
            for c in per_subject.values():
                total += c[index]
            block = total.figures(fs)
        out[mode] = block
    return out


def nan_to_none(value: object) -> object:
    """A result with every NaN replaced by ``None`` (JSON ``null``), structure kept."""
    if isinstance(value, Mapping):
        return {k: nan_to_none(v) for k, v in value.items()}
    if isinstance(value, float) and math.isnan(value):
        return None
    return value


def szcore_figures(
    recordings: Sequence[SzcoreRecording], counts: Sequence[RecordingCounts] | None = None
) -> dict[str, object]:
    """The two official outputs, JSON-ready: per-subject (the default) and pooled.

    ``{"szcore_evaluation": {"sample_results", "event_results"},
    "szcore_evaluation_pooled": {...}}`` with ``null`` for NaN.
    """
    counts = counts if counts is not None else count_recordings(recordings)
    return {
        "szcore_evaluation": nan_to_none(evaluate_recordings(recordings, True, counts)),
        "szcore_evaluation_pooled": nan_to_none(evaluate_recordings(recordings, False, counts)),
    }
