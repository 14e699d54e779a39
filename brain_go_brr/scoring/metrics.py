"""Corpus-level scoring: the one implementation behind validation, ``evaluate.py`` and ``score``.

Two entry points:

* :func:`score_events` — reference and hypothesis *events* per record (what ``brain-go-brr
  score`` reads from csv_bi files).
* :func:`score_tracks` — reference events and a per-sample *probability track* per record
  (what validation and evaluation produce). It adds the sample-level AUROC and the
  sensitivity at fixed false-alarm rates from a threshold sweep, and scores the events of
  the configured operating point exactly as :func:`score_events` would.

Both return a JSON-ready dict::

    {"n_records": int, "duration_s": float,
     "ovlp":  {"targets", "hits", "misses", "false_alarms", "sensitivity", "fa_per_24h"},
     "taes":  {same keys},
     "szcore_evaluation": {"sample_results": {...}, "event_results": {...}},  # official,
     "szcore_evaluation_pooled": {...},                                       # see szcore.py
     "szcore": {"sensitivity", "precision", "f1", "fp_per_24h"},  # = pooled event_results
     # score_tracks only:
     "auroc": float | None,
     "sens_at_fa": {"1": {"sensitivity", "tau_on", "tau_off", "fa_per_24h"} | None,
                    "2.5": ..., "5": ..., "10": ...},
     "curve": [{"tau_on", "tau_off", "sensitivity", "fa_per_24h"}, ...]}   # OVLP, per tau

Definitions: sensitivities are fractions; FA per 24 h counts seizure false alarms only, over
the total reference duration (NEDC: the sum of the files' durations). ``sens_at_fa[k]`` is
the best NEDC OVLP sensitivity among the sweep's thresholds whose OVLP FA/24h is at most
``k`` (ties: the lower FA rate, then the middle threshold of a plateau;
:func:`~brain_go_brr.scoring.sweep.pick_at_fa`), with the threshold used and the rate
reached; ``None`` when no threshold of the grid gets that low. The sweep varies ``tau_on`` over ``tau_grid``
with ``tau_off = max(0, tau_on - tau_gap)`` and keeps every other post-processing setting.
:func:`flatten` turns a result into ``stage/name`` metrics for loggers.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from brain_go_brr.annotations import Event
from brain_go_brr.post.postprocess import PostConfig, ProbabilityTracks
from brain_go_brr.scoring import bootstrap, nedc, szcore
from brain_go_brr.scoring.sweep import (
    DEFAULT_TAU_GAP,
    DEFAULT_TAU_GRID,
    FA_TARGETS,
    RecordTrack,
    SweepPoint,
    SweepScorer,
    fa_key,
    nonempty,
    pick_at_fa,
    sens_at_fa,
)

__all__ = [  # the sweep's names are re-exported: validation and evaluation import them here
    "DEFAULT_TAU_GAP",
    "DEFAULT_TAU_GRID",
    "FA_TARGETS",
    "RecordEvents",
    "RecordTrack",
    "SweepPoint",
    "SweepScorer",
    "add_intervals",
    "auroc",
    "fa_key",
    "flatten",
    "nonempty",
    "pick_at_fa",
    "score_events",
    "score_tracks",
    "sens_at_fa",
]


@dataclass
class RecordEvents:
    """One record's reference and hypothesis events (seconds) for :func:`score_events`."""

    record_id: str
    subject: str
    duration_s: float
    ref: list[Event]
    hyp: list[Event]


def auroc(scores: np.ndarray, labels: np.ndarray) -> float | None:
    """Area under the ROC curve of per-sample ``scores`` against boolean ``labels``.

    Rank-based (Mann–Whitney U, ties count one half), exact; ``None`` when the labels hold
    one class only (e.g. a dev subset without seizures).
    """
    labels = np.asarray(labels, dtype=bool)
    scores = np.asarray(scores)
    pos, neg = np.sort(scores[labels]), np.sort(scores[~labels])
    if pos.size == 0 or neg.size == 0:
        return None
    below = np.searchsorted(neg, pos, side="left").sum(dtype=np.float64)
    ties = np.searchsorted(neg, pos, side="right").sum(dtype=np.float64) - below
    return float((below + 0.5 * ties) / (float(pos.size) * float(neg.size)))


