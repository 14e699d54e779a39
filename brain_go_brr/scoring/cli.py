"""``brain-go-brr score REF HYP [--json FILE]``: NEDC OVLP/TAES and SzCORE of two annotation sets.

Two kinds of input:

* **SzCORE / BIDS trees**: REF is a folder with ``sub-*`` subfolders holding
  ``*_events.tsv`` files (any depth, as ``szcore-evaluation`` reads them; BIDS sidecars
  ``*_channels.tsv``, ``*_electrodes.tsv`` and ``*_scans.tsv`` are not annotations and are
  left out). Each hypothesis sits at the same path relative to HYP; a missing hypothesis
  counts as no detection, and a hypothesis file that matches no reference is an error.
* **csv_bi**: two folders of ``.csv_bi`` files paired by file name (searched recursively; a
  name must be unique within its folder), or two NEDC-style ``.list`` files with one path per
  line, paired by order (``$VARS`` are expanded, relative paths are resolved against the
  list's folder, blank lines and ``#`` comments are skipped). Every pair is checked first:
  both files parse (malformed rows are reported with file and line), both have a
  ``# duration`` header and the two agree to 4 decimals (NEDC refuses files whose end times
  differ), and no event stops after the stated duration. The subject of a file is its name
  up to the first ``_`` (TUSZ patient id).

Only the seizure label is scored (TUSZ seizure types count as ``seiz``, SzCORE's ``sz`` and
``sz_*`` subtypes as well; ``bckg`` rows are ignored). SzCORE figures are those of the
official scorer (:mod:`brain_go_brr.scoring.szcore`); csv_bi inputs are scored as the
events.tsv files with the same events would be.

Prints tables and, with ``--json``, writes::

    {"input": "tsv" | "csv_bi", "n_records", "duration_s", "missing_hypotheses",
     "ovlp": {"targets", "hits", "misses", "false_alarms", "sensitivity", "fa_per_24h"},
     "taes": {...same keys},
     "szcore_evaluation": {"sample_results": {"sensitivity", "sensitivity_std", "precision",
                           ..., "fpRate", "fpRate_std"}, "event_results": {...}},
     "szcore_evaluation_pooled": {"sample_results": {"sensitivity", "precision", "f1",
                                  "fpRate"}, "event_results": {...}},
     "szcore": {"sensitivity", "precision", "f1", "fp_per_24h"},
     "bootstrap": {...}}

plus the 95 % patient-level bootstrap intervals as ``[low, high]`` (``--bootstrap N``
resamples, 1000 by default, 0 for none): ``sensitivity_ci95`` and ``fa_per_24h_ci95`` of
``ovlp`` and ``taes``, the ``*_ci95`` of ``szcore``, and ``szcore_evaluation_ci95`` /
``szcore_evaluation_pooled_ci95`` in the official structure. ``szcore_evaluation`` is szcore-evaluation's own output (mean and standard deviation over
subjects), ``szcore_evaluation_pooled`` its output with ``avg_per_subject=False``, ``null``
where it gives NaN; ``szcore`` repeats the pooled event-based block under the project's
names. NEDC sensitivities are fractions. Exit status 0, or 2 with one line naming the file,
the problem and the fix.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from brain_go_brr.annotations import (
    Annotation,
    AnnotationError,
    Event,
    read_csv_bi,
    read_events_tsv,
)
from brain_go_brr.io import atomic_write_json
from brain_go_brr.scoring import szcore
from brain_go_brr.scoring.metrics import RecordEvents, score_events

_TOLERANCE_S = 1e-4  # csv_bi times carry 4 decimals


class ScoreInputError(ValueError):
    """Inputs of ``score`` that cannot be paired or scored; the message says which and why."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "ref",
        type=Path,
        help="reference: a BIDS tree of *_events.tsv, a folder of .csv_bi, or a .list",
    )
    parser.add_argument("hyp", type=Path, help="hypothesis: the same kind as REF")
    parser.add_argument("--json", type=Path, default=None, help="write the figures to this file")
    parser.add_argument(
        "--bootstrap", type=int, default=1000, metavar="N",
        help="patient-level bootstrap resamples for the 95 %% intervals (0: none; default 1000)",
    )  # fmt: skip
    parser.add_argument("--bootstrap-seed", type=int, default=0, help="seed of the resamples")


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


# ----------------------------------------------------------------------------- TSV trees

#: BIDS sidecars that are tables but not annotations.
_SIDECARS = ("_channels.tsv", "_electrodes.tsv", "_scans.tsv", "_sessions.tsv")


