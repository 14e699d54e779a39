"""The threshold sweep: every figure of many hysteresis thresholds over one corpus.

:class:`SweepScorer` is the engine: the tracks are packed once and each ``(tau_on,
tau_off)`` pair costs one hysteresis pass and per-record NEDC scoring. Validation uses its
OVLP points (:func:`sens_at_fa`, through :func:`brain_go_brr.scoring.metrics.score_tracks`);
``evaluate.py`` adds the official SzCORE figures of each point (:func:`threshold_sweep`),
the best point per FA target for every scorer (:func:`best_at_fa`) and their bootstrap
intervals (:func:`sens_at_fa_intervals`). Only the hysteresis thresholds change along a
sweep (``tau_off = max(0, tau_on - tau_gap)``); every other post-processing setting is kept.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from brain_go_brr.annotations import Event
from brain_go_brr.post.postprocess import PostConfig, ProbabilityTracks, Runs
from brain_go_brr.scoring import bootstrap, nedc, szcore

#: The scorers a sweep reports: NEDC OVLP and TAES, and SzCORE's event-based figure pooled.
SCORERS = ("ovlp", "taes", "szcore")
FA_TARGETS: tuple[float, ...] = (1.0, 2.5, 5.0, 10.0)
#: tau_on grid of the sweep: 100 points, denser towards 1 where low FA rates live, and
#: about 0.025 apart around 0.5, where focal-loss models keep many of their seizure peaks.
DEFAULT_TAU_GRID: tuple[float, ...] = tuple(
    float(t) for t in np.round(1.0 - np.geomspace(0.98, 0.005, 100), 4)
)
DEFAULT_TAU_GAP = 0.08  # tau_on - tau_off of the default config (0.86 - 0.78)


@dataclass
class RecordTrack:
    """One record's reference seizures and probability track for :func:`score_tracks`.

    ``prob`` is ``(n_samples,)`` at ``PostConfig.sfreq`` (256 Hz), e.g. from
    :func:`brain_go_brr.post.stitch_windows`; ``reference`` are its seizure events.
    """

    record_id: str
    subject: str
    duration_s: float
    reference: list[Event]
    prob: np.ndarray = field(repr=False)


def fa_key(target: float) -> str:
    """``1.0 -> "1"``, ``2.5 -> "2.5"``: the key of a FA target in results and metric names."""
    return f"{target:g}"


@dataclass
class SweepPoint:
    """NEDC figures of one threshold pair over the corpus.

    ``per_record`` is ``(R, 6)``: per record OVLP hits, misses, false alarms, then TAES hits,
    misses, false alarms (what the patient-level bootstrap resamples).
    """

    tau_on: float
    tau_off: float
    ovlp: nedc.Counts
    taes: nedc.Counts
    duration_s: float
    per_record: np.ndarray = field(default_factory=lambda: np.zeros((0, 6)), repr=False)

    @property
    def ovlp_fa_per_24h(self) -> float:
        return nedc.fa_per_24h(self.ovlp.false_alarms, self.duration_s) or 0.0


class SweepScorer:
    """NEDC OVLP and TAES of many thresholds over one corpus, reusing all per-corpus work.

    The tracks are packed once (:class:`ProbabilityTracks`); the reference seizures are
    put in NEDC form once; each threshold then costs one hysteresis pass over the blocks
    that can exceed it, run-level post-processing, and per-record scoring of the records
    that have both reference seizures and detections.
    """

    def __init__(self, records: Sequence[RecordTrack], post: PostConfig) -> None:
        self.post = post
        self.tracks = ProbabilityTracks([r.prob for r in records])
        self.refs: list[tuple[list[float], list[float]]] = []
        durations = []
        for rec in records:
            ref = nedc.nedc_spans(nonempty(rec.reference), rec.duration_s)
            self.refs.append(nedc.label_times(ref, "seiz"))
            durations.append(ref[-1][1])
        self.durations = np.array(durations)  # (R,) s, as NEDC counts them
        self.duration_s = float(sum(durations))
        self.n_targets = np.array([len(s) for s, _ in self.refs])

    def hypotheses(self, tau_on: float, tau_off: float) -> Runs:
        """Detections as NEDC reads them back: the pieces of a split event touch, so join."""
        runs = self.tracks.runs(self.post.with_thresholds(tau_on, tau_off))
        if runs.start.size < 2:
            return runs
        touch = (runs.record[1:] == runs.record[:-1]) & (runs.start[1:] == runs.stop[:-1])
        first = np.flatnonzero(np.concatenate(([True], ~touch)))
        last = np.concatenate((first[1:] - 1, [runs.start.size - 1]))
        return Runs(runs.record[first], runs.start[first], runs.stop[last])

    def score(self, tau_on: float, tau_off: float) -> SweepPoint:
        runs = self.hypotheses(tau_on, tau_off)
        # (R, 6): OVLP hits, misses, FA; TAES hits, misses, FA. Every target is a miss until
        # its record is scored.
        per_record = np.zeros((len(self.tracks), 6))
        per_record[:, 1] = per_record[:, 4] = self.n_targets
        bounds = np.searchsorted(runs.record, np.arange(len(self.tracks) + 1))
        starts = runs.start / self.post.sfreq
        stops = runs.stop / self.post.sfreq
        for rec in np.flatnonzero(np.diff(bounds)).tolist():
            lo, hi = int(bounds[rec]), int(bounds[rec + 1])
            if self.n_targets[rec] == 0:
                per_record[rec, 2] = per_record[rec, 5] = hi - lo
                continue
            ref_start, ref_stop = self.refs[rec]
            hyp_start, hyp_stop = starts[lo:hi].tolist(), stops[lo:hi].tolist()
            o, t = nedc.score_times(ref_start, ref_stop, hyp_start, hyp_stop)
            per_record[rec] = (o.hits, o.misses, o.false_alarms, t.hits, t.misses, t.false_alarms)
        n_targets = float(self.n_targets.sum())
        total = per_record.sum(axis=0)
        ovlp = nedc.Counts(n_targets, float(total[0]), float(total[1]), float(total[2]))
        taes = nedc.Counts(n_targets, float(total[3]), float(total[4]), float(total[5]))
        return SweepPoint(tau_on, tau_off, ovlp, taes, self.duration_s, per_record)

    def sweep(self, tau_grid: Sequence[float], tau_gap: float) -> list[SweepPoint]:
        # rounding keeps 0.86 - 0.08 at 0.78 instead of 0.7800000000000001
        return [self.score(t, round(max(0.0, t - tau_gap), 9)) for t in tau_grid]


def pick_at_fa(
    candidates: Sequence[tuple[float | None, float | None, float, float]],
    fa_targets: Sequence[float] = FA_TARGETS,
) -> dict[str, dict[str, float] | None]:
    """Per FA target, the best candidate whose FA/24h is at most the target.

    ``candidates``: ``(sensitivity, fa_per_24h, tau_on, tau_off)`` per sweep point; ``None``
    sensitivity (no reference seizure) or FA rate never qualifies. Ties go to the lower FA
    rate; points with the same sensitivity and rate (a plateau of the sweep) give the middle
    one in ``tau_on`` order (the lower of two middles), the threshold farthest from both
    ends of the plateau, not its lowest. ``None`` for a target that no point reaches.
    """
    out: dict[str, dict[str, float] | None] = {}
    for target in fa_targets:
        ok = [c for c in candidates if c[0] is not None and c[1] is not None and c[1] <= target]
        best = None
        if ok:
            top = max((c[0], -c[1]) for c in ok)  # type: ignore[operator]
            tied = sorted((c for c in ok if (c[0], -c[1]) == top), key=lambda c: c[2])  # type: ignore[operator]
            best = tied[(len(tied) - 1) // 2]
        out[fa_key(target)] = (
            None
            if best is None
            else {
                "sensitivity": float(best[0]),  # type: ignore[arg-type]
                "tau_on": best[2],
                "tau_off": best[3],
                "fa_per_24h": float(best[1]),  # type: ignore[arg-type]
            }
        )
    return out


def sens_at_fa(
    points: Sequence[SweepPoint], fa_targets: Sequence[float] = FA_TARGETS
) -> dict[str, dict[str, float] | None]:
    """Best OVLP sensitivity at OVLP FA/24h <= each target (see the module docstring)."""
    candidates = [
        (p.ovlp.sensitivity if p.ovlp.targets > 0 else None, p.ovlp_fa_per_24h, p.tau_on, p.tau_off)
        for p in points
    ]
    return pick_at_fa(candidates, fa_targets)


def nonempty(events: Sequence[Event]) -> list[Event]:
    """Drop zero-length events (clipping can make them; NEDC cannot score them)."""
    return [e for e in events if e.stop_s > e.start_s]


def runs_to_events(
    runs: Runs, n_records: int, sfreq: float, confidence: np.ndarray | None = None
) -> list[list[Event]]:
    """Per record, its runs as seizure events in seconds (``confidence``: (E,) per run)."""
    out: list[list[Event]] = [[] for _ in range(n_records)]
    conf = confidence.tolist() if confidence is not None else [1.0] * runs.start.size
    for rec, a, b, c in zip(
        runs.record.tolist(), runs.start.tolist(), runs.stop.tolist(), conf, strict=True
    ):
        out[rec].append(Event(a / sfreq, b / sfreq, "seiz", float(c)))
    return out


@dataclass
class SweepCounts:
    """Per threshold and record, what the bootstrap resamples: for each scorer ``(P, R, 3)``
    hits, misses and false alarms, and ``(R,)`` the seconds its FA rate counts over."""

    counts: dict[str, np.ndarray]
    seconds: dict[str, np.ndarray]


def threshold_sweep(
    records: Sequence[RecordTrack],
    post: PostConfig,
    tau_grid: Sequence[float],
    tau_gap: float,
    counts: SweepCounts | None = None,
    sweeper: SweepScorer | None = None,
) -> list[dict[str, Any]]:
    """Sensitivity and FA/24h of OVLP, TAES and SzCORE at each ``(tau_on, tau_on - gap)``.

    Only the hysteresis thresholds change; every other ``post`` setting is kept. The SzCORE
    figures are the official event-based ones pooled over records (``szcore`` scorer). With
    ``counts`` (empty), it is filled with the per-record counts behind every point.
    ``sweeper``: a :class:`SweepScorer` already built for these ``records`` and ``post``.
    """
    sweeper = SweepScorer(records, post) if sweeper is None else sweeper
    durations = [r.duration_s for r in records]
    subjects = [r.subject for r in records]
    refs = [szcore.runs_from_events(nonempty(r.reference), r.duration_s) for r in records]
    rows = []
    nedc_counts, sz_counts = [], []
    for point in sweeper.sweep(tau_grid, tau_gap):
        runs = sweeper.hypotheses(point.tau_on, point.tau_off)
        hyps = runs_to_events(runs, len(records), post.sfreq)
        recordings = [
            szcore.SzcoreRecording(subject, n, ref, szcore.runs_from_events(hyp, dur)[1])
            for subject, (n, ref), hyp, dur in zip(subjects, refs, hyps, durations, strict=True)
        ]
        events = [szcore.event_counts(r) for r in recordings]  # pooled: only sums matter
        total = szcore.Counts()
        for c in events:
            total += c
        sz = szcore.nan_to_none(total.figures(fs=10))
        assert isinstance(sz, dict)
        if counts is not None:
            nedc_counts.append(point.per_record)
            sz_counts.append([(c.tp, c.ref_true - c.tp, c.fp) for c in events])
        rows.append(
            {
                "tau_on": point.tau_on,
                "tau_off": point.tau_off,
                "ovlp": {
                    "sensitivity": point.ovlp.sensitivity,
                    "fa_per_24h": nedc.fa_per_24h(point.ovlp.false_alarms, point.duration_s),
                },
                "taes": {
                    "sensitivity": point.taes.sensitivity,
                    "fa_per_24h": nedc.fa_per_24h(point.taes.false_alarms, point.duration_s),
                },
                "szcore": {"sensitivity": sz["sensitivity"], "fa_per_24h": sz["fpRate"]},
            }
        )
    if counts is not None and rows:
        per_point = np.stack(nedc_counts)  # (P, R, 6)
        counts.counts.update({
            "ovlp": per_point[..., 0:3], "taes": per_point[..., 3:6],
            "szcore": np.array(sz_counts, dtype=np.float64),
        })  # fmt: skip
        counts.seconds.update({
            "ovlp": sweeper.durations, "taes": sweeper.durations,
            "szcore": np.array([n for n, _ in refs], dtype=np.float64),
        })  # fmt: skip
    return rows


def sens_at_fa_intervals(
    result: dict[str, Any], counts: SweepCounts, boot: bootstrap.Bootstrap
) -> None:
    """Add ``sensitivity_ci95`` to every ``sens_at_fa`` point of every scorer, in place."""
    for name in SCORERS:
        if name not in counts.counts:
            continue
        swept = boot.totals(np.moveaxis(counts.counts[name], 1, 0))  # (B, P, 3)
        days = boot.totals(counts.seconds[name])[:, None] / 86400.0
        for key, point in result[name]["sens_at_fa"].items():
            if point is not None:
                values = bootstrap.sens_at_fa(
                    swept[..., 0], swept[..., 1], swept[..., 2] / days, float(key)
                )
                point["sensitivity_ci95"] = bootstrap.interval(values)


def best_at_fa(
    sweep: Sequence[dict[str, Any]], scorer: str, fa_targets: Sequence[float]
) -> dict[str, dict[str, float] | None]:
    """Per FA target, the sweep point with the best ``scorer`` sensitivity at FA/24h <= target.

    The same rule as :func:`brain_go_brr.scoring.metrics.sens_at_fa` (ties: the lower FA
    rate), applied to any scorer of :func:`threshold_sweep`; ``None`` when no point of the
    grid gets that low (or the split has no reference seizure).
    """
    return pick_at_fa(
        [
            (row[scorer]["sensitivity"], row[scorer]["fa_per_24h"], row["tau_on"], row["tau_off"])
            for row in sweep
        ],
        fa_targets,
    )
