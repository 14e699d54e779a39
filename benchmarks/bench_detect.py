"""The SzCORE entry point on one hour of EEG, end to end: seconds per EEG hour.

What the benchmark container does for each recording: ``python -m brain_go_brr.szcore
IN.edf OUT.tsv`` in a fresh process (interpreter start-up, imports, loading the checkpoint,
compiling the CPU kernels, reading and preprocessing the EDF, the model over 60 s windows
at the default 30 s stride, post-processing, writing the TSV). The input is a synthetic
1 h recording in the benchmark's own format (19 channels ``Fp1-Avg``, common average,
256 Hz; seeded), the models are v3 and v3_tiny with random weights (the speed does not
depend on the weights), on the CPU with the cpu hardware preset's precision.

SzCORE's budget is 15 min per EEG hour on 10 cores; the target here is <= 60 s per EEG
hour for v3 on this machine. Each model runs ``--repeat`` times; the table gives the best
and the median.

Run: ``python benchmarks/bench_detect.py [--repeat 3] [--minutes 60]``
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import write_section

from brain_go_brr.data.channels import CHANNELS, canonical_name
from brain_go_brr.data.synth import make_recording, write_edf


def write_recording(path: Path, minutes: int) -> None:
    """``minutes`` of synthetic EEG with two seizures, as the benchmark feeds it."""
    seconds = minutes * 60
    seizures = ((seconds * 0.25, seconds * 0.25 + 60), (seconds * 0.7, seconds * 0.7 + 90))
    rendered, _ = make_recording(duration_s=seconds, sfreq=256, seed=0, seizures=seizures)
    rows = {}
    for label, row in zip(rendered.labels, rendered.data_uV, strict=True):
        name = canonical_name(label)
        if name is not None:
            rows[name] = row
    v = np.stack([rows[c] for c in CHANNELS])
    write_edf(path, v - v.mean(axis=0), [f"{c}-Avg" for c in CHANNELS], 256)


def write_checkpoint(path: Path, model: str) -> None:
    import hydra
    import torch

    from brain_go_brr.detect import _model_config
    from brain_go_brr.inference import save_checkpoint

    torch.manual_seed(0)
    cfg = _model_config(model)
    assert cfg is not None
    save_checkpoint(path, hydra.utils.instantiate(cfg), cfg)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--minutes", type=int, default=60, help="length of the recording")
    args = parser.parse_args()
    rows = ["| model | best | median | s per EEG hour (best) | target |", "|---|---|---|---|---|"]
    with tempfile.TemporaryDirectory() as tmp:
        edf = Path(tmp) / "rec.edf"
        write_recording(edf, args.minutes)
        hours = args.minutes / 60
        for model in ("v3", "v3_tiny"):
            ckpt = Path(tmp) / f"{model}.ckpt"
            write_checkpoint(ckpt, model)
            walls = []
            for _ in range(args.repeat):
                out = Path(tmp) / f"{model}.tsv"
                t0 = time.perf_counter()
                subprocess.run(
                    [sys.executable, "-m", "brain_go_brr.szcore", str(edf), str(out),
                     "--ckpt", str(ckpt), "--device", "cpu"],
                    check=True, capture_output=True,
                )  # fmt: skip
                walls.append(time.perf_counter() - t0)
                assert out.read_text().startswith("onset\t")
            best, median = min(walls), statistics.median(walls)
            target = "<= 60 s" if model == "v3" else ""
            rows.append(
                f"| {model} | {best:.1f} s | {median:.1f} s | {best / hours:.1f} s | {target} |"
            )
            print(rows[-1], flush=True)
    body = (
        f"`python -m brain_go_brr.szcore` on a {args.minutes} min recording (19 channels "
        f"Fp1-Avg, 256 Hz), each run a fresh process, {args.repeat} runs per model, CPU, "
        "float32 (the cpu preset), 30 s stride.\n\n" + "\n".join(rows) + "\n"
    )
    write_section("bench_detect", "SzCORE entry point: seconds per EEG hour", body)


if __name__ == "__main__":
    main()
