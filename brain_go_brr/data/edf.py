"""Reading one TUSZ EDF file into the 19 channels of ``channels.CHANNELS``.

What TUSZ throws at a reader, and what this module does about it:

- Channel labels differ by montage (``EEG FP1-REF`` in ``01_tcp_ar`` / ``03_tcp_ar_a``,
  ``EEG FP1-LE`` in ``02_tcp_le``) and by naming era (``T7`` for ``T3``); they are mapped with
  :func:`brain_go_brr.data.channels.canonical_name` and the configured aliases.
- Files carry 17-128 channels (EKG, PHOTIC, EMG, ...); only the 19 needed are read.
- About 249 files lack Fz and Pz: those are interpolated with spherical splines from the other
  17 electrodes (mne's standard 10-20 positions) and listed in ``interpolated``. Any other missing
  channel skips the record.
- One eval file (``aaaaaaaq_s007_t000.edf``) has the start date ``01:01:85``, which strict EDF
  readers reject: the fixed header is checked here first, and a malformed date or time is
  repaired in an in-memory copy of the file before the read (recorded in ``warnings``).
- Truncated files, files that are not EDF at all, NaN values and flat channels are refused with
  :class:`RecordSkipped`, whose ``reason`` names the file, the problem and the fix.

The header is parsed here (256 + 256 * n_signals bytes, cheap) so that those checks run before
any sample is read; the samples themselves are read by ``mne.io.read_raw_edf``.
"""

from __future__ import annotations

import datetime
import io
import logging
import re
import warnings
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import mne
import numpy as np

from brain_go_brr.data.channels import CHANNELS, DEFAULT_ALIASES, bipolar_labels, map_channels

log = logging.getLogger(__name__)

_FIXED_HEADER_BYTES = 256
_BYTES_PER_SIGNAL_HEADER = 256
_DATE_RE = re.compile(r"^(\d\d)\D(\d\d)\D(\d\d)$")
_DEFAULT_DATE = "01.01.85"  # EDF's own convention for an unknown start date
_DEFAULT_TIME = "00.00.00"


class RecordSkipped(Exception):
    """A recording that cannot be used; ``reason`` names the file, the problem and the fix.

    ``unreadable`` is True when the file itself cannot be read as EDF (not an EDF, truncated,
    unreadable samples), False when it reads but holds nothing the model can use (a bipolar
    montage, missing electrodes, flat or NaN channels).
    """

    def __init__(self, reason: str, *, unreadable: bool = False) -> None:
        super().__init__(reason)
        self.reason = reason
        self.unreadable = unreadable


def _unreadable(reason: str) -> RecordSkipped:
    return RecordSkipped(reason, unreadable=True)


@dataclass(frozen=True)
class EdfHeader:
    """The parts of an EDF header the reader checks (all sizes in bytes, times in seconds)."""

    path: Path
    labels: tuple[str, ...]  # one per signal, stripped
    samples_per_record: tuple[int, ...]  # one per signal
    n_records: int  # after inferring an unknown (-1) count from the file size
    record_duration_s: float
    header_bytes: int
    repaired_header: bytes | None  # the fixed 256-byte header with date/time repaired, or None
    repairs: tuple[str, ...]  # what was repaired, for the record's warnings
    start: datetime.datetime | None = None  # recording start (after repair); None if invalid

    @property
    def duration_s(self) -> float:
        """Length of the recording: data records times their duration."""
        return self.n_records * self.record_duration_s

    def sfreq(self, index: int) -> float:
        """Sampling rate (Hz) of signal ``index``."""
        return self.samples_per_record[index] / self.record_duration_s


@dataclass
class EdfRecording:
    """The 19 channels of one file, in ``CHANNELS`` order, before any preprocessing.

    ``data_uv`` is (19, n_samples) float32 in microvolts at ``sfreq`` Hz; rows named in
    ``interpolated`` were computed from the other channels.
    """

    path: Path
    data_uv: np.ndarray  # (19, n_samples) float32, µV
    sfreq: float
    interpolated: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def duration_s(self) -> float:
        return self.data_uv.shape[1] / self.sfreq


def _field(raw: bytes, start: int, stop: int) -> str:
    return raw[start:stop].decode("latin-1").strip()


