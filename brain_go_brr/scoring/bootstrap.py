"""Patient-level bootstrap: a 95 % interval for every figure a results table shows.

Records of one patient are not independent (same brain, same electrodes, same seizure
type), so the unit of resampling is the subject: each resample draws as many subjects as
the split has, with replacement (seeded), and every figure is recomputed from the records
of the drawn subjects, a subject drawn twice counting twice. The interval is the 2.5th and
97.5th percentile over resamples.

It is vectorised: every figure is a function of counts that add up over records (hits,
misses, false alarms, seconds, SzCORE's tp/fp, histograms of probabilities for AUROC), so
the counts are summed per subject once, and a resample is a matrix product of its subject
multiplicities ``(B, S)`` with the per-subject counts ``(S, ...)``.

A ratio can be undefined in a resample (no reference seizure drawn: sensitivity has no
denominator). Leaving those resamples out would make a split whose seizures all belong to
one subject look precise; instead an undefined resample counts as the worst value (0) for
the lower bound and the best value (1) for the upper bound, so the interval is as wide as
what the data cannot tell.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

LEVEL = 0.95
SECONDS_PER_DAY = 86400.0


@dataclass
class Bootstrap:
    """The resamples of one split's subjects.

    Args:
        subjects: the subject of each record, ``(R,)``.
        n_resamples: how many resamples (``B``); 0 turns intervals off.
        seed: of the draw: same seed, same intervals.
    """

    subjects: Sequence[str]
    n_resamples: int = 1000
    seed: int = 0

    def __post_init__(self) -> None:
        names, index = np.unique(
            np.asarray(self.subjects, dtype=object).astype(str), return_inverse=True
        )
        self.index = index.reshape(-1)  # (R,) subject of each record
        self.n_subjects = len(names)
        rng = np.random.default_rng(self.seed)
        p = np.full(self.n_subjects, 1.0 / self.n_subjects)
        self.weights = rng.multinomial(self.n_subjects, p, size=self.n_resamples).astype(np.float64)

    def description(self) -> dict[str, object]:
        """How the intervals were drawn (``bootstrap`` in results)."""
        return {"unit": "subject", "n_subjects": self.n_subjects,
                "n_resamples": self.n_resamples, "seed": self.seed, "level": LEVEL}  # fmt: skip

    def per_subject(self, per_record: np.ndarray) -> np.ndarray:
        """``(R, ...)`` -> ``(S, ...)``: counts summed over each subject's records."""
        per_record = np.asarray(per_record, dtype=np.float64)
        out = np.zeros((self.n_subjects, *per_record.shape[1:]))
        np.add.at(out, self.index, per_record)
        return out

    def totals(self, per_record: np.ndarray) -> np.ndarray:
        """``(R, ...)`` -> ``(B, ...)``: the counts of each resample."""
        per_subject = self.per_subject(per_record)
        return np.tensordot(self.weights, per_subject, axes=(1, 0))

    def subject_mean(self, per_subject_values: np.ndarray) -> np.ndarray:
        """``(S,)`` figures of subjects -> ``(B,)`` NaN-ignoring means over each resample."""
        values = np.asarray(per_subject_values, dtype=np.float64)
        known = np.isfinite(values)
        counted = self.weights @ known
        total = self.weights @ np.where(known, values, 0.0)
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(counted > 0, total / np.maximum(counted, 1e-300), np.nan)


def interval(values: np.ndarray, lo: float = 0.0, hi: float = 1.0) -> list[float] | None:
    """The 95 % percentile interval of ``(B,)`` resampled values.

    NaN (an undefined resample) counts as ``lo`` for the lower bound and ``hi`` for the upper
    (see the module docstring); ``None`` without resamples.
    """
    values = np.asarray(values, dtype=np.float64)
    if values.size == 0:
        return None
    tail = 100 * (1 - LEVEL) / 2
    low = np.percentile(np.where(np.isnan(values), lo, values), tail)
    high = np.percentile(np.where(np.isnan(values), hi, values), 100 - tail)
    return [float(low), float(high)]


def ratio(num: np.ndarray, den: np.ndarray, scale: float = 1.0) -> np.ndarray:
    """``scale * num / den`` per resample, NaN where ``den`` is 0."""
    num, den = np.asarray(num, dtype=np.float64), np.asarray(den, dtype=np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, scale * num / np.where(den > 0, den, 1.0), np.nan)


def rate_interval(values: np.ndarray) -> list[float] | None:
    """Interval of an unbounded rate (FA/24h); NaN resamples (no duration) are left out."""
    values = np.asarray(values, dtype=np.float64)
    values = values[np.isfinite(values)]
    return interval(values, 0.0, 0.0) if values.size else None


def auroc_histograms(levels: np.ndarray, labels: np.ndarray, n_levels: int) -> np.ndarray:
    """``(2, n_levels)`` counts of negative and positive samples per probability level."""
    levels = np.asarray(levels, dtype=np.int64)
    labels = np.asarray(labels, dtype=bool)
    return np.bincount(levels + n_levels * labels, minlength=2 * n_levels).reshape(2, n_levels)


def auroc_from_histograms(hist: np.ndarray) -> np.ndarray:
    """``(..., 2, L)`` negative/positive level histograms -> ``(...)`` AUROC (ties count
    one half); NaN without both classes. Exact for scores that take the ``L`` levels."""
    neg, pos = hist[..., 0, :], hist[..., 1, :]
    below = np.cumsum(neg, axis=-1) - neg  # negatives strictly below each level
    u = (pos * (below + 0.5 * neg)).sum(axis=-1)
    return ratio(u, pos.sum(axis=-1) * neg.sum(axis=-1))


def sens_at_fa(
    hits: np.ndarray, misses: np.ndarray, fa_per_24h: np.ndarray, target: float
) -> np.ndarray:
    """``(B, P)`` sensitivities' counts and rates of a threshold sweep -> ``(B,)`` the best
    sensitivity whose FA/24h is at most ``target`` (0 where no threshold gets there, as no
    operating point is credited; NaN without reference seizures)."""
    sens = ratio(hits, hits + misses)  # (B, P)
    ok = (fa_per_24h <= target) & np.isfinite(sens)
    best = np.where(ok, sens, -1.0).max(axis=1)
    best = np.where(best < 0, 0.0, best)
    return np.where(np.isnan(sens).all(axis=1), np.nan, best)
