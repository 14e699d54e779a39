"""The signal chain: one TUSZ EDF -> 19 x n float32 at 256 Hz plus a per-sample seizure mask.

API (what the cache builder uses; everything importable from this module)::

    cfg = PreprocessConfig.from_dict(plain_dict)     # or PreprocessConfig() for the defaults
    cfg.fingerprint()                                # stable hash of everything that changes output
    try:
        rec = load_record(Path("..._t000.edf"), cfg)  # -> PreparedRecord
    except RecordSkipped as exc:
        exc.reason                                   # "<file>: <problem>; <fix>"

``PreparedRecord``: ``signals`` (19, n) float32 at ``cfg.target_sfreq`` in ``channels.CHANNELS``
order (re-referenced, filtered, scaled, clipped), ``labels`` (n,) uint8 seizure mask,
``seizures`` (clipped events, seconds), ``duration_s``, ``orig_sfreq``, ``montage``
(``01_tcp_ar`` ... or ``None``), ``interpolated`` (channel names), ``warnings``.

The chain, always over the whole recording (filtering per window, or causally, leaves edge
transients in every window):

1. read the 19 channels (:mod:`brain_go_brr.data.edf`; Fz/Pz interpolated when missing);
2. common-average reference over the 19 (``reference="average"``; LE and AR montages differ
   only by a common signal, which this removes);
3. polyphase resampling to 256 Hz with the exact rational ratio (250 -> 256 is 128/125);
4. zero-phase 0.5-120 Hz band-pass and 60 Hz notch. ``filter_design="fft"`` multiplies the
   spectrum of the mirror-padded recording by the magnitude response a forward-backward
   pass of an order-``filter_order`` Butterworth band-pass and a 2nd-order notch would have
   (analog prototypes, so the 120 Hz edge just under the 128 Hz Nyquist is exact, with no
   bilinear warping); ``"sos"`` runs ``scipy.signal.sosfiltfilt`` with the digital designs.
   Both mirror ``filter_pad_s`` seconds at each end; the first and last second still carry a
   small error (a few % of a 10 Hz rhythm, as no extension knows how the signal goes on) and
   the notch needs up to 1 s there to settle;
5. per-channel robust scaling, ``(x - median) / (IQR / 1.349)``, clipped at ±``clip_sigma``,
   the quantiles taken from at most ``scaling_max_samples`` evenly spaced samples.

Labels come from :func:`brain_go_brr.annotations.read_labels` (a BIDS ``*_events.tsv``, or
``.csv_bi``, else ``.csv``), are
clipped to the recording (with a warning) and become samples in :mod:`brain_go_brr.data.labels`.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np
import scipy.fft
import scipy.signal

from brain_go_brr.annotations import AnnotationError, Event, read_labels
from brain_go_brr.data.channels import CHANNELS, DEFAULT_ALIASES
from brain_go_brr.data.edf import RecordSkipped, read_edf
from brain_go_brr.data.labels import clip_events, events_to_mask

__all__ = [
    "PreparedRecord",
    "PreprocessConfig",
    "RecordSkipped",
    "load_record",
    "preprocess_signals",
]

log = logging.getLogger(__name__)

#: Bump when the code changes what a given config produces; it is part of the fingerprint.
PIPELINE_VERSION = 1
_IQR_PER_SIGMA = 1.3489795  # IQR of a unit normal
_MONTAGE_RE = re.compile(r"^\d\d_tcp_\w+$")


@dataclass(frozen=True)
class PreprocessConfig:
    """Every setting of the chain (``conf/data/*.yaml`` keys of the same names)."""

    target_sfreq: int = 256  # Hz; the model rate (a 60 s window is 15 360 samples)
    reference: str = "average"  # "average": subtract the mean of the 19 channels; "none"
    bandpass: tuple[float, float] = (0.5, 120.0)  # Hz, band edges (-6 dB: forward + backward)
    filter_order: int = 4  # Butterworth order of each band edge, per direction
    notch_hz: float | None = 60.0  # mains frequency (US recordings); None: no notch
    notch_q: float = 30.0  # notch quality factor: -3 dB width per pass = notch_hz / Q = 2 Hz
    filter_design: str = "fft"  # "fft": exact zero-phase gain in the frequency domain; "sos"
    filter_pad_s: float = 10.0  # s of mirror padding at each end against edge effects
    scaling: str = "robust"  # "robust": (x - median) / (IQR / 1.349) per channel; "none"
    clip_sigma: float = 10.0  # scaled values are clipped to ±clip_sigma (robust scaling only)
    scaling_max_samples: int = 200_000  # quantiles from at most this many samples per channel
    channel_aliases: tuple[tuple[str, str], ...] = tuple(sorted(DEFAULT_ALIASES.items()))
    interpolate_missing: tuple[str, ...] = ("Fz", "Pz")  # missing -> spherical-spline rebuilt
    min_duration_s: float = 10.0  # shorter recordings are skipped

    def __post_init__(self) -> None:
        nyquist = self.target_sfreq / 2
        low, high = self.bandpass
        checks = [
            (self.target_sfreq > 0, f"target_sfreq must be positive, got {self.target_sfreq}"),
            (
                self.reference in {"average", "none"},
                f"reference must be 'average' or 'none', got {self.reference!r}",
            ),
            (
                0 < low < high < nyquist,
                f"bandpass must satisfy 0 < low < high < {nyquist} Hz (Nyquist of target_sfreq), "
                f"got {self.bandpass}",
            ),
            (self.filter_order >= 1, f"filter_order must be >= 1, got {self.filter_order}"),
            (
                self.notch_hz is None or 0 < self.notch_hz < nyquist,
                f"notch_hz must be None or in (0, {nyquist}) Hz, got {self.notch_hz}",
            ),
            (self.notch_q > 0, f"notch_q must be positive, got {self.notch_q}"),
            (
                self.filter_design in {"fft", "sos"},
                f"filter_design must be 'fft' or 'sos', got {self.filter_design!r}",
            ),
            (self.filter_pad_s >= 0, f"filter_pad_s must be >= 0, got {self.filter_pad_s}"),
            (
                self.scaling in {"robust", "none"},
                f"scaling must be 'robust' or 'none', got {self.scaling!r}",
            ),
            (self.clip_sigma > 0, f"clip_sigma must be positive, got {self.clip_sigma}"),
            (
                self.scaling_max_samples >= 100,
                f"scaling_max_samples must be >= 100, got {self.scaling_max_samples}",
            ),
            (
                set(self.interpolate_missing) <= set(CHANNELS),
                f"interpolate_missing must name channels of {CHANNELS}, "
                f"got {self.interpolate_missing}",
            ),
            (self.min_duration_s >= 0, f"min_duration_s must be >= 0, got {self.min_duration_s}"),
        ]
        for ok, message in checks:
            if not ok:
                raise ValueError(f"PreprocessConfig: {message}")

    @property
    def aliases(self) -> dict[str, str]:
        return dict(self.channel_aliases)

    def fingerprint(self) -> str:
        """16 hex digits that change whenever a setting or the pipeline version does."""
        payload = {"pipeline_version": PIPELINE_VERSION, **dataclasses.asdict(self)}
        text = json.dumps(payload, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> PreprocessConfig:
        """Build from plain values (YAML lists become tuples, an alias mapping becomes pairs).

        Raises ``ValueError`` naming an unknown key and the valid ones.
        """
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(
                f"PreprocessConfig: unknown key(s) {unknown}; valid keys: {sorted(known)}"
            )
        kwargs = dict(values)
        if "bandpass" in kwargs:
            low, high = kwargs["bandpass"]
            kwargs["bandpass"] = (float(low), float(high))
        if "channel_aliases" in kwargs:
            aliases = kwargs["channel_aliases"]
            pairs = aliases.items() if isinstance(aliases, Mapping) else aliases
            kwargs["channel_aliases"] = tuple(sorted((str(k), str(v)) for k, v in pairs))
        if "interpolate_missing" in kwargs:
            kwargs["interpolate_missing"] = tuple(str(c) for c in kwargs["interpolate_missing"])
        return cls(**kwargs)


@dataclass
class PreparedRecord:
    """One preprocessed recording; ``n`` samples at ``sfreq`` (= ``cfg.target_sfreq``) Hz."""

    path: Path
    signals: np.ndarray  # (19, n) float32, robust-scaled units, CHANNELS order
    labels: np.ndarray  # (n,) uint8, 1 = seizure sample
    seizures: list[Event]  # seizure events in seconds, clipped to the recording
    duration_s: float  # of the original recording: n_orig / orig_sfreq
    orig_sfreq: float  # Hz, as stored in the EDF
    sfreq: int  # Hz of ``signals`` and ``labels``
    montage: str | None  # the montage folder (01_tcp_ar, 02_tcp_le, 03_tcp_ar_a) or None
    interpolated: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def n_samples(self) -> int:
        return int(self.signals.shape[1])


def resample(x: np.ndarray, sfreq_in: float, sfreq_out: int) -> np.ndarray:
    """Polyphase resampling along the last axis by the exact ratio ``sfreq_out / sfreq_in``.

    (C, n) -> (C, ceil(n * sfreq_out / sfreq_in)), same dtype. Raises ``ValueError`` when the
    ratio is not a fraction with terms up to 1000 (no rate in TUSZ needs more).
    """
    rate_in = Fraction(sfreq_in).limit_denominator(1000)
    if abs(float(rate_in) - sfreq_in) > 1e-9 * sfreq_in:
        raise ValueError(f"sampling rate {sfreq_in} Hz is not a ratio resample_poly can use")
    ratio = Fraction(sfreq_out) / rate_in
    if ratio == 1:
        return x
    if max(ratio.numerator, ratio.denominator) > 1000:
        raise ValueError(
            f"sampling rate {sfreq_in} Hz needs a resampling ratio {ratio} with terms over 1000"
        )
    out: np.ndarray = scipy.signal.resample_poly(x, ratio.numerator, ratio.denominator, axis=-1)
    return out.astype(x.dtype, copy=False)


def filter_gain(freqs_hz: np.ndarray, cfg: PreprocessConfig) -> np.ndarray:
    """Zero-phase gain of the band-pass + notch at ``freqs_hz`` (what ``"fft"`` applies).

    The squared magnitude of analog order-``filter_order`` Butterworth high- and low-pass edges
    and a 2nd-order notch, i.e. the response of one forward plus one backward pass.
    """
    f = np.abs(np.asarray(freqs_hz, dtype=np.float64))
    low, high = cfg.bandpass
    n2 = 2 * cfg.filter_order
    with np.errstate(divide="ignore"):
        highpass = 1.0 / (1.0 + (low / f) ** n2)  # 0 at DC
    gain = highpass * (1.0 / (1.0 + (f / high) ** n2))
    if cfg.notch_hz is not None:
        d = cfg.notch_hz**2 - f**2
        gain *= d**2 / (d**2 + (f * cfg.notch_hz / cfg.notch_q) ** 2)
    return gain**2


def _centred_mirror_pad(x: np.ndarray, pad: int, length: int) -> np.ndarray:
    """(C, n) -> (C, length): each row minus its mean, mirrored about its first and last sample.

    ``pad`` samples go before the data and up to ``length - n - pad`` (at most n - 1) after it;
    any rest is zero. Mirroring keeps the local mean at each end. Point ("odd") reflection,
    the filtfilt default, would keep the slope instead, but a zero-phase filter that blocks DC
    then forces the output at the first and last sample to zero: a transient as large as the
    signal there. Removing the mean lets float32 FFTs work on small numbers and keeps the jump
    where the block wraps around (``pad`` samples from the data) small.
    """
    c, n = x.shape
    tail = min(length - n - pad, n - 1)
    out = np.empty((c, length), dtype=x.dtype)
    body = out[:, pad : pad + n]
    np.subtract(x, x.mean(axis=-1, keepdims=True, dtype=np.float64), out=body, casting="unsafe")
    out[:, :pad] = body[:, pad:0:-1]
    out[:, pad + n : pad + n + tail] = body[:, ::-1][:, 1 : 1 + tail]
    out[:, pad + n + tail :] = 0
    return out


def zero_phase_filter(x: np.ndarray, sfreq: float, cfg: PreprocessConfig) -> np.ndarray:
    """Band-pass + notch over the whole recording, zero phase. (C, n) -> (C, n), same dtype."""
    n = x.shape[-1]
    pad = min(round(cfg.filter_pad_s * sfreq), n - 1)
    if cfg.filter_design == "sos":
        sos = scipy.signal.butter(
            cfg.filter_order, cfg.bandpass, btype="bandpass", fs=sfreq, output="sos"
        )
        if cfg.notch_hz is not None:
            b, a = scipy.signal.iirnotch(cfg.notch_hz, cfg.notch_q, fs=sfreq)
            sos = np.vstack([sos, scipy.signal.tf2sos(b, a)])
        out = scipy.signal.sosfiltfilt(sos, x, axis=-1, padtype="even", padlen=pad)
        return out.astype(x.dtype, copy=False)
    n_fft = scipy.fft.next_fast_len(n + 2 * pad, real=True)
    spectrum = scipy.fft.rfft(_centred_mirror_pad(x, pad, n_fft), axis=-1)
    spectrum *= filter_gain(scipy.fft.rfftfreq(n_fft, 1.0 / sfreq), cfg).astype(x.dtype)
    filtered = scipy.fft.irfft(spectrum, n=n_fft, axis=-1)
    return np.ascontiguousarray(filtered[:, pad : pad + n])


def robust_scale(x: np.ndarray, clip_sigma: float, max_samples: int) -> np.ndarray:
    """In place: ``(x - median) / (IQR / 1.349)`` per row, clipped to ±``clip_sigma``. (C, n).

    Quantiles come from at most ``max_samples`` evenly spaced samples with ``np.partition``
    (no full sort). Raises ``ValueError`` naming the channel (row ``i`` of ``CHANNELS`` for 19
    rows) when a row has zero IQR.
    """
    step = max(1, -(-x.shape[-1] // max_samples))
    sample = np.array(x[:, ::step])  # a copy, partitioned in place
    k = sample.shape[-1]
    q25, q50, q75 = k // 4, k // 2, (3 * k) // 4
    # Median first, then each quartile within its half: three single selections are several
    # times faster than one np.partition with three kth values.
    sample.partition(q50, axis=-1)
    median = sample[:, q50 : q50 + 1].copy()  # before the upper half is reordered
    sample[:, :q50].partition(q25, axis=-1)
    sample[:, q50:].partition(q75 - q50, axis=-1)
    sigma = (sample[:, q75] - sample[:, q25])[:, None] / _IQR_PER_SIGMA
    dead = np.flatnonzero(sigma[:, 0] <= 0)
    if dead.size:
        names = [CHANNELS[i] if x.shape[0] == len(CHANNELS) else f"row {i}" for i in dead]
        raise ValueError(f"channel {', '.join(names)} has no spread after filtering (IQR 0)")
    x -= median
    x /= sigma
    np.clip(x, -clip_sigma, clip_sigma, out=x)
    return x


def preprocess_signals(data_uv: np.ndarray, sfreq: float, cfg: PreprocessConfig) -> np.ndarray:
    """Steps 2-5 of the chain: (19, n) µV at ``sfreq`` -> (19, n') float32 at target_sfreq.

    Raises ``ValueError`` (for the caller to attach the file name) on an unusable rate or a
    channel without spread.
    """
    x = np.asarray(data_uv, dtype=np.float32)
    if cfg.reference == "average":
        x = x - x.mean(axis=0, keepdims=True)
    x = resample(x, sfreq, cfg.target_sfreq)
    x = zero_phase_filter(x, cfg.target_sfreq, cfg)
    if cfg.scaling == "robust":  # x is a new array by now: scaling in place is safe
        x = robust_scale(x, cfg.clip_sigma, cfg.scaling_max_samples)
    return x


def _montage(edf_path: Path) -> str | None:
    name = edf_path.parent.name
    return name if _MONTAGE_RE.match(name) else None


def load_record(edf_path: Path, cfg: PreprocessConfig) -> PreparedRecord:
    """Read, label and preprocess one recording (see the module docstring).

    Raises:
        RecordSkipped: the reason names the file, the problem and the fix (bad or missing
            annotations, unreadable/truncated/non-EDF file, missing channels, NaN or flat
            channels, shorter than ``cfg.min_duration_s``).
    """
    edf_path = Path(edf_path)
    try:  # labels first: a missing annotation file costs no EDF read
        annotation = read_labels(edf_path)
    except AnnotationError as exc:
        raise RecordSkipped(f"{exc}; fix the annotation file or exclude the record") from None
    recording = read_edf(edf_path, cfg.aliases, cfg.interpolate_missing)
    duration_s = recording.duration_s
    if duration_s < cfg.min_duration_s:
        raise RecordSkipped(
            f"{edf_path}: recording is {duration_s:.2f} s long, shorter than min_duration_s = "
            f"{cfg.min_duration_s} s; lower data.preprocess.min_duration_s to keep it"
        )
    label_notes: list[str] = []
    # csv_bi durations are TUSZ's own (within a second of the EDF); events.tsv writes the
    # recording's duration with 2 decimals, so more than rounding is a disagreement.
    is_tsv = annotation.path.suffix == ".tsv"
    tolerance_s = 0.006 if is_tsv else 1.0
    if annotation.duration_s is not None and abs(annotation.duration_s - duration_s) > tolerance_s:
        what = "recordingDuration" if is_tsv else "annotation duration"
        label_notes.append(
            f"{what} {annotation.duration_s:.4f} s differs from the EDF's "
            f"{duration_s:.4f} s; events are clipped to the EDF"
        )
    seizures, clip_notes = clip_events(annotation.seizures(), duration_s)
    for note in label_notes + clip_notes:
        log.warning("%s: %s", annotation.path, note)
    notes = recording.warnings + [f"{annotation.path.name}: {n}" for n in label_notes + clip_notes]
    try:
        signals = preprocess_signals(recording.data_uv, recording.sfreq, cfg)
    except ValueError as exc:
        raise RecordSkipped(f"{edf_path}: {exc}; exclude the file") from None
    labels = events_to_mask(seizures, signals.shape[1], cfg.target_sfreq)
    return PreparedRecord(
        path=edf_path,
        signals=signals,
        labels=labels,
        seizures=seizures,
        duration_s=duration_s,
        orig_sfreq=recording.sfreq,
        sfreq=cfg.target_sfreq,
        montage=_montage(edf_path),
        interpolated=recording.interpolated,
        warnings=notes,
    )
