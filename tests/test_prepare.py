"""``brain-go-brr prepare`` end to end on small TUSZ-layout trees."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from data_fixtures import group_config, tiny_cache, tiny_corpus
from omegaconf import OmegaConf

import brain_go_brr.data.prepare as prepare_mod
from brain_go_brr.annotations import Event, write_csv_bi
from brain_go_brr.cli import main
from brain_go_brr.data.cache import SplitCache
from brain_go_brr.data.channels import CHANNELS
from brain_go_brr.data.prepare import PrepareError, ensure_prepared, prepare
from brain_go_brr.data.preprocess import PreprocessConfig, load_record
from brain_go_brr.data.synth import write_edf
from brain_go_brr.paths import conf_dir


def _edfs(root: Path) -> list[Path]:
    return sorted((root / "edf").rglob("*.edf"))


def _copy(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)  # copy2 keeps mtimes, so the records' keys stay the same
    return dst


def test_report_and_cache_match_the_preprocessed_records(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    root, cache_dir = tiny_corpus(tmp_path_factory), tiny_cache(tmp_path_factory)
    report = json.loads((cache_dir / "prepare_report.json").read_text())
    paths = [e["path"] for e in report["records"]]
    assert sorted(paths) == [p.relative_to(root).as_posix() for p in _edfs(root)]
    assert {e["status"] for e in report["records"]} == {"ok"}
    for split, tot in report["totals"].items():
        entries = [e for e in report["records"] if e["split"] == split]
        assert tot["records"] == len(entries) and tot["skipped"] == 0
        assert tot["hours"] == pytest.approx(sum(e["duration_s"] for e in entries) / 3600)
    assert report["totals"]["train"]["seizure_hours"] > 0

    cache = SplitCache(cache_dir, "train")
    i = next(k for k, r in enumerate(cache.records) if r.seizures)
    info = cache.records[i]
    rec = load_record(root / info.path, PreprocessConfig())
    np.testing.assert_array_equal(cache.signals(i), rec.signals.astype(np.float16))
    np.testing.assert_allclose(cache.signals(i), rec.signals, atol=10 * 2**-11)  # f16 at |x|<=10
    np.testing.assert_array_equal(cache.labels(i), rec.labels)
    assert info.seizures == [Event(e.start_s, e.stop_s) for e in rec.seizures]
    entry = report["records"][paths.index(info.path)]
    assert entry["n_seizures"] == len(rec.seizures)
    assert entry["seizure_s"] == pytest.approx(sum(e.duration_s for e in rec.seizures), abs=1e-3)
    assert entry["orig_sfreq"] == rec.orig_sfreq and entry["montage"] == rec.montage


def test_second_run_is_a_noop(
    tmp_path_factory: pytest.TempPathFactory, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cache_dir = _copy(tiny_cache(tmp_path_factory), tmp_path / "cache")
    before = {p: p.stat().st_mtime_ns for p in cache_dir.rglob("*") if p.is_file()}
    summary = prepare(tiny_corpus(tmp_path_factory), cache_dir, workers=1)
    assert summary.noop and summary.processed == 0 and summary.packed_splits == ()
    assert "up to date" in capsys.readouterr().err
    after = {p: p.stat().st_mtime_ns for p in cache_dir.rglob("*") if p.is_file()}
    assert before == after


def test_interrupted_run_resumes_without_redoing_finished_records(
    tmp_path_factory: pytest.TempPathFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = tiny_corpus(tmp_path_factory)
    n_records = len(_edfs(root))
    calls: list[str] = []

    def dies_after_two(path: Path, cfg: PreprocessConfig):  # type: ignore[no-untyped-def]
        if len(calls) == 2:
            raise KeyboardInterrupt  # what Ctrl-C (or a kill) does mid-run
        calls.append(Path(path).name)
        return load_record(path, cfg)

    monkeypatch.setattr(prepare_mod, "load_record", dies_after_two)
    with pytest.raises(KeyboardInterrupt):
        prepare(root, tmp_path / "cache", workers=1, progress=False)
    assert len(list((tmp_path / "cache" / "shards").glob("*.npz"))) == 2
    assert not (tmp_path / "cache" / "train").exists()  # nothing half-packed

    first_two = list(calls)
    calls.clear()
    monkeypatch.setattr(
        prepare_mod, "load_record", lambda p, c: calls.append(p.name) or load_record(p, c)
    )
    summary = prepare(root, tmp_path / "cache", workers=1, progress=False)
    assert summary.processed == n_records - 2 and summary.reused == 2
    assert not set(first_two) & set(calls)
    reference = SplitCache(tiny_cache(tmp_path_factory), "train")
    resumed = SplitCache(tmp_path / "cache", "train")
    assert resumed.keys == reference.keys
    for i in range(len(reference)):
        np.testing.assert_array_equal(resumed.signals(i), reference.signals(i))
    assert list((tmp_path / "cache" / "shards").iterdir()) == []  # packed shards are removed


def test_changed_setting_rebuilds_all_and_changed_file_only_itself(
    tmp_path_factory: pytest.TempPathFactory, tmp_path: Path
) -> None:
    root = _copy(tiny_corpus(tmp_path_factory), tmp_path / "corpus")
    cache_dir = _copy(tiny_cache(tmp_path_factory), tmp_path / "cache")
    n_records = len(_edfs(root))
    old = np.array(SplitCache(cache_dir, "dev").signals(0))

    summary = prepare(root, cache_dir, PreprocessConfig(reference="none"), progress=False)
    assert summary.processed == n_records and summary.reused == 0
    assert not np.array_equal(SplitCache(cache_dir, "dev").signals(0), old)

    edf = _edfs(root)[0]
    os.utime(edf, ns=(edf.stat().st_atime_ns, edf.stat().st_mtime_ns + 10**9))
    summary = prepare(root, cache_dir, PreprocessConfig(reference="none"), progress=False)
    assert summary.processed == 1 and summary.reused == n_records - 1
    split = edf.relative_to(root / "edf").parts[0]
    assert summary.packed_splits == (split,)


def test_a_patient_in_two_splits_is_an_error_naming_it(
    tmp_path_factory: pytest.TempPathFactory, tmp_path: Path
) -> None:
    root = _copy(tiny_corpus(tmp_path_factory), tmp_path / "corpus")
    patient_dir = next((root / "edf" / "train").iterdir())
    shutil.copytree(patient_dir, root / "edf" / "dev" / patient_dir.name)
    with pytest.raises(PrepareError, match=f"patient {patient_dir.name} appears in two splits"):
        prepare(root, tmp_path / "cache", progress=False)
    assert not (tmp_path / "cache").exists()  # refused before any work


# ----------------------------------------------------------------------------- bad inputs

SFREQ_IN = 250
NAMES = [f"EEG {c.upper()}-REF" for c in CHANNELS] + ["EKG1-REF"]


def _write(root: Path, patient: str, data: np.ndarray | None = None, names=NAMES) -> Path:
    """A 20 s record of ``patient`` in edf/train with its csv_bi; returns the EDF path."""
    path = root / "edf" / "train" / patient / "s001_2010" / "01_tcp_ar" / f"{patient}_s001_t000.edf"
    path.parent.mkdir(parents=True, exist_ok=True)
    if data is None:
        data = np.random.default_rng(len(patient)).standard_normal((len(names), 20 * SFREQ_IN)) * 30
    write_edf(path, data, names, SFREQ_IN)
    write_csv_bi(path.with_suffix(".csv_bi"), [Event(5.0, 12.0)], 20.0)
    return path


def _set_physical_min(path: Path, signal: int, text: bytes) -> None:
    raw = bytearray(path.read_bytes())
    n_signals = int(raw[252:256])
    at = 256 + 104 * n_signals + 8 * signal  # EDF header: physical minimum field block
    raw[at : at + 8] = text.ljust(8)
    path.write_bytes(bytes(raw))


def _bad_tree(root: Path) -> dict[str, list[str]]:
    """Two good records and one of each bad kind; returns patient -> expected reason parts."""
    _write(root, "goodaaaa")
    _write(root, "goodbbbb")
    p = _write(root, "truncated")
    p.write_bytes(p.read_bytes()[: p.stat().st_size // 2])
    p = _write(root, "notanedf")
    p.write_text("this is not an EDF file\n" * 50)
    _write(root, "noeegchs", np.ones((2, 20 * SFREQ_IN)), names=["EKG1-REF", "PHOTIC-REF"])
    _write(root, "missingcz", names=[n for n in NAMES if "CZ" not in n])
    p = _write(root, "nolabels")
    p.with_suffix(".csv_bi").unlink()
    p = _write(root, "badrow")
    with p.with_suffix(".csv_bi").open("a") as fh:
        fh.write("TERM,14.0,soon,seiz,1.0\n")
    _set_physical_min(_write(root, "nanchan"), 2, b"nan")
    flat = np.random.default_rng(0).standard_normal((len(NAMES), 20 * SFREQ_IN)) * 30
    flat[CHANNELS.index("O2")] = 0.0
    _write(root, "flatchan", flat)
    return {
        "truncated": ["truncated"],
        "notanedf": ["not an EDF"],
        "noeegchs": ["no EEG channels"],
        "missingcz": ["Cz missing"],
        "nolabels": ["no annotation file"],
        "badrow": ["must be numbers"],
        "nanchan": ["NaN"],
        "flatchan": ["flat channel", "O2"],
    }


def test_bad_inputs_are_skipped_with_reasons_and_the_rest_is_kept(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    expected = _bad_tree(tmp_path / "tree")
    argv = ["prepare", "--root", str(tmp_path / "tree"), "--cache", str(tmp_path / "cache")]
    assert main([*argv, "--workers", "2"]) == 0
    report = json.loads((tmp_path / "cache" / "prepare_report.json").read_text())
    by_patient = {e["patient"]: e for e in report["records"]}
    assert {p for p, e in by_patient.items() if e["status"] == "ok"} == {"goodaaaa", "goodbbbb"}
    for patient, fragments in expected.items():
        entry = by_patient[patient]
        assert entry["status"] == "skipped"
        assert f"{patient}_s001_t000" in entry["reason"]
        for fragment in fragments:
            assert fragment in entry["reason"], (patient, entry["reason"])
    assert report["totals"]["train"]["records"] == 2
    assert report["totals"]["train"]["skipped"] == len(expected)
    good = by_patient["goodaaaa"]
    assert good["n_seizures"] == 1 and good["seizure_s"] == pytest.approx(7.0)
    assert good["duration_s"] == pytest.approx(20.0) and good["orig_sfreq"] == 250.0
    assert [r.patient for r in SplitCache(tmp_path / "cache", "train").records] == [
        "goodaaaa",
        "goodbbbb",
    ]
    capsys.readouterr()
    assert main([*argv, "--workers", "2"]) == 0  # known-bad files are not read again
    assert "up to date" in capsys.readouterr().err


def test_cli_reports_a_wrong_root(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["prepare", "--root", str(tmp_path), "--cache", str(tmp_path / "c")]) == 1
    assert "no 'edf' folder" in capsys.readouterr().err


# ----------------------------------------------------------------------------- Hydra configs


def test_data_configs_hold_the_preprocessing_defaults() -> None:
    for name in ("tusz", "synthetic"):
        cfg = group_config("data", name)
        assert PreprocessConfig.from_dict(OmegaConf.to_container(cfg.preprocess)) == (
            PreprocessConfig()
        )
        assert cfg.window_s == 60.0 and cfg.train_stride_s == 10.0


def test_tusz_without_root_says_how_to_point_at_the_corpus() -> None:
    cfg = OmegaConf.load(conf_dir() / "data" / "tusz.yaml")
    with pytest.raises(PrepareError, match=r"data\.root=.*data=synthetic"):
        ensure_prepared(cfg)


def test_synthetic_is_generated_and_prepared_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("BGB_CACHE_DIR", str(tmp_path))
    cfg = group_config("data", "synthetic")
    cfg.synthetic.n_patients, cfg.synthetic.hours, cfg.prepare_workers = 3, 0.1, 1
    cache_dir = ensure_prepared(cfg)
    assert cache_dir.is_relative_to(tmp_path)
    assert {"train", "dev", "eval"} <= {p.name for p in cache_dir.iterdir()}
    capsys.readouterr()
    assert ensure_prepared(cfg) == cache_dir
    err = capsys.readouterr().err
    assert "up to date" in err and "generating" not in err
