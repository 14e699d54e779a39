"""EDF ingestion: channel names, header repair, Fz/Pz interpolation, labels, bad inputs."""

from __future__ import annotations

from pathlib import Path

import mne
import numpy as np
import pytest

from brain_go_brr.annotations import Event, read_csv_bi, write_csv_bi
from brain_go_brr.data.channels import CHANNELS, canonical_name
from brain_go_brr.data.edf import montage_1020, read_edf
from brain_go_brr.data.labels import clip_events, events_to_mask
from brain_go_brr.data.preprocess import PreprocessConfig, RecordSkipped, load_record
from brain_go_brr.data.synth import write_edf

SFREQ = 256
# TUSZ-style upper-case labels in a shuffled file order, with the extra channels TUSZ carries.
TUSZ_NAMES = [
    "FP2", "FP1", "F4", "F3", "C4", "C3", "P4", "P3", "O2", "O1", "F8", "F7",
    "T4", "T3", "T6", "T5", "CZ", "FZ", "PZ", "A1", "A2",
]  # fmt: skip
EXTRA = ["EKG1-REF", "PHOTIC-REF"]


def _labels(names: list[str], suffix: str = "-REF") -> list[str]:
    return [f"EEG {n}{suffix}" for n in names] + EXTRA


def _record(
    tmp_path: Path,
    data_uv: np.ndarray,
    labels: list[str],
    sfreq: int = SFREQ,
    events: list[Event] | None = None,
    stem: str = "aaaaaaaa_s001_t000",
    montage: str = "01_tcp_ar",
) -> Path:
    """Write an EDF (+ its csv_bi) in the TUSZ layout under ``tmp_path``; returns the EDF path."""
    path = tmp_path / "edf" / "train" / stem.split("_")[0] / "s001_2000" / montage / f"{stem}.edf"
    path.parent.mkdir(parents=True, exist_ok=True)
    write_edf(path, data_uv, labels, sfreq)
    duration_s = data_uv.shape[1] / sfreq
    write_csv_bi(path.with_suffix(".csv_bi"), events or [], duration_s)
    return path


def _noise(n_channels: int, n: int, seed: int = 0, scale_uv: float = 20.0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n_channels, n)) * scale_uv


def _patch(path: Path, offset: int, new: bytes) -> None:
    raw = bytearray(path.read_bytes())
    raw[offset : offset + len(new)] = new
    path.write_bytes(bytes(raw))


def _signal_field_offset(path: Path, field_offset: int, index: int) -> int:
    """Byte offset of signal ``index``'s field in the per-signal header (EDF spec layout)."""
    n_signals = int(path.read_bytes()[252:256].decode().strip())
    return 256 + field_offset * n_signals + 8 * index


# ----------------------------------------------------------------------------- channel names


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("EEG FP1-REF", "Fp1"),
        ("EEG FP1-LE", "Fp1"),
        ("EEG T7-LE", "T3"),
        ("EEG P8-REF", "T6"),
        ("EEG FZ-REF", "Fz"),
        ("eeg cz-ar", "Cz"),
        ("EKG1-REF", None),
        ("EEG A1-REF", None),
        ("PHOTIC-REF", None),
    ],
)
def test_canonical_names(raw: str, expected: str | None) -> None:
    assert canonical_name(raw) == expected


def test_channels_come_out_in_design_order_from_any_file_order_and_alias(tmp_path: Path) -> None:
    # Channel i carries a sine at 3 + i Hz; the file stores them shuffled, with 10-10 names
    # (T7, P8) and LE suffixes. Each output row must still peak at its own frequency.
    n = 20 * SFREQ
    t = np.arange(n) / SFREQ
    freq = {name: 3.0 + i for i, name in enumerate(CHANNELS)}
    file_names = {"T3": "T7", "T6": "P8"}
    order = list(CHANNELS[::-1])
    data = np.stack([100 * np.sin(2 * np.pi * freq[c] * t) for c in order] + [0 * t, 0 * t])
    labels = [f"EEG {file_names.get(c, c).upper()}-LE" for c in order] + EXTRA
    data[-2:] = _noise(2, n)  # EKG, PHOTIC
    path = _record(tmp_path, data, labels, montage="02_tcp_le")
    rec = read_edf(path)
    assert rec.data_uv.shape == (19, n)
    assert rec.interpolated == []
    spectrum = np.abs(np.fft.rfft(rec.data_uv, axis=1))
    peaks_hz = np.fft.rfftfreq(n, 1 / SFREQ)[spectrum.argmax(axis=1)]
    np.testing.assert_allclose(peaks_hz, [freq[c] for c in CHANNELS])
    # µV survive the EDF round trip (16-bit quantisation of ±5000 µV is 0.15 µV)
    np.testing.assert_allclose(
        rec.data_uv[CHANNELS.index("Fp1")], data[order.index("Fp1")], atol=0.2
    )
    prepared = load_record(path, PreprocessConfig())
    assert prepared.montage == "02_tcp_le"
    assert prepared.signals.shape == (19, n) and prepared.signals.dtype == np.float32


