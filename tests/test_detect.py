"""A checkpoint on the recordings people have: ``szcore`` (the SzCORE entry point), ``detect``
as a batch tool, the operating point that travels with the model, and the container's call.

Most tests use a randomly initialised v3_tiny saved as an inference checkpoint (instant;
its probabilities mean nothing but are deterministic); the operating-point tests use the
session's trained checkpoint of ``test_evaluate``.
"""

from __future__ import annotations

import datetime
import json
import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from brain_go_brr.annotations import read_events_tsv
from brain_go_brr.cli import main
from brain_go_brr.data.channels import CHANNELS, canonical_name
from brain_go_brr.data.preprocess import PreprocessConfig, preprocess_signals
from brain_go_brr.data.synth import make_recording, write_edf
from brain_go_brr.detect import Detector, _model_config
from brain_go_brr.inference import (
    WINDOW_SAMPLES,
    load_checkpoint,
    operating_point_path,
    predict_record,
    save_checkpoint,
    save_operating_point,
)
from brain_go_brr.post import PostConfig

REPO = Path(__file__).resolve().parents[1]
START = datetime.datetime(2019, 3, 4, 5, 6, 7)
CHB_MIT = ("FP1-F7", "F7-T7", "T7-P7", "P7-O1", "FP1-F3", "F3-C3", "C3-P3", "P3-O1", "FP2-F4",
           "F4-C4", "C4-P4", "P4-O2", "FP2-F8", "F8-T8", "T8-P8", "P8-O2", "FZ-CZ", "CZ-PZ")  # fmt: skip
_10_10 = {"T3": "T7", "T4": "T8", "T5": "P7", "T6": "P8"}


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A random v3_tiny as an inference checkpoint (low thresholds, so that it detects)."""
    import hydra

    torch.manual_seed(0)
    cfg = _model_config("v3_tiny")
    assert cfg is not None
    path = tmp_path_factory.mktemp("ckpt") / "tiny.ckpt"
    post = PostConfig(tau_on=0.3, tau_off=0.2, min_duration_s=1.0)
    save_checkpoint(path, hydra.utils.instantiate(cfg), cfg, PreprocessConfig(), post)
    return path


def _electrodes(sfreq: int, seconds: int, seed: int = 0) -> dict[str, np.ndarray]:
    seizures = ((seconds * 0.3, seconds * 0.6),) if seconds >= 20 else ()
    rendered, _ = make_recording(duration_s=seconds, sfreq=sfreq, seed=seed, seizures=seizures)
    rows = {}
    for label, row in zip(rendered.labels, rendered.data_uV, strict=True):
        name = canonical_name(label)
        if name is not None:
            rows[name] = row
    return rows


def write_field_files(folder: Path) -> dict[str, Path]:
    """One EDF per convention of the field's files (see the module docstring)."""
    folder.mkdir(parents=True, exist_ok=True)
    out = {}

    def write(name: str, rows: dict[str, np.ndarray], sfreq: int) -> None:
        path = folder / name
        write_edf(path, np.stack(list(rows.values())), list(rows), sfreq, start=START)
        out[name] = path

    rows = _electrodes(256, 2)  # SzCORE's own test inputs: 2 s, Fp1-Avg, 256 Hz
    mean = np.mean([rows[c] for c in CHANNELS], axis=0)
    write("szcore_2s.edf", {f"{c}-Avg": rows[c] - mean for c in CHANNELS}, 256)
    rows = _electrodes(512, 90, seed=1)  # Siena: EEG Fp1, 512 Hz, extra channels
    n = next(iter(rows.values())).size
    siena = {f"EEG {c}": rows[c] for c in CHANNELS}
    siena |= {
        "EKG EKG": np.sin(np.arange(n) / 40) * 300,
        "SPO2": np.full(n, 97.0) + np.arange(n) % 2,
    }
    write("siena.edf", siena, 512)
    rows = _electrodes(250, 90, seed=2)  # SeizeIT1: bare names, 250 Hz, ECG, 10-10 names
    n = next(iter(rows.values())).size
    seizeit = {_10_10.get(c, c): rows[c] for c in CHANNELS} | {"ECG": np.sin(np.arange(n) / 30)}
    write("seizeit.edf", seizeit, 250)
    rows = _electrodes(250, 90, seed=3)  # TUSZ LE: EEG FP1-LE, 250 Hz
    write("tusz_le.edf", {f"EEG {c.upper()}-LE": rows[c] for c in CHANNELS}, 250)
    rows = _electrodes(256, 90, seed=4)  # CHB-MIT: bipolar double banana, 256 Hz
    bipolar = {}
    for pair in CHB_MIT:
        a, b = (canonical_name(x) for x in pair.split("-"))
        bipolar[pair] = rows[a] - rows[b]  # type: ignore[index]
    write("chbmit.edf", bipolar, 256)
    return out


