"""``brain-go-brr score REF HYP [--json FILE]``: NEDC OVLP/TAES and SzCORE of csv_bi files.

REF and HYP are either two folders of ``.csv_bi`` files, paired by file name (searched
recursively; a name must be unique within its folder), or two NEDC-style ``.list`` files
with one path per line, paired by order (``$VARS`` are expanded, relative paths are
resolved against the list's folder, blank lines and ``#`` comments are skipped).

Every pair is checked before scoring: both files parse (malformed rows are reported with
file and line), both have a ``# duration`` header and the two agree to 4 decimals (NEDC
refuses files whose end times differ), and no event stops after the stated duration. Only
the seizure label is scored (TUSZ seizure types count as ``seiz``; ``bckg`` rows are
ignored). The subject of a file is its name up to the first ``_`` (TUSZ patient id).

Prints a table and, with ``--json``, writes::

    {"n_records", "duration_s",
     "ovlp": {"targets", "hits", "misses", "false_alarms", "sensitivity", "fa_per_24h"},
     "taes": {...same keys}, "szcore": {"sensitivity", "precision", "f1", "fp_per_24h"},
     "szcore_per_subject": {...same keys}}

with sensitivities as fractions. Exit status 0, or 2 with a message naming the file.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
from pathlib import Path

from brain_go_brr.annotations import Annotation, AnnotationError, Event, read_csv_bi
from brain_go_brr.evaluation.metrics import RecordEvents, score_events
from brain_go_brr.io import atomic_write_json

_TOLERANCE_S = 1e-4  # csv_bi times carry 4 decimals


class ScoreInputError(ValueError):
    """Inputs of ``score`` that cannot be paired or scored; the message says which and why."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("ref", type=Path, help="reference: folder of .csv_bi files or a .list")
    parser.add_argument("hyp", type=Path, help="hypothesis: folder of .csv_bi files or a .list")
    parser.add_argument("--json", type=Path, default=None, help="write the figures to this file")


def _read_list(path: Path) -> list[Path]:
    out = []
    for lineno, raw in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        expanded = os.path.expandvars(line)
        if "$" in expanded:
            raise ScoreInputError(
                f"{path}:{lineno}: unset environment variable in {line!r}; export it "
                "(e.g. NEDC_NFC) or write the path relative to the list"
            )
        entry = Path(expanded)
        out.append(entry if entry.is_absolute() else path.parent / entry)
    return out


def _folder_files(folder: Path) -> dict[str, Path]:
    files: dict[str, Path] = {}
    for path in sorted(folder.rglob("*.csv_bi")):
        if path.name in files:
            raise ScoreInputError(
                f"{folder}: file name {path.name} occurs twice ({files[path.name]} and {path}); "
                "pairing is by file name, so names must be unique"
            )
        files[path.name] = path
    return files


def pair_inputs(ref: Path, hyp: Path) -> list[tuple[Path, Path]]:
    """(reference, hypothesis) file pairs from two folders or two ``.list`` files."""
    for p in (ref, hyp):
        if not p.exists():
            raise ScoreInputError(f"{p}: not found; give a folder of .csv_bi files or a .list")
    if ref.is_dir() and hyp.is_dir():
        refs, hyps = _folder_files(ref), _folder_files(hyp)
        only_ref, only_hyp = sorted(refs.keys() - hyps), sorted(hyps.keys() - refs)
        if only_ref or only_hyp:
            raise ScoreInputError(
                f"unpaired files: {len(only_ref)} only in {ref} ({', '.join(only_ref[:5])}) and "
                f"{len(only_hyp)} only in {hyp} ({', '.join(only_hyp[:5])}); every reference "
                "needs a hypothesis file of the same name (write an empty hypothesis for a "
                "record without detections)"
            )
        if not refs:
            raise ScoreInputError(f"{ref}: no .csv_bi files found")
        return [(refs[name], hyps[name]) for name in sorted(refs)]
    if ref.is_file() and hyp.is_file():
        refs_l, hyps_l = _read_list(ref), _read_list(hyp)
        if len(refs_l) != len(hyps_l):
            raise ScoreInputError(
                f"{ref} lists {len(refs_l)} files but {hyp} lists {len(hyps_l)}; .list files "
                "are paired line by line and must have the same length"
            )
        if not refs_l:
            raise ScoreInputError(f"{ref}: the list is empty")
        return list(zip(refs_l, hyps_l, strict=True))
    raise ScoreInputError(f"{ref} and {hyp}: give two folders of .csv_bi files or two .list files")


