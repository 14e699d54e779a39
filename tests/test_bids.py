"""BIDS corpora in: channel label styles, events.tsv labels, splits, prepare, and the whole
path synth --layout bids -> prepare -> train -> evaluate -> score."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from data_fixtures import tiny_corpus

from brain_go_brr.annotations import AnnotationError, read_events_tsv, read_labels
from brain_go_brr.cli import main
from brain_go_brr.data.bids import BidsError, BidsRecording, BidsSplitConfig, assign_splits
from brain_go_brr.data.channels import CHANNELS, bipolar_labels, canonical_name
from brain_go_brr.data.edf import RecordSkipped, read_edf
from brain_go_brr.data.prepare import PrepareError, prepare
from brain_go_brr.data.preprocess import PreprocessConfig, load_record
from brain_go_brr.data.synth import generate_corpus, make_recording, write_edf

HEADER = "onset\tduration\teventType\tconfidence\tchannels\tdateTime\trecordingDuration\n"
CHB_MIT = ("FP1-F7", "F7-T7", "T7-P7", "P7-O1", "FP1-F3", "F3-C3", "C3-P3", "P3-O1", "FP2-F4",
           "F4-C4", "C4-P4", "P4-O2", "FP2-F8", "F8-T8", "T8-P8", "P8-O2", "FZ-CZ", "CZ-PZ")  # fmt: skip


def _electrodes(sfreq: int, seconds: int = 60, seed: int = 0) -> dict[str, np.ndarray]:
    """The 19 electrodes (µV) of a synthetic recording, by 10-20 name."""
    rendered, _ = make_recording(duration_s=seconds, sfreq=sfreq, seed=seed, seizures=((20, 40),))
    rows = {}
    for label, row in zip(rendered.labels, rendered.data_uV, strict=True):
        name = canonical_name(label)
        if name is not None:
            rows[name] = row
    assert set(rows) == set(CHANNELS)
    return rows


def _write(path: Path, rows: dict[str, np.ndarray], sfreq: int) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    write_edf(path, np.stack(list(rows.values())), list(rows), sfreq)
    return path


# ----------------------------------------------------------------------------- channels


@pytest.mark.parametrize(
    ("label", "name"),
    [
        ("Fp1-Avg", "Fp1"), ("EEG Fp1", "Fp1"), ("fp1", "Fp1"), ("EEG FP1-REF", "Fp1"),
        ("T7-Ref", "T3"), ("P8", "T6"), ("EEG CZ-LE", "Cz"), ("O2-A2", "O2"), ("F3-M1", "F3"),
        ("Pz-CAR", "Pz"), ("EEG T4-AR", "T4"), ("ECG", None), ("FP1-F7", None),
    ],
)  # fmt: skip
def test_label_styles_of_the_field(label: str, name: str | None) -> None:
    assert canonical_name(label) == name


def test_bipolar_labels_are_electrode_pairs_not_references() -> None:
    assert bipolar_labels(CHB_MIT) == list(CHB_MIT)
    assert bipolar_labels(["Fp1-Avg", "Fp1-A1", "EEG FP1-REF", "ECG", "EKG1-EKG2"]) == []
    assert bipolar_labels(["EEG T7-P7", "FT9-FT10"]) == ["EEG T7-P7", "FT9-FT10"]


def test_files_of_the_field_read_as_the_same_19_electrodes(tmp_path: Path) -> None:
    """SzCORE (Fp1-Avg, 256 Hz), Siena (EEG Fp1, 512 Hz, extras), SeizeIT1 (bare, 250 Hz, ECG,
    10-10 names), TUSZ LE (EEG FP1-LE, 250 Hz)."""
    styles = {
        "szcore": (256, lambda n: f"{n}-Avg", {}),
        "siena": (512, lambda n: f"EEG {n}", {"EKG EKG": 0.0, "SPO2": 97.0}),
        "seizeit": (250, lambda n: {"T3": "T7", "T4": "T8", "T5": "P7", "T6": "P8"}.get(n, n),
                    {"ECG": 0.0}),
        "tusz_le": (250, lambda n: f"EEG {n.upper()}-LE", {"EEG EKG1-LE": 0.0}),
    }  # fmt: skip
    for style, (sfreq, rename, extras) in styles.items():
        rows = _electrodes(sfreq)
        out = {rename(n): r for n, r in rows.items()}
        n = next(iter(rows.values())).size
        out |= {k: np.full(n, v) + np.sin(np.arange(n)) for k, v in extras.items()}
        rec = read_edf(_write(tmp_path / f"{style}.edf", out, sfreq))
        assert rec.sfreq == sfreq and rec.interpolated == [], style
        # the EDF's 16-bit quantisation (0.15 µV) is all that differs
        np.testing.assert_allclose(rec.data_uv, np.stack([rows[c] for c in CHANNELS]), atol=0.2)


def test_chb_mit_bipolar_montage_is_skipped_with_its_reason(tmp_path: Path) -> None:
    rows = _electrodes(256)
    bipolar = {}
    for pair in CHB_MIT:
        a, b = (canonical_name(x) for x in pair.split("-"))
        bipolar[pair] = rows[a] - rows[b]  # type: ignore[index]
    path = _write(tmp_path / "chb01_03.edf", bipolar, 256)
    with pytest.raises(RecordSkipped, match=r"bipolar montage \(18 derivations: FP1-F7") as exc:
        read_edf(path)
    assert "19 referential electrodes" in exc.value.reason


def test_a_flat_fz_is_interpolated_like_a_missing_one(tmp_path: Path) -> None:
    """epilepsy2bids writes an absent electrode as zeros."""
    rows = _electrodes(256)
    missing = read_edf(_write(tmp_path / "missing.edf",
                              {f"{n}-Avg": r for n, r in rows.items() if n != "Fz"}, 256))  # fmt: skip
    zeros = {f"{n}-Avg": (np.zeros_like(r) if n == "Fz" else r) for n, r in rows.items()}
    flat = read_edf(_write(tmp_path / "flat.edf", zeros, 256))
    assert flat.interpolated == missing.interpolated == ["Fz"]
    assert any("Fz-Avg is flat" in w for w in flat.warnings)
    np.testing.assert_allclose(flat.data_uv, missing.data_uv, atol=1e-3)
    cz_flat = {k: (np.zeros_like(v) if k == "Cz-Avg" else v) for k, v in zeros.items()}
    with pytest.raises(RecordSkipped, match="flat channel Cz-Avg"):
        read_edf(_write(tmp_path / "cz.edf", cz_flat, 256))


# ----------------------------------------------------------------------------- labels


def _tsv(path: Path, rows: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(HEADER + rows)
    return path


def test_events_tsv_labels_every_sz_type_and_ignores_bckg(tmp_path: Path) -> None:
    path = _tsv(
        tmp_path / "a_events.tsv",
        "0.00\t10.00\tbckg\tn/a\tn/a\t2020-01-01 00:00:00\t100.00\n"
        "10.00\t5.50\tsz_foc_ia\t0.90\tn/a\t2020-01-01 00:00:00\t100.00\n"
        "50.25\t10.00\tsz\tn/a\tn/a\t2020-01-01 00:00:00\t100.00\n"
        "70.00\t5.00\tsz_gen_m_tonicClonic\tn/a\tn/a\t2020-01-01 00:00:00\t100.00\n",
    )
    ann = read_events_tsv(path)
    assert ann.duration_s == 100.0
    assert [(e.start_s, e.stop_s) for e in ann.seizures()] == [(10, 15.5), (50.25, 60.25), (70, 75)]
    assert ann.seizures()[0].confidence == 0.9


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("onset\tduration\n", "missing column(s) eventType, recordingDuration"),
        (HEADER + "1\t2\tspike\tn/a\tn/a\tn/a\t100\n", "unknown eventType 'spike'"),
        (HEADER + "n/a\t2\tsz\tn/a\tn/a\tn/a\t100\n", "onset must be a non-negative number"),
        (HEADER + "1\t2\tsz\tn/a\tn/a\tn/a\tn/a\n", "recordingDuration must be a non-negative"),
        (HEADER + "1\t2\tsz\n", "3 tab-separated fields, the header has 7"),
    ],
)
def test_events_tsv_errors_name_the_file_line_and_fix(
    tmp_path: Path, text: str, message: str
) -> None:
    path = tmp_path / "b_events.tsv"
    path.write_text(text)
    with pytest.raises(AnnotationError, match=None) as exc:
        read_events_tsv(path)
    assert str(path) in str(exc.value) and message in str(exc.value), exc.value


def test_bids_record_takes_its_events_tsv_and_warns_on_a_disagreeing_duration(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    eeg = tmp_path / "sub-01" / "ses-01" / "eeg"
    edf = _write(eeg / "sub-01_ses-01_task-szMonitoring_run-01_eeg.edf",
                 {f"{n}-Avg": r for n, r in _electrodes(256).items()}, 256)  # fmt: skip
    _tsv(
        eeg / "sub-01_ses-01_task-szMonitoring_run-01_events.tsv",
        "20.00\t20.00\tsz_foc\tn/a\tn/a\t2020-01-01 00:00:00\t75.00\n"
        "55.00\t30.00\tsz\tn/a\tn/a\t2020-01-01 00:00:00\t75.00\n",
    )
    assert read_labels(edf).path.suffix == ".tsv"
    rec = load_record(edf, PreprocessConfig())
    assert rec.duration_s == 60.0
    assert [(e.start_s, e.stop_s) for e in rec.seizures] == [(20.0, 40.0), (55.0, 60.0)]
    notes = " ".join(rec.warnings)
    assert "recordingDuration 75.0000 s differs from the EDF's 60.0000 s" in notes
    assert "clipped to 60.0000 s" in notes
    assert rec.labels[20 * 256 : 40 * 256].all() and not rec.labels[41 * 256 : 55 * 256].any()


# ----------------------------------------------------------------------------- splits


def _bids_root(tmp_path: Path, subjects: dict[str, bool], participants: str | None = None) -> Path:
    """A BIDS root with one (empty) EDF and events.tsv per subject; True: with a seizure."""
    root = tmp_path / "bids"
    (root / "dataset_description.json").parent.mkdir(parents=True, exist_ok=True)
    (root / "dataset_description.json").write_text("{}")
    for sub, seizure in subjects.items():
        eeg = root / sub / "ses-01" / "eeg"
        eeg.mkdir(parents=True)
        (eeg / f"{sub}_ses-01_task-szMonitoring_run-01_eeg.edf").write_bytes(b"")
        row = "10.00\t5.00\tsz" if seizure else "0.00\t100.00\tbckg"
        _tsv(eeg / f"{sub}_ses-01_task-szMonitoring_run-01_events.tsv",
             f"{row}\tn/a\tn/a\t2020-01-01 00:00:00\t100.00\n")  # fmt: skip
    if participants is not None:
        (root / "participants.tsv").write_text(participants)
    return root


def _recs(root: Path) -> list[BidsRecording]:
    from brain_go_brr.data.bids import find_recordings

    return find_recordings(root)


def test_splits_from_participants_subjects_fractions_and_all(tmp_path: Path) -> None:
    subjects = {f"sub-{i:02d}": i % 2 == 0 for i in range(10)}
    rows = "".join(
        f"{s}\tx{i}\t{('train', 'dev', 'eval')[i % 3]}\n" for i, s in enumerate(subjects)
    )
    root = _bids_root(tmp_path, subjects, "participant_id\tTUH_id\tsplit\n" + rows)
    split, how = assign_splits(root, _recs(root), BidsSplitConfig())
    assert how == "the split column of participants.tsv" and split["sub-04"] == "dev"

    listed = BidsSplitConfig(
        split_by="subjects", subjects={"train": ["sub-00", "01"], "eval": ["sub-02"]}
    )
    split, how = assign_splits(root, _recs(root), listed)
    assert split == {"sub-00": "train", "sub-01": "train", "sub-02": "eval"}
    assert "subject lists" in how

    drawn = BidsSplitConfig(split_by="fractions", seed=1)
    split, how = assign_splits(root, _recs(root), drawn)
    assert split == assign_splits(root, _recs(root), drawn)[0]  # seeded
    assert sorted(split.values()).count("train") == 6  # 3 + 3 of 5 with and 5 without
    for name in ("train", "dev", "eval"):  # every split gets a subject with seizures
        assert any(subjects[s] for s, v in split.items() if v == name), name
    assert "seed 1" in how
    other = assign_splits(root, _recs(root), BidsSplitConfig(split_by="fractions", seed=2))[0]
    assert other != split

    split, how = assign_splits(root, _recs(root), BidsSplitConfig(split_by="all"))
    assert set(split.values()) == {"eval"} and how == "every subject in eval"


@pytest.mark.parametrize(
    ("participants", "cfg", "message"),
    [
        ("participant_id\tsplit\nsub-00\ttest\n", {}, "split 'test' of sub-00 is not one of"),
        (None, {"split_by": "participants"}, "no such file or no split column"),
        (None, {"split_by": "subjects", "subjects": {"train": ["sub-00"], "dev": ["sub-00"]}},
         "sub-00 is listed in train and dev"),
        (None, {"split_by": "subjects", "subjects": {"train": ["sub-99"]}}, "sub-99 not found"),
        (None, {"fractions": [0.5, 0.5, 0.5]}, "add up to 1"),
    ],
)  # fmt: skip
def test_split_errors_say_what_to_do(
    tmp_path: Path, participants: str | None, cfg: dict, message: str
) -> None:
    root = _bids_root(tmp_path, {"sub-00": True, "sub-01": False}, participants)
    with pytest.raises(BidsError, match=None) as exc:
        assign_splits(root, _recs(root), BidsSplitConfig.from_dict(cfg))
    assert message in str(exc.value)


# ----------------------------------------------------------------------------- prepare


def test_prepare_cli_errors_on_a_bids_root_without_subjects(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "dataset_description.json").write_text("{}")
    assert main(["prepare", "--root", str(tmp_path), "--cache", str(tmp_path / "c")]) == 1
    err = capsys.readouterr().err
    assert "no sub-* folders" in err and "Traceback" not in err


@pytest.fixture(scope="module")
def bids_corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The 5-patient, 0.3 h synthetic corpus of the other tests, as BIDS (read-only!)."""
    root = tmp_path_factory.mktemp("bids_corpus")
    generate_corpus(root, n_patients=5, hours=0.3, seed=3, workers=1, layout="bids")
    return root


