"""NEDC EEG Eval v6.0.0 scoring, OVLP and TAES, for one label at a time.

This is our own implementation of the rules that Temple's ``nedc_eeg_eval`` v6.0.0 applies
(checked against its published results on its demo set, ``tests/test_nedc.py``):

**Event lists.** NEDC scores each file's events after three steps (:func:`nedc_spans`):
sort by start; fill every gap (times rounded to 4 decimals) and the tail up to the
``# duration`` header with ``bckg``; join consecutive events of the same label into one
(so touching seizure rows become one event). A file's duration for the FA rate is the stop
of the last event of that list, i.e. the header duration.

**Whole-second overlap** (:func:`_whole_second_overlaps`): two events overlap "for
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
import operator
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from brain_go_brr.annotations import SEIZURE_LABELS, Event

SECONDS_PER_DAY = 86400.0
_NEDC_DECIMALS = 4  # NEDC rounds times to 4 decimals when it fills gaps
_GRID = 10.0**_NEDC_DECIMALS
_ROUND_FAST_LIMIT = 2.0**32  # seconds; see _round4
_START = operator.itemgetter(0)  # Event.start_s


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


_BINARY_LABEL = {lab: binary_label(lab) for lab in SEIZURE_LABELS | {"bckg"}}

Span = tuple[float, float, str]  # (start_s, stop_s, label): what the scorers read


def nedc_events(events: Sequence[Event], duration_s: float) -> list[Event]:
    """The event list NEDC v6.0.0 scores for one file, as Events (see :func:`nedc_spans`)."""
    return [Event(a, b, lab) for a, b, lab in nedc_spans(events, duration_s)]


def nedc_spans(events: Sequence[Event], duration_s: float) -> list[Span]:
    """The event list NEDC v6.0.0 scores for one file (see the module docstring).

    Labels are joined as written and then mapped with :func:`binary_label`, as NEDC maps
    labels after loading. Plain tuples, since scoring reads thousands of them. Fill, join
    and map run in one pass; rounding, the costly step, is skipped where an event starts
    exactly where the previous one stopped (rounded, the two are equal too).
    """
    spans: list[Span] = []
    last: str | None = None  # the last span's label as written: NEDC joins before mapping
    prev_stop = 0.0  # as written; NEDC's cursor is its rounding
    for start_s, stop_s, label, _ in sorted(events, key=_START):  # NEDC: on start, stable
        if start_s != prev_stop:
            cursor, start = _round4(prev_stop), _round4(start_s)
            if cursor != start:  # a gap, which NEDC fills with bckg
                if last == "bckg":
                    spans[-1] = (spans[-1][0], start, "bckg")
                else:
                    spans.append((cursor, start, "bckg"))
                    last = "bckg"
        if label == last:
            spans[-1] = (spans[-1][0], stop_s, spans[-1][2])
        else:
            spans.append((start_s, stop_s, _BINARY_LABEL.get(label) or binary_label(label)))
            last = label
        prev_stop = stop_s
    cursor, end = _round4(prev_stop), _round4(duration_s)
    if cursor != end:  # the tail up to the duration, as the gaps above
        if last == "bckg":
            spans[-1] = (spans[-1][0], end, "bckg")
        else:
            spans.append((cursor, end, "bckg"))
    return spans


def _round4(x: float) -> float:
    """``round(x, _NEDC_DECIMALS)``, faster for times already on the 0.1 ms grid.

    When ``k / 1e4 == x`` for the integer ``k`` nearest ``x * 1e4``, ``x`` is the double
    nearest the decimal ``k / 10**4``; below 2**32 s doubles are under 1e-6 apart, so that
    decimal is also the 4-decimal rounding of ``x``, and ``round`` would return ``x``.
    """
    if -_ROUND_FAST_LIMIT < x < _ROUND_FAST_LIMIT and round(x * _GRID) / _GRID == x:
        return x
    return round(x, _NEDC_DECIMALS)


def label_times(spans: Sequence[Span], label: str = "seiz") -> tuple[list[float], list[float]]:
    """(starts, stops) of the spans with ``label``, in list order."""
    return [a for a, _, lab in spans if lab == label], [b for _, b, lab in spans if lab == label]


def _strict_overlaps(
    rs: list[float], re: list[float], hs: list[float], he: list[float]
) -> tuple[list[int], int]:
    """Who overlaps whom strictly (``h.stop > r.start and h.start < r.stop``).

    Returns the indices, ascending, of the references that some hypothesis overlaps, and
    the number of hypotheses that overlap some reference. Plain Python with bisect: a file
    holds tens of events, where numpy's per-call overhead costs more than the work.
    """
    if not (rs and hs):
        return [], 0
    if _nondecreasing(rs) and _nondecreasing(re) and _nondecreasing(hs) and _nondecreasing(he):
        # Both lists sorted by start and by stop (no event inside another, as in NEDC's
        # lists): the references a hypothesis meets are the run between two bisections,
        # and the runs of successive hypotheses move forward.
        ref_hits: list[int] = []
        n_hyp_hits = done = 0
        for h0, h1 in zip(hs, he, strict=True):
            lo, hi = bisect.bisect_right(re, h0), bisect.bisect_left(rs, h1)
            if lo < hi:
                n_hyp_hits += 1
                ref_hits.extend(range(max(lo, done), hi))
                done = hi
        return ref_hits, n_hyp_hits
    ref_flags = _strict_any(rs, re, hs, he)
    return [i for i, hit in enumerate(ref_flags) if hit], sum(_strict_any(hs, he, rs, re))


def _strict_any(
    a_start: list[float], a_stop: list[float], b_start: list[float], b_stop: list[float]
) -> list[bool]:
    """For each event a, in any order: does some b overlap it strictly? O((n + m) log m)."""
    order = sorted(range(len(b_start)), key=b_start.__getitem__)
    starts = [b_start[k] for k in order]
    latest_stop = list(itertools.accumulate([b_stop[k] for k in order], max))
    hits = []
    for a0, a1 in zip(a_start, a_stop, strict=True):
        n_before = bisect.bisect_left(starts, a1)  # b with start < a.stop
        hits.append(n_before > 0 and latest_stop[n_before - 1] > a0)
    return hits


def _nondecreasing(values: list[float] | list[int]) -> bool:
    return values == sorted(values)  # on an ordered list, sorted() is one pass in C


def _floats(values: Sequence[float]) -> list[float]:
    return list(map(float, values))


def ovlp_counts(
    ref_start: Sequence[float],
    ref_stop: Sequence[float],
    hyp_start: Sequence[float],
    hyp_stop: Sequence[float],
) -> Counts:
    """NEDC OVLP for one label of one file (times in seconds)."""
    rs, re, hs, he = map(_floats, (ref_start, ref_stop, hyp_start, hyp_stop))
    ref_hits, n_hyp_hits = _strict_overlaps(rs, re, hs, he)
    return _ovlp(len(rs), len(hs), len(ref_hits), n_hyp_hits)


def _ovlp(n_ref: int, n_hyp: int, n_ref_hits: int, n_hyp_hits: int) -> Counts:
    """:func:`ovlp_counts` from the counts of :func:`_strict_overlaps`."""
    return Counts(
        float(n_ref), float(n_ref_hits), float(n_ref - n_ref_hits), float(n_hyp - n_hyp_hits)
    )


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


def _whole_second_overlaps(
    stop_secs: list[int], start_secs: list[int], monotone: bool, lo: int, hi: int, first: int
) -> Iterable[int]:
    """Indices ``k >= first``, ascending, whose whole seconds meet ``lo..hi`` (inclusive).

    Event k covers the whole seconds ``start_secs[k]..stop_secs[k]``. ``start_secs`` are
    sorted; when ``stop_secs`` are too (``monotone``), the answer is a range found by two
    bisections.
    """
    end = bisect.bisect_right(start_secs, hi)  # start second <= hi
    if monotone:  # ... and stop second >= lo
        return range(bisect.bisect_left(stop_secs, lo, first, end), end)
    return [k for k in range(first, end) if stop_secs[k] >= lo]


def taes_counts(
    ref_start: Sequence[float],
    ref_stop: Sequence[float],
    hyp_start: Sequence[float],
    hyp_stop: Sequence[float],
) -> Counts:
    """NEDC TAES for one label of one file; events in NEDC order (sorted by start)."""
    rs, re, hs, he = map(_floats, (ref_start, ref_stop, hyp_start, hyp_stop))
    return _taes(rs, re, hs, he, _strict_overlaps(rs, re, hs, he)[0])


def _taes(
    rs: list[float], re: list[float], hs: list[float], he: list[float], ref_hits: list[int]
) -> Counts:
    """:func:`taes_counts` given the references that some hypothesis overlaps strictly.

    Those are the only references the walk of the module docstring scores, so it visits
    them alone.
    """
    n_ref, n_hyp = len(rs), len(hs)
    if n_ref == 0 or n_hyp == 0:
        return Counts(float(n_ref), 0.0, float(n_ref), float(n_hyp))
    if not (_nondecreasing(rs) and _nondecreasing(hs)):
        raise ValueError("taes_counts: events must be sorted by start (use nedc_events)")
    if not ref_hits:
        return Counts(float(n_ref), 0.0, float(n_ref), float(n_hyp))
    r0, r1 = list(map(int, rs)), list(map(int, re))
    h0, h1 = list(map(int, hs)), list(map(int, he))
    r_mono, h_mono = _nondecreasing(r1), _nondecreasing(h1)
    r_used, h_used = [False] * n_ref, [False] * n_hyp
    hit = miss = fa = 0.0
    for i in ref_hits:
        if r_used[i]:
            continue
        for j in _whole_second_overlaps(h1, h0, h_mono, r0[i], r1[i], 0):
            if h_used[j]:
                continue
            p_hit, p_fa = _hit_fa(rs[i], re[i], hs[j], he[j])
            p_miss = 1.0 - p_hit
            r_used[i] = h_used[j] = True
            if he[j] >= re[i]:
                for k in _whole_second_overlaps(r1, r0, r_mono, h0[j], h1[j], i + 1):
                    r_used[k] = True
                    p_miss += 1.0
            else:
                for k in _whole_second_overlaps(h1, h0, h_mono, r0[i], r1[i], j + 1):
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


def score_times(
    ref_start: Sequence[float],
    ref_stop: Sequence[float],
    hyp_start: Sequence[float],
    hyp_stop: Sequence[float],
) -> tuple[Counts, Counts]:
    """(OVLP, TAES) of one label of one file, as :func:`ovlp_counts` and :func:`taes_counts`.

    The references that some hypothesis overlaps strictly are found once for both.
    """
    rs, re, hs, he = map(_floats, (ref_start, ref_stop, hyp_start, hyp_stop))
    ref_hits, n_hyp_hits = _strict_overlaps(rs, re, hs, he)
    return _ovlp(len(rs), len(hs), len(ref_hits), n_hyp_hits), _taes(rs, re, hs, he, ref_hits)


def score_spans(
    ref: Sequence[Span], hyp: Sequence[Span], label: str = "seiz"
) -> tuple[Counts, Counts]:
    """(OVLP, TAES) counts of ``label`` for one file; both lists from :func:`nedc_spans`."""
    return score_times(*label_times(ref, label), *label_times(hyp, label))


def score_file(
    ref: Sequence[Event], hyp: Sequence[Event], label: str = "seiz"
) -> tuple[Counts, Counts]:
    """:func:`score_spans` for event lists from :func:`nedc_events`."""
    return score_spans(
        [(e.start_s, e.stop_s, e.label) for e in ref],
        [(e.start_s, e.stop_s, e.label) for e in hyp],
        label,
    )