def _repair_date(
    text: str, default: str, lo: tuple[int, int, int], hi: tuple[int, int, int]
) -> str:
    """``dd.mm.yy`` / ``hh.mm.ss`` from a field with any separators, or ``default``."""
    m = _DATE_RE.match(text)
    if m is None:
        return default
    parts = tuple(int(g) for g in m.groups())
    if all(a <= p <= b for p, a, b in zip(parts, lo, hi, strict=True)):
        return ".".join(m.groups())
    return default


def read_header(path: Path) -> EdfHeader:
    """Parse and check the header of ``path``; raises :class:`RecordSkipped` when unusable.

    Checks: the EDF version field, the header size against the number of signals, the file size
    against ``n_records`` (a short file is truncated), and the start date/time format (repaired,
    not refused).
    """
    not_edf = f"{path}: not an EDF file"
    try:
        with path.open("rb") as fh:
            fixed = fh.read(_FIXED_HEADER_BYTES)
            if len(fixed) < _FIXED_HEADER_BYTES or fixed[:8] != b"0       ":
                raise _unreadable(
                    f"{not_edf} (first bytes {fixed[:8]!r}, expected the EDF version '0'); "
                    "re-export it as EDF or remove it from the corpus"
                )
            try:
                header_bytes = int(_field(fixed, 184, 192))
                n_records = int(_field(fixed, 236, 244))
                record_duration_s = float(_field(fixed, 244, 252))
                n_signals = int(_field(fixed, 252, 256))
            except ValueError:
                raise _unreadable(
                    f"{not_edf} (unreadable header sizes {fixed[184:256]!r}); "
                    "re-export it as EDF or remove it from the corpus"
                ) from None
            if n_signals <= 0 or header_bytes != _FIXED_HEADER_BYTES * (n_signals + 1):
                raise _unreadable(
                    f"{not_edf} (header size {header_bytes} does not match {n_signals} signals); "
                    "re-export it as EDF or remove it from the corpus"
                )
            signal_header = fh.read(_BYTES_PER_SIGNAL_HEADER * n_signals)
            file_bytes = fh.seek(0, io.SEEK_END)
    except OSError as exc:
        raise _unreadable(f"{path}: cannot read the file ({exc}); check the path") from None
    if len(signal_header) < _BYTES_PER_SIGNAL_HEADER * n_signals:
        raise _unreadable(
            f"{path}: truncated EDF (the header of {n_signals} signals is cut off at "
            f"{file_bytes} bytes); re-download or re-export the file"
        )
    labels = tuple(
        signal_header[16 * i : 16 * (i + 1)].decode("latin-1").strip() for i in range(n_signals)
    )
    spr_offset = 216 * n_signals  # labels, transducer, dimension, 4 ranges, prefiltering
    try:
        spr = tuple(
            int(_field(signal_header, spr_offset + 8 * i, spr_offset + 8 * (i + 1)))
            for i in range(n_signals)
        )
    except ValueError:
        raise _unreadable(
            f"{not_edf} (unreadable samples-per-record fields); "
            "re-export it as EDF or remove it from the corpus"
        ) from None
    if record_duration_s <= 0 or min(spr) <= 0:
        raise _unreadable(
            f"{path}: invalid EDF header (record duration {record_duration_s} s, samples per "
            f"record {min(spr)}); re-export the file"
        )
    record_bytes = 2 * sum(spr)
    data_bytes = file_bytes - header_bytes
    if n_records < 0:  # "-1" = unknown count (recording not closed): infer it from the size
        n_records = data_bytes // record_bytes
    if n_records <= 0 or data_bytes < n_records * record_bytes:
        raise _unreadable(
            f"{path}: truncated EDF (header promises {n_records} data records = "
            f"{header_bytes + n_records * record_bytes} bytes, the file has {file_bytes}); "
            "re-download or re-export the file"
        )

    repairs: list[str] = []
    date, time_ = _field(fixed, 168, 176), _field(fixed, 176, 184)
    new_date = _repair_date(date, _DEFAULT_DATE, (1, 1, 0), (31, 12, 99))
    new_time = _repair_date(time_, _DEFAULT_TIME, (0, 0, 0), (23, 59, 59))
    repaired: bytes | None = None
    if new_date != date or new_time != time_:
        if new_date != date:
            repairs.append(f"malformed start date {date!r} in the EDF header, read as {new_date}")
        if new_time != time_:
            repairs.append(f"malformed start time {time_!r} in the EDF header, read as {new_time}")
        repaired = fixed[:168] + new_date.encode() + new_time.encode() + fixed[184:]
    return EdfHeader(
        path=path,
        labels=labels,
        samples_per_record=spr,
        n_records=n_records,
        record_duration_s=record_duration_s,
        header_bytes=header_bytes,
        repaired_header=repaired,
        repairs=tuple(repairs),
        start=_start_time(new_date, new_time, _field(fixed, 88, 168)),
    )


