from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from brain_go_brr.cli import main

HEAD = "# version = csv_v1.0.0\n# bname = {name}\n# duration = {dur} secs\n#\n"
COLS = "channel,start_time,stop_time,label,confidence\n"


def _csv(path: Path, rows: str, dur: str = "100.0000") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(HEAD.format(name=path.stem, dur=dur) + COLS + rows)
    return path


def _pair(tmp_path: Path) -> tuple[Path, Path]:
    ref, hyp = tmp_path / "ref", tmp_path / "hyp"
    _csv(ref / "a_s001_t000.csv_bi", "TERM,10.0000,20.0000,seiz,1.0000\n")
    _csv(hyp / "a_s001_t000.csv_bi", "TERM,0,15,bckg,1\nTERM,15,30,seiz,1\nTERM,30,100,bckg,1\n")
    _csv(ref / "b_s001_t000.csv_bi", "TERM,50,60,seiz,1\n")
    _csv(hyp / "b_s001_t000.csv_bi", "TERM,80,90,seiz,1\n")
    return ref, hyp


def test_score_folders_writes_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ref, hyp = _pair(tmp_path)
    out = tmp_path / "scores.json"
    assert main(["score", str(ref), str(hyp), "--json", str(out)]) == 0
    result = json.loads(out.read_text())
    assert result["n_records"] == 2
    assert result["duration_s"] == 200.0
    assert result["ovlp"] == {
        "targets": 2.0, "hits": 1.0, "misses": 1.0, "false_alarms": 1.0,
        "sensitivity": 0.5, "fa_per_24h": 432.0,
        # two subjects, one hit each way: a resample holds a, b, or both
        "sensitivity_ci95": [0.0, 1.0], "fa_per_24h_ci95": [0.0, 864.0],
    }  # fmt: skip
    assert result["bootstrap"]["n_subjects"] == 2
    # pair a: case "starts inside": hit 0.5, fa min(1, 10/10); pair b: miss + false alarm
    assert result["taes"]["hits"] == pytest.approx(0.5)
    assert result["taes"]["false_alarms"] == pytest.approx(2.0)
    assert {k for k in result["szcore"] if not k.endswith("_ci95")} == {
        "sensitivity",
        "precision",
        "f1",
        "fp_per_24h",
    }
    assert "OVLP" in capsys.readouterr().out


def test_score_list_files_resolve_relative_paths(tmp_path: Path) -> None:
    _pair(tmp_path)
    lists = tmp_path / "lists"
    lists.mkdir()
    names = ["b_s001_t000.csv_bi", "a_s001_t000.csv_bi"]
    (lists / "ref.list").write_text("".join(f"../ref/{n}\n" for n in names))
    (lists / "hyp.list").write_text("# comment\n" + "".join(f"../hyp/{n}\n" for n in names))
    out = tmp_path / "s.json"
    assert (
        main(["score", str(lists / "ref.list"), str(lists / "hyp.list"), "--json", str(out)]) == 0
    )
    assert json.loads(out.read_text())["ovlp"]["hits"] == 1.0


@pytest.mark.parametrize(
    ("setup", "message"),
    [
        (
            lambda r, h: _csv(r / "c_s001_t000.csv_bi", ""),
            r"unpaired files: 1 only in .*c_s001_t000",
        ),
        (
            lambda r, h: _csv(h / "a_s001_t000.csv_bi", "TERM,30,20,seiz,1\n"),
            r"a_s001_t000.csv_bi:6: stop_time 20.0 is before start_time 30.0",
        ),
        (
            lambda r, h: _csv(h / "a_s001_t000.csv_bi", "TERM,1,2,seiz\n"),
            r"a_s001_t000.csv_bi:6: expected 5 comma-separated fields",
        ),
        (
            lambda r, h: _csv(h / "a_s001_t000.csv_bi", "TERM,1,2,bckg,1\nTERM,90,120,seiz,1\n"),
            r"hyp/a_s001_t000.csv_bi:7: event 90.0..120.0 s stops after the stated duration",
        ),
        (
            lambda r, h: _csv(h / "a_s001_t000.csv_bi", "", dur="99.0000"),
            r"duration 99.0 s disagrees with its reference",
        ),
    ],
)
def test_score_errors_name_file_and_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], setup, message: str
) -> None:
    ref, hyp = _pair(tmp_path)
    setup(ref, hyp)
    assert main(["score", str(ref), str(hyp)]) == 2
    assert re.search(message, capsys.readouterr().err)


def test_score_nedc_demo_matches_published(nedc_demo: Path, tmp_path: Path) -> None:
    out = tmp_path / "demo.json"
    assert main(["score", str(nedc_demo / "ref"), str(nedc_demo / "hyp"), "--json", str(out)]) == 0
    got = json.loads(out.read_text())
    want = json.loads((nedc_demo / "expected_seiz.json").read_text())
    for scorer in ("ovlp", "taes"):
        assert round(100 * got[scorer]["sensitivity"], 4) == round(
            100 * want[scorer]["sensitivity"], 4
        )
        assert round(got[scorer]["fa_per_24h"], 4) == want[scorer]["fa_per_24h"]
