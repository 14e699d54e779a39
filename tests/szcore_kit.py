"""Random SzCORE reference/hypothesis trees, and the official scorer run on them.

The sets stress every rule of :mod:`brain_go_brr.scoring.szcore`: onsets and durations
with 2 decimals (events that never cross a whole second vanish), events past the end,
gaps around the 90 s merge threshold, events over the 300 s split length, detections just
inside and outside the 30 s / 60 s tolerance, subjects without seizures, HED-SCORE subtypes
and ``bckg`` rows, missing hypotheses, hypotheses with a header and no rows, and hypotheses
whose ``recordingDuration`` differs (by a fraction of a second: still scored; by whole
seconds: no detection).

``python tests/szcore_kit.py`` regenerates ``tests/data/szcore_conformance.json`` (the sets
and szcore-evaluation 0.0.7's own output for each, both averaging modes); it needs
``SZCORE_PYTHON``: a Python >= 3.12 with ``pip install szcore-evaluation==0.0.7``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

KIT_PATH = Path(__file__).parent / "data" / "szcore_conformance.json"
KIT_SEED = 20261206
N_SETS = 30
HEADER = "onset\tduration\teventType\tconfidence\tchannels\tdateTime\trecordingDuration"
SZ_TYPES = ("sz", "sz_foc_ia", "sz_gen_m_tonicClonic", "sz_uo", "sz_foc_a_m_automatisms")

# Runs the official scorer on REF HYP and prints both averaging modes as JSON (NaN kept).
_RUNNER = """
import json, sys, tempfile, os
from szcore_evaluation.evaluate import evaluate_dataset
ref, hyp = sys.argv[1], sys.argv[2]
out = {}
with tempfile.TemporaryDirectory() as tmp:
    for mode, avg in (("per_subject", True), ("pooled", False)):
        out[mode] = evaluate_dataset(ref, hyp, os.path.join(tmp, mode + ".json"), avg)
