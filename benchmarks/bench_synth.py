"""Synthetic corpus generation speed: ``brain-go-brr synth`` at 1 and N worker processes.

Target (issue 2): 20 patients / 8 h in under 60 s with 2 workers on a 2-core machine. Both
runs must produce byte-identical trees (the output may not depend on the worker count).

    python benchmarks/bench_synth.py [--patients 20] [--hours 8] [--workers 2]
"""

from __future__ import annotations

import argparse
import hashlib
import sys
import tempfile
import time
from pathlib import Path

from _common import write_section

from brain_go_brr.data.synth import generate_corpus


def _digest(root: Path) -> str:
    h = hashlib.sha256()
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        h.update(path.relative_to(root).as_posix().encode())
        h.update(path.read_bytes())
    return h.hexdigest()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--patients", type=int, default=20)
    parser.add_argument("--hours", type=float, default=8.0)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    rows, digests = [], {}
    with tempfile.TemporaryDirectory(prefix="bench_synth_") as tmp:
        for workers in sorted({1, args.workers}):
            out = Path(tmp) / f"w{workers}"
            t0 = time.perf_counter()
            summary = generate_corpus(out, args.patients, args.hours, args.seed, workers)
            seconds = time.perf_counter() - t0
            hours = sum(s["hours"] for s in summary["splits"].values())
            size_mb = sum(p.stat().st_size for p in out.rglob("*") if p.is_file()) / 1e6
            digests[workers] = _digest(out)
            rows.append(
                f"| {workers} | {summary['files']} | {hours:.2f} | {seconds:.1f} | "
                f"{hours * 3600 / seconds:,.0f}× | {size_mb:,.0f} |"
            )
            print(rows[-1], flush=True)
    identical = len(set(digests.values())) == 1
    body = "\n".join(
        [
            f"Corpus: {args.patients} patients, {args.hours} h, seed {args.seed}. Target: "
            f"under 60 s with {args.workers} workers. Wall time includes writing (and fsync of) "
            "every EDF and label file; other jobs may have shared the machine.",
            "",
            "| workers | files | EEG hours | wall s | × real time | MB written |",
            "|---|---|---|---|---|---|",
            *rows,
            "",
            f"Outputs byte-identical across worker counts: {'yes' if identical else 'NO'}.",
        ]
    )
    write_section("synth", "Synthetic corpus generation", body)
    return 0 if identical else 1


if __name__ == "__main__":
    sys.exit(main())
