"""NEDC EEG Eval v6.0.0 scoring, OVLP and TAES, for one label at a time.

This is our own implementation of the rules that Temple's ``nedc_eeg_eval`` v6.0.0 applies
(checked against its published results on its demo set, ``tests/test_nedc.py``):

**Event lists.** NEDC scores each file's events after three steps (:func:`nedc_spans`):
sort by start; fill every gap (times rounded to 4 decimals) and the tail up to the
``# duration`` header with ``bckg``; join consecutive events of the same label into one
(so touching seizure rows become one event). A file's duration for the FA rate is the stop
of the last event of that list, i.e. the header duration.

**Whole-second overlap** (:func:`_whole_second_overlap`): two events overlap "for
pairing" when the sets of whole seconds ``int(start)..int(stop)`` intersect, so events
that only share a whole second count as overlapping.

**OVLP** (:func:`ovlp_counts`): a reference event is a hit when a hypothesis event of the
label overlaps it strictly in real time (``h.stop > r.start and h.start < r.stop``), else a
miss; a hypothesis event that overlaps no reference strictly is a false alarm.

**TAES** (:func:`taes_counts`), with ``D = r.stop - r.start`` for a pair (r, h):

=====================================  ====================  ========================================
case                                   hit                   false alarm
=====================================  ====================  ========================================
h.start <= r.start and h.stop <= r.stop (h.stop - r.start)/D  min(1, (r.start - h.start)/D)
h.start >= r.start and h.stop >= r.stop (r.stop - h.start)/D  min(1, (h.stop - r.stop)/D)
h.start < r.start and h.stop > r.stop   1                     min(1, (h.stop - r.stop + r.start - h.start)/D)
otherwise (h inside r)                  (h.stop - h.start)/D  0
=====================================  ====================  ========================================

and the pair's miss is ``1 - hit``. References are walked in order; a reference is scored
only if it is unused and some hypothesis (used or not) overlaps it strictly. Then every
unused hypothesis that overlaps it by the whole-second rule, in order, is handled so:

* ``h.stop >= r.stop``: score the pair, mark both used; every *later* reference that ``h``
  overlaps (whole-second rule) adds one whole miss and is marked used (NEDC does not check
  whether it was already used);
* otherwise: score the pair, mark both used; every *later* hypothesis that overlaps ``r``
  adds its hit (and lowers the miss by as much) and its false alarm, and is marked used.

The reference stays eligible for further unused hypotheses after it is used (this is how
NEDC's loop runs). Finally every unused reference adds one miss and every unused
hypothesis one false alarm. Because the whole-second rule pairs events that do not overlap
in real time, a TAES hit can be negative and a miss above one, exactly as in NEDC.

Sensitivity = hits / (hits + misses); FA per 24 h = false alarms / total duration x 86400.
"""

from __future__ import annotations

import bisect
import itertools
from collections.abc import Sequence
from dataclasses import dataclass

from brain_go_brr.annotations import SEIZURE_LABELS, Event

SECONDS_PER_DAY = 86400.0
_NEDC_DECIMALS = 4  # NEDC rounds times to 4 decimals when it fills gaps


@dataclass
class Counts:
    """Targets, hits, misses and false alarms of one label (fractional for TAES)."""

    targets: float = 0.0
    hits: float = 0.0
    misses: float = 0.0
    false_alarms: float = 0.0

    def __add__(self, other: Counts) -> Counts:
        return Counts(
            self.targets + other.targets,
            self.hits + other.hits,
            self.misses + other.misses,
            self.false_alarms + other.false_alarms,
        )

    @property
    def sensitivity(self) -> float | None:
        """hits / (hits + misses) as a fraction; ``None`` without any target."""
        denom = self.hits + self.misses
        return self.hits / denom if denom else None

    def summary(self, duration_s: float) -> dict[str, float | None]:
        """The published figures; ``fa_per_24h`` over ``duration_s`` seconds of reference."""
        return {
            "targets": self.targets,
            "hits": self.hits,
            "misses": self.misses,
            "false_alarms": self.false_alarms,
            "sensitivity": self.sensitivity,
            "fa_per_24h": fa_per_24h(self.false_alarms, duration_s),
        }


def fa_per_24h(false_alarms: float, duration_s: float) -> float | None:
    """False alarms per 24 h of recording; ``None`` for zero duration."""
    return false_alarms / duration_s * SECONDS_PER_DAY if duration_s > 0 else None