@pytest.fixture(scope="module")
def field(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return write_field_files(tmp_path_factory.mktemp("field"))


# ----------------------------------------------------------------------------- szcore


@pytest.mark.parametrize("name", ["szcore_2s.edf", "siena.edf", "seizeit.edf", "tusz_le.edf"])
def test_szcore_writes_a_valid_tsv_for_each_convention(
    name: str,
    field: dict[str, Path],
    ckpt: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    out = tmp_path / "out.tsv"
    assert main(["szcore", str(field[name]), str(out), "--ckpt", str(ckpt)]) == 0
    text = out.read_text()
    lines = text.splitlines()
    assert lines[0].split("\t") == ["onset", "duration", "eventType", "confidence", "channels",
                                    "dateTime", "recordingDuration"]  # fmt: skip
    ann = read_events_tsv(out)
    seconds = 2.0 if name == "szcore_2s.edf" else 90.0
    assert ann.duration_s == seconds
    rows = [line.split("\t") for line in lines[1:]]
    assert all(r[5] == "2019-03-04 05:06:07" for r in rows)  # the EDF's start
    if ann.seizures():
        assert {r[2] for r in rows} == {"sz"} and all(0 <= float(r[3]) <= 1 for r in rows)
    else:
        assert rows == [["0.00", f"{seconds:.2f}", "bckg", "n/a", "n/a", "2019-03-04 05:06:07",
                         f"{seconds:.2f}"]]  # fmt: skip
    err = capsys.readouterr().err
    assert "Traceback" not in err and "no saved operating point" in err


def test_szcore_on_a_bipolar_file_writes_bckg_and_names_the_montage(
    field: dict[str, Path], ckpt: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "chb.tsv"
    assert main(["szcore", str(field["chbmit.edf"]), str(out), "--ckpt", str(ckpt)]) == 0
    assert out.read_text().splitlines()[1].split("\t")[:3] == ["0.00", "90.00", "bckg"]
    err = capsys.readouterr().err
    assert "no detection possible" in err and "bipolar montage (18 derivations: FP1-F7" in err


def test_the_short_recording_is_padded_to_one_window(field: dict[str, Path], ckpt: Path) -> None:
    detection = Detector(ckpt).run(field["szcore_2s.edf"])
    assert detection.prob is not None and detection.prob.shape == (512,)
    assert detection.duration_s == 2.0


@pytest.mark.parametrize(
    ("make_input", "use_ckpt", "message"),
    [
        (lambda d: d / "missing.edf", True, "missing.edf: no such file"),
        (lambda d: _write_bytes(d / "notes.edf", b"hello" * 100), True, "not an EDF file"),
        (lambda d: _truncated_edf(d), True, "truncated EDF"),
        (lambda d: d / "x.edf", False, "not a readable checkpoint"),
    ],
)
def test_unreadable_input_or_checkpoint_exits_1_with_one_line(
    make_input, use_ckpt: bool, message: str, field: dict[str, Path], ckpt: Path,
    tmp_path: Path, capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    shutil.copy(field["siena.edf"], tmp_path / "x.edf")
    bad_ckpt = _write_bytes(tmp_path / "cut.ckpt", ckpt.read_bytes()[:5000])
    edf = make_input(tmp_path)
    out = tmp_path / "o.tsv"
    status = main(["szcore", str(edf), str(out), "--ckpt", str(ckpt if use_ckpt else bad_ckpt)])
    err = capsys.readouterr().err
    assert status == 1 and message in err, err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert not out.exists()


def _write_bytes(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def _truncated_edf(folder: Path) -> Path:
    data = (folder / "x.edf").read_bytes()
    return _write_bytes(folder / "cut.edf", data[: len(data) // 2])


def test_checkpoint_from_the_environment(
    field: dict[str, Path], ckpt: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BGB_CHECKPOINT", str(ckpt))
    out = tmp_path / "env.tsv"
    assert main(["szcore", str(field["siena.edf"]), str(out)]) == 0 and out.exists()
    monkeypatch.delenv("BGB_CHECKPOINT")
    assert main(["szcore", str(field["siena.edf"]), str(out)]) == 1


def test_a_killed_write_leaves_no_half_written_tsv(
    field: dict[str, Path], ckpt: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import brain_go_brr.io as io_mod

    real = io_mod.atomic_write_text

    def dies_halfway(path: str | os.PathLike[str], text: str) -> None:
        with io_mod.atomic_open(path, "w", encoding="utf-8") as fh:
            fh.write(text[: len(text) // 2])
            raise KeyboardInterrupt  # the process is killed mid-write

    monkeypatch.setattr(io_mod, "atomic_write_text", dies_halfway)
    with pytest.raises(KeyboardInterrupt):
        main(["szcore", str(field["siena.edf"]), str(tmp_path / "o.tsv"), "--ckpt", str(ckpt)])
    assert list(tmp_path.iterdir()) == []
    monkeypatch.setattr(io_mod, "atomic_write_text", real)


# ----------------------------------------------------------------------------- reference


def test_common_average_and_linked_ear_inputs_give_the_same_probabilities(ckpt: Path) -> None:
    """The preprocessing re-references to the common average, so an input's own reference
    (a common signal subtracted from every electrode) never reaches the model."""
    rows = _electrodes(256, 120, seed=5)
    v = np.stack([rows[c] for c in CHANNELS])  # (19, n) µV
    ears = 40 * np.sin(np.arange(v.shape[1]) / 50.0) + 15  # the linked-ear reference
    linked_ear, common_average = v - ears, v - v.mean(axis=0)
    cfg = PreprocessConfig()
    a = preprocess_signals(linked_ear, 256, cfg)
    b = preprocess_signals(common_average, 256, cfg)
    np.testing.assert_allclose(a, b, atol=2e-4)
    detector = load_checkpoint(ckpt).detector
    device = torch.device("cpu")
    pa = predict_record(detector, a, WINDOW_SAMPLES, 7680, 4, device)
    pb = predict_record(detector, b, WINDOW_SAMPLES, 7680, 4, device)
    np.testing.assert_allclose(pa, pb, atol=1e-4)


# ----------------------------------------------------------------------------- detect


def test_detect_a_folder_mirrors_it_resumes_and_reports_skips(
    field: dict[str, Path], ckpt: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    src = tmp_path / "in"
    (src / "a").mkdir(parents=True)
    for name, path in field.items():
        shutil.copy(path, src / ("a" if name.startswith("s") else "") / name)
    out = tmp_path / "hyp"
    args = ["detect", str(src), "--ckpt", str(ckpt), "--out", str(out), "--format", "both"]
    assert main(args) == 0
    written = sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file())
    assert written == [
        "a/seizeit.csv_bi", "a/seizeit_events.tsv", "a/siena.csv_bi", "a/siena_events.tsv",
        "a/szcore_2s.csv_bi", "a/szcore_2s_events.tsv", "detect_report.json",
        "tusz_le.csv_bi", "tusz_le_events.tsv",
    ]  # fmt: skip
    report = json.loads((out / "detect_report.json").read_text())
    assert len(report["written"]) == 4 and len(report["skipped"]) == 1
    assert "bipolar montage" in report["skipped"][0]["reason"]
    err = capsys.readouterr().err
    assert "4 written" in err and "skipped" in err and "chbmit.edf" in err
    stamp = (out / "a" / "siena.csv_bi").stat().st_mtime_ns
    assert main(args) == 0  # resumable: finished files are skipped
    assert "4 already done" in capsys.readouterr().err
    assert (out / "a" / "siena.csv_bi").stat().st_mtime_ns == stamp


def test_detect_one_file_beside_it_or_named(
    field: dict[str, Path], ckpt: Path, tmp_path: Path
) -> None:
    edf = shutil.copy(field["siena.edf"], tmp_path / "rec.edf")
    assert main(["detect", str(edf), "--ckpt", str(ckpt)]) == 0
    assert (tmp_path / "rec.hyp.csv_bi").exists()
    assert main(["detect", str(edf), "--ckpt", str(ckpt), "--out", str(tmp_path / "x.tsv")]) == 0
    assert read_events_tsv(tmp_path / "x.tsv").duration_s == 90.0


def test_detect_refuses_an_output_inside_the_input_and_a_missing_gpu(
    field: dict[str, Path], ckpt: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    src = tmp_path / "in"
    src.mkdir()
    shutil.copy(field["siena.edf"], src)
    assert main(["detect", str(src), "--ckpt", str(ckpt), "--out", str(src / "hyp")]) == 1
    assert "inside the input" in capsys.readouterr().err
    if not torch.cuda.is_available():
        assert main(["detect", str(src), "--ckpt", str(ckpt), "--out", str(tmp_path / "h"),
                     "--device", "cuda"]) == 1  # fmt: skip
        assert "no CUDA device is available" in capsys.readouterr().err


def test_detect_on_a_bids_tree_gives_a_hypothesis_tree_score_reads(
    ckpt: Path, tmp_path: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    from brain_go_brr.data.synth import generate_corpus

    bids = tmp_path / "bids"
    generate_corpus(bids, n_patients=2, hours=0.1, seed=1, workers=1, layout="bids")
    out = tmp_path / "hyp"
    assert (
        main(["detect", str(bids), "--ckpt", str(ckpt), "--out", str(out), "--format", "tsv"]) == 0
    )
    refs = {p.relative_to(bids) for p in bids.rglob("*_events.tsv")}
    assert {p.relative_to(out) for p in out.rglob("*_events.tsv")} == refs
    assert main(["score", str(bids), str(out), "--json", str(tmp_path / "s.json")]) == 0
    assert json.loads((tmp_path / "s.json").read_text())["missing_hypotheses"] == 0


# ----------------------------------------------------------------------------- operating point


def test_the_operating_point_travels_with_the_checkpoint(
    field: dict[str, Path], tmp_path: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    from test_evaluate import eval_config, trained_checkpoint

    from brain_go_brr.evaluation.evaluate import evaluate

    trained, data = trained_checkpoint(tmp_path_factory)
    ckpt = Path(shutil.copy(trained, tmp_path / "best.ckpt"))
    operating_point_path(ckpt).unlink(missing_ok=True)
    cfg = eval_config([*data, f"ckpt_path={ckpt}", f"out_dir={tmp_path / 'dev'}", "split=dev",
                       "operating_point.fa_target=10"])  # fmt: skip
    metrics = evaluate(cfg)
    chosen = metrics["ovlp"]["sens_at_fa"]["10"]
    assert chosen is not None  # the sweep's highest thresholds detect nothing: 0 FA/24h
    saved = json.loads(operating_point_path(ckpt).read_text())
    assert metrics["operating_point"]["saved_to"] == str(operating_point_path(ckpt))
    assert saved["post"]["tau_on"] == chosen["tau_on"] and saved["fa_target"] == 10.0
    assert saved["figures"]["sensitivity"] == chosen["sensitivity"]
    detector = Detector(ckpt)
    assert detector.post.tau_on == chosen["tau_on"] and detector.post.tau_off == chosen["tau_off"]
    assert "operating point of dev at <= 10.0 FA/24h" in detector.post_source
    assert not [w for w in detector.warnings if "operating point" in w]
    override = Detector(ckpt, tau_on=0.5, tau_off=0.4)
    assert (override.post.tau_on, override.post.tau_off) == (0.5, 0.4)
    assert override.post.closing_samples == detector.post.closing_samples
    # the eval split does not choose an operating point
    cfg = eval_config([*data, f"ckpt_path={ckpt}", f"out_dir={tmp_path / 'eval'}", "split=eval"])
    assert "operating_point" not in evaluate(cfg)
    # an operating point of another version of the checkpoint is not used
    other = Path(shutil.copy(ckpt, tmp_path / "other.ckpt"))
    save_operating_point(other, saved)
    other.write_bytes(other.read_bytes() + b"\0")
    fallback = Detector(other)
    assert fallback.post.tau_on == PostConfig().tau_on
    assert any("SHA-256 differs" in w for w in fallback.warnings)


# ----------------------------------------------------------------------------- container


def _dockerfile() -> tuple[dict[str, str], str]:
    """The ENV values and the CMD of the Dockerfile."""
    env: dict[str, str] = {}
    cmd = ""
    lines = (REPO / "Dockerfile").read_text().replace("\\\n", " ").splitlines()
    for line in lines:
        if line.startswith("ENV "):
            for item in shlex.split(line[4:]):
                key, _, value = item.partition("=")
                env[key] = value
        elif line.startswith("CMD "):
            cmd = line[4:]
    return env, cmd


def test_the_container_call_with_read_only_input_and_no_network(
    field: dict[str, Path], ckpt: Path, tmp_path: Path
) -> None:
    """What ``docker run`` does, without Docker: the Dockerfile's ENV and CMD, /data read-only,
    a fresh /output, another working directory, and (where it can be had) no network."""
    env, cmd = _dockerfile()
    assert env["BGB_CHECKPOINT"] == "/app/model/model.ckpt" and env["INPUT"] == ""
    assert cmd == 'python3 -m brain_go_brr.szcore "/data/${INPUT}" "/output/${OUTPUT}"'
    data, output, model, cwd = (tmp_path / d for d in ("data", "output", "model", "cwd"))
    for folder in (data, output, model, cwd):
        folder.mkdir()
    shutil.copy(field["siena.edf"], data / "rec.edf")
    shutil.copy(ckpt, model / "model.ckpt")
    (data / "rec.edf").chmod(0o444)
    data.chmod(0o555)
    run_env = {**{k: v.replace("/tmp", str(tmp_path / "tmp")) for k, v in env.items()},
               "INPUT": "rec.edf", "OUTPUT": "rec.tsv", "BGB_CHECKPOINT": str(model / "model.ckpt"),
               "PATH": os.environ["PATH"], "PYTHONPATH": str(REPO)}  # fmt: skip
    command = cmd.replace("/data/", f"{data}/").replace("/output/", f"{output}/")
    command = command.replace("python3", shlex.quote(sys.executable), 1)
    prefix = ["unshare", "--net", "--map-root-user"] if _can_unshare() else []
    try:
        done = subprocess.run([*prefix, "sh", "-c", command], cwd=cwd, env=run_env,
                              capture_output=True, text=True, timeout=600)  # fmt: skip
    finally:
        data.chmod(0o755)
    assert done.returncode == 0, done.stderr[-2000:]
    assert read_events_tsv(output / "rec.tsv").duration_s == 90.0
    assert sorted(p.name for p in output.iterdir()) == ["rec.tsv"]
    assert sorted(p.name for p in data.iterdir()) == ["rec.edf"]


def _can_unshare() -> bool:
    if shutil.which("unshare") is None:
        return False
    probe = subprocess.run(["unshare", "--net", "--map-root-user", "true"], capture_output=True)
    return probe.returncode == 0


def test_the_algorithm_yaml_has_what_szcore_requires() -> None:
    """The keys of esl-epfl/szcore's config/schema.json: the required ones, no others."""
    import re

    import yaml

    meta = yaml.safe_load((REPO / "container" / "algorithm.yaml").read_text())
    required = {"title", "short_title", "image", "authors", "license"}
    allowed = required | {"abstract", "datasets", "date_released", "repository", "version"}
    assert required <= set(meta) <= allowed
    assert re.match(r"^.+/.+:.+$", meta["image"])
    assert re.match(r"^\d{4}-\d{2}-\d{2}$", str(meta["date_released"]))
    person = {"given_names", "family_names", "affiliation", "email"}
    assert all(set(a) <= person and a for a in meta["authors"])
    assert all(isinstance(d, str) and d for d in meta["datasets"])


def test_szcore_input_without_fz_and_pz(ckpt: Path, tmp_path: Path) -> None:
    """Missing Fz and Pz (as in about 249 TUSZ files) are interpolated, not refused."""
    rows = _electrodes(256, 60, seed=6)
    mean = np.mean([rows[c] for c in CHANNELS], axis=0)
    kept = {f"{c}-Avg": rows[c] - mean for c in CHANNELS if c not in ("Fz", "Pz")}
    edf = tmp_path / "no_fz_pz.edf"
    write_edf(edf, np.stack(list(kept.values())), list(kept), 256, start=START)
    detection = Detector(ckpt).run(edf)
    assert detection.note is None and detection.prob is not None
    assert main(["szcore", str(edf), str(tmp_path / "o.tsv"), "--ckpt", str(ckpt)]) == 0
    assert read_events_tsv(tmp_path / "o.tsv").duration_s == 60.0


@pytest.mark.slow
def test_detect_on_a_tusz_tree_gives_csv_bi_that_score_pairs_by_name(
    ckpt: Path, tmp_path: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    from data_fixtures import tiny_corpus

    corpus = tiny_corpus(tmp_path_factory)
    out = tmp_path / "hyp"
    assert main(["detect", str(corpus / "edf"), "--ckpt", str(ckpt), "--out", str(out)]) == 0
    refs = sorted(p.name for p in (corpus / "edf").rglob("*.csv_bi"))
    assert sorted(p.name for p in out.rglob("*.csv_bi")) == refs
    report = tmp_path / "s.json"
    assert main(["score", str(corpus / "edf"), str(out), "--json", str(report)]) == 0
    assert json.loads(report.read_text())["n_records"] == len(refs)
