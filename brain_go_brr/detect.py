"""``brain-go-brr detect INPUT --ckpt CKPT``: a trained detector over your own EDF files.

INPUT is one EDF, a folder of EDFs, a TUSZ tree or a BIDS tree (every ``*.edf`` below it).
Each recording goes through the chain the checkpoint's training run used (the 19
electrodes in any label style, common-average reference, 256 Hz, band-pass and notch,
robust scaling), the detector runs over overlapping 60 s windows (a recording shorter than
one is zero-padded), and the stitched 256 Hz probability track is post-processed with the
checkpoint's operating point (``best.operating_point.json`` beside it, written by
``evaluate.py`` on the dev split), else the training run's post-processing with a warning;
``--tau-on/--tau-off`` override the thresholds.

Outputs (``--format csv_bi | tsv | both``), mirroring the input tree under ``--out``:

- ``csv_bi``: ``<stem>.csv_bi``, the hypothesis NEDC EEG Eval v6.0.0 and ``brain-go-brr
  score`` read (paired by name with TUSZ's own ``.csv_bi``);
- ``tsv``: the SzCORE events file, ``sub-.._eeg.edf`` -> ``sub-.._events.tsv`` (so the output
  of a BIDS tree is a hypothesis tree that ``brain-go-brr score`` and szcore-evaluation read
  as it is), other names ``<stem>_events.tsv``; ``dateTime`` is the EDF's start.

A single EDF without ``--out`` gets ``<stem>.hyp.csv_bi`` / ``<stem>.hyp.tsv`` beside it;
``--out FILE.csv_bi`` or ``FILE.tsv`` names the file. A folder run is resumable (files whose
outputs exist are skipped, unless ``--overwrite``), shows a progress bar, and never stops
for one bad file: it is reported and skipped, and the summary at the end (also
``detect_report.json`` in ``--out``) lists every skipped file with its reason.

:class:`Detector` is the same for ``detect`` and the SzCORE entry point
(:mod:`brain_go_brr.szcore`).
"""

from __future__ import annotations

import argparse
import datetime
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from brain_go_brr.annotations import Event

FORMATS = ("csv_bi", "tsv", "both")


class InputError(ValueError):
    """An input that cannot be read at all; the message names the file, the problem, the fix."""


@dataclass
class Detection:
    """What the detector made of one recording."""

    path: Path
    events: list[Event]
    duration_s: float  # of the EDF
    start: datetime.datetime | None  # the EDF's start
    prob: np.ndarray | None = None  # (n,) at 256 Hz; None when the model could not run
    note: str | None = None  # why there are no detections by construction (e.g. bipolar)
    seconds: float = 0.0  # wall time of this recording


@dataclass
class Detector:
    """A checkpoint ready to run on recordings (see the module docstring)."""

    ckpt: Path
    model: str | None = None  # conf/model/ name; None: the config stored in the checkpoint
    device: str = "auto"  # auto | cpu | cuda
    precision: str | None = None  # Lightning precision; None: the hardware preset's
    stride_s: float = 30.0
    batch_size: int = 8
    tau_on: float | None = None
    tau_off: float | None = None
    warnings: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        from brain_go_brr.inference import (
            WINDOW_SAMPLES,
            device_and_autocast,
            load_checkpoint,
            preset_precision,
            resolve_post,
        )

        self.loaded = load_checkpoint(self.ckpt, _model_config(self.model))
        self.post, self.post_source, notes = resolve_post(self.loaded, self.tau_on, self.tau_off)
        self.warnings += [*self.loaded.notes, *notes]
        device, _ = device_and_autocast(self.device)
        self.torch_device, self.autocast = device_and_autocast(
            self.device, self.precision or preset_precision(device)
        )
        self.loaded.detector.to(self.torch_device)
        self.window = WINDOW_SAMPLES
        self.stride = round(self.stride_s * self.loaded.preprocess.target_sfreq)
        if not 0 < self.stride <= self.window:
            raise ValueError(
                f"--stride-s {self.stride_s}: must be in (0, 60] s so windows cover the record"
            )

    def run(self, edf: Path) -> Detection:
        """Detect seizures in one EDF.

        Raises InputError when the file cannot be read as EDF. A file that reads but holds no
        usable 19-electrode set (a bipolar montage, missing electrodes, flat channels) gives a
        :class:`Detection` without events and a ``note`` saying why.
        """
        import dataclasses

        from brain_go_brr.data.edf import RecordSkipped, read_edf, read_header
        from brain_go_brr.data.preprocess import preprocess_signals
        from brain_go_brr.inference import predict_record
        from brain_go_brr.post import postprocess

        t0 = time.perf_counter()
        edf = Path(edf)
        cfg = dataclasses.replace(self.loaded.preprocess, min_duration_s=0.0)
        try:
            header = read_header(edf)
        except RecordSkipped as exc:
            raise InputError(exc.reason) from None
        detection = Detection(edf, [], header.duration_s, header.start)
        try:
            recording = read_edf(edf, cfg.aliases, cfg.interpolate_missing)
            signals = preprocess_signals(recording.data_uv, recording.sfreq, cfg)
        except RecordSkipped as exc:
            if exc.unreadable:
                raise InputError(exc.reason) from None
            detection.note = exc.reason
        except ValueError as exc:  # e.g. a channel without spread after filtering
            detection.note = f"{edf}: {exc}; no detection possible"
        else:
            detection.duration_s = recording.duration_s
            prob = predict_record(
                self.loaded.detector, signals, self.window, self.stride, self.batch_size,
                self.torch_device, self.autocast,
            )  # fmt: skip
            detection.prob = prob
            detection.events = postprocess(prob, self.post)
        detection.seconds = time.perf_counter() - t0
        return detection


