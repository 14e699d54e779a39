"""Patient-level bootstrap intervals: known spreads, seeds, undefined resamples, and the
intervals score_tracks attaches to every figure."""

from __future__ import annotations

import numpy as np
import pytest

from brain_go_brr.annotations import Event
from brain_go_brr.post import PostConfig
from brain_go_brr.scoring import bootstrap
from brain_go_brr.scoring.metrics import RecordTrack, auroc, score_tracks


def test_resampled_sensitivity_has_the_binomial_spread() -> None:
    """400 subjects with one seizure each, 70 % detected: a resample's sensitivity is the
    mean of 400 draws of 0/1, so its standard deviation is sqrt(p (1 - p) / n)."""
    n, p = 400, 0.7
    subjects = [f"s{i}" for i in range(n)]
    hits = np.r_[np.ones(int(n * p)), np.zeros(n - int(n * p))]
    boot = bootstrap.Bootstrap(subjects, n_resamples=4000, seed=1)
    totals = boot.totals(np.column_stack([hits, 1 - hits]))
    sens = bootstrap.ratio(totals[:, 0], totals.sum(axis=1))
    expected = np.sqrt(p * (1 - p) / n)
    assert sens.std() == pytest.approx(expected, rel=0.06)
    low, high = bootstrap.interval(sens)  # type: ignore[misc]
    assert low < p < high
    assert high - low == pytest.approx(2 * 1.96 * expected, rel=0.1)


def test_same_seed_same_interval_another_seed_another_draw() -> None:
    subjects = [f"s{i % 7}" for i in range(30)]
    values = np.random.default_rng(0).random((30, 2))
    a = bootstrap.Bootstrap(subjects, 500, seed=3).totals(values)
    b = bootstrap.Bootstrap(subjects, 500, seed=3).totals(values)
    c = bootstrap.Bootstrap(subjects, 500, seed=4).totals(values)
    assert np.array_equal(a, b) and not np.array_equal(a, c)


def test_undefined_resamples_widen_the_interval() -> None:
    """NaN (no seizure drawn) counts as 0 for the lower and 1 for the upper bound."""
    values = np.r_[np.full(90, 0.8), np.full(10, np.nan)]
    assert bootstrap.interval(values) == [0.0, 1.0]
    assert bootstrap.interval(np.full(100, 0.8)) == pytest.approx([0.8, 0.8])
    assert bootstrap.rate_interval(np.array([np.nan, 2.0, 4.0])) == pytest.approx([2.05, 3.95])


def test_auroc_from_level_histograms_is_the_exact_auroc() -> None:
    rng = np.random.default_rng(2)
    labels = rng.random(5000) < 0.2
    levels = np.clip(np.round(rng.normal(100 + 60 * labels, 40)), 0, 255)
    hist = bootstrap.auroc_histograms(levels, labels, 256)
    assert float(bootstrap.auroc_from_histograms(hist)) == pytest.approx(
        auroc(levels, labels), abs=1e-12
    )


def _tracks(seizure_subjects: set[str], n_subjects: int = 8, seed: int = 0) -> list[RecordTrack]:
    """Three 10 min records per subject at 256 Hz; seizures (and bumps of probability over
    them, most found) only in ``seizure_subjects``; a few false bumps everywhere."""
    rng = np.random.default_rng(seed)
    records = []
    for s in range(n_subjects):
        subject = f"p{s}"
        for r in range(3):
            n = 600 * 256
            prob = np.clip(rng.normal(0.1, 0.05, n), 0, 1)
            ref = []
            if subject in seizure_subjects:
                a = int(rng.integers(60, 500))
                ref = [Event(float(a), float(a + 40))]
                if rng.random() < 0.7:
                    prob[a * 256 : (a + 40) * 256] += 0.8
            if rng.random() < 0.3:
                b = int(rng.integers(0, 590))
                prob[b * 256 : (b + 8) * 256] += 0.85
            prob = np.round(np.clip(prob, 0, 1) * 255) / 255  # 8-bit, as the eval cache keeps it
            records.append(RecordTrack(f"{subject}_s001_t{r:03d}", subject, 600.0, ref,
                                       prob.astype(np.float32)))  # fmt: skip
    return records


def test_score_tracks_intervals_contain_the_figures_and_repeat() -> None:
    records = _tracks({f"p{s}" for s in range(8)})
    post = PostConfig(tau_on=0.5, tau_off=0.4)
    result = score_tracks(records, post, n_resamples=1000, seed=0)
    assert result["bootstrap"] == {"unit": "subject", "n_subjects": 8, "n_resamples": 1000,
                                   "seed": 0, "level": 0.95}  # fmt: skip
    for figure, ci in (
        (result["auroc"], result["auroc_ci95"]),
        (result["ovlp"]["sensitivity"], result["ovlp"]["sensitivity_ci95"]),
        (result["ovlp"]["fa_per_24h"], result["ovlp"]["fa_per_24h_ci95"]),
        (result["taes"]["sensitivity"], result["taes"]["sensitivity_ci95"]),
        (result["sens_at_fa"]["10"]["sensitivity"], result["sens_at_fa"]["10"]["sensitivity_ci95"]),
        (result["szcore"]["sensitivity"], result["szcore"]["sensitivity_ci95"]),
        (result["szcore_evaluation"]["event_results"]["f1"],
         result["szcore_evaluation_ci95"]["event_results"]["f1"]),
    ):  # fmt: skip
        assert ci[0] <= figure <= ci[1], (figure, ci)
    for ci in (result["auroc_ci95"], result["ovlp"]["sensitivity_ci95"],
               result["szcore_evaluation_ci95"]["event_results"]["f1"]):  # fmt: skip
        assert ci[0] < ci[1]  # 8 subjects leave real uncertainty
    again = score_tracks(records, post, n_resamples=1000, seed=0)
    assert again["ovlp"]["sensitivity_ci95"] == result["ovlp"]["sensitivity_ci95"]
    assert again["auroc_ci95"] == result["auroc_ci95"]
    off = score_tracks(records, post, n_resamples=0)
    assert "auroc_ci95" not in off and "bootstrap" not in off


def test_one_subject_with_every_seizure_gives_a_wide_interval_not_a_crash() -> None:
    records = _tracks({"p3"})
    result = score_tracks(records, PostConfig(tau_on=0.5, tau_off=0.4), n_resamples=1000)
    assert result["ovlp"]["sensitivity_ci95"] == [0.0, 1.0]  # p3 is missing from ~1/3 of draws
    assert result["auroc_ci95"][0] < result["auroc_ci95"][1]
    low, high = result["ovlp"]["fa_per_24h_ci95"]
    assert low <= result["ovlp"]["fa_per_24h"] <= high
