"""The synthetic TUSZ-layout corpus: layout, determinism, readers, labels, signal content."""

from __future__ import annotations

import itertools
import json
import re
import shutil
from collections import Counter
from pathlib import Path

import mne
import numpy as np
import pyedflib
import pytest
from scipy import signal as sps

from brain_go_brr.annotations import SEIZURE_LABELS, read_csv, read_csv_bi
from brain_go_brr.cli import main as cli_main
from brain_go_brr.data.channels import canonical_name
from brain_go_brr.data.synth import (
    INCOMPLETE,
    MANIFEST,
    TCP_PAIRS,
    generate_corpus,
    make_recording,
    plan_corpus,
    write_edf,
)
from brain_go_brr.data.synth_signals import ELECTRODES, ArtifactSpec, Rendered

LAYOUT = re.compile(
    r"^edf/(train|dev|eval)/([a-z]{8})/(s\d{3}_\d{4}_\d{2}_\d{2})/"
    r"(01_tcp_ar|02_tcp_le|03_tcp_ar_a)/\2_(s\d{3})_t\d{3}\.(edf|csv_bi|csv)$"
)
N_PATIENTS, HOURS, SEED = 4, 0.4, 7


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("synth") / "corpus"
    generate_corpus(out, N_PATIENTS, HOURS, SEED, workers=1)
    return out


def _manifest(root: Path) -> dict:
    return json.loads((root / MANIFEST).read_text())


