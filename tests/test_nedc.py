from __future__ import annotations

import json
import os
import random
import re
import subprocess
import sys
from pathlib import Path

import pytest

from brain_go_brr.annotations import Event, read_csv_bi
from brain_go_brr.scoring.metrics import RecordEvents, score_events
from brain_go_brr.scoring.nedc import (
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


# ------------------------------------------------- NEDC v6.0.0 itself, opt-in (NEDC_NFC)

_NEDC_SEIZ_FIGURES = {
    "Targets": "targets",
    "Hits": "hits",
    "Misses": "misses",
    "False Alarms": "false_alarms",
    "Sensitivity (TPR, Recall)": "sensitivity",
    "False Alarm Rate": "fa_per_24h",
}


def _nedc_seiz_figures(summary: str, section: str) -> dict[str, str]:
    """The SEIZ figures of one scorer's block of NEDC's ``summary.txt``, as printed."""
    block = summary.split(section, 1)[1].split("LABEL: SEIZ", 1)[1].split("LABEL:", 1)[0]
    out = {}
    for name, key in _NEDC_SEIZ_FIGURES.items():
        m = re.search(rf"^\s*{re.escape(name)}:\s*([\d.]+)", block, re.M)
        assert m is not None, f"{name} missing from NEDC's {section}"
        out[key] = m.group(1)
    return out


def _edge_case_records() -> tuple[list, list[list[Event]]]:
    """Records written the way ``evaluate.py`` writes them: hand-built edge cases, then a
    seeded random batch."""
    from brain_go_brr.evaluation.probs import CachedRecord

    cases: list[tuple[float, list[Event], list[Event]]] = [
        (128.0, [Event(0.0, 20.0)], [Event(0.0, 128.0, "seiz", 0.31)]),  # from 0 to the end
        (301.5, [Event(280.0, 301.5, "fnsz")], [Event(290.12345, 340.0)]),  # clipped at end
        (1289.0, [Event(100.0, 900.0)], [Event(90.0, 690.0), Event(690.0, 760.0)]),  # 600 s cut
        (60.0, [], [Event(12.00390625, 12.5), Event(30.0, 33.0)]),  # false alarms only
        (60.0, [Event(10.0, 20.0), Event(30.0, 40.0)], [Event(15.0, 35.0)]),  # one spans two
        (90.0, [], []),
    ]
    rng = random.Random(6)
    for _ in range(30):
        duration_s = rng.choice([60.0, 569.0, 1000.125, 3600.0])

        def draw(n: int, d: float = duration_s) -> list[Event]:
            starts = (rng.uniform(0.0, d) for _ in range(n))
            return [Event(a, a + rng.expovariate(1 / 40), "seiz", rng.random()) for a in starts]

        cases.append((duration_s, draw(rng.randint(0, 3)), draw(rng.randint(0, 5))))
    records = [
        CachedRecord(f"rec{i:03d}_s001_t000", f"rec{i:03d}", "", round(d * 256), d, ref)
        for i, (d, ref, _) in enumerate(cases)
    ]
    return records, [hyp for _, _, hyp in cases]


def test_nedc_itself_scores_our_files_as_we_do(nedc_nfc: Path, tmp_path: Path) -> None:
    """NEDC v6.0.0 runs on evaluate.py's csv_bi files and lists unchanged, with our figures."""
    from brain_go_brr.cli import main as cli_main
    from brain_go_brr.evaluation.evaluate import write_nedc_files

    records, hyps = _edge_case_records()
    ref_list, hyp_list = write_nedc_files(tmp_path / "nedc", records, hyps)
    paths = os.pathsep.join(filter(None, [str(nedc_nfc / "lib"), os.environ.get("PYTHONPATH")]))
    run = subprocess.run(
        [sys.executable, str(nedc_nfc / "bin" / "nedc_eeg_eval"), str(ref_list), str(hyp_list),
         "-o", str(tmp_path / "out")],
        env={**os.environ, "NEDC_NFC": str(nedc_nfc), "PYTHONPATH": paths},
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert run.returncode == 0 and "Error" not in run.stdout, run.stdout + run.stderr
    summary = (tmp_path / "out" / "summary.txt").read_text()

    report = tmp_path / "score.json"
    assert cli_main(["score", str(ref_list), str(hyp_list), "--json", str(report)]) == 0
    ours = json.loads(report.read_text())
    sections = {"ovlp": "NEDC OVERLAP SCORING SUMMARY", "taes": "NEDC TAES SCORING SUMMARY"}
    for scorer, section in sections.items():
        for key, printed in _nedc_seiz_figures(summary, section).items():
            value = ours[scorer][key] * (100 if key == "sensitivity" else 1)  # NEDC prints %
            decimals = len(printed.partition(".")[2])
            assert abs(value - float(printed)) <= 0.5 * 10**-decimals + 1e-9, (scorer, key)
    assert ours["ovlp"]["false_alarms"] > 0 and 0 < ours["taes"]["sensitivity"] < 1


# ------------------------------------------------- NEDC v6.0.0 conformance kit, in the repository

CONFORMANCE = Path(__file__).parent / "fixtures" / "nedc_conformance"
_CONFORMANCE_EXPECTED = json.loads((CONFORMANCE / "expected.json").read_text())


def test_conformance_kit_is_complete() -> None:
    """All 24 cases are in the repository, so the parity test below never depends on ../shared."""
    cases = sorted(p.name for p in CONFORMANCE.glob("case*") if p.is_dir())
    assert cases == [f"case{i:02d}" for i in range(24)]
    assert sorted(_CONFORMANCE_EXPECTED) == cases


@pytest.mark.parametrize("case", sorted(_CONFORMANCE_EXPECTED))
def test_nedc_conformance(case: str) -> None:
    """Scored from the case's ``ref.list`` / ``hyp.list`` the way ``score`` reads them, our OVLP
    and TAES SEIZ figures equal the ones NEDC v6.0.0 itself printed (to its printed rounding)."""
    from brain_go_brr.scoring.cli import load_pairs, pair_inputs

    folder = CONFORMANCE / case
    records = load_pairs(pair_inputs(folder / "ref.list", folder / "hyp.list"))
    result = score_events(records)
    for scorer in ("ovlp", "taes"):
        got, want = result[scorer], _CONFORMANCE_EXPECTED[case][scorer]
        # NEDC prints TAES counts to 2 decimals and the rate to 4: half a unit of the last digit
        count_tol = 0.0051 if scorer == "taes" else 0.0
        for key in ("targets", "hits", "misses", "false_alarms"):
            assert got[key] == pytest.approx(want[key], abs=count_tol), (case, scorer, key)
        assert got["sensitivity"] == pytest.approx(want["sensitivity"], abs=1e-6), (case, scorer)
        assert got["fa_per_24h"] == pytest.approx(want["fa_per_24h"], abs=5.1e-5), (case, scorer)