_MONTHS = ("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC")


def _start_time(date: str, time_: str, recording_field: str) -> datetime.datetime | None:
    """The start of the recording from ``dd.mm.yy`` / ``hh.mm.ss``; the year is 1985-2084 by
    the EDF rule, or the four digits of an EDF+ ``Startdate dd-MMM-yyyy`` field."""
    try:
        day, month, yy = (int(x) for x in date.split("."))
        hour, minute, second = (int(x) for x in time_.split("."))
        year = 1900 + yy if yy >= 85 else 2000 + yy
        parts = recording_field.split()
        if len(parts) > 1 and parts[0] == "Startdate":
            _, mon, yyyy = parts[1].split("-")
            if mon.upper() in _MONTHS and int(yyyy) % 100 == yy:
                year = int(yyyy)
        return datetime.datetime(year, month, day, hour, minute, second)
    except ValueError:
        return None


def montage_1020() -> str:
    """mne's built-in 10-20 positions: ``colin27_1020`` (mne >= 1.13), else ``standard_1020``.

    mne 1.13 renamed the montage (same positions) and deprecated the old name.
    """
    builtin = mne.channels.get_builtin_montages()
    return "colin27_1020" if "colin27_1020" in builtin else "standard_1020"


@lru_cache(maxsize=8)
def spline_weights(missing: tuple[str, ...]) -> np.ndarray:
    """Spherical-spline weights (len(missing), 19) that rebuild ``missing`` from the others.

    Computed once per set of missing channels by letting mne interpolate an identity matrix on
    the standard 10-20 positions (interpolation is linear, so column j of the result is the
    weight of channel j). Columns of missing channels are zero; each row sums to 1.
    """
    info = mne.create_info(list(CHANNELS), sfreq=256.0, ch_types="eeg")
    raw = mne.io.RawArray(np.eye(len(CHANNELS)), info, verbose="error")
    raw.set_montage(mne.channels.make_standard_montage(montage_1020()), verbose="error")
    raw.info["bads"] = list(missing)
    raw.interpolate_bads(reset_bads=True, verbose="error")
    rows = [CHANNELS.index(name) for name in missing]
    return raw.get_data()[rows].astype(np.float32)


def _read_samples(header: EdfHeader, raw_labels: list[str]) -> tuple[np.ndarray, list[str]]:
    """(len(raw_labels), n) float64 volts for the given signals, and mne's warnings."""
    path = header.path
    source: Path | io.BytesIO = path
    if header.repaired_header is not None:
        source = io.BytesIO(header.repaired_header + path.read_bytes()[_FIXED_HEADER_BYTES:])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            # A file on disk is read lazily: get_data then reads the picked channels straight
            # into one array (preloading first would copy it once more). mne needs preload
            # for an in-memory file.
            raw = mne.io.read_raw_edf(
                source,
                include=raw_labels,
                preload=isinstance(source, io.BytesIO),
                verbose="warning",
            )
            if sorted(raw.ch_names) != sorted(raw_labels):
                raise RecordSkipped(
                    f"{path}: mne read channels {raw.ch_names}, expected {raw_labels} "
                    "(duplicate channel labels?); rename the duplicates or exclude the file"
                )
            data = raw.get_data(picks=raw_labels)  # in the order asked for, not the file's
        except (ValueError, RuntimeError, OSError, IndexError) as exc:
            raise _unreadable(
                f"{path}: mne could not read the EDF ({exc}); re-export the file"
            ) from None
    return data, [f"mne: {w.message}" for w in caught]