# ----------------------------------------------------------------------------- Fz / Pz


def _smooth_field(n: int, seed: int = 0) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """(19, n) µV from 3 sources with smooth scalp maps (linear in position) + 2 % noise."""
    pos = mne.channels.make_standard_montage(montage_1020()).get_positions()["ch_pos"]
    xyz = np.stack([pos[c] for c in CHANNELS]) / 0.095  # roughly unit sphere
    rng = np.random.default_rng(seed)
    t = np.arange(n) / SFREQ
    sources = np.stack(
        [np.sin(2 * np.pi * 7 * t), np.sin(2 * np.pi * 2.3 * t + 1), rng.standard_normal(n)]
    )
    data = 40 * (xyz @ sources) + rng.standard_normal((19, n))
    return data, {c: data[i] for i, c in enumerate(CHANNELS)}


def test_missing_fz_pz_are_interpolated_and_recorded(tmp_path: Path) -> None:
    n = 20 * SFREQ
    _, by_name = _smooth_field(n)
    kept = [c for c in CHANNELS if c not in ("Fz", "Pz")]
    path = _record(
        tmp_path,
        np.stack([by_name[c] for c in kept]),
        _labels([c.upper() for c in kept])[: len(kept)],
    )
    rec = read_edf(path)
    assert rec.interpolated == ["Fz", "Pz"]
    for name, neighbour in (("Fz", "Cz"), ("Pz", "Cz")):
        rebuilt = rec.data_uv[CHANNELS.index(name)]
        assert np.corrcoef(rebuilt, by_name[name])[0, 1] > 0.95  # matches the true field
        assert np.corrcoef(rebuilt, by_name[neighbour])[0, 1] > 0.5  # like its neighbour
        assert 0.5 < rebuilt.std() / by_name[name].std() < 1.5
    prepared = load_record(path, PreprocessConfig())
    assert prepared.interpolated == ["Fz", "Pz"]
    assert np.isfinite(prepared.signals).all()


def test_interpolation_can_be_switched_off(tmp_path: Path) -> None:
    kept = [c for c in CHANNELS if c != "Pz"]
    path = _record(tmp_path, _noise(len(kept), 12 * SFREQ), [f"EEG {c.upper()}-REF" for c in kept])
    with pytest.raises(RecordSkipped, match=r"channel Pz missing"):
        load_record(path, PreprocessConfig(interpolate_missing=()))


# ----------------------------------------------------------------------------- header repair


def test_malformed_start_date_is_repaired_and_read(tmp_path: Path) -> None:
    n = 12 * SFREQ
    data = _noise(len(TUSZ_NAMES) + 2, n)
    good = _record(tmp_path, data, _labels(TUSZ_NAMES), stem="aaaaaaaa_s001_t000")
    bad = _record(tmp_path, data, _labels(TUSZ_NAMES), stem="aaaaaaaq_s007_t000")
    _patch(bad, 168, b"01:01:85")  # the TUSZ eval file's start date
    pyedflib = pytest.importorskip("pyedflib")
    with pytest.raises(OSError, match="startdate"):  # a strict reader refuses the file
        pyedflib.EdfReader(str(bad))
    rec = load_record(bad, PreprocessConfig())
    assert any("01:01:85" in w and "01.01.85" in w for w in rec.warnings)
    np.testing.assert_array_equal(rec.signals, load_record(good, PreprocessConfig()).signals)


# ----------------------------------------------------------------------------- labels