def _nedc_record(rec: RecordEvents) -> tuple[list[nedc.Span], list[nedc.Span], float]:
    ref = nedc.nedc_spans(rec.ref, rec.duration_s)
    hyp = nedc.nedc_spans(rec.hyp, rec.duration_s)
    return ref, hyp, ref[-1][1]


def szcore_scorer_row(figures: dict[str, object]) -> dict[str, float | None]:
    """SzCORE's event-based pooled figures under the project's key names: the ``szcore``
    scorer of results tables and threshold sweeps (``fpRate`` -> ``fp_per_24h``)."""
    pooled = figures["szcore_evaluation_pooled"]["event_results"]  # type: ignore[index]
    return {
        "sensitivity": pooled["sensitivity"],
        "precision": pooled["precision"],
        "f1": pooled["f1"],
        "fp_per_24h": pooled["fpRate"],
    }


def score_events(
    records: Sequence[RecordEvents],
    *,
    per_record: bool = False,
    szcore_recordings: Sequence[szcore.SzcoreRecording] | None = None,
    n_resamples: int = 0,
    seed: int = 0,
) -> dict[str, object]:
    """NEDC OVLP/TAES and SzCORE figures of the seizure label over ``records``.

    With ``per_record`` the result also has ``"records"``: per record its id and OVLP/TAES
    counts (seizure label). SzCORE scores each record as its written events.tsv pair would
    be scored, unless ``szcore_recordings`` gives the recordings as read from such files.
    With ``n_resamples`` > 0 the figures get their 95 % patient-level bootstrap intervals
    (``*_ci95``: ``sensitivity_ci95`` and ``fa_per_24h_ci95`` of ``ovlp`` and ``taes``, those
    of ``szcore``, ``szcore_evaluation_ci95`` and ``szcore_evaluation_pooled_ci95``) and
    ``bootstrap`` says how they were drawn.
    """
    ovlp_total, taes_total, duration = nedc.Counts(), nedc.Counts(), 0.0
    rows, sz_records, counts = [], [], []
    for rec in records:
        ref, hyp, rec_duration = _nedc_record(rec)
        ovlp, taes = nedc.score_spans(ref, hyp, "seiz")
        ovlp_total, taes_total = ovlp_total + ovlp, taes_total + taes
        duration += rec_duration
        counts.append((ovlp.hits, ovlp.misses, ovlp.false_alarms, taes.hits, taes.misses,
                       taes.false_alarms, rec_duration))  # fmt: skip
        if szcore_recordings is None:
            sz_records.append(
                szcore.recording_from_events(rec.subject, rec.ref, rec.hyp, rec.duration_s)
            )
        if per_record:
            rows.append({"record_id": rec.record_id, "ovlp": vars(ovlp), "taes": vars(taes)})
    recordings = sz_records if szcore_recordings is None else list(szcore_recordings)
    sz_counts = szcore.count_recordings(recordings)
    official = szcore.szcore_figures(recordings, sz_counts)
    result: dict[str, object] = {
        "n_records": len(records),
        "duration_s": duration,
        "ovlp": ovlp_total.summary(duration),
        "taes": taes_total.summary(duration),
        "szcore": szcore_scorer_row(official),
        **official,
    }
    if n_resamples > 0 and records:
        boot = bootstrap.Bootstrap([r.subject for r in records], n_resamples, seed)
        nedc_intervals(result, boot, np.array(counts, dtype=np.float64))
        szcore_intervals(result, boot, sz_counts)
        result["bootstrap"] = boot.description()
    if per_record:
        result["records"] = rows
    return result


def _sample_labels(
    tracks: ProbabilityTracks, records: Sequence[RecordTrack], sfreq: float
) -> tuple[np.ndarray, np.ndarray]:
    """Per-sample seizure labels in the packed layout, and the mask of real samples."""
    labels = np.zeros(tracks.data.size, dtype=bool)
    for i, rec in enumerate(records):
        base, n = int(tracks.offsets[i]), int(tracks.lengths[i])
        for e in rec.reference:
            a, b = max(0, round(e.start_s * sfreq)), min(n, round(e.stop_s * sfreq))
            labels[base + a : base + b] = True
    return labels, tracks.data >= 0


