from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from brain_go_brr.annotations import Event, read_csv_bi
from brain_go_brr.evaluation.metrics import RecordEvents, score_events
from brain_go_brr.evaluation.nedc import (
    Counts,
    _round4,
    nedc_events,
    nedc_spans,
    ovlp_counts,
    score_spans,
    taes_counts,
)


def _figures(c: Counts) -> tuple[float, float, float]:
    return (round(c.hits, 10), round(c.misses, 10), round(c.false_alarms, 10))


def _score(ref: list[tuple[float, float]], hyp: list[tuple[float, float]]) -> tuple:
    rs, re_ = [a for a, _ in ref], [b for _, b in ref]
    hs, he = [a for a, _ in hyp], [b for _, b in hyp]
    return _figures(ovlp_counts(rs, re_, hs, he)), _figures(taes_counts(rs, re_, hs, he))


@pytest.mark.parametrize(
    ("hyp", "taes"),
    [
        ((5, 15), (0.5, 0.5, 0.5)),  # starts before, ends inside
        ((0, 12), (0.2, 0.8, 1.0)),  # ... false alarm capped at 1
        ((15, 30), (0.5, 0.5, 1.0)),  # starts inside, ends after
        ((18, 22), (0.2, 0.8, 0.2)),
        ((8, 23), (1.0, 0.0, 0.5)),  # covers the reference
        ((12, 17), (0.5, 0.5, 0.0)),  # inside the reference
    ],
)
def test_taes_cases_single_pair(hyp: tuple[float, float], taes: tuple) -> None:
    ovlp, got = _score([(10, 20)], [hyp])
    assert ovlp == (1, 0, 0)
    assert got == pytest.approx(taes)


def test_whole_second_overlap_quirk() -> None:
    # h2 shares only the whole second 20 with the reference: OVLP calls it a false alarm,
    # TAES pairs it anyway and its "hit" is negative (-0.03).
    ovlp, taes = _score([(10.0, 20.0)], [(12.0, 15.0), (20.3, 22.0)])
    assert ovlp == (1, 0, 1)
    assert taes == pytest.approx((0.27, 0.73, 0.2))


def test_whole_second_only_is_never_scored_without_real_overlap() -> None:
    ovlp, taes = _score([(10.2, 20.5)], [(20.7, 25.0)])
    assert ovlp == (0, 1, 1)
    assert taes == (0, 1, 1)


def test_hypothesis_spanning_several_seizures() -> None:
    ovlp, taes = _score([(10, 20), (30, 40), (50, 60)], [(15, 55)])
    assert ovlp == (3, 0, 0)
    # first pair: hit 0.5, fa min(1, 35/10); the two later seizures are whole misses
    assert taes == pytest.approx((0.5, 2.5, 1.0))


def test_reference_spanning_several_hypotheses() -> None:
    ovlp, taes = _score([(10, 20)], [(9, 12), (14, 16), (18, 25)])
    assert ovlp == (1, 0, 0)
    assert taes == pytest.approx((0.6, 0.4, 0.6))


def test_used_up_reference_is_not_scored_again() -> None:
    ovlp, taes = _score([(10, 20), (22, 30)], [(15, 25)])
    assert ovlp == (2, 0, 0)
    assert taes == pytest.approx((0.5, 1.5, 0.5))


def test_reference_inside_another_reference() -> None:
    # sorted by start but not by stop, so the run-of-references shortcut does not apply;
    # the second hypothesis is charged to the first reference. NEDC v6.0.0 run on these
    # two files reports the same (OVLP 2 hits, TAES 0.40 / 1.60 / 0.33).
    ovlp, taes = _score([(10, 40), (15, 20)], [(16, 18), (30, 50)])
    assert ovlp == (2, 0, 0)
    assert taes == pytest.approx((0.4, 1.6, 1 / 3))


@pytest.mark.parametrize(
    "x",
    [0.0, 42.2786, 2.675, 1289.0, 10.00004, 10.00005, 10.00015, 0.1 + 0.2, -3.00005,
     4294967295.12345, 2.0**32 + 0.00005, 1e15 + 0.5],
)  # fmt: skip
def test_fast_rounding_is_round(x: float) -> None:
    assert _round4(x) == round(x, 4)


def test_nedc_events_fill_join_and_map() -> None:
    events = [Event(40, 50, "fnsz"), Event(20, 30), Event(10.00004, 20)]
    got = [(e.start_s, e.stop_s, e.label) for e in nedc_events(events, 60.0)]
    assert got == [
        (0.0, 10.0, "bckg"),
        (10.00004, 30, "seiz"),  # touching seiz rows joined
        (30.0, 40, "bckg"),
        (40, 50, "seiz"),  # seizure types count as seiz
        (50.0, 60.0, "bckg"),
    ]


def _per_file(path: Path) -> dict[str, tuple[float, float, float]]:
    text = path.read_text()
    names = re.findall(r"^\s*\d+: \S*/(\w+)\.csv_bi", text, re.M)
    figures = re.findall(r"Hit: ([\d.]+)\s+Miss: ([\d.]+)\s+False Alarms: ([\d.]+)", text)
    assert len(names) == len(figures) == 30
    return {n: tuple(float(x) for x in f) for n, f in zip(names, figures, strict=True)}


def test_nedc_demo_parity(nedc_demo: Path) -> None:
    """Our OVLP/TAES reproduce NEDC v6.0.0's published results on its own demo set."""
    expected = json.loads((nedc_demo / "expected_seiz.json").read_text())
    per_ovlp = _per_file(nedc_demo / "nedc_v6.0.0_summary_ovlp.txt")
    per_taes = _per_file(nedc_demo / "nedc_v6.0.0_summary_taes.txt")
    records = []
    for ref_path in sorted((nedc_demo / "ref").glob("*.csv_bi")):
        ref, hyp = read_csv_bi(ref_path), read_csv_bi(nedc_demo / "hyp" / ref_path.name)
        assert ref.duration_s is not None
        records.append(RecordEvents(ref_path.stem, "", ref.duration_s, ref.events, hyp.events))
        # NEDC's per-file lines add up every label (seiz and bckg)
        ref_n = nedc_spans(ref.events, ref.duration_s)
        hyp_n = nedc_spans(hyp.events, ref.duration_s)
        (o_s, t_s), (o_b, t_b) = (
            score_spans(ref_n, hyp_n, "seiz"),
            score_spans(ref_n, hyp_n, "bckg"),
        )
        o, t = o_s + o_b, t_s + t_b
        assert (o.hits, o.misses, o.false_alarms) == per_ovlp[ref_path.stem], ref_path.name
        assert tuple(round(x, 4) for x in (t.hits, t.misses, t.false_alarms)) == pytest.approx(
            per_taes[ref_path.stem], abs=1e-9
        ), ref_path.name
    assert len(records) == 30
    result = score_events(records)
    assert result["duration_s"] == 45277.0
    for scorer in ("ovlp", "taes"):
        got, want = result[scorer], expected[scorer]
        assert got["targets"] == want["targets"]
        assert round(got["hits"], 2) == want["hits"]
        assert round(got["misses"], 2) == want["misses"]
        assert round(got["false_alarms"], 2) == want["false_alarms"]
        assert round(100 * got["sensitivity"], 4) == round(100 * want["sensitivity"], 4)
        assert round(got["fa_per_24h"], 4) == want["fa_per_24h"]