def is_tsv_tree(folder: Path) -> bool:
    """Is ``folder`` a SzCORE / BIDS tree (it has ``sub-*`` subfolders)?"""
    return folder.is_dir() and any(p.is_dir() for p in folder.glob("sub-*"))


def _annotation_files(subject_dir: Path) -> list[Path]:
    return sorted(
        p for p in subject_dir.rglob("*.tsv") if p.is_file() and not p.name.endswith(_SIDECARS)
    )


def _clipped_seizures(ann: Annotation, duration_s: float) -> list[Event]:
    out = []
    for e in ann.events:
        if e.label == "seiz" and e.start_s < duration_s:
            out.append(Event(e.start_s, min(e.stop_s, duration_s), "seiz", e.confidence))
    return [e for e in out if e.stop_s > e.start_s]


@dataclass
class TsvTrees:
    """Two SzCORE trees, read and paired: NEDC records, SzCORE recordings, and what was off."""

    records: list[RecordEvents]
    recordings: list[szcore.SzcoreRecording]
    missing: list[str]  # reference paths (relative) without a hypothesis
    notes: list[str]  # hypotheses scored as no detection, and why


def load_tsv_trees(ref_root: Path, hyp_root: Path) -> TsvTrees:
    """Read every reference of ``ref_root`` and its hypothesis in ``hyp_root``.

    Raises ScoreInputError (naming the file and the fix) for a reference tree without
    annotation files, an unreadable file, and hypothesis files that match no reference.
    """
    if not hyp_root.is_dir():
        raise ScoreInputError(
            f"{hyp_root}: not a folder; the hypothesis of a BIDS reference tree is a folder "
            "with the same sub-*/.../*_events.tsv paths"
        )
    trees = TsvTrees([], [], [], [])
    seen: set[str] = set()
    subjects = sorted(p for p in ref_root.glob("sub-*") if p.is_dir())
    for subject_dir in subjects:
        files = _annotation_files(subject_dir)
        if not files:
            raise ScoreInputError(
                f"{subject_dir}: no *_events.tsv files in this subject folder; add its "
                "annotations or remove the folder from the reference tree"
            )
        for ref_path in files:
            rel = ref_path.relative_to(ref_root)
            seen.add(rel.as_posix())
            hyp_path = hyp_root / rel
            ref = read_events_tsv(ref_path)
            hyp = read_events_tsv(hyp_path) if hyp_path.is_file() else None
            if hyp is None:
                trees.missing.append(rel.as_posix())
            try:
                recording, note = szcore.recording_from_files(subject_dir.name, ref, hyp)
            except ValueError as exc:
                raise ScoreInputError(str(exc)) from None
            if note:
                trees.notes.append(note)
            duration = float(ref.duration_s)  # type: ignore[arg-type]  # checked above
            hyp_events = _clipped_seizures(hyp, duration) if hyp and recording.hyp else []
            trees.recordings.append(recording)
            ref_events = _clipped_seizures(ref, duration)
            trees.records.append(
                RecordEvents(rel.as_posix(), subject_dir.name, duration, ref_events, hyp_events)
            )
    extra = sorted(
        p.relative_to(hyp_root).as_posix()
        for subject_dir in hyp_root.glob("sub-*")
        if subject_dir.is_dir()
        for p in _annotation_files(subject_dir)
        if p.relative_to(hyp_root).as_posix() not in seen
    )
    if extra:
        raise ScoreInputError(
            f"{hyp_root}: {len(extra)} hypothesis file(s) match no reference "
            f"({', '.join(extra[:3])}{', ...' if len(extra) > 3 else ''}); each hypothesis "
            f"must sit at the same relative path as its reference in {ref_root} (wrong "
            "reference tree, or renamed files?)"
        )
    return trees


def score_tsv_trees(
    ref_root: Path, hyp_root: Path, n_resamples: int = 0, seed: int = 0
) -> tuple[dict[str, object], TsvTrees]:
    """Every figure of the module docstring for two TSV trees, and the trees as read."""
    trees = load_tsv_trees(ref_root, hyp_root)
    result = score_events(
        trees.records, szcore_recordings=trees.recordings, n_resamples=n_resamples, seed=seed
    )
    return {"input": "tsv", "missing_hypotheses": len(trees.missing), **result}, trees


