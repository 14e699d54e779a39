"""Hypothesis files for the two scorers the field runs.

* csv_bi for NEDC EEG Eval v6.0.0: :func:`write_hyp_csv_bi`, the format of NEDC's own demo
  hypothesis files (``TERM`` rows, ``bckg`` filling the gaps, 4 decimals, ``# duration``
  header). It is :func:`brain_go_brr.annotations.write_csv_bi`: one writer for every csv_bi.
  NEDC joins touching events of a label, and so does the writer.
* BIDS ``*_events.tsv`` as SzCORE (EpilepsyBench) reads it: :func:`write_events_tsv`, tab
  separated, columns ``onset duration eventType confidence channels dateTime
  recordingDuration``; seizures have ``eventType`` ``sz``, a recording without any has one
  ``bckg`` row covering it; times with 2 decimals, ``dateTime`` as ``YYYY-MM-DD HH:MM:SS``.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path

from brain_go_brr.annotations import (
    EVENTS_TSV_COLUMNS,
    Event,
    events_tsv_rows,
    write_csv_bi,
)
from brain_go_brr.io import atomic_write_text


def write_hyp_csv_bi(
    path: str | os.PathLike[str], events: Sequence[Event], duration_s: float
) -> None:
    """A hypothesis ``.csv_bi`` that NEDC v6.0.0 scores unchanged (atomic write)."""
    write_csv_bi(path, list(events), duration_s, fill_background=True)


def format_events_tsv(
    events: Sequence[Event],
    duration_s: float,
    *,
    date_time: datetime | None = None,
    channels: str = "n/a",
) -> str:
    """Text of a SzCORE ``*_events.tsv``; ``date_time`` is the recording's start (EDF header).

    Without ``date_time`` the column holds ``1970-01-01 00:00:00`` (SzCORE requires a value
    and does not score it).
    """
    stamp = (date_time or datetime(1970, 1, 1)).strftime("%Y-%m-%d %H:%M:%S")
    rows, recording = events_tsv_rows(list(events), duration_s)
    lines = ["\t".join(EVENTS_TSV_COLUMNS)]
    lines += [
        f"{onset}\t{dur}\t{kind}\t{conf}\t{channels}\t{stamp}\t{recording}"
        for onset, dur, kind, conf in rows
    ]
    return "\n".join(lines) + "\n"


def write_events_tsv(
    path: str | os.PathLike[str],
    events: Sequence[Event],
    duration_s: float,
    *,
    date_time: datetime | None = None,
    channels: str = "n/a",
) -> None:
    """Write :func:`format_events_tsv` atomically; the name should end in ``_events.tsv``."""
    path = Path(path)
    if not path.name.endswith("_events.tsv"):
        raise ValueError(f"{path}: SzCORE expects BIDS event files named '*_events.tsv'")
    atomic_write_text(
        path, format_events_tsv(events, duration_s, date_time=date_time, channels=channels)
    )