def binary_label(label: str) -> str:
    """NEDC's two-class map: every TUSZ seizure type is ``seiz``, anything else ``bckg``."""
    return "seiz" if label.lower() in SEIZURE_LABELS else "bckg"


Span = tuple[float, float, str]  # (start_s, stop_s, label): what the scorers read


def nedc_events(events: Sequence[Event], duration_s: float) -> list[Event]:
    """The event list NEDC v6.0.0 scores for one file, as Events (see :func:`nedc_spans`)."""
    return [Event(a, b, lab) for a, b, lab in nedc_spans(events, duration_s)]


def nedc_spans(events: Sequence[Event], duration_s: float) -> list[Span]:
    """The event list NEDC v6.0.0 scores for one file (see the module docstring).

    Labels are joined as written and then mapped with :func:`binary_label`, as NEDC maps
    labels after loading. Plain tuples, since scoring reads thousands of them.
    """
    ordered = sorted(events, key=lambda e: e.start_s)  # NEDC sorts on start only (stable)
    filled: list[Span] = []
    cursor = 0.0
    for ev in ordered:
        start = round(ev.start_s, _NEDC_DECIMALS)
        if cursor != start:
            filled.append((cursor, start, "bckg"))
        filled.append((ev.start_s, ev.stop_s, ev.label))
        cursor = round(ev.stop_s, _NEDC_DECIMALS)
    end = round(duration_s, _NEDC_DECIMALS)
    if cursor != end:
        filled.append((cursor, end, "bckg"))
    joined: list[Span] = []
    for item in filled:
        if joined and joined[-1][2] == item[2]:
            joined[-1] = (joined[-1][0], item[1], item[2])
        else:
            joined.append(item)
    return [(a, b, binary_label(lab)) for a, b, lab in joined]


def label_times(spans: Sequence[Span], label: str = "seiz") -> tuple[list[float], list[float]]:
    """(starts, stops) of the spans with ``label``, in list order."""
    return [a for a, _, lab in spans if lab == label], [b for _, b, lab in spans if lab == label]


def _strict_any(
    a_start: Sequence[float],
    a_stop: Sequence[float],
    b_start: Sequence[float],
    b_stop: Sequence[float],
) -> list[bool]:
    """For each event a: does some b overlap it strictly (b.stop > a.start, b.start < a.stop)?

    Plain Python with bisect: a file holds tens of events, where numpy's per-call overhead
    costs more than the work; still O((n + m) log m) for long lists.
    """
    if not b_start:
        return [False] * len(a_start)
    order = sorted(range(len(b_start)), key=b_start.__getitem__)
    starts = [b_start[k] for k in order]
    latest_stop = list(itertools.accumulate((b_stop[k] for k in order), max))
    hits = []
    for a0, a1 in zip(a_start, a_stop, strict=True):
        n_before = bisect.bisect_left(starts, a1)  # b with start < a.stop
        hits.append(n_before > 0 and latest_stop[n_before - 1] > a0)
    return hits


def ovlp_counts(
    ref_start: Sequence[float],
    ref_stop: Sequence[float],
    hyp_start: Sequence[float],
    hyp_stop: Sequence[float],
) -> Counts:
    """NEDC OVLP for one label of one file (times in seconds)."""
    rs, re = [float(x) for x in ref_start], [float(x) for x in ref_stop]
    hs, he = [float(x) for x in hyp_start], [float(x) for x in hyp_stop]
    hits = sum(_strict_any(rs, re, hs, he))
    false_alarms = len(hs) - sum(_strict_any(hs, he, rs, re))
    return Counts(float(len(rs)), float(hits), float(len(rs) - hits), float(false_alarms))


def _hit_fa(r0: float, r1: float, h0: float, h1: float) -> tuple[float, float]:
    """TAES hit and false alarm of one pair (the four cases of the module docstring)."""
    dur = r1 - r0
    if dur == 0:
        raise ValueError(
            f"TAES: reference event {r0}..{r1} s has zero duration, which NEDC v6.0.0 cannot "
            "score (division by zero); remove it from the reference"
        )
    if h0 <= r0 and h1 <= r1:
        return (h1 - r0) / dur, min(1.0, (r0 - h0) / dur)
    if h0 >= r0 and h1 >= r1:
        return (r1 - h0) / dur, min(1.0, (h1 - r1) / dur)
    if h0 < r0 and h1 > r1:
        return 1.0, min(1.0, ((h1 - r1) + (r0 - h0)) / dur)
    return (h1 - h0) / dur, 0.0