def _model_config(name: str | None) -> dict[str, object] | None:
    if name is None:
        return None
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    from brain_go_brr.paths import conf_dir

    with initialize_config_dir(str(conf_dir()), version_base="1.3"):
        cfg = compose("eval", overrides=[f"model={name}", "hardware=cpu"])
    model = OmegaConf.to_container(cfg.model, resolve=True)
    assert isinstance(model, dict)
    return {str(k): v for k, v in model.items()}


# ----------------------------------------------------------------------------- outputs


def tsv_name(edf: Path) -> str:
    """``sub-01_..._eeg.edf`` -> ``sub-01_..._events.tsv``; ``x.edf`` -> ``x_events.tsv``."""
    stem = edf.name[: -len("_eeg.edf")] if edf.name.endswith("_eeg.edf") else edf.stem
    return f"{stem}_events.tsv"


def write_outputs(detection: Detection, targets: dict[str, Path]) -> None:
    """Write the requested files (``{"csv_bi": path, "tsv": path}``), each atomically."""
    from brain_go_brr.io import atomic_write_text
    from brain_go_brr.scoring.writers import write_hyp_csv_bi

    if "csv_bi" in targets:
        write_hyp_csv_bi(targets["csv_bi"], detection.events, detection.duration_s)
    if "tsv" in targets:
        from brain_go_brr.scoring.writers import format_events_tsv

        text = format_events_tsv(detection.events, detection.duration_s, date_time=detection.start)
        atomic_write_text(targets["tsv"], text)


def plan_outputs(
    inputs: Sequence[Path], out: Path | None, fmt: str
) -> list[tuple[Path, dict[str, Path]]]:
    """(EDF, {format: output path}) for every recording of ``inputs`` (module docstring)."""
    kinds = ("csv_bi", "tsv") if fmt == "both" else (fmt,)
    plan: list[tuple[Path, dict[str, Path]]] = []
    for item in inputs:
        if not item.exists():
            raise InputError(f"{item}: no such file or folder; give an EDF or a folder of EDFs")
        if item.is_file():
            if out is not None and out.suffix in (".csv_bi", ".tsv"):
                if len(inputs) > 1 or fmt == "both":
                    raise InputError(
                        f"--out {out} names one file; give a folder for several inputs or "
                        "--format both"
                    )
                plan.append((item, {"csv_bi" if out.suffix == ".csv_bi" else "tsv": out}))
                continue
            folder = out if out is not None else item.parent
            single = out is None
            plan.append((item, _targets(item, folder, kinds, beside=single)))
            continue
        if out is None:
            raise InputError(f"{item} is a folder: pass --out DIR for the hypothesis tree")
        if out.resolve() == item.resolve() or item.resolve() in out.resolve().parents:
            raise InputError(
                f"--out {out} is inside the input {item}; the hypothesis tree needs its own "
                "folder (it would mix with, or overwrite, the dataset's own label files)"
            )
        edfs = sorted(p for p in item.rglob("*") if p.suffix.lower() == ".edf" and p.is_file())
        if not edfs:
            raise InputError(f"{item}: no .edf files below this folder")
        for edf in edfs:
            rel = edf.relative_to(item).parent
            plan.append((edf, _targets(edf, out / rel, kinds, beside=False)))
    return plan


def _targets(edf: Path, folder: Path, kinds: Sequence[str], *, beside: bool) -> dict[str, Path]:
    if beside:  # next to the input: never the names of the dataset's own label files
        names = {"csv_bi": f"{edf.stem}.hyp.csv_bi", "tsv": f"{edf.stem}.hyp.tsv"}
    else:
        names = {"csv_bi": f"{edf.stem}.csv_bi", "tsv": tsv_name(edf)}
    return {kind: folder / names[kind] for kind in kinds}