def read_edf(
    path: Path,
    aliases: dict[str, str] | None = None,
    interpolate_missing: tuple[str, ...] = ("Fz", "Pz"),
) -> EdfRecording:
    """Read the 19 channels of ``path`` (µV, original rate), interpolating allowed gaps.

    Args:
        path: the ``.edf`` file.
        aliases: canonical upper-case name -> 10-20 name (default ``channels.DEFAULT_ALIASES``).
        interpolate_missing: channels that may be missing and are then interpolated.

    Raises:
        RecordSkipped: not an EDF, truncated, no EEG channels, a required channel missing,
            mixed sampling rates, NaN values or a flat channel.
    """
    path = Path(path)
    header = read_header(path)
    found = map_channels(header.labels, DEFAULT_ALIASES if aliases is None else aliases)
    bipolar = bipolar_labels(header.labels)
    if len(bipolar) >= 2 and len(found) < len(CHANNELS) - len(interpolate_missing):
        shown = ", ".join(bipolar[:4]) + (", ..." if len(bipolar) > 4 else "")
        raise RecordSkipped(
            f"{path}: bipolar montage ({len(bipolar)} derivations: {shown}); the model needs "
            f"the 19 referential electrodes {' '.join(CHANNELS)}, which electrode differences "
            "such as CHB-MIT's double banana cannot give back; exclude the file or use a "
            "referential export of the recording"
        )
    if not found:
        raise RecordSkipped(
            f"{path}: no EEG channels of the 10-20 system (found: {', '.join(header.labels)}); "
            "add an alias to data.channel_aliases or exclude the file"
        )
    missing = tuple(name for name in CHANNELS if name not in found)
    required = [name for name in missing if name not in interpolate_missing]
    if required:
        raise RecordSkipped(
            f"{path}: channel {', '.join(required)} missing (found: {', '.join(header.labels)}); "
            "add an alias to data.channel_aliases or exclude the file"
        )
    present = [name for name in CHANNELS if name in found]
    raw_labels = [found[name] for name in present]
    rates = {header.sfreq(header.labels.index(label)) for label in raw_labels}
    if len(rates) != 1:
        raise RecordSkipped(
            f"{path}: the EEG channels have different sampling rates {sorted(rates)} Hz; "
            "resample the file to one rate or exclude it"
        )
    sfreq = rates.pop()

    volts, mne_warnings = _read_samples(header, raw_labels)
    expected_n = header.n_records * header.samples_per_record[header.labels.index(raw_labels[0])]
    if volts.shape[1] != expected_n:
        raise _unreadable(
            f"{path}: mne read {volts.shape[1]} samples per channel, the header promises "
            f"{expected_n} ({header.n_records} records at {sfreq} Hz); re-export the file"
        )
    data_uv = np.zeros((len(CHANNELS), volts.shape[1]), dtype=np.float32)
    rows = [CHANNELS.index(name) for name in present]
    for row, row_volts in zip(rows, volts, strict=True):
        np.multiply(row_volts, 1e6, out=data_uv[row], casting="same_kind")
    del volts
    # One pass finds both: the range is NaN/inf where a value is, and 0 on a flat channel.
    spread = np.ptp(data_uv, axis=1)[rows]
    bad = [label for label, r in zip(raw_labels, spread, strict=True) if not np.isfinite(r)]
    if bad:
        raise RecordSkipped(
            f"{path}: NaN or infinite values in channel {', '.join(bad)} (check the header's "
            "physical and digital ranges); fix the file or exclude it"
        )
    flat = [label for label, r in zip(raw_labels, spread, strict=True) if r == 0]
    # A flat channel that may be missing is treated as missing: converters such as
    # epilepsy2bids write an absent Fz or Pz as zeros.
    flat_ok = [
        name
        for name, label in zip(present, raw_labels, strict=True)
        if label in flat and name in interpolate_missing
    ]
    flat_notes = [
        f"channel {found[name]} is flat (all samples equal: absent in the source?); "
        f"interpolated like a missing {name}"
        for name in flat_ok
    ]
    flat = [label for label in flat if label not in {found[n] for n in flat_ok}]
    missing = tuple(name for name in CHANNELS if name in missing or name in flat_ok)
    if flat:
        raise RecordSkipped(
            f"{path}: flat channel {', '.join(flat)} (zero variance over the whole recording); "
            "the electrode was disconnected: exclude the file"
        )
    if missing:
        # The missing rows are still zero, and so are their weights: they add nothing.
        data_uv[[CHANNELS.index(name) for name in missing]] = spline_weights(missing) @ data_uv
    notes = [*header.repairs, *flat_notes, *mne_warnings]
    for note in notes:
        log.warning("%s: %s", path, note)
    return EdfRecording(
        path=path, data_uv=data_uv, sfreq=sfreq, interpolated=list(missing), warnings=notes
    )
