"""SzCORE event scoring through the pinned ``timescoring`` package (EpilepsyBench's scorer).

Parameters (SzCORE's defaults): a reference event is detected when a hypothesis overlaps it
after extending it 30 s before and 60 s after; events closer than 90 s are merged and events
longer than 300 s split, in both reference and hypothesis, before matching; a hypothesis
that touches no extended, detected reference is a false positive. ``timescoring`` works on
10 Hz masks.

Figures are given two ways: **pooled** (true positives, false positives, reference events and
durations summed over every record, then the ratios) and **per subject** (the same ratios
within each subject, then their mean over subjects; a subject without reference seizures
has no sensitivity and is left out of that mean).
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

from brain_go_brr.annotations import Event

TOLERANCE_START_S = 30.0
TOLERANCE_END_S = 60.0
MIN_GAP_S = 90.0
MAX_EVENT_S = 300.0
_FS = 10  # timescoring's own event-scoring rate


@dataclass
class SzcoreCounts:
    """Event counts of one record (or a sum of records)."""

    ref_events: int = 0
    true_positives: int = 0
    false_positives: int = 0
    duration_s: float = 0.0

    def __add__(self, other: SzcoreCounts) -> SzcoreCounts:
        return SzcoreCounts(
            self.ref_events + other.ref_events,
            self.true_positives + other.true_positives,
            self.false_positives + other.false_positives,
            self.duration_s + other.duration_s,
        )

    def summary(self) -> dict[str, float | None]:
        """sensitivity, precision, f1 (timescoring's formulas) and fp_per_24h; None if undefined."""
        tp, fp, ref = self.true_positives, self.false_positives, self.ref_events
        return {
            "sensitivity": tp / ref if ref else None,
            "precision": tp / (tp + fp) if tp + fp else None,
            "f1": 2 * tp / (2 * tp + fp + (ref - tp)) if ref + fp else None,
            "fp_per_24h": fp / self.duration_s * 86400.0 if self.duration_s > 0 else None,
        }


def score_record(ref: Sequence[Event], hyp: Sequence[Event], duration_s: float) -> SzcoreCounts:
    """SzCORE counts of one record; events in seconds, clipped to the recording."""
    try:
        from timescoring import scoring
        from timescoring.annotations import Annotation
    except ImportError as exc:  # pragma: no cover - timescoring is a pinned dependency
        raise ImportError(
            "SzCORE scoring needs the 'timescoring' package (pinned in pyproject.toml); "
            "run 'make setup'"
        ) from exc
    n_samples = round(duration_s * _FS)

    def spans(events: Sequence[Event]) -> list[tuple[float, float]]:
        clipped = ((max(0.0, e.start_s), min(duration_s, e.stop_s)) for e in events)
        return sorted((a, b) for a, b in clipped if b > a)

    params = scoring.EventScoring.Parameters(
        toleranceStart=TOLERANCE_START_S,
        toleranceEnd=TOLERANCE_END_S,
        minOverlap=0,
        maxEventDuration=MAX_EVENT_S,
        minDurationBetweenEvents=MIN_GAP_S,
    )
    result = scoring.EventScoring(
        Annotation(spans(ref), _FS, n_samples), Annotation(spans(hyp), _FS, n_samples), params
    )
    return SzcoreCounts(int(result.refTrue), int(result.tp), int(result.fp), float(duration_s))


def _mean(values: list[float | None]) -> float | None:
    kept = [v for v in values if v is not None and not math.isnan(v)]
    return sum(kept) / len(kept) if kept else None


def summarize(
    counts: Sequence[SzcoreCounts], subjects: Sequence[str]
) -> tuple[dict[str, float | None], dict[str, float | None]]:
    """(pooled, per-subject mean) figures of per-record counts."""
    pooled = sum(counts, SzcoreCounts()).summary()
    by_subject: dict[str, SzcoreCounts] = defaultdict(SzcoreCounts)
    for subject, c in zip(subjects, counts, strict=True):
        by_subject[subject] = by_subject[subject] + c
    summaries = [c.summary() for c in by_subject.values()]
    per_subject = {key: _mean([s[key] for s in summaries]) for key in pooled}
    return pooled, per_subject
