"""The SzCORE algorithm entry point: one EDF in, one SzCORE events TSV out.

::

    python -m brain_go_brr.szcore IN.edf OUT.tsv [--ckpt CKPT] [--device auto|cpu|cuda]
    brain-go-brr szcore IN.edf OUT.tsv [--ckpt CKPT]

This is what the SzCORE benchmark container runs (``Dockerfile``:
``python3 -m brain_go_brr.szcore "/data/${INPUT}" "/output/${OUTPUT}"``). The checkpoint is
``--ckpt``, else ``$BGB_CHECKPOINT``. The input is what the benchmark feeds (19 channels,
common average, 256 Hz, ``Fp1-Avg``) or anything ``prepare`` reads (other rates, reference
suffixes, 10-10 names, missing Fz/Pz, extra channels); the preprocessing is the one the
checkpoint was trained with, so the model sees the same thing whatever the input's
reference. Post-processing: the checkpoint's operating point (see :mod:`brain_go_brr.detect`).

Output: ``onset duration eventType confidence channels dateTime recordingDuration``, one ``sz``
row per detected seizure with its mean probability as confidence, or one ``bckg`` row
covering the recording; ``dateTime`` is the EDF's start, ``recordingDuration`` its length.
Written atomically: a killed run leaves no half-written TSV.

It never ends in a traceback. Any readable EDF gets a valid TSV: a recording shorter than one
window is zero-padded, and one without a usable 19-electrode set (a bipolar montage such as
CHB-MIT's) gets a ``bckg`` TSV and one line on stderr naming the montage. An unreadable
input or checkpoint exits with status 1 and one line naming the file, the problem and the
fix (``BGB_DEBUG=1`` prints the traceback of an unexpected error too).
"""

from __future__ import annotations

import argparse
import os
import sys
import traceback
from collections.abc import Sequence
from pathlib import Path

CHECKPOINT_ENV = "BGB_CHECKPOINT"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("input", type=Path, help="the recording (.edf)")
    parser.add_argument("output", type=Path, help="the SzCORE events file to write (.tsv)")
    parser.add_argument(
        "--ckpt", type=Path, default=None, help=f"checkpoint (default: ${CHECKPOINT_ENV})"
    )
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")


def _fail(message: str) -> int:
    print(f"brain-go-brr szcore: error: {message}", file=sys.stderr)
    return 1


def run(args: argparse.Namespace) -> int:
    from brain_go_brr.detect import Detection, Detector, InputError, write_outputs
    from brain_go_brr.inference import CheckpointError

    ckpt = args.ckpt or (
        Path(os.environ[CHECKPOINT_ENV]) if os.environ.get(CHECKPOINT_ENV) else None
    )
    if ckpt is None:
        return _fail(
            f"no checkpoint: pass --ckpt PATH or set {CHECKPOINT_ENV}=PATH (a best.ckpt of train.py)"
        )
    if not args.input.is_file():
        return _fail(f"{args.input}: no such file; give the EDF recording to analyse")
    try:
        detector = Detector(ckpt, device=args.device)
        detection: Detection = detector.run(args.input)
    except (CheckpointError, InputError) as exc:
        return _fail(str(exc))
    for warning in detector.warnings:
        print(f"brain-go-brr szcore: warning: {warning}", file=sys.stderr)
    if detection.note is not None:
        print(f"brain-go-brr szcore: no detection possible: {detection.note}", file=sys.stderr)
    try:
        write_outputs(detection, {"tsv": args.output})
    except OSError as exc:
        return _fail(f"{args.output}: cannot write ({exc}); check the output folder")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """The entry point; never raises (see the module docstring)."""
    from brain_go_brr.runtime import tune_cpu_allocator

    parser = argparse.ArgumentParser(
        prog="python -m brain_go_brr.szcore", description=__doc__.splitlines()[0]
    )
    add_arguments(parser)
    args = parser.parse_args(argv)
    tune_cpu_allocator()
    try:
        return run(args)
    except Exception as exc:  # the benchmark must get one line, never a traceback
        if os.environ.get("BGB_DEBUG"):
            traceback.print_exc()
        return _fail(
            f"{args.input}: unexpected {type(exc).__name__}: {exc} (BGB_DEBUG=1 shows where)"
        )


if __name__ == "__main__":
    raise SystemExit(main())
