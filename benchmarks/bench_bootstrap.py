"""The cost of the patient-level bootstrap on a TUSZ-eval-sized evaluation.

The workload of ``bench_scoring.py`` (865 records, 127.7 h of 256 Hz probabilities, 8-bit
as the evaluation cache keeps them), split over 43 subjects, scored as ``evaluate.py``
scores a cache (:func:`brain_go_brr.evaluation.evaluate.score_cache`: the configured
post-processing, the 50-point threshold sweep of OVLP, TAES and SzCORE) twice: without
intervals (``bootstrap=0``) and with 1000 resamples. The difference is what the intervals
cost: AUROC, OVLP/TAES sensitivity and FA/24h, the sens @ k FA/24h points of the three
scorers, and the four official SzCORE blocks; the time inside the interval functions is
also clocked directly (the difference of two 20 s runs is within their noise here).
Target: <= 10 s.

Run: ``python benchmarks/bench_bootstrap.py [--resamples 1000] [--repeat 3]``
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import write_section
from bench_scoring import synthetic_eval

from brain_go_brr.evaluation import evaluate
from brain_go_brr.post import PostConfig
from brain_go_brr.scoring import metrics
from brain_go_brr.scoring.metrics import DEFAULT_TAU_GRID, FA_TARGETS, RecordTrack

N_SUBJECTS = 43


def workload() -> list[RecordTrack]:
    records = []
    for i, rec in enumerate(synthetic_eval()):
        subject = f"p{i % N_SUBJECTS:03d}"
        prob = (np.round(rec.prob * 255) / 255).astype(np.float32)
        records.append(RecordTrack(rec.record_id, subject, rec.duration_s, rec.reference, prob))
    return records


def timed(
    records: list[RecordTrack], resamples: int, repeat: int
) -> tuple[float, float, dict[str, Any]]:
    """(best wall time of score_cache, best time inside the interval functions, result)."""
    inside: list[float] = []

    def clocked(fn: Callable[..., Any]) -> Callable[..., Any]:
        def run(*args: Any, **kwargs: Any) -> Any:
            t0 = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                inside.append(time.perf_counter() - t0)

        return run

    best, best_inside = float("inf"), float("inf")
    result: dict[str, Any] = {}
    names = ((metrics, "add_intervals"), (metrics, "nedc_intervals"),
             (metrics, "szcore_intervals"), (evaluate, "sens_at_fa_intervals"))  # fmt: skip
    real = [getattr(module, name) for module, name in names]
    for (module, name), fn in zip(names, real, strict=True):
        setattr(module, name, clocked(fn))
    try:
        for _ in range(repeat):
            inside.clear()
            t0 = time.perf_counter()
            result, _ = evaluate.score_cache(
                records, PostConfig(), FA_TARGETS, DEFAULT_TAU_GRID, 0.08, 5.0,
                n_resamples=resamples, seed=0,
            )  # fmt: skip
            best = min(best, time.perf_counter() - t0)
            best_inside = min(best_inside, sum(inside))
    finally:
        for (module, name), fn in zip(names, real, strict=True):
            setattr(module, name, fn)
    return best, best_inside, result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--resamples", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    records = workload()
    hours = sum(r.duration_s for r in records) / 3600
    t_off, _, _ = timed(records, 0, args.repeat)
    t_on, t_inside, result = timed(records, args.resamples, args.repeat)
    ovlp = result["ovlp"]
    ci = ovlp["sensitivity_ci95"]
    body = (
        f"{len(records)} records, {N_SUBJECTS} subjects, {hours:.1f} h at 256 Hz (8-bit "
        f"probabilities); `score_cache` as evaluate.py runs it; best of {args.repeat}.\n\n"
        "| what | time | target |\n|---|---|---|\n"
        f"| scoring without intervals (`bootstrap=0`) | {t_off:.1f} s | |\n"
        f"| scoring with {args.resamples} resamples | {t_on:.1f} s | |\n"
        "| inside the interval functions (`add_intervals`, `nedc_intervals`, "
        f"`szcore_intervals`, `sens_at_fa_intervals`) | "
        f"{t_inside:.1f} s | <= 10 s |\n"
        f"| difference of the two runs (includes collecting per-record sweep counts) | "
        f"{t_on - t_off:+.1f} s | |\n\n"
        f"Sanity: OVLP sensitivity {100 * ovlp['sensitivity']:.1f} % "
        f"[{100 * ci[0]:.1f}, {100 * ci[1]:.1f}] at {ovlp['fa_per_24h']:.2f} FA/24h.\n"
    )
    print(body)
    write_section(
        "bench_bootstrap", "Bootstrap intervals: cost on a TUSZ-eval-sized evaluation", body
    )


if __name__ == "__main__":
    main()