print(json.dumps(out, default=float))
"""


def _row(onset: float, duration: float, kind: str, rec: float, conf: str = "n/a") -> str:
    return f"{onset:.2f}\t{duration:.2f}\t{kind}\t{conf}\tn/a\t2020-01-01 00:00:00\t{rec:.2f}"


def _events(rng: np.random.Generator, rec: float, n: int) -> list[tuple[float, float]]:
    """n seizure-like events: short, long (> 300 s), sub-second, clustered, past the end."""
    out: list[tuple[float, float]] = []
    for _ in range(n):
        kind = rng.integers(0, 6)
        if kind == 0:  # sub-second, may not cross a whole second
            onset, dur = rng.uniform(0, rec), rng.uniform(0.05, 0.99)
        elif kind == 1:  # long: split into 300 s pieces
            onset, dur = rng.uniform(0, rec), rng.uniform(300, 800)
        elif kind == 2 and out:  # close to the previous one: around the 90 s merge gap
            prev_stop = out[-1][0] + out[-1][1]
            onset, dur = prev_stop + rng.uniform(80, 100), rng.uniform(5, 60)
        elif kind == 3:  # runs past the end
            onset, dur = rec - rng.uniform(-20, 30), rng.uniform(10, 60)
        else:
            onset, dur = rng.uniform(0, rec), rng.uniform(5, 150)
        out.append((round(max(0.0, onset), 2), round(dur, 2)))
    return out


def _near(rng: np.random.Generator, events: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """Detections around reference events: inside, just within or just past the tolerance."""
    out = []
    for onset, dur in events:
        if rng.random() < 0.7:
            shift = rng.choice([rng.uniform(-45, 0), rng.uniform(0, dur + 75)])
            out.append((round(max(0.0, onset + shift), 2), round(rng.uniform(1, 40), 2)))
    return out


def _tsv(rows: list[str]) -> str:
    return HEADER + "\n" + "".join(r + "\n" for r in rows)


def _file_rows(
    rng: np.random.Generator, rec: float, events: list[tuple[float, float]], bckg: bool
) -> list[str]:
    if not events:
        return [_row(0.0, rec, "bckg", rec)]
    rows = []
    for onset, dur in sorted(events):
        kind = str(rng.choice(SZ_TYPES))
        rows.append(_row(onset, dur, kind, rec, f"{rng.uniform(0.5, 1):.2f}"))
        if bckg and rng.random() < 0.5:
            rows.append(_row(onset + dur, 1.0, "bckg", rec))
    return rows


def random_set(rng: np.random.Generator) -> dict[str, dict[str, str | None]]:
    """``{"ref": {relpath: text}, "hyp": {relpath: text or None (missing)}}``."""
    ref: dict[str, str | None] = {}
    hyp: dict[str, str | None] = {}
    for s in range(int(rng.integers(1, 6))):
        subject = f"sub-{s:02d}"
        has_seizures = rng.random() < 0.75
        for r in range(int(rng.integers(1, 5))):
            rel = f"{subject}/ses-01/eeg/{subject}_ses-01_task-szMonitoring_run-{r:02d}_events.tsv"
            rec = round(float(rng.uniform(60, 7200)), 2)
            n_ref = int(rng.integers(0, 5)) if has_seizures else 0
            ref_events = _events(rng, rec, n_ref)
            ref[rel] = _tsv(_file_rows(rng, rec, ref_events, bckg=True))
            fate = rng.random()
            if fate < 0.08:
                hyp[rel] = None  # missing
            elif fate < 0.12:
                hyp[rel] = HEADER + "\n"  # no rows
            elif fate < 0.17:  # whole seconds differ: no detection
                hyp[rel] = _tsv(_file_rows(rng, rec + 5, _near(rng, ref_events), bckg=False))
            else:
                hyp_rec = rec if rng.random() < 0.8 else round(rec - rec % 1 + 0.99, 2)
                hyp_events = _near(rng, ref_events) + _events(rng, rec, int(rng.integers(0, 4)))
                hyp[rel] = _tsv(_file_rows(rng, hyp_rec, hyp_events, bckg=False))
    return {"ref": ref, "hyp": hyp}


def write_set(sample: dict[str, dict[str, str | None]], root: Path) -> tuple[Path, Path]:
    """Write a set as ``root/ref`` and ``root/hyp`` trees; returns both roots."""
    for side in ("ref", "hyp"):
        for rel, text in sample[side].items():
            if text is not None:
                path = root / side / rel
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text(text)
    (root / "hyp").mkdir(parents=True, exist_ok=True)
    return root / "ref", root / "hyp"


def run_official(python: str, ref: Path, hyp: Path) -> dict[str, Any]:
    """szcore-evaluation's output for both averaging modes (``per_subject``, ``pooled``)."""
    done = subprocess.run(
        [python, "-c", _RUNNER, str(ref), str(hyp)],
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(done.stdout.strip().splitlines()[-1])


def make_sets(seed: int, n: int) -> list[dict[str, dict[str, str | None]]]:
    rng = np.random.default_rng(seed)
    return [random_set(rng) for _ in range(n)]


def main() -> int:
    python = os.environ.get("SZCORE_PYTHON")
    if not python:
        print(
            "set SZCORE_PYTHON to a Python >= 3.12 with szcore-evaluation==0.0.7", file=sys.stderr
        )
        return 2
    sets = make_sets(KIT_SEED, N_SETS)
    expected = []
    with tempfile.TemporaryDirectory() as tmp:
        for i, sample in enumerate(sets):
            ref, hyp = write_set(sample, Path(tmp) / str(i))
            expected.append(run_official(python, ref, hyp))
    kit = {
        "generator": "tests/szcore_kit.py",
        "seed": KIT_SEED,
        "scorer": "szcore-evaluation 0.0.7 (epilepsy2bids 0.0.7, timescoring 0.0.7)",
        "sets": [{"trees": s, "expected": e} for s, e in zip(sets, expected, strict=True)],
    }
    KIT_PATH.parent.mkdir(parents=True, exist_ok=True)
    KIT_PATH.write_text(json.dumps(kit, indent=1, sort_keys=True) + "\n")
    print(f"wrote {KIT_PATH} ({N_SETS} sets)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
