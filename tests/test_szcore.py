"""SzCORE scoring against the official scorer (szcore-evaluation 0.0.7) and by hand."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import szcore_kit

from brain_go_brr.annotations import Event
from brain_go_brr.cli import main
from brain_go_brr.scoring import szcore
from brain_go_brr.scoring.cli import score_tsv_trees
from brain_go_brr.scoring.metrics import RecordEvents, score_events

HEADER = szcore_kit.HEADER


def _same(ours: Any, official: float) -> bool:
    if math.isnan(official):
        return ours is None
    return ours is not None and ours == pytest.approx(official, rel=1e-12, abs=1e-12)


def _compare(ours: dict[str, Any], official: dict[str, Any]) -> list[str]:
    """Every figure where ours differs from the official output (both averaging modes)."""
    diffs = []
    for mode, key in (("per_subject", "szcore_evaluation"), ("pooled", "szcore_evaluation_pooled")):
        for block in ("sample_results", "event_results"):
            assert set(ours[key][block]) == set(official[mode][block])
            for name, value in official[mode][block].items():
                if not _same(ours[key][block][name], value):
                    diffs.append(f"{mode} {block} {name}: ours {ours[key][block][name]}, {value}")
    return diffs


def test_conformance_kit_matches_the_official_scorer(tmp_path: Path) -> None:
    kit = json.loads(szcore_kit.KIT_PATH.read_text())
    assert len(kit["sets"]) == szcore_kit.N_SETS
    # the stored sets are what the generator makes: the kit can be regenerated
    assert [s["trees"] for s in kit["sets"]] == szcore_kit.make_sets(kit["seed"], len(kit["sets"]))
    diffs = []
    for i, sample in enumerate(kit["sets"]):
        ref, hyp = szcore_kit.write_set(sample["trees"], tmp_path / str(i))
        ours, _ = score_tsv_trees(ref, hyp)
        diffs += [f"set {i}: {d}" for d in _compare(ours, sample["expected"])]
    assert not diffs, "\n".join(diffs)


@pytest.mark.skipif(
    not os.environ.get("SZCORE_PYTHON"),
    reason="opt-in: set SZCORE_PYTHON to a Python >= 3.12 with "
    "'pip install szcore-evaluation==0.0.7' to score fresh random sets with the official scorer",
)
def test_official_scorer_itself_on_fresh_sets(tmp_path: Path) -> None:
    python = os.environ["SZCORE_PYTHON"]
    diffs = []
    for i, sample in enumerate(szcore_kit.make_sets(seed=7, n=30)):
        ref, hyp = szcore_kit.write_set(sample, tmp_path / str(i))
        ours, _ = score_tsv_trees(ref, hyp)
        diffs += [
            f"set {i}: {d}" for d in _compare(ours, szcore_kit.run_official(python, ref, hyp))
        ]
    assert not diffs, "\n".join(diffs)


# ----------------------------------------------------------------------------- by hand


def _rec(ref: list[tuple[int, int]], hyp: list[tuple[int, int]], n: int = 3600, subject: str = "a"):
    return szcore.SzcoreRecording(subject, n, tuple(ref), tuple(hyp))


def test_one_hertz_masks_truncate_to_whole_seconds() -> None:
    # onset 10.2 + 0.5 s never crosses a second: int(10.2) = int(10.7) = 10, nothing left
    assert szcore.mask_runs([(10.2, 10.7)], 100) == ()
    # 10.7 + 0.5 = 11.2: second 10 only
    assert szcore.mask_runs([(10.7, 11.2)], 100) == ((10, 11),)
    # past the end: cut at n = int(recordingDuration); overlapping and touching spans join
    assert szcore.mask_runs([(95.5, 120.0), (20, 30), (30, 31), (25, 28)], 100) == (
        (20, 31),
        (95, 100),
    )
    # in-memory events are read back from the 2-decimal text the writer puts down
    n, runs = szcore.runs_from_events([Event(10.996, 12.0)], 100.999)
    assert (n, runs) == (101, ((11, 12),))  # onset written as 11.00, duration 1.00


def test_duration_rule_whole_seconds_of_recording_duration(tmp_path: Path) -> None:
    """n = int(recordingDuration): 100.99 s is 100 one-second samples; a hypothesis is
    scored when its n matches, whatever its decimals, and as no detection otherwise."""
    from brain_go_brr.annotations import read_events_tsv

    ref = tmp_path / "ref_events.tsv"
    ref.write_text(HEADER + "\n" + szcore_kit._row(99.5, 1.49, "sz", 100.99))
    same_n = tmp_path / "a_events.tsv"
    same_n.write_text(HEADER + "\n" + szcore_kit._row(99.0, 5.0, "sz", 100.01))
    other_n = tmp_path / "b_events.tsv"
    other_n.write_text(HEADER + "\n" + szcore_kit._row(99.0, 5.0, "sz", 101.0))
    rec, note = szcore.recording_from_files("s", read_events_tsv(ref), read_events_tsv(same_n))
    assert (rec.n_seconds, rec.ref, rec.hyp, note) == (100, ((99, 100),), ((99, 100),), None)
    rec, note = szcore.recording_from_files("s", read_events_tsv(ref), read_events_tsv(other_n))
    assert rec.hyp == () and note is not None and "whole seconds 101 and 100" in note


def test_merge_under_90_s_and_cut_over_300_s() -> None:
    assert szcore.merge_and_cut(((0, 10), (99, 110))) == [(0, 110)]  # gap 89 s: merged
    assert szcore.merge_and_cut(((0, 10), (100, 110))) == [(0, 10), (100, 110)]  # gap 90 s
    assert szcore.merge_and_cut(((0, 650),)) == [(0, 300), (300, 600), (600, 650)]
    counts = szcore.event_counts(_rec([(1000, 1650)], [(1000, 1010)]))
    # three reference events; the one detection hits the first only (the extended pieces
    # overlap each other, but a hit needs a detection inside the extended event)
    assert (counts.ref_true, counts.tp, counts.fp) == (3, 1, 0)


def test_tolerance_30_s_before_and_60_s_after() -> None:
    # reference [100, 130): extended to [70, 190)
    assert szcore.event_counts(_rec([(100, 130)], [(60, 71)])).tp == 1
    just_before = szcore.event_counts(_rec([(100, 130)], [(60, 70)]))
    assert (just_before.tp, just_before.fp) == (0, 1)
    assert szcore.event_counts(_rec([(100, 130)], [(189, 200)])).tp == 1
    assert szcore.event_counts(_rec([(100, 130)], [(190, 200)])).tp == 0
    # a detection merged across a gap < 90 s is one event: one false positive, not two
    merged = szcore.event_counts(_rec([], [(500, 510), (590, 600)]))
    assert (merged.ref_true, merged.tp, merged.fp) == (0, 0, 1)


def test_sample_based_counts_and_figures() -> None:
    counts = szcore.sample_counts(_rec([(100, 130)], [(120, 150)], n=86400))
    assert (counts.tp, counts.fp, counts.ref_true, counts.duration_s) == (10, 20, 30, 86400)
    figures = counts.figures(fs=1)
    assert figures["sensitivity"] == pytest.approx(1 / 3)
    assert figures["precision"] == pytest.approx(1 / 3)
    assert figures["f1"] == pytest.approx(2 * 10 / (20 + 20 + 20))
    assert figures["fpRate"] == pytest.approx(20.0)  # 20 false seconds in one day


def test_missing_hypothesis_and_subject_without_seizures() -> None:
    recordings = [
        _rec([(100, 130)], [], subject="sub-01"),  # missed: sensitivity 0, no FP
        _rec([], [(500, 510)], n=43200, subject="sub-02"),  # no seizure: 1 FP in 12 h
    ]
    per_subject = szcore.evaluate_recordings(recordings)["event_results"]
    assert list(per_subject) == [  # the scorer's own order
        "sensitivity", "sensitivity_std", "precision", "precision_std",
        "f1", "f1_std", "fpRate", "fpRate_std",
    ]  # fmt: skip
    assert per_subject["sensitivity"] == 0.0  # sub-02's NaN is left out of the mean
    assert per_subject["sensitivity_std"] == 0.0
    # sub-01 has no detection (precision NaN, left out); sub-02's one detection is false
    assert per_subject["precision"] == 0.0
    assert per_subject["fpRate"] == pytest.approx((0.0 + 2.0) / 2)
    assert per_subject["fpRate_std"] == pytest.approx(1.0)
    assert per_subject["f1"] == pytest.approx(0.0)  # sub-01: 0; sub-02: 2*0/(0+1+0) = 0
    pooled = szcore.evaluate_recordings(recordings, avg_per_subject=False)["event_results"]
    assert list(pooled) == ["sensitivity", "precision", "f1", "fpRate"]
    assert pooled["precision"] == 0.0
    assert pooled["fpRate"] == pytest.approx(1 / (46800 / 86400))


def test_csv_bi_events_score_like_their_events_tsv(tmp_path: Path) -> None:
    """score_events (evaluation, validation, csv_bi) gives what the TSV files give."""
    rng = np.random.default_rng(3)
    records = []
    for i in range(12):
        dur = float(rng.uniform(600, 4000))
        ref = sorted(Event(a, a + float(rng.uniform(5, 400))) for a in rng.uniform(0, dur, 2))
        hyp = sorted(Event(a, a + float(rng.uniform(1, 60))) for a in rng.uniform(0, dur, 3))
        records.append(RecordEvents(f"p{i % 4}_s001_t{i:03d}", f"p{i % 4}", dur, ref, hyp))
    from brain_go_brr.evaluation.evaluate import bids_events_name
    from brain_go_brr.scoring.writers import write_events_tsv

    for rec in records:
        name = bids_events_name(rec.record_id)
        write_events_tsv(tmp_path / "ref" / name, rec.ref, rec.duration_s)
        write_events_tsv(tmp_path / "hyp" / name, rec.hyp, rec.duration_s)
    in_memory = score_events(records)
    from_files, _ = score_tsv_trees(tmp_path / "ref", tmp_path / "hyp")
    for key in ("szcore_evaluation", "szcore_evaluation_pooled"):
        assert from_files[key] == in_memory[key]
    assert (
        in_memory["szcore"]["fp_per_24h"]
        == (
            in_memory["szcore_evaluation_pooled"]["event_results"]["fpRate"]  # type: ignore[index]
        )
    )


# ----------------------------------------------------------------------------- the CLI


def _tree(root: Path, files: dict[str, str]) -> Path:
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


REL = "sub-01/ses-01/eeg/sub-01_ses-01_task-szMonitoring_run-01_events.tsv"
REL2 = "sub-02/ses-01/eeg/sub-02_ses-01_task-szMonitoring_run-01_events.tsv"


def _row(onset: float, dur: float, kind: str, rec: float = 3600.0) -> str:
    return szcore_kit._row(onset, dur, kind, rec) + "\n"


def test_score_tsv_trees_json_in_the_official_structure(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ref = _tree(
        tmp_path / "ref",
        {
            REL: HEADER + "\n" + _row(100, 30, "sz_foc_ia") + _row(130, 3470, "bckg"),
            REL2: HEADER + "\n" + _row(0, 3600, "bckg"),
        },
    )
    hyp = _tree(tmp_path / "hyp", {REL: HEADER + "\n" + _row(90, 20, "sz")})  # REL2 missing
    out = tmp_path / "scores.json"
    assert main(["score", str(ref), str(hyp), "--json", str(out)]) == 0
    result = json.loads(out.read_text())
    assert result["input"] == "tsv" and result["missing_hypotheses"] == 1
    events = result["szcore_evaluation"]["event_results"]
    assert events["sensitivity"] == 1.0 and events["sensitivity_std"] == 0.0
    assert events["precision"] == 1.0 and events["fpRate"] == 0.0
    assert result["szcore_evaluation_pooled"]["sample_results"] == {
        "sensitivity": 10 / 30,
        "precision": 10 / 20,
        "f1": 2 * 10 / (20 + 10 + 20),
        "fpRate": 10 / (7200 / 86400),
    }
    assert result["ovlp"]["hits"] == 1.0
    captured = capsys.readouterr()
    assert "SzCORE" in captured.out
    assert "1 of 2 references have no hypothesis" in captured.err


def test_score_nan_is_written_as_null(tmp_path: Path) -> None:
    ref = _tree(tmp_path / "ref", {REL: HEADER + "\n" + _row(0, 3600, "bckg")})
    hyp = _tree(tmp_path / "hyp", {REL: HEADER + "\n" + _row(0, 3600, "bckg")})
    out = tmp_path / "s.json"
    assert main(["score", str(ref), str(hyp), "--json", str(out)]) == 0
    text = out.read_text()
    assert "NaN" not in text
    event = json.loads(text)["szcore_evaluation"]["event_results"]
    assert event["sensitivity"] is None and event["f1"] is None and event["fpRate"] == 0.0


def test_hypothesis_of_another_length_scores_as_no_detection(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ref = _tree(tmp_path / "ref", {REL: HEADER + "\n" + _row(100, 30, "sz")})
    hyp = _tree(tmp_path / "hyp", {REL: HEADER + "\n" + _row(100, 30, "sz", rec=3605.0)})
    result, trees = score_tsv_trees(ref, hyp)
    assert result["szcore"]["sensitivity"] == 0.0  # type: ignore[index]
    assert "does not match the reference's 3600.0 s" in trees.notes[0]
    assert main(["score", str(ref), str(hyp)]) == 0
    assert "scored as no detection" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("ref_files", "hyp_files", "message"),
    [
        ({"dataset_description.json": "{}"}, {}, "a BIDS dataset without sub-* folders"),
        (
            {REL: "onset\tduration\teventType\n1\t2\tsz\n"},
            {},
            "missing column(s) recordingDuration",
        ),
        ({REL: "onset,duration,eventType,recordingDuration\n"}, {}, "not tab separated"),
        ({REL: HEADER + "\n" + _row(1, 2, "seiz")}, {}, "unknown eventType 'seiz'"),
        ({REL: HEADER + "\n" + _row(1, 2, "sz")}, {REL2: HEADER + "\n"}, "match no reference"),
        ({REL: HEADER + "\n", "sub-02/notes.txt": ""}, {}, "no rows"),
        ({"sub-02/notes.txt": "", REL: HEADER + "\n" + _row(1, 2, "sz")}, {}, "no *_events.tsv"),
    ],
)
def test_score_bad_input_is_one_clear_line(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    ref_files: dict[str, str],
    hyp_files: dict[str, str],
    message: str,
) -> None:
    ref = _tree(tmp_path / "ref", ref_files)
    hyp = _tree(tmp_path / "hyp", hyp_files)
    hyp.mkdir(exist_ok=True)
    assert main(["score", str(ref), str(hyp)]) == 2
    err = capsys.readouterr().err
    assert message in err, err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1
