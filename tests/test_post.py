from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import yaml
from scipy import ndimage

from brain_go_brr.post import (
    PostConfig,
    ProbabilityTracks,
    Runs,
    postprocess,
    refine_runs,
    stitch_windows,
)

CONF = Path(__file__).resolve().parents[1] / "conf" / "post" / "default.yaml"
# Post-processing with only hysteresis active (everything else a no-op at 1 Hz).
BARE = PostConfig(
    tau_on=0.5,
    tau_off=0.5,
    opening_samples=1,
    closing_samples=1,
    min_duration_s=0,
    max_duration_s=1e6,
    merge_gap_s=0,
    sfreq=1,
)


def test_stitch_is_mean_of_covering_windows_and_ignores_padding() -> None:
    windows = np.array([[1.0, 1.0, 1.0, 1.0], [0.0, 0.0, 0.0, 0.0], [0.5, 0.5, 0.9, 0.9]])
    track = stitch_windows(windows, np.array([0, 2, 4]), n_samples=6)
    # samples 4, 5 are covered by windows 1 and 2; window 2's samples 6, 7 are padding.
    np.testing.assert_allclose(track, [1.0, 1.0, 0.5, 0.5, 0.25, 0.25])
    assert track.dtype == np.float32


def test_stitch_rejects_uncovered_samples() -> None:
    with pytest.raises(ValueError, match="sample 4 of 10 is covered by no window"):
        stitch_windows(np.ones((1, 4)), np.array([0]), n_samples=10)


def test_default_yaml_matches_dataclass() -> None:
    assert PostConfig(**yaml.safe_load(CONF.read_text())) == PostConfig()


def test_config_rejects_inverted_thresholds() -> None:
    with pytest.raises(ValueError, match="tau_off <= tau_on"):
        PostConfig(tau_on=0.5, tau_off=0.6)


def test_hysteresis_starts_at_tau_on_and_ends_below_tau_off() -> None:
    #        0    1    2    3    4    5    6    7    8    9   10   11
    p = [0.1, 0.6, 0.9, 0.7, 0.65, 0.2, 0.7, 0.75, 0.3, 0.95, 0.9, 0.6]
    runs = ProbabilityTracks([np.array(p)], block_samples=4).hysteresis(0.8, 0.6)
    # run 1..4 above tau_off reaches 0.9 at 2 -> event 2..5; run 6..7 never reaches tau_on;
    # run 9..11 -> event 9..12 (reaches the end of the record).
    assert runs.start.tolist() == [2, 9]
    assert runs.stop.tolist() == [5, 12]


def _naive_hysteresis(p: np.ndarray, on: float, off: float) -> list[tuple[int, int]]:
    events, start, active = [], 0, False
    for i, v in enumerate(p):
        if not active and v >= on:
            active, start = True, i
        elif active and v < off:
            events.append((start, i))
            active = False
    if active:
        events.append((start, len(p)))
    return events


@pytest.mark.parametrize("block", [1, 3, 8, 256])
def test_packed_hysteresis_matches_naive_per_record(block: int) -> None:
    rng = np.random.default_rng(block)
    tracks = [np.clip(rng.random(n) ** 0.5, 0, 1) for n in (37, 5, 120, 64, 1)]
    packed = ProbabilityTracks(tracks, block_samples=block)
    for on, off in [(0.9, 0.8), (0.95, 0.5), (0.3, 0.3), (1.0, 0.99)]:
        runs = packed.hysteresis(on, off)
        got = list(zip(runs.record.tolist(), runs.start.tolist(), runs.stop.tolist(), strict=True))
        want = [(r, a, b) for r, t in enumerate(tracks) for a, b in _naive_hysteresis(t, on, off)]
        assert got == want


def _runs_of(mask: np.ndarray) -> Runs:
    edge = np.diff(mask.astype(np.int8), prepend=0, append=0)
    start, stop = np.flatnonzero(edge == 1), np.flatnonzero(edge == -1)
    return Runs(np.zeros(start.size, dtype=np.int64), start, stop)


@pytest.mark.parametrize("seed", range(5))
def test_opening_closing_equal_scipy_on_padded_mask(seed: int) -> None:
    mask = np.random.default_rng(seed).random(400) < 0.6
    cfg = PostConfig(
        opening_samples=5, closing_samples=7, min_duration_s=0, max_duration_s=1e6,
        merge_gap_s=0, sfreq=1,
    )  # fmt: skip
    pad = 10
    padded = np.pad(mask, pad)
    opened = ndimage.binary_opening(padded, structure=np.ones(5, bool))
    want = ndimage.binary_closing(opened, structure=np.ones(7, bool))[pad:-pad]
    got = refine_runs(_runs_of(mask), cfg)
    assert (got.start.tolist(), got.stop.tolist()) == (
        _runs_of(want).start.tolist(),
        _runs_of(want).stop.tolist(),
    )


def test_min_duration_split_and_merge_order() -> None:
    cfg = PostConfig(
        tau_on=0.5, tau_off=0.5, opening_samples=1, closing_samples=1, min_duration_s=3,
        max_duration_s=10, merge_gap_s=2, sfreq=1,
    )  # fmt: skip
    p = np.zeros(60)
    p[0:2] = 1.0  # 2 s: dropped (shorter than 3 s)
    p[5:30] = 1.0  # 25 s: split into 10 + 10 + 5 s, cuts kept
    p[31:35] = 1.0  # 1 s gap after the last piece: merged with it
    p[40:44] = 1.0  # 6 s gap: stays separate
    events = postprocess(p, cfg)
    assert [(e.start_s, e.stop_s) for e in events] == [(5, 15), (15, 25), (25, 35), (40, 44)]
    assert all(e.label == "seiz" for e in events)


def test_confidence_is_mean_probability_and_times_in_seconds() -> None:
    p = np.zeros(256 * 20, dtype=np.float32)
    p[256 * 5 : 256 * 10] = 0.9
    p[256 * 10 : 256 * 12] = 0.8
    (event,) = postprocess(p, PostConfig())
    assert (event.start_s, event.stop_s) == (5.0, 12.0)
    assert event.confidence == pytest.approx((5 * 0.9 + 2 * 0.8) / 7, abs=1e-6)


def test_opening_removes_short_spikes_and_closing_fills_short_dips() -> None:
    p = np.zeros(256 * 30, dtype=np.float32)
    p[256 : 256 + 10] = 1.0  # 10-sample spike: removed by the 11-sample opening
    p[256 * 10 : 256 * 20] = 1.0
    p[256 * 15 : 256 * 15 + 30] = 0.0  # 30-sample dip: filled by the 31-sample closing
    events = postprocess(p, PostConfig())
    assert [(e.start_s, e.stop_s) for e in events] == [(10.0, 20.0)]


def test_tracks_reject_values_outside_unit_interval() -> None:
    with pytest.raises(ValueError, match=r"record 1: probabilities must lie in \[0, 1\]"):
        ProbabilityTracks([np.zeros(5), np.array([0.2, 1.5])])


def test_bare_config_is_plain_hysteresis() -> None:
    events = postprocess(np.array([0, 1, 1, 0, 1, 0], dtype=float), BARE)
    assert [(e.start_s, e.stop_s) for e in events] == [(1, 3), (4, 5)]