def _fmt(value: object, pct: bool = False) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    if pct:
        return f"{100 * float(value):.4f} %"  # type: ignore[arg-type]
    return f"{float(value):.4f}".rstrip("0").rstrip(".")  # type: ignore[arg-type]


def _mean_std(block: dict, key: str, ci: list[float] | None = None) -> str:
    text = _fmt(block.get(key))
    std = block.get(f"{key}_std")
    if std is not None:
        text += f" ± {_fmt(std)}"
    if ci:
        text += f" [{_fmt(ci[0])}, {_fmt(ci[1])}]"
    return text


def szcore_table(result: dict) -> Any:
    """The official SzCORE figures of a result as a rich table (fractions, FP per 24 h), with
    their 95 % intervals where the result has them (evaluation)."""
    from rich.table import Table

    table = Table(
        title="SzCORE (szcore-evaluation 0.0.7 figures): 30 s / 60 s tolerance, merge < 90 s, "
        "split > 300 s"
    )
    for col in ("scoring", "averaging", "sensitivity", "precision", "F1", "FP/24h"):
        table.add_column(col, justify="left" if col in ("scoring", "averaging") else "right")
    for key, label in (("szcore_evaluation", "subjects: mean ± sd"),
                       ("szcore_evaluation_pooled", "pooled")):  # fmt: skip
        for mode in ("event", "sample"):
            block = result[key][f"{mode}_results"]
            cis = (result.get(f"{key}_ci95") or {}).get(f"{mode}_results") or {}
            metrics = ("sensitivity", "precision", "f1", "fpRate")
            table.add_row(
                f"{mode}-based", label, *(_mean_std(block, k, cis.get(k)) for k in metrics)
            )
    return table


def print_table(result: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    hours = result["duration_s"] / 3600
    nedc_table = Table(title=f"NEDC v6.0.0, seiz: {result['n_records']} records, {hours:.2f} h")
    for col in ("scorer", "targets", "hits", "misses", "false alarms", "sensitivity", "FA/24h"):
        nedc_table.add_column(col, justify="left" if col == "scorer" else "right")
    for name in ("ovlp", "taes"):
        r = result[name]
        sens_ci, fa_ci = r.get("sensitivity_ci95"), r.get("fa_per_24h_ci95")
        nedc_table.add_row(
            name.upper(),
            *(_fmt(r[k]) for k in ("targets", "hits", "misses", "false_alarms")),
            _fmt(r["sensitivity"], pct=True)
            + (f" [{100 * sens_ci[0]:.1f}, {100 * sens_ci[1]:.1f}]" if sens_ci else ""),
            _fmt(r["fa_per_24h"]) + (f" [{_fmt(fa_ci[0])}, {_fmt(fa_ci[1])}]" if fa_ci else ""),
        )
    console = Console()
    console.print(nedc_table)
    console.print(szcore_table(result))
    boot = result.get("bootstrap")
    if boot:
        console.print(
            f"In brackets: 95 % intervals, patient-level bootstrap ({boot['n_resamples']} "
            f"resamples of {boot['n_subjects']} subjects, seed {boot['seed']})"
        )


def run(args: argparse.Namespace) -> int:
    try:
        if is_tsv_tree(args.ref):
            result, trees = score_tsv_trees(args.ref, args.hyp, args.bootstrap, args.bootstrap_seed)
            for note in trees.notes:
                print(f"brain-go-brr score: warning: {note}", file=sys.stderr)
            if trees.missing:
                print(
                    f"brain-go-brr score: {len(trees.missing)} of {len(trees.records)} "
                    f"references have no hypothesis in {args.hyp} (counted as no detection), "
                    f"e.g. {trees.missing[0]}",
                    file=sys.stderr,
                )
        else:
            if args.ref.is_dir() and (args.ref / "dataset_description.json").exists():
                raise ScoreInputError(
                    f"{args.ref}: a BIDS dataset without sub-* folders; the reference tree "
                    "needs sub-*/.../*_events.tsv files"
                )
            records = load_pairs(pair_inputs(args.ref, args.hyp))
            scored = score_events(records, n_resamples=args.bootstrap, seed=args.bootstrap_seed)
            result = {"input": "csv_bi", "missing_hypotheses": 0, **scored}
    except (ScoreInputError, AnnotationError, ValueError, OSError) as exc:
        print(f"brain-go-brr score: error: {exc}", file=sys.stderr)
        return 2
    print_table(result)
    if args.json is not None:
        atomic_write_json(args.json, result)
        print(f"wrote {args.json}")
    return 0
