from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from brain_go_brr.annotations import Event, read_csv_bi
from brain_go_brr.post import PostConfig, postprocess
from brain_go_brr.scoring import (
    RecordEvents,
    RecordTrack,
    auroc,
    flatten,
    score_events,
    score_tracks,
)
from brain_go_brr.scoring.metrics import SweepScorer
from brain_go_brr.scoring.writers import format_events_tsv, write_events_tsv, write_hyp_csv_bi

SFREQ = 256


def test_auroc_matches_pairwise_count_with_ties() -> None:
    rng = np.random.default_rng(0)
    scores = rng.integers(0, 5, 200) / 4  # many ties
    labels = rng.random(200) < 0.3
    pos, neg = scores[labels], scores[~labels]
    pairwise = ((pos[:, None] > neg[None, :]) + 0.5 * (pos[:, None] == neg[None, :])).mean()
    assert auroc(scores, labels) == pytest.approx(pairwise, abs=1e-12)
    assert auroc(scores, np.zeros(200, bool)) is None


def _synthetic_records(seed: int, n: int = 6) -> list[RecordTrack]:
    """Records of 2–4 min with smooth noise and bumps of high probability, some on seizures."""
    rng = np.random.default_rng(seed)
    records = []
    for i in range(n):
        n_samples = int(rng.integers(120, 240)) * SFREQ
        t = np.arange(n_samples) / SFREQ
        prob = 0.3 + 0.25 * np.sin(t / rng.uniform(3, 9) + rng.uniform(0, 6))
        seizures = []
        for _ in range(int(rng.integers(0, 3))):
            a = float(rng.uniform(5, t[-1] - 40))
            seizures.append(Event(round(a, 3), round(a + float(rng.uniform(8, 35)), 3)))
            if rng.random() < 0.8:
                prob[(t >= a + 2) & (t < a + 20)] += rng.uniform(0.3, 0.6)
        prob[(t >= 60) & (t < 60 + rng.uniform(0, 10))] += rng.uniform(0, 0.6)
        prob = np.clip(prob + rng.normal(0, 0.03, n_samples), 0, 1).astype(np.float32)
        records.append(RecordTrack(f"p{i % 3}_s001_t{i:03d}", f"p{i % 3}", n_samples / SFREQ,
                                   seizures, prob))  # fmt: skip
    return records


@pytest.mark.parametrize("tau_on", [0.55, 0.7, 0.86, 0.95])
def test_sweep_point_equals_scoring_the_postprocessed_events(tau_on: float) -> None:
    records = _synthetic_records(1)
    post = PostConfig()
    point = SweepScorer(records, post).score(tau_on, tau_on - 0.08)
    cfg = post.with_thresholds(tau_on, tau_on - 0.08)
    direct = score_events(
        [
            RecordEvents(
                r.record_id, r.subject, r.duration_s, r.reference, postprocess(r.prob, cfg)
            )
            for r in records
        ]
    )
    for name, counts in (("ovlp", point.ovlp), ("taes", point.taes)):
        want = direct[name]
        assert counts.hits == pytest.approx(want["hits"], abs=1e-9)
        assert counts.misses == pytest.approx(want["misses"], abs=1e-9)
        assert counts.false_alarms == pytest.approx(want["false_alarms"], abs=1e-9)
    assert point.duration_s == direct["duration_s"]


def test_score_tracks_result_and_sens_at_fa_selection() -> None:
    records = _synthetic_records(2)
    grid = (0.5, 0.6, 0.7, 0.8, 0.9, 0.99)
    result = score_tracks(records, PostConfig(), tau_grid=grid)
    assert result["n_records"] == len(records)
    assert 0.5 < result["auroc"] <= 1.0
    curve = result["curve"]
    assert [p["tau_on"] for p in curve] == list(grid)
    for key, target in (("1", 1.0), ("2.5", 2.5), ("5", 5.0), ("10", 10.0)):
        point = result["sens_at_fa"][key]
        ok = [p for p in curve if p["fa_per_24h"] <= target]
        if not ok:
            assert point is None
            continue
        assert point["sensitivity"] == max(p["sensitivity"] for p in ok)
        assert point["fa_per_24h"] <= target
        assert point["tau_off"] == pytest.approx(point["tau_on"] - 0.08)
    flat = flatten(result, "val")
    assert (
        flat["val/sens_at_10fa"]
        == (result["sens_at_fa"]["10"] or {"sensitivity": 0.0})["sensitivity"]
    )
    assert flat["val/ovlp_sensitivity"] == result["ovlp"]["sensitivity"]


def test_unreachable_fa_rate_is_none() -> None:
    records = _synthetic_records(3)
    for r in records:
        r.prob[:] = 1.0  # one event per record at every threshold: FA rate far above 10/24h
        r.reference = []
    result = score_tracks(records, PostConfig(), tau_grid=(0.5, 0.9))
    assert result["sens_at_fa"] == {"1": None, "2.5": None, "5": None, "10": None}
    assert result["auroc"] is None
    assert flatten(result, "val")["val/sens_at_10fa"] == 0.0


