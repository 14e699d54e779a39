"""Annotation files: TUSZ / NEDC ``.csv_bi`` and ``.csv``, and BIDS / SzCORE ``*_events.tsv``.

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

``*_events.tsv`` (BIDS, as SzCORE and ``epilepsy2bids`` write it; tab separated)::

    onset	duration	eventType	confidence	channels	dateTime	recordingDuration
    42.28	39.50	sz_foc_ia	n/a	n/a	2003-04-05 10:11:12	1289.00

``eventType`` is ``bckg`` or a seizure: ``sz`` or one of its HED-SCORE subtypes (``sz_foc``,
``sz_gen_m_tonicClonic``, ...). :func:`read_events_tsv` gives seizure rows the label
``seiz`` (so every consumer sees one seizure label) with ``stop_s = onset + duration`` as the
numbers add up, and takes the recording's duration from the first row's
``recordingDuration``, as the official SzCORE scorer does.
"""

from __future__ import annotations

import contextlib
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
#: Columns of a SzCORE / BIDS ``*_events.tsv``, in order.
EVENTS_TSV_COLUMNS: tuple[str, ...] = (
    "onset",
    "duration",
    "eventType",
    "confidence",
    "channels",
    "dateTime",
    "recordingDuration",
)
#: The columns scoring and labelling need (the others may be absent).
_TSV_REQUIRED = ("onset", "duration", "eventType", "recordingDuration")
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


def events_tsv_path(edf_path: str | os.PathLike[str]) -> Path | None:
    """``..._eeg.edf`` -> its BIDS ``..._events.tsv`` beside it; ``None`` for other names."""
    edf_path = Path(edf_path)
    if not edf_path.name.endswith("_eeg.edf"):
        return None
    return edf_path.with_name(edf_path.name[: -len("_eeg.edf")] + "_events.tsv")


def read_labels(edf_path: str | os.PathLike[str]) -> Annotation:
    """The labels of a recording: a BIDS ``*_eeg.edf`` its ``*_events.tsv``; a TUSZ EDF its
    ``.csv_bi``, falling back to its ``.csv``."""
    edf_path = Path(edf_path)
    tsv = events_tsv_path(edf_path)
    if tsv is not None and tsv.exists():
        return read_events_tsv(tsv)
    bi, per_channel = edf_path.with_suffix(".csv_bi"), edf_path.with_suffix(".csv")
    if bi.exists():
        return read_csv_bi(bi)
    if per_channel.exists():
        return read_csv(per_channel)
    expected = (
        f"{tsv.name}, {bi.name} or {per_channel.name}"
        if tsv
        else f"{bi.name} or {per_channel.name}"
    )
    raise AnnotationError(f"{edf_path}: no annotation file; expected {expected} beside it")


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


# ----------------------------------------------------------------------------- events.tsv


def is_seizure_event_type(event_type: str) -> bool:
    """``sz`` and every HED-SCORE seizure subtype (``sz_foc_ia``, ``sz_gen``, ...)."""
    return event_type == "sz" or event_type.startswith("sz_")