def _whole_second_overlap(a0: int, a1: int, b0: int, b1: int) -> bool:
    """Do the whole-second sets a0..a1 and b0..b1 (inclusive) intersect?"""
    return a0 <= b1 and b0 <= a1


def _window(lo_keys: list[int], hi_keys: list[int], monotone: bool, lo: int, hi: int) -> range:
    """Indices whose whole-second span can meet [lo, hi]: start second <= hi, stop second >= lo.

    ``hi_keys`` (start seconds) are sorted; ``lo_keys`` (stop seconds) only when ``monotone``.
    """
    end = bisect.bisect_right(hi_keys, hi)
    begin = bisect.bisect_left(lo_keys, lo, 0, end) if monotone else 0
    return range(begin, end)


def taes_counts(
    ref_start: Sequence[float],
    ref_stop: Sequence[float],
    hyp_start: Sequence[float],
    hyp_stop: Sequence[float],
) -> Counts:
    """NEDC TAES for one label of one file; events in NEDC order (sorted by start)."""
    rs, re = [float(x) for x in ref_start], [float(x) for x in ref_stop]
    hs, he = [float(x) for x in hyp_start], [float(x) for x in hyp_stop]
    n_ref, n_hyp = len(rs), len(hs)
    if n_ref == 0 or n_hyp == 0:
        return Counts(float(n_ref), 0.0, float(n_ref), float(n_hyp))
    if any(b < a for a, b in itertools.pairwise(rs)) or any(
        b < a for a, b in itertools.pairwise(hs)
    ):
        raise ValueError("taes_counts: events must be sorted by start (use nedc_events)")
    r0, r1 = [int(x) for x in rs], [int(x) for x in re]
    h0, h1 = [int(x) for x in hs], [int(x) for x in he]
    r_mono = all(b >= a for a, b in itertools.pairwise(r1))
    h_mono = all(b >= a for a, b in itertools.pairwise(h1))
    latest_hyp_stop = list(itertools.accumulate(he, max))
    r_used, h_used = [False] * n_ref, [False] * n_hyp
    hit = miss = fa = 0.0
    for i in range(n_ref):
        n_before = bisect.bisect_left(hs, re[i])  # hypotheses starting before r.stop
        if r_used[i] or n_before == 0 or latest_hyp_stop[n_before - 1] <= rs[i]:
            continue
        for j in _window(h1, h0, h_mono, r0[i], r1[i]):
            if h_used[j] or not _whole_second_overlap(r0[i], r1[i], h0[j], h1[j]):
                continue
            p_hit, p_fa = _hit_fa(rs[i], re[i], hs[j], he[j])
            p_miss = 1.0 - p_hit
            r_used[i] = h_used[j] = True
            if he[j] >= re[i]:
                for k in _window(r1, r0, r_mono, h0[j], h1[j]):
                    if k > i and _whole_second_overlap(r0[k], r1[k], h0[j], h1[j]):
                        r_used[k] = True
                        p_miss += 1.0
            else:
                for k in _window(h1, h0, h_mono, r0[i], r1[i]):
                    if k > j and _whole_second_overlap(r0[i], r1[i], h0[k], h1[k]):
                        h_used[k] = True
                        k_hit, k_fa = _hit_fa(rs[i], re[i], hs[k], he[k])
                        p_hit += k_hit
                        p_miss -= k_hit
                        p_fa += k_fa
            hit += p_hit
            miss += p_miss
            fa += p_fa
    miss += r_used.count(False)
    fa += h_used.count(False)
    return Counts(float(n_ref), hit, miss, fa)


def score_spans(
    ref: Sequence[Span], hyp: Sequence[Span], label: str = "seiz"
) -> tuple[Counts, Counts]:
    """(OVLP, TAES) counts of ``label`` for one file; both lists from :func:`nedc_spans`."""
    ref_times, hyp_times = label_times(ref, label), label_times(hyp, label)
    return ovlp_counts(*ref_times, *hyp_times), taes_counts(*ref_times, *hyp_times)


def score_file(
    ref: Sequence[Event], hyp: Sequence[Event], label: str = "seiz"
) -> tuple[Counts, Counts]:
    """:func:`score_spans` for event lists from :func:`nedc_events`."""
    return score_spans(
        [(e.start_s, e.stop_s, e.label) for e in ref],
        [(e.start_s, e.stop_s, e.label) for e in hyp],
        label,
    )