def score_tracks(
    records: Sequence[RecordTrack],
    post: PostConfig,
    fa_targets: Sequence[float] = FA_TARGETS,
    tau_grid: Sequence[float] = DEFAULT_TAU_GRID,
    tau_gap: float = DEFAULT_TAU_GAP,
    n_resamples: int = 1000,
    seed: int = 0,
    scorer: SweepScorer | None = None,
) -> dict[str, object]:
    """Every figure of the module docstring for probability tracks of whole records.

    With ``n_resamples`` > 0 each figure also gets its 95 % patient-level bootstrap interval
    (:mod:`brain_go_brr.scoring.bootstrap`): those of :func:`score_events`, then
    :func:`add_intervals` (AUROC, ``sens_at_fa``). ``scorer``: a :class:`SweepScorer` already
    built for these ``records`` and ``post`` (the tracks are packed once per caller).
    """
    if not records:
        raise ValueError("score_tracks: no records to score")
    for rec in records:
        expected = round(rec.duration_s * post.sfreq)
        if abs(len(rec.prob) - expected) > 1:
            raise ValueError(
                f"{rec.record_id}: probability track has {len(rec.prob)} samples but "
                f"duration_s={rec.duration_s} at {post.sfreq} Hz needs {expected}; stitch the "
                "windows of the whole record (brain_go_brr.post.stitch_windows)"
            )
    scorer = SweepScorer(records, post) if scorer is None else scorer
    events = scorer.tracks.events(post)
    result = score_events(
        [
            RecordEvents(r.record_id, r.subject, r.duration_s, nonempty(r.reference), ev)
            for r, ev in zip(records, events, strict=True)
        ],
        n_resamples=n_resamples,
        seed=seed,
    )
    labels, real = _sample_labels(scorer.tracks, records, post.sfreq)
    result["auroc"] = auroc(scorer.tracks.data[real], labels[real])
    points = scorer.sweep(tau_grid, tau_gap)
    result["sens_at_fa"] = sens_at_fa(points, fa_targets)
    result["curve"] = [
        {
            "tau_on": p.tau_on,
            "tau_off": p.tau_off,
            "sensitivity": p.ovlp.sensitivity,
            "fa_per_24h": p.ovlp_fa_per_24h,
        }
        for p in points
    ]
    if n_resamples > 0:
        boot = bootstrap.Bootstrap([r.subject for r in records], n_resamples, seed)
        add_intervals(result, boot, scorer, labels, real, points)
    return result


_PROB_LEVELS = 256  # AUROC intervals from 8-bit probability levels (what the eval cache keeps)


def add_intervals(
    result: dict[str, object],
    boot: bootstrap.Bootstrap,
    scorer: SweepScorer,
    labels: np.ndarray,
    real: np.ndarray,
    points: Sequence[SweepPoint] = (),
) -> None:
    """Add the 95 % patient-level intervals of the track figures, in place: ``auroc_ci95``
    and each ``sens_at_fa`` point's ``sensitivity_ci95`` (the event figures' come from
    :func:`score_events`). AUROC intervals use the probabilities in 256 levels (exact for
    8-bit cached tracks)."""
    if points:
        swept = boot.totals(np.stack([p.per_record for p in points], axis=1))  # (B, P, 6)
        days = boot.totals(scorer.durations)[:, None] / 86400.0
        for key, point in (result.get("sens_at_fa") or {}).items():  # type: ignore[attr-defined]
            if point is not None:
                values = bootstrap.sens_at_fa(
                    swept[..., 0], swept[..., 1], swept[..., 2] / days, float(key)
                )
                point["sensitivity_ci95"] = bootstrap.interval(values)
    if result.get("auroc") is not None:
        tracks = scorer.tracks
        hist = np.zeros((len(tracks), 2, _PROB_LEVELS))
        for i in range(len(tracks)):
            lo, hi = int(tracks.offsets[i]), int(tracks.offsets[i] + tracks.lengths[i])
            keep = real[lo:hi]
            levels = np.rint(tracks.data[lo:hi][keep] * (_PROB_LEVELS - 1))
            hist[i] = bootstrap.auroc_histograms(levels, labels[lo:hi][keep], _PROB_LEVELS)
        result["auroc_ci95"] = bootstrap.interval(
            bootstrap.auroc_from_histograms(boot.totals(hist))
        )