@pytest.mark.parametrize("sfreq", [250, 256, 400, 512, 1000])
def test_seizure_lands_on_the_same_256_hz_samples_from_any_rate(tmp_path: Path, sfreq: int) -> None:
    # A 9 Hz, 300 µV burst from 10 to 20 s on top of 10 µV noise, labelled [10, 20) and a
    # second, fractional event [30.5, 41.2501).
    seconds = 50
    n = seconds * sfreq
    t = np.arange(n) / sfreq
    data = _noise(len(TUSZ_NAMES) + 2, n, scale_uv=10.0)
    burst = ((t >= 10) & (t < 20)) * 300 * np.sin(2 * np.pi * 9 * t)
    data[:19] += burst * np.linspace(0.5, 1.5, 19)[:, None]  # uneven so CAR keeps it
    events = [Event(10.0, 20.0, "seiz"), Event(30.5, 41.2501, "seiz")]
    path = _record(tmp_path, data, _labels(TUSZ_NAMES), sfreq, events=events)
    rec = load_record(path, PreprocessConfig())
    assert rec.orig_sfreq == sfreq
    assert rec.duration_s == seconds
    assert rec.signals.shape == (19, seconds * 256)
    expected = np.zeros(seconds * 256, dtype=np.uint8)
    expected[2560:5120] = 1
    expected[7808:10561] = 1  # floor(30.5 * 256) .. ceil(41.2501 * 256)
    np.testing.assert_array_equal(rec.labels, expected)
    # The burst itself sits on the labelled samples: its envelope crosses half height at 10 s
    # and 20 s to within 10 ms.
    envelope = np.convolve(np.abs(rec.signals).mean(axis=0), np.ones(64) / 64, mode="same")
    high = envelope > (envelope[3000:4700].mean() + np.median(envelope)) / 2
    onset, offset = np.flatnonzero(high[:6000])[[0, -1]]
    assert abs(onset - 2560) <= 3 and abs(offset + 1 - 5120) <= 3


def test_events_to_mask_sample_boundaries() -> None:
    # sample k covers [k / 4, (k + 1) / 4): [0.25, 1.0) covers samples 1-3; [1.6, 1.9) sample 6
    mask = events_to_mask([Event(0.25, 1.0), Event(1.6, 1.9)], n_samples=10, sfreq=4)
    np.testing.assert_array_equal(mask, [0, 1, 1, 1, 0, 0, 1, 1, 0, 0])
    assert mask.dtype == np.uint8


def test_clip_events_cuts_and_drops_with_warnings() -> None:
    kept, notes = clip_events([Event(1, 2), Event(8, 12), Event(10, 11)], duration_s=10.0)
    assert kept == [Event(1, 2), Event(8, 10.0)]
    assert len(notes) == 2 and "clipped to 10.0000 s" in notes[0] and "dropped" in notes[1]


def test_annotation_past_the_end_is_clipped_with_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = _record(tmp_path, _noise(len(TUSZ_NAMES) + 2, 30 * SFREQ), _labels(TUSZ_NAMES))
    path.with_suffix(".csv_bi").write_text(  # written by hand: write_csv_bi would clip them
        "# duration = 40.0000 secs\nchannel,start_time,stop_time,label,confidence\n"
        "TERM,25.0000,28.0000,seiz,1.0\nTERM,29.0000,40.0000,seiz,1.0\n"
        "TERM,45.0000,50.0000,seiz,1.0\n"
    )
    with caplog.at_level("WARNING"):
        rec = load_record(path, PreprocessConfig())
    assert rec.seizures == [Event(25.0, 28.0), Event(29.0, 30.0)]
    assert rec.labels.sum() == 4 * 256 and rec.labels[-256:].all()
    assert len(rec.warnings) == 3 and all(".csv_bi: " in w for w in rec.warnings)
    assert "annotation duration 40.0000 s differs from the EDF's 30.0000 s" in rec.warnings[0]
    assert "runs past the end" in caplog.text and "starts after the end" in caplog.text


def test_csv_fallback_takes_the_union_of_every_seizure_type(tmp_path: Path) -> None:
    path = _record(tmp_path, _noise(len(TUSZ_NAMES) + 2, 30 * SFREQ), _labels(TUSZ_NAMES))
    path.with_suffix(".csv_bi").unlink()
    path.with_suffix(".csv").write_text(
        "# version = csv_v1.0.0\n# duration = 30.0000 secs\n#\n"
        "channel,start_time,stop_time,label,confidence\n"
        "FP1-F7,2.0000,5.0000,fnsz,1.0000\nFP1-F7,5.0000,9.0000,bckg,1.0000\n"
        "C3-P3,4.0000,6.0000,cpsz,1.0000\nO1-O2,20.0000,22.0000,mysz,1.0000\n"
    )
    rec = load_record(path, PreprocessConfig())
    assert [(e.start_s, e.stop_s) for e in rec.seizures] == [(2.0, 6.0), (20.0, 22.0)]
    assert rec.labels.sum() == 6 * 256