def test_synth_bids_is_the_tusz_corpus_in_bids_form(
    bids_corpus: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    tusz_root = tiny_corpus(tmp_path_factory)  # same settings, TUSZ layout
    manifest = json.loads((bids_corpus / "synth_manifest.json").read_text())
    assert manifest["layout"] == "bids" and (bids_corpus / "dataset_description.json").exists()
    tusz = json.loads((tusz_root / "synth_manifest.json").read_text())
    for bids_file, tusz_file in zip(manifest["files"], tusz["files"], strict=True):
        assert bids_file["seizures"] == tusz_file["seizures"]
        assert bids_file["split"] == tusz_file["split"]
        a, b = bids_corpus / bids_file["path"], tusz_root / tusz_file["path"]
        assert a.read_bytes() == b.read_bytes()  # the same EDF, byte for byte
        events = read_events_tsv(a.with_name(a.name.replace("_eeg.edf", "_events.tsv")))
        want = sorted((s["onset_s"], s["offset_s"]) for s in tusz_file["seizures"])
        got = [(e.start_s, e.stop_s) for e in events.seizures()]
        assert len(got) == len(want)  # times to 2 decimals, as SzCORE writes them
        assert all(abs(g - w) <= 0.0101 for pair in zip(got, want, strict=True)
                   for g, w in zip(*pair, strict=True))  # fmt: skip
    participants = (bids_corpus / "participants.tsv").read_text().splitlines()
    assert participants[0] == "participant_id\tsplit" and len(participants) == 6


def test_prepare_bids_reports_the_split_resumes_and_reruns_as_a_no_op(
    bids_corpus: Path, tmp_path: Path
) -> None:
    cache = tmp_path / "cache"
    first = prepare(bids_corpus, cache, workers=1, progress=False)
    assert first.processed == len(list(bids_corpus.rglob("*_eeg.edf"))) and first.skipped == 0
    report = json.loads((cache / "prepare_report.json").read_text())
    assert report["source"]["layout"] == "bids"
    assert report["source"]["split_method"] == "the split column of participants.tsv"
    assert {r["patient"][:4] for r in report["records"]} == {"sub-"}
    again = prepare(bids_corpus, cache, workers=1, progress=False)
    assert again.noop and again.processed == 0
    # another split moves records without preparing them again; the report says how
    moved = prepare(bids_corpus, cache, workers=1, progress=False,
                    bids=BidsSplitConfig(split_by="all"))  # fmt: skip
    assert moved.processed == 0 and not moved.noop
    report = json.loads((cache / "prepare_report.json").read_text())
    assert report["source"]["split_method"] == "every subject in eval"
    assert report["totals"]["eval"]["records"] == first.processed
    index = json.loads((cache / "train" / "index.json").read_text())
    assert index["records"] == []


def test_prepare_bids_rejects_a_root_without_recordings(tmp_path: Path) -> None:
    (tmp_path / "dataset_description.json").write_text("{}")
    (tmp_path / "sub-01" / "ses-01" / "eeg").mkdir(parents=True)
    with pytest.raises(PrepareError, match=r"no sub-\*/ses-\*/eeg/\*_eeg.edf recordings"):
        prepare(tmp_path, tmp_path / "cache", progress=False)


# ----------------------------------------------------------------------------- end to end


def test_a_tusz_trained_model_on_a_bids_corpus_sees_what_it_saw_in_tusz_form(
    bids_corpus: Path, tmp_path_factory: pytest.TempPathFactory, tmp_path: Path
) -> None:
    """Evaluation only (every subject in eval): the same recordings give the same
    probabilities as through the TUSZ layout, and the hypothesis tree scores against the
    dataset's own events files with the figures of metrics.json."""
    from test_evaluate import eval_config, evaluated_run, trained_checkpoint

    from brain_go_brr.evaluation.evaluate import evaluate
    from brain_go_brr.evaluation.probs import ProbCache

    ckpt, _ = trained_checkpoint(tmp_path_factory)
    tusz_run, _ = evaluated_run(tmp_path_factory)  # the dev split, TUSZ layout
    cfg = eval_config(
        [
            "data=bids", f"data.root={bids_corpus}", f"data.cache_dir={tmp_path / 'cache'}",
            "data.bids.split_by=all", "data.eval_stride_s=60", "data.prepare_workers=1",
            f"ckpt_path={ckpt}", f"out_dir={tmp_path / 'run'}", "split=eval",
        ]
    )  # fmt: skip
    metrics = evaluate(cfg)
    assert metrics["n_records"] == len(list(bids_corpus.rglob("*_eeg.edf")))
    tusz_probs = ProbCache.open_existing(tusz_run / "probs")
    bids_probs = ProbCache.open_existing(tmp_path / "run" / "probs")
    tusz_paths = {rec.path: rec.record_id for rec in tusz_probs.records.values()}
    manifest = json.loads((bids_corpus / "synth_manifest.json").read_text())
    tusz_manifest = json.loads((tiny_corpus(tmp_path_factory) / "synth_manifest.json").read_text())
    compared = 0
    for bids_file, tusz_file in zip(manifest["files"], tusz_manifest["files"], strict=True):
        if tusz_file["path"] in tusz_paths:
            bids_id = Path(bids_file["path"]).stem
            np.testing.assert_array_equal(
                bids_probs.load(bids_id), tusz_probs.load(tusz_paths[tusz_file["path"]])
            )
            compared += 1
    assert compared == len(tusz_paths) > 0
    # the hypothesis tree mirrors the dataset: score it against the dataset itself
    hyp = tmp_path / "run" / "szcore" / "hyp"
    assert {p.relative_to(hyp).as_posix() for p in hyp.rglob("*_events.tsv")} == {
        p.relative_to(bids_corpus).as_posix() for p in bids_corpus.rglob("*_events.tsv")
    }
    out = tmp_path / "scores.json"
    assert main(["score", str(bids_corpus), str(hyp), "--json", str(out)]) == 0
    scored = json.loads(out.read_text())
    for key in ("szcore_evaluation", "szcore_evaluation_pooled"):
        assert scored[key] == metrics[key], key


@pytest.mark.slow
def test_readme_path_synth_prepare_train_evaluate_score(tmp_path: Path) -> None:
    """docs/bids_and_szcore.md's commands as a new user runs them, each its own process."""
    import subprocess
    import sys

    repo = Path(__file__).resolve().parents[1]
    cli = [sys.executable, "-m", "brain_go_brr.cli"]

    def run(args: list[str]) -> str:
        done = subprocess.run(args, cwd=tmp_path, capture_output=True, text=True, timeout=900)
        assert done.returncode == 0, f"{args}\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
        return done.stdout + done.stderr

    bids, cache = tmp_path / "bids_synth", tmp_path / "bids_cache"
    run([*cli, "synth", str(bids), "--patients", "4", "--hours", "0.3", "--seed", "5",
         "--workers", "2", "--layout", "bids"])  # fmt: skip
    out = run([*cli, "prepare", "--root", str(bids), "--cache", str(cache), "--workers", "2"])
    assert "splits from the split column of participants.tsv" in out
    data = ["data=bids", f"data.root={bids}", f"data.cache_dir={cache}", "data.eval_stride_s=60"]
    run([sys.executable, str(repo / "train.py"), *data, "model=v3_tiny", "hardware=cpu",
         "logger=none", "trainer.max_epochs=1", "trainer.limit_train_batches=2",
         "module.plots_dir=null", "run_name=bids_smoke"])  # fmt: skip
    ckpts = sorted((tmp_path / "runs" / "bids_smoke" / "checkpoints").glob("*.ckpt"))
    assert ckpts, "training wrote no checkpoint"
    run([sys.executable, str(repo / "evaluate.py"), *data, "model=v3_tiny", "hardware=cpu",
         f"ckpt_path={ckpts[0]}", "split=eval", "hydra.run.dir=runs/eval/bids_eval"])  # fmt: skip
    metrics = json.loads((tmp_path / "runs/eval/bids_eval/metrics.json").read_text())
    sz = tmp_path / "runs/eval/bids_eval/szcore"
    run([*cli, "score", str(sz / "ref"), str(sz / "hyp"), "--json", "scores.json"])
    scored = json.loads((tmp_path / "scores.json").read_text())
    assert scored["szcore_evaluation"] == metrics["szcore_evaluation"]
    assert scored["ovlp"]["targets"] == metrics["ovlp"]["targets"] > 0


def test_data_bids_composes_tusz_settings_and_says_where_to_point(tmp_path: Path) -> None:
    from hydra import compose, initialize_config_dir

    from brain_go_brr.data.prepare import ensure_prepared
    from brain_go_brr.paths import conf_dir

    with initialize_config_dir(str(conf_dir()), version_base="1.3"):
        bids = compose("train", overrides=["data=bids"]).data
        tusz = compose("train", overrides=["data=tusz"]).data
    assert bids.preprocess == tusz.preprocess and bids.window_s == tusz.window_s
    assert bids.source == "bids" and bids.bids.split_by == "auto"
    with pytest.raises(PrepareError, match=r"data=bids needs the dataset location"):
        ensure_prepared(bids)
    bids.root = str(tmp_path)
    with pytest.raises(PrepareError, match=r"has no dataset_description\.json"):
        ensure_prepared(bids)