def test_score_tracks_rejects_track_of_wrong_length() -> None:
    rec = RecordTrack("r", "p", 10.0, [], np.zeros(100, np.float32))
    with pytest.raises(ValueError, match="r: probability track has 100 samples"):
        score_tracks([rec], PostConfig())


def test_szcore_tolerances_and_pooling() -> None:
    # a: detection 20 s before the seizure, inside the 30 s pre-ictal tolerance: a hit;
    # b: 40 s before, outside it: a miss and a false positive
    result = score_events(
        [
            RecordEvents("a_1", "a", 600.0, [Event(100, 130)], [Event(75, 82)]),
            RecordEvents("b_1", "b", 600.0, [Event(100, 130)], [Event(50, 60)]),
        ]
    )
    assert result["szcore"]["sensitivity"] == 0.5
    assert result["szcore"]["precision"] == 0.5
    assert result["szcore"]["fp_per_24h"] == pytest.approx(1 / 1200 * 86400)
    per_subject = result["szcore_evaluation"]["event_results"]
    assert per_subject["sensitivity"] == 0.5 and per_subject["sensitivity_std"] == 0.5
    assert per_subject["fpRate"] == pytest.approx(0.5 * 86400 / 600)


def test_hyp_csv_bi_round_trip_scores_the_same(tmp_path: Path) -> None:
    events = [Event(10, 20, "seiz", 0.9), Event(20, 25, "seiz", 0.8), Event(40, 45, "seiz", 0.7)]
    path = tmp_path / "x_s001_t000.csv_bi"
    write_hyp_csv_bi(path, events, 100.0)
    back = read_csv_bi(path)
    assert path.read_text().splitlines()[6:] == [
        "TERM,0.0000,10.0000,bckg,1.0000",
        "TERM,10.0000,25.0000,seiz,0.9000",
        "TERM,25.0000,40.0000,bckg,1.0000",
        "TERM,40.0000,45.0000,seiz,0.7000",
        "TERM,45.0000,100.0000,bckg,1.0000",
    ]
    ref = [Event(12, 30)]
    a = score_events([RecordEvents("x", "x", 100.0, ref, events)])
    b = score_events([RecordEvents("x", "x", 100.0, ref, back.events)])
    assert a == b


def test_events_tsv_format(tmp_path: Path) -> None:
    text = format_events_tsv([Event(10, 25.5, "seiz", 0.876)], 300.0)
    assert text.splitlines() == [
        "onset\tduration\teventType\tconfidence\tchannels\tdateTime\trecordingDuration",
        "10.00\t15.50\tsz\t0.88\tn/a\t1970-01-01 00:00:00\t300.00",
    ]
    assert format_events_tsv([], 300.0).splitlines()[1].startswith("0.00\t300.00\tbckg\tn/a")
    with pytest.raises(ValueError, match=r"_events\.tsv"):
        write_events_tsv(tmp_path / "x.tsv", [], 1.0)
    write_events_tsv(tmp_path / "sub-01_events.tsv", [], 1.0)
    assert (tmp_path / "sub-01_events.tsv").exists()


def test_pick_at_fa_takes_the_middle_of_a_plateau_and_the_lower_rate_on_ties() -> None:
    from brain_go_brr.scoring.sweep import pick_at_fa

    # (sensitivity, FA/24h, tau_on, tau_off): a plateau of 1.0 at 0 FA/24h from 0.3 to 0.7
    candidates = [(1.0, 9.0, 0.1, 0.02), (1.0, 4.0, 0.2, 0.12)]
    candidates += [(1.0, 0.0, t, round(t - 0.08, 2)) for t in (0.3, 0.4, 0.5, 0.6, 0.7)]
    candidates += [(0.5, 0.0, 0.8, 0.72), (None, 0.0, 0.9, 0.82)]
    out = pick_at_fa(candidates, (1.0, 5.0, 10.0))
    # At <= 10 the 9 and 4 FA/24h points tie with the plateau on sensitivity; 0 FA wins,
    # then the middle of the five plateau points.
    assert out["10"] == {"sensitivity": 1.0, "tau_on": 0.5, "tau_off": 0.42, "fa_per_24h": 0.0}
    assert out["1"] == out["5"] == out["10"]
    # An even plateau gives the lower of its two middles.
    even = pick_at_fa([(0.8, 2.0, t, t) for t in (0.4, 0.5, 0.6, 0.7)], (5.0,))
    assert even["5"] is not None and even["5"]["tau_on"] == 0.5
    assert pick_at_fa([(0.8, 20.0, 0.4, 0.3)], (5.0,)) == {"5": None}