def test_nedc_demo_csv_bi_files_parse(nedc_demo: Path) -> None:
    refs = sorted((nedc_demo / "ref").glob("*.csv_bi"))
    hyps = sorted((nedc_demo / "hyp").glob("*.csv_bi"))
    assert len(refs) == len(hyps) == 30
    n_ref_seizures = 0
    for path in refs + hyps:
        annotation = read_csv_bi(path)
        assert annotation.duration_s is not None and annotation.duration_s > 0
        seizures, notes = clip_events(annotation.seizures(), annotation.duration_s)
        assert notes == []
        mask = events_to_mask(seizures, round(annotation.duration_s * 256), 256)
        covered = sum(e.duration_s for e in seizures)
        assert abs(mask.sum() / 256 - covered) <= 2 * len(seizures) / 256
        if path in refs:
            n_ref_seizures += len(seizures)
    assert n_ref_seizures == 701  # NEDC's OVLP target count on this set


# ----------------------------------------------------------------------------- bad inputs


def _bad_truncated(path: Path) -> None:
    path.write_bytes(path.read_bytes()[:-5000])


def _bad_not_edf(path: Path) -> None:
    path.write_text("<html><body>404 Not Found</body></html>\n" * 20)


def _bad_nan(path: Path) -> None:
    # physical minimum (field at 104 * n_signals) of signal 3 = "nan": mne scales to NaN
    _patch(path, _signal_field_offset(path, 104, 3), b"nan     ")


def _bad_annotation_row(path: Path) -> None:
    with path.with_suffix(".csv_bi").open("a") as fh:
        fh.write("TERM,12.0,oops,seiz,1.0\n")


def _bad_no_annotation(path: Path) -> None:
    path.with_suffix(".csv_bi").unlink()


@pytest.mark.parametrize(
    ("names", "spoil", "fragments"),
    [
        (TUSZ_NAMES, _bad_truncated, ["truncated EDF"]),
        (TUSZ_NAMES, _bad_not_edf, ["not an EDF file"]),
        (["ROC", "LOC"], None, ["no EEG channels", "EKG1-REF"]),
        ([c for c in TUSZ_NAMES if c != "CZ"], None, ["channel Cz missing", "EEG FP1-REF"]),
        (TUSZ_NAMES, _bad_no_annotation, ["no annotation file", ".csv_bi"]),
        (TUSZ_NAMES, _bad_annotation_row, ["csv_bi:", "must be numbers"]),
        (TUSZ_NAMES, _bad_nan, ["NaN", "EEG F3-REF"]),
    ],
    ids=["truncated", "not-edf", "no-eeg", "missing-cz", "no-annotation", "bad-row", "nan"],
)
def test_bad_inputs_are_skipped_with_a_reason(
    tmp_path: Path, names: list[str], spoil: object, fragments: list[str]
) -> None:
    path = _record(tmp_path, _noise(len(names) + 2, 12 * SFREQ), _labels(names))
    if callable(spoil):
        spoil(path)
    with pytest.raises(RecordSkipped) as info:
        load_record(path, PreprocessConfig())
    reason = info.value.reason
    assert path.stem in reason  # the .edf, or for label problems its .csv_bi
    for fragment in fragments:
        assert fragment in reason


def test_flat_channel_is_skipped(tmp_path: Path) -> None:
    data = _noise(len(TUSZ_NAMES) + 2, 12 * SFREQ)
    data[TUSZ_NAMES.index("O1")] = 12.5
    path = _record(tmp_path, data, _labels(TUSZ_NAMES))
    with pytest.raises(RecordSkipped, match=r"aaaaaaaa_s001_t000\.edf: flat channel EEG O1-REF"):
        load_record(path, PreprocessConfig())


def test_short_record_is_skipped(tmp_path: Path) -> None:
    path = _record(tmp_path, _noise(len(TUSZ_NAMES) + 2, 8 * SFREQ), _labels(TUSZ_NAMES))
    with pytest.raises(RecordSkipped, match=r"8\.00 s long, shorter than min_duration_s = 10"):
        load_record(path, PreprocessConfig())
    assert load_record(path, PreprocessConfig(min_duration_s=5)).n_samples == 8 * 256


def test_record_skipped_survives_pickling() -> None:
    import pickle

    exc = pickle.loads(pickle.dumps(RecordSkipped("x.edf: bad; fix it")))
    assert isinstance(exc, RecordSkipped) and exc.reason == "x.edf: bad; fix it"