def nedc_intervals(
    result: dict[str, object], boot: bootstrap.Bootstrap, per_record: np.ndarray
) -> None:
    """``sensitivity_ci95`` and ``fa_per_24h_ci95`` of ``ovlp`` and ``taes``, in place, from
    ``(R, 7)`` per-record counts: OVLP hits, misses, FA, TAES hits, misses, FA, seconds."""
    totals = boot.totals(per_record)  # (B, 7)
    for name, (h, m, f) in (("ovlp", (0, 1, 2)), ("taes", (3, 4, 5))):
        figures = result[name]
        assert isinstance(figures, dict)
        figures["sensitivity_ci95"] = (
            bootstrap.interval(bootstrap.ratio(totals[:, h], totals[:, h] + totals[:, m]))
            if figures.get("sensitivity") is not None
            else None
        )
        figures["fa_per_24h_ci95"] = bootstrap.rate_interval(
            bootstrap.ratio(totals[:, f], totals[:, 6], 86400.0)
        )


def _szcore_ratios(counts: np.ndarray) -> dict[str, np.ndarray]:
    """SzCORE's four figures of ``(..., 4)`` counts (tp, fp, reference positives, seconds)."""
    tp, fp, ref, sec = counts[..., 0], counts[..., 1], counts[..., 2], counts[..., 3]
    return {
        "sensitivity": bootstrap.ratio(tp, ref),
        "precision": bootstrap.ratio(tp, tp + fp),
        "f1": bootstrap.ratio(2 * tp, 2 * tp + fp + (ref - tp)),
        "fpRate": bootstrap.ratio(fp, sec, 86400.0),
    }


def szcore_intervals(
    result: dict[str, object],
    boot: bootstrap.Bootstrap,
    counts: Sequence[szcore.RecordingCounts],
) -> None:
    """Intervals of the official SzCORE blocks (sample- and event-based, subjects and
    pooled), in place: ``szcore_evaluation_ci95``, ``szcore_evaluation_pooled_ci95`` and the
    ``*_ci95`` of ``szcore``; ``counts`` per recording, ``boot`` resamples their subjects."""
    by_mode = {
        mode: np.array([(c.tp, c.fp, c.ref_true, c.duration_s) for c in (rec[i] for rec in counts)],
                       dtype=np.float64).reshape(-1, 4)  # (R, 4)
        for i, mode in enumerate(("sample_results", "event_results"))
    }  # fmt: skip
    per_subject_ci: dict[str, dict[str, list[float] | None]] = {}
    pooled_ci: dict[str, dict[str, list[float] | None]] = {}
    for mode, per_record in by_mode.items():
        pooled = _szcore_ratios(boot.totals(per_record))  # per resample
        pooled_ci[mode] = {
            k: bootstrap.rate_interval(v) if k == "fpRate" else bootstrap.interval(v)
            for k, v in pooled.items()
        }
        subject_figures = _szcore_ratios(boot.per_subject(per_record))  # per subject
        per_subject_ci[mode] = {
            k: (bootstrap.rate_interval if k == "fpRate" else bootstrap.interval)(
                boot.subject_mean(v)
            )
            for k, v in subject_figures.items()
        }
    # no interval for a figure the point estimate leaves undefined
    for key, cis in (
        ("szcore_evaluation", per_subject_ci),
        ("szcore_evaluation_pooled", pooled_ci),
    ):
        block = result.get(key)
        for mode, figures in cis.items():
            point = block.get(mode, {}) if isinstance(block, dict) else {}
            for metric in figures:
                if point.get(metric) is None:
                    figures[metric] = None
    result["szcore_evaluation_ci95"] = per_subject_ci
    result["szcore_evaluation_pooled_ci95"] = pooled_ci
    sz = result.get("szcore")
    if isinstance(sz, dict):
        event = pooled_ci["event_results"]
        sz.update({
            "sensitivity_ci95": event["sensitivity"], "precision_ci95": event["precision"],
            "f1_ci95": event["f1"], "fp_per_24h_ci95": event["fpRate"],
        })  # fmt: skip


