"""TUSZ / NEDC annotation files: reading ``.csv_bi`` and ``.csv``, writing ``.csv_bi``.

One reader for everything that consumes labels (the cache builder, ``brain-go-brr score``,
evaluation), so a quirk is handled once. Times stay in seconds here.

``.csv_bi`` (whole-record rows)::

    # version = csv_v1.0.0
    # bname = aaaaaasf_s001_t000
    # duration = 1289.0000 secs
    # montage_file = nedc_eas_default_montage.txt
    #
    channel,start_time,stop_time,label,confidence
    TERM,42.2786,81.7760,seiz,1.0000

``.csv`` has the same header and one row per channel (``FP1-F7,...,fnsz,1.0000``) with the
seizure type as label; the record's seizure events are the union over channels of every
seizure-type row.
"""

from __future__ import annotations

import functools
import itertools
import math
import operator
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

from brain_go_brr.io import atomic_write_text

#: Every seizure label of TUSZ v2.0.3 (mysz is rare and easy to forget).
SEIZURE_LABELS: frozenset[str] = frozenset(
    {"seiz", "fnsz", "gnsz", "spsz", "cpsz", "absz", "tnsz", "cnsz", "tcsz", "atsz", "mysz"}
)
BACKGROUND_LABELS: frozenset[str] = frozenset({"bckg"})
_KNOWN_LABELS = SEIZURE_LABELS | BACKGROUND_LABELS  # already canonical: no strip/lower needed
_HEADER = ("channel", "start_time", "stop_time", "label", "confidence")
_HEADER_LINE = ",".join(_HEADER)
_DURATION_RE = re.compile(r"^#\s*duration\s*=\s*([0-9.eE+-]+)\s*(secs?)?\s*$")


class AnnotationError(ValueError):
    """A malformed annotation file; the message names the file, the line and the fix."""


class Event(NamedTuple):
    """One labelled interval in seconds from the start of the recording.

    A named tuple rather than a dataclass: scoring creates tens of thousands of them, and a
    tuple is built three times faster (immutable, hashable and ordered all the same).
    """

    start_s: float
    stop_s: float
    label: str = "seiz"
    confidence: float = 1.0

    @property
    def duration_s(self) -> float:
        return self.stop_s - self.start_s


# Event._make without its Python frame: the column-wise reader builds thousands at once.
_new_event = functools.partial(tuple.__new__, Event)


@dataclass
class Annotation:
    """The parsed contents of one annotation file.

    ``events`` holds every row as read (all labels, file order); ``duration_s`` is the
    ``# duration`` header value, or ``None`` when the file has none.
    """

    path: Path
    duration_s: float | None
    events: list[Event] = field(default_factory=list)
    bname: str | None = None

    def seizures(self) -> list[Event]:
        """Seizure events (any seizure type), overlapping ones merged, in time order, label ``seiz``."""
        return merge_events([e for e in self.events if e.label in SEIZURE_LABELS])


def merge_events(events: list[Event], label: str = "seiz") -> list[Event]:
    """Union of intervals: overlapping or touching events become one, sorted by start."""
    spans = sorted((e.start_s, e.stop_s, e.confidence) for e in events)
    merged: list[list[float]] = []
    for start, stop, conf in spans:
        if merged and start <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], stop)
            merged[-1][2] = max(merged[-1][2], conf)
        else:
            merged.append([start, stop, conf])
    return [Event(a, b, label, c) for a, b, c in merged]


def _read_text(path: Path) -> str:
    """The text of ``path``, read with ``os.read`` and decoded once.

    A buffered text file costs twice as much, which counts when scoring reads thousands of
    small files.
    """
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        raise AnnotationError(f"{path}: annotation file not found") from None
    try:
        chunks = []
        while chunk := os.read(fd, 1 << 20):
            chunks.append(chunk)
    finally:
        os.close(fd)
    try:
        return b"".join(chunks).decode("utf-8")
    except UnicodeDecodeError as exc:
        raise AnnotationError(
            f"{path}: not a text annotation file ({exc.reason} at byte {exc.start}); "
            "expected NEDC csv_v1.0.0 text"
        ) from None


def _rows_columnwise(lines: list[str], per_channel: bool) -> list[Event] | None:
    """Events of ``lines`` when every one is a well-formed row, else ``None``.

    Column-wise, so the per-row work runs in C (``map``, ``zip``); it accepts only what the
    line-by-line loop of :func:`_parse` would read to the same events. Anything else (a
    comment or blank line among the rows, a bad field, a channel other than exactly
    ``TERM`` in a csv_bi) returns ``None``, and that loop reads the rows again and names
    the offending line.
    """
    rows = list(map(str.split, lines, itertools.repeat(",")))
    if set(map(len, rows)) != {5}:
        return None
    channels, start_txt, stop_txt, labels, conf_txt = zip(*rows, strict=True)
    if per_channel:
        if "#" in "".join(channels):  # a commented-out row
            return None
    elif channels.count("TERM") != len(channels):
        return None
    try:
        starts = list(map(float, start_txt))
        stops = list(map(float, stop_txt))
        confs = list(map(float, conf_txt))
    except ValueError:
        return None
    # NaN fails the first or second test; with times >= 0, one infinite start + stop makes
    # the total infinite
    if not (
        min(starts) >= 0
        and all(map(operator.le, starts, stops))
        and math.isfinite(sum(starts) + sum(stops))
    ):
        return None
    if not _KNOWN_LABELS.issuperset(labels):
        labels = tuple(lab if lab in _KNOWN_LABELS else lab.strip().lower() for lab in labels)
    return list(map(_new_event, zip(starts, stops, labels, confs, strict=True)))


