from __future__ import annotations

from pathlib import Path

import pytest

from brain_go_brr.annotations import (
    AnnotationError,
    Event,
    format_csv_bi,
    read_csv,
    read_csv_bi,
    read_labels,
    write_csv_bi,
)

HEADER = "# version = csv_v1.0.0\n# bname = x\n# duration = 100.0000 secs\n#\n"
COLS = "channel,start_time,stop_time,label,confidence\n"


def _write(path: Path, body: str) -> Path:
    path.write_text(HEADER + COLS + body)
    return path


def test_csv_bi_reads_duration_and_rows(tmp_path: Path) -> None:
    ann = read_csv_bi(_write(tmp_path / "a.csv_bi", "TERM,0,10,bckg,1\nTERM,10.5,20.25,seiz,1\n"))
    assert ann.duration_s == 100.0
    assert ann.events == [Event(0, 10, "bckg", 1), Event(10.5, 20.25, "seiz", 1)]
    assert ann.seizures() == [Event(10.5, 20.25, "seiz", 1)]


def test_csv_union_of_channels_and_all_seizure_types(tmp_path: Path) -> None:
    rows = (
        "FP1-F7,5,15,fnsz,1\nF7-T3,10,20,fnsz,1\nC3-P3,0,100,bckg,1\n"
        "O1-O2,50,52,mysz,1\nT3-T5,60,70,tcsz,1\n"
    )
    ann = read_csv(_write(tmp_path / "a.csv", rows))
    assert [(e.start_s, e.stop_s) for e in ann.seizures()] == [(5, 20), (50, 52), (60, 70)]


def test_read_labels_prefers_csv_bi_then_csv(tmp_path: Path) -> None:
    edf = tmp_path / "p_s001_t000.edf"
    _write(edf.with_suffix(".csv"), "FP1-F7,1,2,absz,1\n")
    assert read_labels(edf).seizures()[0].start_s == 1
    _write(edf.with_suffix(".csv_bi"), "TERM,3,4,seiz,1\n")
    assert read_labels(edf).seizures()[0].start_s == 3
    with pytest.raises(AnnotationError, match=r"no annotation file.*q_s001_t000.csv_bi"):
        read_labels(tmp_path / "q_s001_t000.edf")


@pytest.mark.parametrize(
    ("row", "message"),
    [
        ("TERM,10,5,seiz,1", r":6: stop_time 5.0 is before start_time 10.0"),
        ("TERM,1,2,seiz", r":6: expected 5 comma-separated fields"),
        ("TERM,a,2,seiz,1", r":6: start, stop and confidence must be numbers"),
        ("FP1-F7,1,2,seiz,1", r":6: csv_bi rows must use channel TERM"),
    ],
)
def test_malformed_rows_name_file_and_line(tmp_path: Path, row: str, message: str) -> None:
    path = _write(tmp_path / "bad.csv_bi", row + "\n")
    with pytest.raises(AnnotationError, match=message) as info:
        read_csv_bi(path)
    assert "bad.csv_bi" in str(info.value)


def test_rows_off_the_column_wise_path_read_the_same(tmp_path: Path) -> None:
    clean = "TERM,0,10,bckg,1\nTERM,10.5,20.25,seiz,1\nTERM,20.25,30,fnsz,0.5\n"
    # declined by the column-wise reader, read line by line instead
    quirky = " term,0,10,bckg,1\n\n# a comment\nTERM,10.5,20.25, SEIZ ,1\nTERM,20.25,30,fnsz,0.5"
    events = [Event(0, 10, "bckg", 1), Event(10.5, 20.25, "seiz", 1), Event(20.25, 30, "fnsz", 0.5)]
    assert read_csv_bi(_write(tmp_path / "a.csv_bi", clean)).events == events
    assert read_csv_bi(_write(tmp_path / "b.csv_bi", quirky)).events == events
    with pytest.raises(AnnotationError, match=r"c.csv_bi:9: stop_time 4.0 is before"):
        read_csv_bi(_write(tmp_path / "c.csv_bi", clean + "TERM,5,4,seiz,1\n"))


def test_write_round_trip_fills_background(tmp_path: Path) -> None:
    path = tmp_path / "h_s001_t000.csv_bi"
    write_csv_bi(path, [Event(10, 20), Event(15, 30), Event(50, 60, "seiz", 0.7)], 100.0)
    ann = read_csv_bi(path)
    assert ann.bname == "h_s001_t000"
    assert ann.duration_s == 100.0
    assert [(e.start_s, e.stop_s, e.label) for e in ann.events] == [
        (0, 10, "bckg"),
        (10, 30, "seiz"),
        (30, 50, "bckg"),
        (50, 60, "seiz"),
        (60, 100, "bckg"),
    ]
    assert "TERM,50.0000,60.0000,seiz,0.7000" in format_csv_bi(
        [Event(50, 60, "seiz", 0.7)], 100, "h"
    )


def test_nedc_demo_files_parse(nedc_demo: Path) -> None:
    refs = sorted((nedc_demo / "ref").glob("*.csv_bi"))
    assert len(refs) == 30
    n_seiz = sum(len([e for e in read_csv_bi(p).events if e.label == "seiz"]) for p in refs)
    assert n_seiz == 701  # NEDC's published target count for the demo set
    first = read_csv_bi(nedc_demo / "ref" / "aaaaaasf_s001_t000.csv_bi")
    assert first.duration_s == 1289.0
    assert first.events[0] == Event(42.2786, 81.7760, "seiz", 1.0)
