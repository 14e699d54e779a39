"""The signal chain: filters, resampling, robust scaling, re-referencing, the config."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from brain_go_brr.data.preprocess import (
    PreprocessConfig,
    filter_gain,
    preprocess_signals,
    resample,
    robust_scale,
    zero_phase_filter,
)

FS = 256


def _sine(freq_hz: float, seconds: float, fs: float = FS, phase: float = 0.3) -> np.ndarray:
    t = np.arange(round(seconds * fs)) / fs
    return np.sin(2 * np.pi * freq_hz * t + phase)


def _db(ratio: float) -> float:
    return 20 * np.log10(ratio)


def test_filter_gain_at_the_band_edges_notch_and_passband() -> None:
    cfg = PreprocessConfig()
    gain = filter_gain(np.array([0.0, 0.5, 10.0, 59.0, 60.0, 61.0, 120.0, 128.0]), cfg)
    assert gain[0] == 0.0  # DC
    assert gain[1] == pytest.approx(0.25, rel=1e-3)  # -6 dB: -3 dB per direction
    assert gain[2] == pytest.approx(1.0, abs=1e-4)
    assert gain[4] == 0.0
    assert 0.2 < gain[3] < 0.3 and 0.2 < gain[5] < 0.3  # 2 Hz wide notch (-3 dB per pass)
    assert gain[6] == pytest.approx(0.25, rel=1e-2)  # a valid edge just under Nyquist
    assert gain[7] < gain[6]


@pytest.mark.parametrize("design", ["fft", "sos"])
def test_10_hz_survives_dc_and_60_hz_are_removed_without_edge_transients(design: str) -> None:
    cfg = PreprocessConfig(filter_design=design)
    seconds = 60
    alpha = 50 * _sine(10, seconds)
    y = zero_phase_filter((alpha + 400.0)[None].astype(np.float32), FS, cfg)[0]  # DC 400 µV
    assert y.dtype == np.float32
    err = np.abs(y - alpha)
    assert err[FS:-FS].max() < 0.01 * 50  # amplitude kept within 1 %
    # At the ends no extension can know how the signal goes on; the high-pass then costs
    # about (0.5 Hz / 10 Hz) of the amplitude on the very first samples, settling within 1 s.
    # A causal filter or point reflection leaves a transient the size of the DC step or signal.
    for edge in (slice(0, FS), slice(-FS, None)):
        assert err[edge].max() < 0.06 * 50
        assert np.sqrt(np.mean(err[edge] ** 2)) < 0.03 * 50
    mains = 80 * _sine(60, seconds, phase=1.1)
    dc_and_mains = zero_phase_filter((mains + 400.0)[None].astype(np.float32), FS, cfg)[0]
    assert _db(np.abs(dc_and_mains.mean()) / 400.0) < -60
    # the notch needs up to 1 s to settle at each end (the mains phase there is unknown)
    settled = dc_and_mains[FS:-FS]
    assert _db(settled.std() / mains.std()) < -40
    assert _db(np.abs(settled).max() / 80) < -30


def test_fft_and_sos_designs_agree_in_the_passband() -> None:
    rng = np.random.default_rng(0)
    x = rng.standard_normal((3, 30 * FS)).astype(np.float32)
    a = zero_phase_filter(x, FS, PreprocessConfig(filter_design="fft"))
    b = zero_phase_filter(x, FS, PreprocessConfig(filter_design="sos"))
    # They differ only by the bilinear warping of the digital design near 120 Hz and 60 Hz.
    low = zero_phase_filter(a - b, FS, PreprocessConfig(bandpass=(1.0, 40.0), notch_hz=None))
    assert np.abs(low).max() < 0.02 * a.std()


@pytest.mark.parametrize(
    ("fs_in", "up_down"), [(250, 128 / 125), (400, 16 / 25), (512, 0.5), (1000, 32 / 125)]
)
def test_resample_keeps_a_sine_and_the_exact_length(fs_in: int, up_down: float) -> None:
    seconds = 20
    x = np.stack([_sine(7.0, seconds, fs_in), _sine(31.0, seconds, fs_in)]).astype(np.float32)
    y = resample(x, float(fs_in), FS)
    assert y.shape == (2, round(x.shape[1] * up_down)) == (2, seconds * FS)
    assert y.dtype == np.float32
    core = slice(FS, -FS)  # the anti-aliasing filter's own edges aside
    np.testing.assert_allclose(y[0, core], _sine(7.0, seconds)[core], atol=0.01)
    np.testing.assert_allclose(y[1, core], _sine(31.0, seconds)[core], atol=0.01)


def test_resample_refuses_an_irrational_rate() -> None:
    with pytest.raises(ValueError, match=r"250\.0001 Hz"):
        resample(np.zeros((1, 1000), np.float32), 250.0001, FS)


def test_robust_scale_centres_scales_and_clips() -> None:
    rng = np.random.default_rng(1)
    x = (rng.standard_normal((2, 100_000)) * [[5.0], [0.1]] + [[30.0], [-2.0]]).astype(np.float32)
    x[0, :50] = 1e4  # artefacts: barely move median and IQR, then clipped
    y = robust_scale(x.copy(), clip_sigma=10.0, max_samples=20_000)
    assert np.abs(np.median(y, axis=1)).max() < 0.03  # from 20 000 of 100 000 samples
    iqr = np.subtract(*np.percentile(y, [75, 25], axis=1))
    np.testing.assert_allclose(iqr / 1.349, 1.0, atol=0.03)
    assert y.max() == 10.0 and y[0, :50].tolist() == [10.0] * 50


@pytest.mark.parametrize("n", [7, 1001, 50_001])
def test_robust_scale_matches_the_sorted_order_statistics(n: int) -> None:
    rng = np.random.default_rng(n)
    x = (rng.standard_normal((3, n)) * [[1.0], [2.0], [30.0]] + 5).astype(np.float32)
    ordered = np.sort(x, axis=1)
    median = ordered[:, n // 2, None]
    sigma = (ordered[:, 3 * n // 4] - ordered[:, n // 4])[:, None] / np.float32(1.3489795)
    y = robust_scale(x.copy(), clip_sigma=1e9, max_samples=n)
    np.testing.assert_allclose(y, (x - median) / sigma, rtol=1e-5, atol=1e-5)


def test_robust_scale_names_a_channel_without_spread() -> None:
    x = np.random.default_rng(2).standard_normal((19, 1000)).astype(np.float32)
    x[9] = 0.0
    with pytest.raises(ValueError, match="channel Cz has no spread"):
        robust_scale(x, 10.0, 1000)


def test_average_reference_removes_the_common_signal() -> None:
    rng = np.random.default_rng(3)
    common = 200 * _sine(5.0, 20)
    x = (rng.standard_normal((19, 20 * FS)) * 10 + common).astype(np.float32)
    raw = dict(scaling="none", notch_hz=None)
    car = preprocess_signals(x, FS, PreprocessConfig(reference="average", **raw))
    plain = preprocess_signals(x, FS, PreprocessConfig(reference="none", **raw))
    np.testing.assert_allclose(car.sum(axis=0), 0.0, atol=1e-2)
    assert np.corrcoef(plain[0], common)[0, 1] > 0.9 > 0.2 > abs(np.corrcoef(car[0], common)[0, 1])


def test_preprocess_signals_output_contract() -> None:
    x = np.random.default_rng(4).standard_normal((19, 30 * 250)) * 30
    y = preprocess_signals(x, 250.0, PreprocessConfig())
    assert y.shape == (19, 30 * 256) and y.dtype == np.float32
    assert np.abs(y).max() <= 10.0
    np.testing.assert_allclose(np.median(y, axis=1), 0.0, atol=0.05)


# ----------------------------------------------------------------------------- config


def test_fingerprint_is_stable_and_tracks_every_setting() -> None:
    base = PreprocessConfig()
    assert base.fingerprint() == PreprocessConfig().fingerprint()
    assert len(base.fingerprint()) == 16
    changes = {
        "target_sfreq": 512,
        "reference": "none",
        "bandpass": (1.0, 70.0),
        "filter_order": 2,
        "notch_hz": 50.0,
        "notch_q": 10.0,
        "filter_design": "sos",
        "filter_pad_s": 5.0,
        "scaling": "none",
        "clip_sigma": 5.0,
        "scaling_max_samples": 1000,
        "channel_aliases": (("T7", "T3"),),
        "interpolate_missing": ("Fz",),
        "min_duration_s": 60.0,
    }
    assert set(changes) == {f.name for f in dataclasses.fields(PreprocessConfig)}
    prints = {dataclasses.replace(base, **{k: v}).fingerprint() for k, v in changes.items()}
    assert len(prints) == len(changes) and base.fingerprint() not in prints


def test_from_dict_accepts_yaml_values_and_rejects_unknown_keys() -> None:
    cfg = PreprocessConfig.from_dict(
        {
            "bandpass": [1, 70],
            "channel_aliases": {"T8": "T4", "T7": "T3"},
            "interpolate_missing": ["Fz"],
            "notch_hz": None,
        }
    )
    assert cfg.bandpass == (1.0, 70.0) and cfg.notch_hz is None
    assert cfg.aliases == {"T7": "T3", "T8": "T4"}
    assert cfg.fingerprint() == PreprocessConfig.from_dict(dataclasses.asdict(cfg)).fingerprint()
    with pytest.raises(ValueError, match=r"unknown key\(s\) \['clip'\]; valid keys"):
        PreprocessConfig.from_dict({"clip": 3})


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"bandpass": (0.5, 130.0)}, "Nyquist"),
        ({"reference": "linked_ears"}, "reference"),
        ({"interpolate_missing": ("Fz", "T7")}, "interpolate_missing"),
        ({"filter_design": "iir"}, "filter_design"),
    ],
)
def test_invalid_settings_are_refused(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        PreprocessConfig(**kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize("name", ["tusz", "synthetic"])
def test_data_configs_spell_out_every_setting_at_its_default(name: str) -> None:

    from data_fixtures import group_config

    section = group_config("data", name)["preprocess"]
    assert set(section) == {f.name for f in dataclasses.fields(PreprocessConfig)}
    assert PreprocessConfig.from_dict(section) == PreprocessConfig()