def _parse(path: Path, *, per_channel: bool) -> Annotation:
    lines = _read_text(path).splitlines()
    duration: float | None = None
    bname: str | None = None
    events: list[Event] = []
    header_seen = columnwise_tried = False
    for lineno, raw in enumerate(lines, start=1):
        line = raw.strip()
        if not line:
            continue
        if line[0] == "#":
            m = _DURATION_RE.match(line) if "duration" in line else None
            if m:
                try:
                    duration = float(m.group(1))
                except ValueError:
                    raise AnnotationError(
                        f"{path}:{lineno}: unreadable duration {line!r}; "
                        "expected '# duration = 1289.0000 secs'"
                    ) from None
            elif "bname" in line and line.lstrip("# ").startswith("bname"):
                bname = line.split("=", 1)[-1].strip() or None
            continue
        if not header_seen and (
            line == _HEADER_LINE or tuple(f.strip().lower() for f in line.split(",")) == _HEADER
        ):
            header_seen = True
            continue
        if not columnwise_tried:  # the first row: the usual file is nothing but rows from here on
            columnwise_tried = True
            columnwise = _rows_columnwise(lines[lineno - 1 :], per_channel)
            if columnwise is not None:
                events = columnwise
                break
        # One row at a time, so that an error names its line (no per-field strip: float()
        # ignores spaces).
        fields = line.split(",")
        if len(fields) != 5:
            raise AnnotationError(
                f"{path}:{lineno}: expected 5 comma-separated fields "
                f"(channel,start_time,stop_time,label,confidence), found {len(fields)}: {line!r}"
            )
        channel, start_txt, stop_txt, label, conf_txt = fields
        try:
            start, stop, conf = float(start_txt), float(stop_txt), float(conf_txt)
        except ValueError:
            raise AnnotationError(
                f"{path}:{lineno}: start, stop and confidence must be numbers, got {line!r}"
            ) from None
        if not math.isfinite(start + stop) or start < 0:  # a NaN or inf makes the sum non-finite
            raise AnnotationError(
                f"{path}:{lineno}: times must be finite and non-negative, got {line!r}"
            )
        if stop < start:
            raise AnnotationError(
                f"{path}:{lineno}: stop_time {stop} is before start_time {start}; "
                "fix or delete the row"
            )
        if not per_channel and channel != "TERM" and channel.strip().upper() != "TERM":
            raise AnnotationError(
                f"{path}:{lineno}: csv_bi rows must use channel TERM, got {channel!r} "
                "(per-channel files end in .csv)"
            )
        if label not in _KNOWN_LABELS:
            label = label.strip().lower()
        events.append(Event(start, stop, label, conf))
    if duration is not None and (not math.isfinite(duration) or duration <= 0):
        raise AnnotationError(f"{path}: duration header must be positive, got {duration}")
    return Annotation(path=path, duration_s=duration, events=events, bname=bname)


def read_csv_bi(path: str | os.PathLike[str]) -> Annotation:
    """Parse a whole-record ``.csv_bi`` file (rows on channel ``TERM``)."""
    return _parse(path if isinstance(path, Path) else Path(path), per_channel=False)


def read_csv(path: str | os.PathLike[str]) -> Annotation:
    """Parse a per-channel ``.csv`` file; use :meth:`Annotation.seizures` for the union."""
    return _parse(path if isinstance(path, Path) else Path(path), per_channel=True)


def read_labels(edf_path: str | os.PathLike[str]) -> Annotation:
    """The labels of a TUSZ recording: its ``.csv_bi``, falling back to its ``.csv``."""
    edf_path = Path(edf_path)
    bi, per_channel = edf_path.with_suffix(".csv_bi"), edf_path.with_suffix(".csv")
    if bi.exists():
        return read_csv_bi(bi)
    if per_channel.exists():
        return read_csv(per_channel)
    raise AnnotationError(
        f"{edf_path}: no annotation file; expected {bi.name} or {per_channel.name} beside it"
    )


def format_csv_bi(
    events: list[Event],
    duration_s: float,
    bname: str,
    *,
    fill_background: bool = True,
    montage_file: str = "nedc_eas_default_montage.txt",
) -> str:
    """Text of a ``.csv_bi`` file that NEDC EEG Eval v6.0.0 reads unchanged.

    Seizure events are written as ``seiz`` rows; with ``fill_background`` the gaps become
    ``bckg`` rows so the file covers ``[0, duration_s]`` as NEDC's own files do.
    """
    seiz = merge_events([e for e in events if e.label in SEIZURE_LABELS])
    rows: list[tuple[float, float, str, float]] = []
    cursor = 0.0
    for e in seiz:
        start, stop = max(0.0, e.start_s), min(duration_s, e.stop_s)
        if stop <= start:
            continue
        if fill_background and start > cursor:
            rows.append((cursor, start, "bckg", 1.0))
        rows.append((start, stop, "seiz", e.confidence))
        cursor = stop
    if fill_background and cursor < duration_s:
        rows.append((cursor, duration_s, "bckg", 1.0))
    lines = [
        "# version = csv_v1.0.0",
        f"# bname = {bname}",
        f"# duration = {duration_s:.4f} secs",
        f"# montage_file = {montage_file}",
        "#",
        ",".join(_HEADER),
    ]
    lines += [f"TERM,{a:.4f},{b:.4f},{lab},{c:.4f}" for a, b, lab, c in rows]
    return "\n".join(lines) + "\n"


def write_csv_bi(
    path: str | os.PathLike[str],
    events: list[Event],
    duration_s: float,
    *,
    fill_background: bool = True,
) -> None:
    """Write :func:`format_csv_bi` atomically; ``bname`` is the file's stem."""
    path = Path(path)
    atomic_write_text(
        path, format_csv_bi(events, duration_s, path.stem, fill_background=fill_background)
    )