def _tsv_number(path: Path, lineno: int, column: str, text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or value < 0:
        raise AnnotationError(
            f"{path}:{lineno}: {column} must be a non-negative number of seconds, got {text!r}; "
            "fix the row (SzCORE writes seconds with 2 decimals)"
        )
    return value


def read_events_tsv(path: str | os.PathLike[str]) -> Annotation:
    """Parse a BIDS / SzCORE ``*_events.tsv`` (see the module docstring).

    ``duration_s`` is the first row's ``recordingDuration`` (``None`` for a file with a
    header and no rows); ``events`` hold every row, seizures labelled ``seiz`` and
    background ``bckg``, confidence 1.0 where it is ``n/a``.

    Raises:
        AnnotationError: a missing column, a row with the wrong number of fields, an unknown
            ``eventType``, or a seizure onset/duration or ``recordingDuration`` that is not a
            non-negative number; the message names the file, the line and the fix.
    """
    path = path if isinstance(path, Path) else Path(path)
    text = _read_text(path)
    if text.startswith("\ufeff"):
        text = text[1:]
    lines = [(n, line) for n, line in enumerate(text.splitlines(), start=1) if line.strip()]
    if not lines:
        raise AnnotationError(
            f"{path}: empty file; an events.tsv needs the header "
            f"{' '.join(EVENTS_TSV_COLUMNS)} (tab separated) and one row per event, or one "
            "bckg row covering a recording without seizures"
        )
    header = [name.strip() for name in lines[0][1].split("\t")]
    missing = [c for c in _TSV_REQUIRED if c not in header]
    if missing:
        hint = " (the file is not tab separated)" if len(header) == 1 else ""
        raise AnnotationError(
            f"{path}: missing column(s) {', '.join(missing)}{hint} (found: {', '.join(header)}); "
            f"SzCORE events files have the tab-separated columns {' '.join(EVENTS_TSV_COLUMNS)}"
        )
    col = {name: header.index(name) for name in (*_TSV_REQUIRED, "confidence")
           if name in header}  # fmt: skip
    events: list[Event] = []
    duration: float | None = None
    for lineno, line in lines[1:]:
        fields = [f.strip() for f in line.split("\t")]
        if len(fields) != len(header):
            raise AnnotationError(
                f"{path}:{lineno}: {len(fields)} tab-separated fields, the header has "
                f"{len(header)}; fix the row (a value with spaces instead of a tab?)"
            )
        if duration is None:
            duration = _tsv_number(
                path, lineno, "recordingDuration", fields[col["recordingDuration"]]
            )
            if duration <= 0:
                raise AnnotationError(
                    f"{path}:{lineno}: recordingDuration must be positive, got "
                    f"{fields[col['recordingDuration']]!r}; write the recording's length in s"
                )
        kind = fields[col["eventType"]]
        if kind == "bckg":
            label = "bckg"
        elif is_seizure_event_type(kind):
            label = "seiz"
        else:
            raise AnnotationError(
                f"{path}:{lineno}: unknown eventType {kind!r}; SzCORE events are 'bckg', 'sz' "
                "or a HED-SCORE seizure subtype such as 'sz_foc_ia' (TUSZ's 'seiz' is 'sz')"
            )
        conf = 1.0
        if "confidence" in col:
            with contextlib.suppress(ValueError):
                conf = float(fields[col["confidence"]])
        if label == "seiz":
            onset = _tsv_number(path, lineno, "onset", fields[col["onset"]])
            length = _tsv_number(path, lineno, "duration", fields[col["duration"]])
            events.append(Event(onset, onset + length, label, conf))
        else:
            onset_txt, length_txt = fields[col["onset"]], fields[col["duration"]]
            try:
                onset, length = float(onset_txt), float(length_txt)
            except ValueError:  # a background row's times are not scored
                onset, length = 0.0, duration
            events.append(Event(onset, onset + length, label, conf))
    return Annotation(path=path, duration_s=duration, events=events, bname=None)


def events_tsv_rows(
    events: list[Event] | tuple[Event, ...], duration_s: float
) -> tuple[list[tuple[str, str, str, str]], str]:
    """The rows an events.tsv writer puts down for seizure ``events`` of a recording.

    Returns ``([(onset, duration, eventType, confidence), ...], recordingDuration)`` as
    text with 2 decimals: seizures clipped to ``[0, duration_s]`` as ``sz`` rows in time
    order, or one ``bckg`` row covering the recording when there is none. Scoring events
    that never went through a file (:mod:`brain_go_brr.scoring.szcore`) reads these same
    numbers back, so it gives what the official scorer gives on the written file.
    """
    rows = []
    for e in sorted(e for e in events if e.label in SEIZURE_LABELS):
        start, stop = max(0.0, e.start_s), min(duration_s, e.stop_s)
        if stop > start:
            rows.append((f"{start:.2f}", f"{stop - start:.2f}", "sz", f"{e.confidence:.2f}"))
    if not rows:
        rows.append(("0.00", f"{duration_s:.2f}", "bckg", "n/a"))
    return rows, f"{duration_s:.2f}"