#: W&B / logger names of the official SzCORE blocks: (result key, averaging in the name).
_SZCORE_BLOCKS = (("szcore_evaluation", "subject"), ("szcore_evaluation_pooled", "pooled"))
_SZCORE_NAMES = {"sensitivity": "sensitivity", "precision": "precision", "f1": "f1",
                 "fpRate": "fp_per_24h"}  # fmt: skip


def flatten(result: dict[str, object], stage: str) -> dict[str, float]:
    """``stage/name`` metrics of a result (``val/auroc``, ``val/sens_at_10fa``, ...).

    NEDC: ``<stage>/ovlp_sensitivity``, ``<stage>/taes_fa_per_24h``, ... SzCORE, with the
    scoring mode and the averaging in the name: ``<stage>/szcore_event_subject_f1`` (the
    leaderboard figure: event-based, mean over subjects), ``..._event_pooled_...``,
    ``..._sample_subject_...``, ``..._sample_pooled_...``, each of ``sensitivity``,
    ``precision``, ``f1`` and ``fp_per_24h``. Intervals, where the result has them:
    ``<name>_ci95_low`` and ``<name>_ci95_high`` (AUROC, OVLP/TAES sensitivity and FA/24h,
    ``sens_at_<k>fa``). Undefined figures are left out, except
    ``sens_at_<k>fa``, which is 0.0 when no threshold of the grid reaches ``k`` FA/24h (no
    operating point is credited), so that early stopping and checkpointing always find the key.
    """
    out: dict[str, float] = {}
    if result.get("auroc") is not None:
        out[f"{stage}/auroc"] = float(result["auroc"])  # type: ignore[arg-type]
    for scorer_name in ("ovlp", "taes"):
        figures = result.get(scorer_name) or {}
        for name, value in figures.items():  # type: ignore[attr-defined]
            if value is not None and name in {"sensitivity", "fa_per_24h"}:
                out[f"{stage}/{scorer_name}_{name}"] = float(value)
    for key, averaging in _SZCORE_BLOCKS:
        block = result.get(key) or {}
        for mode in ("sample", "event"):
            for name, value in (block.get(f"{mode}_results") or {}).items():  # type: ignore[attr-defined]
                if name in _SZCORE_NAMES and value is not None:
                    out[f"{stage}/szcore_{mode}_{averaging}_{_SZCORE_NAMES[name]}"] = float(value)
    for key, point in (result.get("sens_at_fa") or {}).items():  # type: ignore[attr-defined]
        out[f"{stage}/sens_at_{key}fa"] = float(point["sensitivity"]) if point else 0.0
        if point:
            out[f"{stage}/tau_at_{key}fa"] = float(point["tau_on"])
            _bounds(out, f"{stage}/sens_at_{key}fa", point.get("sensitivity_ci95"))
    _bounds(out, f"{stage}/auroc", result.get("auroc_ci95"))
    for scorer_name in ("ovlp", "taes"):
        figures = result.get(scorer_name) or {}
        for name in ("sensitivity", "fa_per_24h"):
            _bounds(out, f"{stage}/{scorer_name}_{name}", figures.get(f"{name}_ci95"))  # type: ignore[attr-defined]
    return out


def _bounds(out: dict[str, float], key: str, ci: object) -> None:
    """``key_ci95_low`` / ``key_ci95_high`` of an interval, when there is one."""
    if isinstance(ci, list | tuple) and len(ci) == 2:
        out[f"{key}_ci95_low"], out[f"{key}_ci95_high"] = float(ci[0]), float(ci[1])