def _files(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def test_layout_and_patient_disjoint_splits(corpus: Path) -> None:
    paths = [p.relative_to(corpus).as_posix() for p in (corpus / "edf").rglob("*") if p.is_file()]
    assert paths, "no files written"
    split_of: dict[str, set[str]] = {}
    for path in paths:
        m = LAYOUT.match(path)
        assert m, f"{path} does not follow the TUSZ layout"
        assert m.group(3).startswith(m.group(5)), f"{path}: session folder and file name disagree"
        split_of.setdefault(m.group(2), set()).add(m.group(1))
    assert all(len(s) == 1 for s in split_of.values()), f"patient in two splits: {split_of}"
    assert len(split_of) == N_PATIENTS
    suffixes = Counter(Path(p).suffix for p in paths)
    assert suffixes[".edf"] == suffixes[".csv_bi"] == suffixes[".csv"]
    manifest = _manifest(corpus)
    assert sorted(e["path"] for e in manifest["files"]) == sorted(
        p for p in paths if p.endswith(".edf")
    )
    for split in ("train", "dev", "eval"):
        rows = [e for e in manifest["files"] if e["split"] == split]
        assert rows, f"split {split} has no patient"
        assert any(e["seizures"] for e in rows), f"split {split} has no seizure"
    assert manifest["seed"] == SEED
    assert abs(sum(e["duration_s"] for e in manifest["files"]) / 3600 - HOURS) < 0.05


def test_same_seed_same_bytes_for_any_worker_count_and_cli(corpus: Path, tmp_path: Path) -> None:
    again = tmp_path / "again"
    args = ["synth", str(again), "--patients", str(N_PATIENTS), "--hours", str(HOURS)]
    assert cli_main([*args, "--seed", str(SEED), "--workers", "2"]) == 0
    assert _files(again) == _files(corpus)
    # An existing corpus is only replaced on request.
    assert cli_main([*args, "--seed", str(SEED)]) == 2
    assert cli_main([*args, "--seed", str(SEED + 1), "--overwrite"]) == 0
    other = _files(again)
    assert other.keys() != _files(corpus).keys() or other != _files(corpus)
    (again / MANIFEST).unlink()
    with pytest.raises(FileExistsError, match="not a synthetic corpus"):
        generate_corpus(again, 1, 0.05, 0, overwrite=True)


def test_interrupted_run_is_redone_in_place(corpus: Path, tmp_path: Path) -> None:
    killed = tmp_path / "killed"
    shutil.copytree(corpus, killed)
    # What a kill leaves: the in-progress marker, some files, no manifest.
    (killed / MANIFEST).unlink()
    for edf in sorted(killed.rglob("*.edf"))[1:]:
        edf.unlink()
    settings = {"n_patients": N_PATIENTS, "hours": HOURS, "seed": SEED}
    (killed / INCOMPLETE).write_text(json.dumps(settings))
    with pytest.raises(FileExistsError, match="already exists"):
        generate_corpus(killed, N_PATIENTS, HOURS, SEED + 1)
    generate_corpus(killed, N_PATIENTS, HOURS, SEED)
    assert _files(killed) == _files(corpus)


def test_edf_readable_by_mne_and_pyedflib(corpus: Path) -> None:
    for entry in _manifest(corpus)["files"]:
        path = corpus / entry["path"]
        raw = mne.io.read_raw_edf(path, preload=True, verbose="error")
        assert raw.ch_names == entry["channels"]
        assert raw.info["sfreq"] == entry["sfreq"]
        assert raw.n_times == entry["duration_s"] * entry["sfreq"]
        with pyedflib.EdfReader(str(path)) as reader:
            assert reader.getSignalLabels() == entry["channels"]
            assert set(reader.getSampleFrequencies()) == {entry["sfreq"]}
            assert reader.getPhysicalDimension(0) == "uV"
            fp1 = reader.readSignal(0)
        # Both readers decode the same µV values; a real EEG channel is neither flat nor huge.
        np.testing.assert_allclose(raw.get_data(picks=[0])[0] * 1e6, fp1, atol=1e-6)
        assert 5.0 < fp1.std() < 500.0
        canonical = {canonical_name(c) for c in entry["channels"]} - {None}
        expected = 19 - len(entry["missing_channels"])
        assert len(canonical) == expected, f"{path.name}: {sorted(map(str, canonical))}"


def test_labels_match_across_files_and_manifest(corpus: Path) -> None:
    for entry in _manifest(corpus)["files"]:
        edf = corpus / entry["path"]
        bi, per_channel = read_csv_bi(edf.with_suffix(".csv_bi")), read_csv(edf.with_suffix(".csv"))
        assert bi.duration_s == per_channel.duration_s == entry["duration_s"]
        assert per_channel.seizures() == bi.seizures()
        expected = [(s["onset_s"], s["offset_s"]) for s in entry["seizures"]]
        assert [(e.start_s, e.stop_s) for e in bi.seizures()] == expected
        text = edf.with_suffix(".csv").read_text().splitlines()[6:]
        for row in text:
            channel, _, _, label, _ = row.split(",")
            assert channel in TCP_PAIRS and (label in SEIZURE_LABELS or label == "bckg")
        types = {e.label for e in per_channel.events} - {"bckg"}
        assert types == {s["label"] for s in entry["seizures"]}


def test_plan_statistics_look_like_tusz() -> None:
    plans = [p for seed in range(3) for p in plan_corpus(20, 8.0, seed)]
    durations = np.array([p.spec.duration_s for p in plans])
    assert durations.min() >= 120 and durations.max() <= 3600
    seizures = [s for p in plans for s in p.spec.seizures]
    lengths = np.array([s.offset_s - s.onset_s for s in seizures])
    assert lengths.min() >= 10.0 - 1e-3 and lengths.max() <= 120.0 + 1e-3
    # generator version 3: 90 % of patients have seizures in 70 % of their files, 1-5 a file
    assert 0.5 <= np.mean([bool(p.spec.seizures) for p in plans]) <= 0.75
    assert 0.07 <= lengths.sum() / durations.sum() <= 0.16
    assert 7.0 <= len(lengths) / (durations.sum() / 3600) <= 13.0
    assert {len(p.spec.seizures) for p in plans} - {0} == {1, 2, 3, 4, 5}
    assert 25.0 <= np.median(lengths) <= 45.0
    assert {p.spec.sfreq for p in plans} == {250, 256, 400, 512}
    assert {p.montage for p in plans} == {"01_tcp_ar", "02_tcp_le", "03_tcp_ar_a"}
    assert 0.03 <= np.mean([bool(p.missing) for p in plans]) <= 0.2
    assert any(p.names_1010 for p in plans) and any(not p.fill_background for p in plans)
    assert {s.label for s in seizures} >= {"fnsz", "gnsz", "absz"}
    for p in plans:  # seizures and hard negatives never overlap
        spans = sorted(
            [(s.onset_s, s.offset_s) for s in p.spec.seizures]
            + [(a.onset_s, a.offset_s) for a in p.spec.artifacts]
        )
        assert all(b <= c for (_, b), (c, _) in itertools.pairwise(spans))
    kinds = Counter(a.kind for p in plans for a in p.spec.artifacts)
    assert kinds.keys() == {"chewing", "movement"}
    hours = durations.sum() / 3600
    # generator version 2: movement artifacts 1 per 20 min + 1 per 10 min (9 per hour, a
    # little fewer where they do not fit), chewing 1 per 20 min (3 per hour)
    assert 7.5 <= kinds["movement"] / hours <= 9.5, kinds["movement"] / hours
    assert 2.5 <= kinds["chewing"] / hours <= 3.5, kinds["chewing"] / hours
    for a in (a for p in plans for a in p.spec.artifacts):  # each span keeps its own kind
        length = a.offset_s - a.onset_s
        if a.kind == "chewing":
            assert 3 - 1e-3 <= length <= 20 + 1e-3 and 5 <= a.rate_hz <= 8
        else:
            assert 4 - 1e-3 <= length <= 30 + 1e-3 and 1 <= a.rate_hz <= 3
            assert 2 <= len(a.electrodes) <= 4 and 60 <= a.amplitude_uV <= 180
    with pytest.raises(ValueError, match="--patients"):
        plan_corpus(0, 1.0, 0)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_demo_corpus_has_resolution_and_balanced_splits(seed: int) -> None:
    """The demo corpus (60 patients, 26 h; conf/experiment/demo.yaml): at least 40 seizures
    from at least 8 patients in each of dev and eval, both kinds of hard negative in every
    split, and each split's share of hours and of seizures near its share of patients."""
    plans = plan_corpus(60, 26.0, seed)
    hours = sum(p.spec.duration_s for p in plans) / 3600
    n_seizures = sum(len(p.spec.seizures) for p in plans)
    for split, n_patients in (("train", 36), ("dev", 12), ("eval", 12)):
        rows = [p for p in plans if p.split == split]
        assert len({p.patient for p in rows}) == n_patients
        seizures = sum(len(p.spec.seizures) for p in rows)
        share = n_patients / 60
        assert abs(sum(p.spec.duration_s for p in rows) / 3600 / hours - share) < 0.02, split
        assert abs(seizures / n_seizures - share) < 0.02, split
        assert {a.kind for p in rows for a in p.spec.artifacts} == {"chewing", "movement"}
        if split != "train":
            assert seizures >= 40, (split, seizures)
            assert len({p.patient for p in rows if p.spec.seizures}) >= 8, split
    # the same seed plans the same corpus; the split is part of the plan
    assert plan_corpus(60, 26.0, seed) == plans


def _band_power(x: np.ndarray, sfreq: float, lo: float, hi: float) -> float:
    freqs, psd = sps.welch(x, fs=sfreq, nperseg=int(2 * sfreq))
    return float(psd[(freqs >= lo) & (freqs <= hi)].mean())


def _row(rendered: Rendered, electrode: str) -> np.ndarray:
    index = [
        i for i, label in enumerate(rendered.labels) if label == f"EEG {electrode.upper()}-REF"
    ]
    return rendered.data_uV[index[0]]


def test_background_has_posterior_alpha_and_line_noise() -> None:
    rendered, _ = make_recording(duration_s=120, sfreq=256, seed=1, seizures=())
    fs = 256.0
    o1, fp1 = _row(rendered, "O1"), _row(rendered, "Fp1")
    assert _band_power(o1, fs, 8, 12) > 3 * _band_power(fp1, fs, 8, 12)
    freqs, psd = sps.welch(o1, fs=fs, nperseg=512)
    peak = psd[np.argmin(np.abs(freqs - 60.0))]
    beside = psd[((freqs > 54) & (freqs < 58)) | ((freqs > 62) & (freqs < 66))].mean()
    assert peak > 10 * beside
    # 1/f background: slow activity dominates fast (alpha band excluded).
    assert _band_power(fp1, fs, 1, 4) > 3 * _band_power(fp1, fs, 20, 40)


def test_focal_seizure_is_rhythmic_at_focus_and_labels_match() -> None:
    onset, offset = 40.0, 70.0
    rendered, spec = make_recording(duration_s=120, sfreq=250, seed=2, seizures=((onset, offset),))
    fs = 250.0
    t3 = _row(rendered, "T3")
    ictal = t3[int(onset * fs) : int(offset * fs)]
    before = t3[: int(onset * fs)]
    assert _band_power(ictal, fs, 2, 9) > 8 * _band_power(before, fs, 2, 9)
    # The discharge starts at the labelled onset, not before.
    pre, post = (
        t3[int((onset - 3) * fs) : int(onset * fs)],
        t3[int(onset * fs) : int((onset + 3) * fs)],
    )
    assert post.std() > 1.5 * pre.std()
    # It evolves: faster at the start than at the end.
    f_first = sps.welch(ictal[: int(8 * fs)], fs=fs, nperseg=int(4 * fs))
    f_last = sps.welch(ictal[-int(8 * fs) :], fs=fs, nperseg=int(4 * fs))
    assert f_first[0][np.argmax(f_first[1])] > f_last[0][np.argmax(f_last[1])] + 2.0
    # Spread: the contralateral far electrode stays out of it.
    t4 = _row(rendered, "T4")
    assert _band_power(t4[int(onset * fs) : int(offset * fs)], fs, 2, 9) < 0.2 * _band_power(
        ictal, fs, 2, 9
    )
    assert spec.seizures[0].focus == "T3"


def test_generalized_spike_wave_and_hard_negatives_differ_from_seizures() -> None:
    chew = ArtifactSpec("chewing", 90.0, 100.0, 6.0, 60.0, ("F7", "T3", "T5", "F8", "T4", "T6"))
    rendered, _ = make_recording(
        duration_s=120, sfreq=256, seed=3, seizures=((30.0, 50.0),), generalized=True,
        artifacts=(chew,),
    )  # fmt: skip
    fs = 256.0
    for electrode in ("Fz", "O1", "T4"):
        x = _row(rendered, electrode)
        ictal, quiet = x[int(30 * fs) : int(50 * fs)], x[int(60 * fs) : int(80 * fs)]
        assert _band_power(ictal, fs, 2.5, 4) > 10 * _band_power(quiet, fs, 2.5, 4), electrode
    t3 = _row(rendered, "T3")
    seiz, chewing = t3[int(30 * fs) : int(50 * fs)], t3[int(90 * fs) : int(100 * fs)]

    def hf_ratio(x: np.ndarray) -> float:
        return _band_power(x, fs, 25, 100) / _band_power(x, fs, 1, 12)

    assert hf_ratio(chewing) > 20 * hf_ratio(seiz)
    assert len(ELECTRODES) == 23


def test_write_edf_rejects_bad_input(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="one row per name"):
        write_edf(tmp_path / "a.edf", np.zeros((2, 256)), ["EEG FP1-REF"], 256)
    with pytest.raises(ValueError, match="whole number of 1 s"):
        write_edf(tmp_path / "a.edf", np.zeros((1, 300)), ["EEG FP1-REF"], 256)
    write_edf(tmp_path / "ok.edf", np.full((1, 512), 12.5), ["EEG FP1-REF"], 256)
    raw = mne.io.read_raw_edf(tmp_path / "ok.edf", preload=True, verbose="error")
    np.testing.assert_allclose(raw.get_data()[0] * 1e6, 12.5, atol=0.2)
    assert not list(tmp_path.glob(".*tmp"))