# ----------------------------------------------------------------------------- CLI


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("inputs", type=Path, nargs="+", help="EDF files or folders (TUSZ, BIDS)")
    parser.add_argument("--ckpt", type=Path, required=True, help="training checkpoint (.ckpt)")
    parser.add_argument(
        "--out", type=Path, default=None,
        help="output folder (mirrors the input tree), or one .csv_bi/.tsv file for one EDF; "
        "default for one EDF: <stem>.hyp.csv_bi beside it",
    )  # fmt: skip
    parser.add_argument("--format", choices=FORMATS, default="csv_bi", help="default csv_bi")
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    parser.add_argument(
        "--precision", default=None,
        help="32-true | bf16-mixed | 16-mixed (default: the hardware preset's for the device)",
    )  # fmt: skip
    parser.add_argument(
        "--model", default=None, help="conf/model/ name (default: the config in the checkpoint)"
    )
    parser.add_argument("--stride-s", type=float, default=30.0, help="window stride (s)")
    parser.add_argument("--batch-size", type=int, default=8, help="windows per forward pass")
    parser.add_argument("--tau-on", type=float, default=None, help="hysteresis start threshold")
    parser.add_argument("--tau-off", type=float, default=None, help="hysteresis stop threshold")
    parser.add_argument("--overwrite", action="store_true", help="redo files already written")
    parser.add_argument(
        "--probs", action="store_true", help="also save each probability track (<stem>.probs.npy)"
    )


def _error(message: str) -> int:
    print(f"brain-go-brr detect: error: {message}", file=sys.stderr)
    return 1


def run(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.markup import escape
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    from brain_go_brr.inference import CheckpointError
    from brain_go_brr.io import atomic_save_npy, atomic_write_json

    console = Console(stderr=True, soft_wrap=True)
    try:
        plan = plan_outputs(args.inputs, args.out, args.format)
        detector = Detector(
            args.ckpt, model=args.model, device=args.device, precision=args.precision,
            stride_s=args.stride_s, batch_size=args.batch_size, tau_on=args.tau_on,
            tau_off=args.tau_off,
        )  # fmt: skip
    except (InputError, CheckpointError, ValueError, RuntimeError) as exc:
        return _error(str(exc))
    for warning in detector.warnings:
        console.print(f"[yellow]warning[/yellow] {escape(warning)}")
    console.print(
        f"{len(plan)} recording(s); post-processing: {detector.post_source} (tau_on "
        f"{detector.post.tau_on}, tau_off {detector.post.tau_off}); device "
        f"{detector.torch_device}, autocast {detector.autocast or 'off'}"
    )
    done: list[dict[str, Any]] = []
    skipped: list[dict[str, Any]] = []
    n_existing = 0
    columns = (
        TextColumn("detect"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.description}"),
    )
    with Progress(*columns, console=console, transient=True) as progress:
        task = progress.add_task("", total=len(plan))
        for edf, targets in plan:
            progress.update(task, description=edf.name)
            if not args.overwrite and all(p.exists() for p in targets.values()):
                n_existing += 1
                progress.advance(task)
                continue
            try:
                detection = detector.run(edf)
                if detection.note is not None:
                    skipped.append({"path": str(edf), "reason": detection.note})
                else:
                    write_outputs(detection, targets)
                    if args.probs and detection.prob is not None:
                        first = next(iter(targets.values()))
                        atomic_save_npy(first.with_name(edf.stem + ".probs.npy"), detection.prob)
                    done.append({
                        "path": str(edf), "events": len(detection.events),
                        "duration_s": detection.duration_s, "seconds": round(detection.seconds, 3),
                        "outputs": [str(p) for p in targets.values()],
                    })  # fmt: skip
            except Exception as exc:  # one bad file never stops the run
                reason = (
                    str(exc)
                    if isinstance(exc, InputError)
                    else f"{edf}: {type(exc).__name__}: {exc}"
                )
                skipped.append({"path": str(edf), "reason": reason})
            progress.advance(task)
    for row in done if len(plan) == 1 else []:
        console.print(f"{Path(row['path']).name}: {row['events']} seizure event(s) -> "
                      f"{', '.join(row['outputs'])}")  # fmt: skip
    console.print(
        f"detect: {len(done)} written, {n_existing} already done (skipped; --overwrite redoes "
        f"them), {len(skipped)} skipped for a reason"
    )
    for row in skipped:
        console.print(f"  [yellow]skipped[/yellow] {escape(row['reason'])}")
    if args.out is not None and args.out.suffix not in (".csv_bi", ".tsv"):
        report = {
            "checkpoint": str(args.ckpt), "post_source": detector.post_source,
            "tau_on": detector.post.tau_on, "tau_off": detector.post.tau_off,
            "written": done, "skipped": skipped, "already_done": n_existing,
        }  # fmt: skip
        atomic_write_json(args.out / "detect_report.json", report)
    return 1 if skipped and not done and not n_existing else 0