def _line_of(path: Path, event: Event) -> int:
    """Line number of ``event``'s row in ``path`` (for error messages)."""
    for lineno, raw in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        fields = [f.strip() for f in raw.split(",")]
        if len(fields) == 5 and not raw.lstrip().startswith("#"):
            try:
                if float(fields[1]) == event.start_s and float(fields[2]) == event.stop_s:
                    return lineno
            except ValueError:
                continue
    return 0


def _check(ann: Annotation) -> float:
    if ann.duration_s is None:
        raise ScoreInputError(
            f"{ann.path}: no '# duration = ... secs' header; NEDC needs the recording "
            "duration to fill background and to compute false alarms per 24 h"
        )
    for event in ann.events:
        if event.stop_s > ann.duration_s + _TOLERANCE_S:
            raise ScoreInputError(
                f"{ann.path}:{_line_of(ann.path, event)}: event {event.start_s}..{event.stop_s} s "
                f"stops after the stated duration {ann.duration_s} s; clip it or fix the header"
            )
    return ann.duration_s


def load_pairs(pairs: list[tuple[Path, Path]]) -> list[RecordEvents]:
    """Read and check every pair (see the module docstring)."""
    records = []
    for ref_path, hyp_path in pairs:
        for p in (ref_path, hyp_path):
            if not p.is_file():
                raise ScoreInputError(f"{p}: listed but not found")
        ref, hyp = read_csv_bi(ref_path), read_csv_bi(hyp_path)
        ref_dur, hyp_dur = _check(ref), _check(hyp)
        if round(ref_dur, 4) != round(hyp_dur, 4):
            raise ScoreInputError(
                f"{hyp_path}: duration {hyp_dur} s disagrees with its reference {ref_path} "
                f"({ref_dur} s); the hypothesis must describe the same recording"
            )
        stem = ref_path.stem
        records.append(RecordEvents(stem, stem.split("_")[0], ref_dur, ref.events, hyp.events))
    return records


def _fmt(value: object, pct: bool = False) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    if pct:
        return f"{100 * float(value):.4f} %"  # type: ignore[arg-type]
    return f"{float(value):.4f}".rstrip("0").rstrip(".")  # type: ignore[arg-type]


def print_table(result: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    hours = result["duration_s"] / 3600
    nedc_table = Table(title=f"NEDC v6.0.0, seiz: {result['n_records']} records, {hours:.2f} h")
    for col in ("scorer", "targets", "hits", "misses", "false alarms", "sensitivity", "FA/24h"):
        nedc_table.add_column(col, justify="left" if col == "scorer" else "right")
    for name in ("ovlp", "taes"):
        r = result[name]
        nedc_table.add_row(
            name.upper(),
            *(_fmt(r[k]) for k in ("targets", "hits", "misses", "false_alarms")),
            _fmt(r["sensitivity"], pct=True),
            _fmt(r["fa_per_24h"]),
        )
    sz_table = Table(
        title="SzCORE (timescoring): 30 s / 60 s tolerance, merge < 90 s, split > 300 s"
    )
    for col in ("averaging", "sensitivity", "precision", "F1", "FP/24h"):
        sz_table.add_column(col, justify="left" if col == "averaging" else "right")
    for name, label in (("szcore", "pooled"), ("szcore_per_subject", "per subject")):
        r = result[name]
        sz_table.add_row(
            label,
            *(_fmt(r[k], pct=True) for k in ("sensitivity", "precision", "f1")),
            _fmt(r["fp_per_24h"]),
        )
    console = Console()
    console.print(nedc_table)
    console.print(sz_table)


def run(args: argparse.Namespace) -> int:
    try:
        records = load_pairs(pair_inputs(args.ref, args.hyp))
        result = score_events(records)
    except (ScoreInputError, AnnotationError, ValueError) as exc:
        print(f"brain-go-brr score: error: {exc}", file=sys.stderr)
        return 2
    print_table(result)
    if args.json is not None:
        atomic_write_json(args.json, result)
        print(f"wrote {args.json}")
    return 0
