"""A synthetic corpus in the exact TUSZ v2.0.3 layout, or as BIDS: ``brain-go-brr synth OUT``.

Layout written under ``OUT`` (``--layout tusz``, the default)::

    edf/{train,dev,eval}/<patient>/<sNNN_YYYY_MM_DD>/<montage>/<patient>_sNNN_tNNN.edf
                                                              .../<patient>_sNNN_tNNN.csv_bi
                                                              .../<patient>_sNNN_tNNN.csv
    synth_manifest.json

With ``--layout bids`` the same recordings (same signals, same EDF channels and rates, same
seizures) form a BIDS-EEG dataset as SzCORE reads it::

    dataset_description.json, participants.tsv (participant_id, split), README
    sub-<patient>/ses-<NNN>/eeg/sub-<patient>_ses-<NNN>_task-szMonitoring_run-<NN>_eeg.edf
                                                                        ..._events.tsv
                                                                        ..._eeg.json
    synth_manifest.json

where the events are SzCORE rows with 2-decimal times and HED-SCORE types (fnsz ->
``sz_foc``, cpsz -> ``sz_foc_ia``, tcsz -> ``sz_gen_m_tonicClonic``, gnsz -> ``sz_gen``,
absz -> ``sz_gen_nm_typical``; one ``bckg`` row for a recording without seizures), and
``participants.tsv`` holds the split, as the epilepsy2bids conversion of TUSZ does.

- Patients: 8 lowercase letters (``aaaaqxkd``); splits are patient-disjoint, 60/20/20 by
  patients, and balanced: each split's share of the hours, of the seizures and of the
  patients with seizures is as close to its share of patients as swapping patients gets
  it. With ``N >= 3`` every split has at least one patient and one seizure. A patient has
  1-3 sessions of 1-4 files.
- Sessions: one sampling rate (250/256/400/512 Hz) and one montage each: ``01_tcp_ar``
  (``EEG FP1-REF``, with A1/A2), ``02_tcp_le`` (``EEG FP1-LE``), ``03_tcp_ar_a`` (no A1/A2).
  About 10 % of files lack Fz and Pz (mostly ``01_tcp_ar``), some use the 10-10 names
  T7/T8/P7/P8, and files carry non-EEG channels (``EEG EKG1-REF`` or ``EKG1``,
  ``PHOTIC-REF``, ``IBI``, ``BURSTS``, ``SUPPR``).
- Files: 2-60 min in whole seconds, together about ``--hours``; EDF+ in µV, 1 s data records,
  physical range ±5000 µV on 16-bit digital values (0.15 µV resolution).
- Labels: ``.csv_bi`` (``TERM`` rows, ``seiz``/``bckg``) and per-channel ``.csv`` (TCP bipolar
  channels such as ``FP1-F7`` with the seizure type: fnsz, cpsz, tcsz, gnsz, absz); the union
  of a ``.csv``'s seizure rows equals its ``.csv_bi`` seizures. Some files fill ``bckg`` rows,
  some list seizures only. 10 % of patients have no seizures; the others have 1-5 seizures
  (median 35 s, 10-120 s) in about 70 % of their files: about 10 seizures per hour, 11 % of
  all time (TUSZ: about 5 %; dense, so that small dev and eval splits still hold tens of
  seizures). Signals: see :mod:`brain_go_brr.data.synth_signals`; chewing and
  movement artifacts are inserted as unlabelled hard negatives (about 3 chewing and 9
  movement artifacts per hour).
- ``synth_manifest.json``: the seed, the settings and, per file, split, patient, path, sfreq,
  montage, duration_s, channels, missing channels, seizures (with their parameters) and the
  artifacts inserted. It is written last: its presence marks a complete corpus
  (``.synth_incomplete.json`` marks a run under way or killed; rerunning it finishes it).

Deterministic: the plan comes from ``SeedSequence(seed, spawn_key=(0,))`` (the extra
movement artifacts of generator version 2 from ``spawn_key=(2,)``) and file ``i``'s noise
from ``SeedSequence(seed, spawn_key=(1, i))``, so the bytes do not depend on ``--workers``. Helpers for tests elsewhere: :func:`write_edf` (one EDF from an array) and
:func:`make_recording` (one synthetic recording in memory).
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import io
import json
import math
import os
import shutil
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, cast

import numpy as np
from edfio import Edf, EdfSignal, Patient, Recording

from brain_go_brr.annotations import Event, format_csv_bi
from brain_go_brr.data.channels import CHANNELS
from brain_go_brr.data.synth_signals import (
    DIST,
    ELECTRODES,
    FOCI,
    LEFT_TEMPORAL,
    RIGHT_TEMPORAL,
    ArtifactSpec,
    RecordSpec,
    Rendered,
    SeizureSpec,
    focal_spread,
    render_record,
)
from brain_go_brr.io import atomic_open, atomic_write_json, atomic_write_text

SPLITS: tuple[str, ...] = ("train", "dev", "eval")
MONTAGES: dict[str, float] = {"01_tcp_ar": 0.55, "02_tcp_le": 0.30, "03_tcp_ar_a": 0.15}
SFREQS: dict[int, float] = {250: 0.45, 256: 0.30, 400: 0.15, 512: 0.10}
MIN_DURATION_S, MAX_DURATION_S = 120, 3600
MIN_SEIZURE_S, MAX_SEIZURE_S = 10.0, 120.0
SEIZURE_FREE_PATIENTS = 0.1  # share of patients without seizures (they keep hard negatives)
SEIZURE_FILE_FRACTION = 0.7  # share of a seizure patient's files with 1-5 seizures
SEIZURES_PER_10_MIN = 2.5  # a seizure file holds 1 + Poisson(this x its length / 10 min), <= 5
MAX_SEIZURES_PER_FILE = 5
SEIZURE_MEDIAN_S, SEIZURE_SIGMA = 35.0, 0.6  # log-normal seizure length, clipped to 10-120 s
SPLIT_SHARES: dict[str, float] = {"train": 0.6, "dev": 0.2, "eval": 0.2}  # by patients
#: Seizure regions the splits are balanced over: generalized, and the focus's lobe.
REGIONS: tuple[str, ...] = (
    "generalized",
    "frontal",
    "temporal",
    "central",
    "parietal",
    "occipital",
)
_REGION_OF = {
    **dict.fromkeys(("Fp1", "Fp2", "F3", "F4", "F7", "F8"), "frontal"),
    **dict.fromkeys(("T3", "T4", "T5", "T6"), "temporal"),
    **dict.fromkeys(("C3", "C4", "Cz"), "central"),
    **dict.fromkeys(("P3", "P4"), "parietal"),
    **dict.fromkeys(("O1", "O2"), "occipital"),
}
#: Weight of each balanced share: hours, seizures, patients with seizures, then the regions.
_BALANCE_WEIGHTS = np.array([4.0, 4.0, 2.0] + [1.0] * len(REGIONS))
PHYSICAL_MAX_UV = 5000.0
MANIFEST = "synth_manifest.json"
INCOMPLETE = ".synth_incomplete.json"  # present while a run is under way or was killed

#: TUSZ's file order of scalp electrodes (10-20 names, upper case as in the EDF labels).
_EDF_ORDER = ("FP1", "FP2", "F3", "F4", "C3", "C4", "P3", "P4", "O1", "O2", "F7", "F8",
              "T3", "T4", "T5", "T6", "A1", "A2", "FZ", "CZ", "PZ", "T1", "T2")  # fmt: skip
_TO_1010 = {"T3": "T7", "T4": "T8", "T5": "P7", "T6": "P8"}

#: The TCP bipolar channels of the per-channel ``.csv`` (``03_tcp_ar_a`` has no ear pairs).
TCP_PAIRS: tuple[str, ...] = (
    "FP1-F7", "F7-T3", "T3-T5", "T5-O1", "FP2-F8", "F8-T4", "T4-T6", "T6-O2",
    "A1-T3", "T3-C3", "C3-CZ", "CZ-C4", "C4-T4", "T4-A2",
    "FP1-F3", "F3-C3", "C3-P3", "P3-O1", "FP2-F4", "F4-C4", "C4-P4", "P4-O2",
)  # fmt: skip
_ELECTRODE_UPPER = {name.upper(): i for i, name in enumerate(ELECTRODES)}


def tcp_pairs(montage: str) -> tuple[str, ...]:
    """The bipolar channels NEDC annotates for ``montage``."""
    if montage == "03_tcp_ar_a":
        return tuple(p for p in TCP_PAIRS if "A1" not in p and "A2" not in p)
    return TCP_PAIRS


@dataclass(frozen=True)
class FilePlan:
    """Where one file goes and what it holds (the manifest's per-file record)."""

    index: int
    split: str
    patient: str
    session: str  # sNNN_YYYY_MM_DD
    montage: str
    stem: str  # <patient>_sNNN_tNNN
    start: str  # ISO date-time of the recording start
    missing: tuple[str, ...]  # 10-20 channels absent from the file (Fz, Pz)
    names_1010: bool  # T7/T8/P7/P8 instead of T3/T4/T5/T6
    fill_background: bool  # annotation files also list bckg rows
    spec: RecordSpec

    @property
    def relpath(self) -> Path:
        """Path of the EDF relative to the corpus root (TUSZ layout)."""
        return Path("edf", self.split, self.patient, self.session, self.montage, self.stem + ".edf")

    @property
    def bids_relpath(self) -> Path:
        """Path of the EDF relative to the corpus root (BIDS layout)."""
        sub, ses = f"sub-{self.patient}", f"ses-{self.session[1:4]}"
        run = int(self.stem.rsplit("_t", 1)[1]) + 1
        return Path(sub, ses, "eeg", f"{sub}_{ses}_task-szMonitoring_run-{run:02d}_eeg.edf")

    def path_in(self, layout: str) -> Path:
        return self.bids_relpath if layout == "bids" else self.relpath


# ---------------------------------------------------------------------------- planning


#: Version of what a (patients, hours, seed) triple generates; part of the default corpus
#: folder name, so a changed generator never reuses an older corpus or cache.
#: 1: first release. 2: about one more movement artifact per 10 min (own random stream;
#: every version-1 draw kept) and each artifact span keeps its own kind. 3: about twice the
#: seizures per hour (shorter, more per file, 15 % of patients seizure-free) and splits
#: balanced by hours, seizures and patients with seizures (:func:`_balanced_splits`).
GENERATOR_VERSION = 3


def _choice(rng: np.random.Generator, weights: dict[Any, float]) -> Any:
    keys = list(weights)
    p = np.array([weights[k] for k in keys])
    return keys[int(rng.choice(len(keys), p=p / p.sum()))]


def _patient_ids(rng: np.random.Generator, n: int) -> list[str]:
    """``n`` distinct TUSZ-style ids: ``aaaa`` + 4 random lowercase letters."""
    codes = rng.choice(26**4, size=n, replace=False)
    ids = []
    for code in codes:
        letters = [chr(ord("a") + (int(code) // 26**k) % 26) for k in (3, 2, 1, 0)]
        ids.append("aaaa" + "".join(letters))
    return ids


def _split_sizes(n: int) -> dict[str, int]:
    """Patients per split: about 60/20/20, every split non-empty when there are >= 3 patients."""
    n_dev = max(1, round(SPLIT_SHARES["dev"] * n)) if n >= 2 else 0
    n_eval = max(1, round(SPLIT_SHARES["eval"] * n)) if n >= 3 else 0
    return {"train": n - n_dev - n_eval, "dev": n_dev, "eval": n_eval}


def _balanced_splits(
    rng: np.random.Generator,
    patients: Sequence[str],
    features: np.ndarray,
    weights: np.ndarray | None = None,
) -> dict[str, str]:
    """Patient -> split, with the split sizes of :func:`_split_sizes`, and each split's share
    of every feature column (hours, seizures, has-seizures) as close to its share of patients
    as swaps of two patients can bring it.

    ``features``: (n_patients, n_features), non-negative; ``weights``: (n_features,), the
    weight of each column's squared share error (default 1). Starts from a seeded random
    assignment and swaps the pair of patients that lowers the weighted error most, until no
    swap does (deterministic for a seed).
    """
    n = len(patients)
    sizes = _split_sizes(n)
    order = rng.permutation(n)
    split_index = np.empty(n, dtype=np.int64)
    bounds = np.cumsum([sizes[s] for s in SPLITS])
    for rank, i in enumerate(order):
        split_index[i] = int(np.searchsorted(bounds, rank, side="right"))
    totals = np.maximum(features.sum(axis=0), 1e-12)
    share = np.array([sizes[s] / n for s in SPLITS])[:, None]  # (3, 1)

    w = np.ones(features.shape[1]) if weights is None else np.asarray(weights, dtype=float)

    def cost(sums: np.ndarray) -> float:
        return float(((((sums / totals) - share) ** 2) * w).sum())

    sums = np.stack([features[split_index == k].sum(axis=0) for k in range(len(SPLITS))])
    best = cost(sums)
    for _ in range(10 * n):
        move: tuple[int, int] | None = None
        for i in range(n):
            for j in range(i + 1, n):
                a, b = split_index[i], split_index[j]
                if a == b:
                    continue
                delta = features[j] - features[i]
                sums[a] += delta
                sums[b] -= delta
                c = cost(sums)
                sums[a] -= delta
                sums[b] += delta
                if c < best - 1e-15:
                    best, move = c, (i, j)
        if move is None:
            break
        i, j = move
        a, b = split_index[i], split_index[j]
        delta = features[j] - features[i]
        sums[a] += delta
        sums[b] -= delta
        split_index[i], split_index[j] = b, a
    return {patients[i]: SPLITS[int(split_index[i])] for i in range(n)}


def _durations(rng: np.random.Generator, n_files: int, hours: float) -> np.ndarray:
    """Whole-second durations in [2, 60] min whose sum is as close to ``hours`` as allowed."""
    raw = np.exp(rng.uniform(np.log(MIN_DURATION_S), np.log(MAX_DURATION_S), size=n_files))
    target = hours * 3600.0
    lo, hi = -12.0, 12.0  # bisection on the log of a common scale factor
    for _ in range(60):
        mid = 0.5 * (lo + hi)
        total = np.clip(raw * np.exp(mid), MIN_DURATION_S, MAX_DURATION_S).sum()
        lo, hi = (mid, hi) if total < target else (lo, mid)
    scaled = np.clip(raw * np.exp(0.5 * (lo + hi)), MIN_DURATION_S, MAX_DURATION_S)
    return np.round(scaled).astype(np.int64)


def _labels(
    rng: np.random.Generator, montage: str, missing: tuple[str, ...], names_1010: bool
) -> tuple[str, ...]:
    """EDF signal labels of one file, in TUSZ's order, extras last."""
    suffix = "LE" if montage == "02_tcp_le" else "REF"
    labels = []
    for name in _EDF_ORDER:
        if name in ("A1", "A2") and montage != "01_tcp_ar":
            continue
        if name.capitalize() in missing:
            continue
        labels.append(f"EEG {_TO_1010.get(name, name) if names_1010 else name}-{suffix}")
    labels.append("EKG1" if suffix == "LE" or rng.random() < 0.3 else "EEG EKG1-REF")
    if rng.random() < 0.8:
        labels.append("PHOTIC-REF")
    if rng.random() < 0.6:
        labels += ["IBI", "BURSTS", "SUPPR"]
    return tuple(labels)


def _seizure_lengths(rng: np.random.Generator, duration_s: float) -> list[float]:
    """Seizure lengths for one seizure file of ``duration_s``: 1 + Poisson(2 per 10 min), at
    most 5, each log-normal around 35 s and clipped to [10, 120] s."""
    k = min(MAX_SEIZURES_PER_FILE, 1 + int(rng.poisson(SEIZURES_PER_10_MIN * duration_s / 600)))
    raw = SEIZURE_MEDIAN_S * np.exp(SEIZURE_SIGMA * rng.standard_normal(k))
    return [round(float(x), 4) for x in np.clip(raw, MIN_SEIZURE_S, MAX_SEIZURE_S)]


def _place(
    rng: np.random.Generator,
    lengths: Sequence[float],
    duration_s: float,
    taken: Sequence[tuple[float, float]] = (),
    gap_s: float = 20.0,
) -> list[tuple[float, float]]:
    """Non-overlapping (onset, offset) for each length, ``gap_s`` apart from each other and
    from ``taken``, and 5 s from the file edges; a length that does not fit is dropped.
    Sorted by onset (see :func:`_place_indexed` for which length each span came from)."""
    return [
        (onset, offset)
        for onset, offset, _ in _place_indexed(rng, lengths, duration_s, taken, gap_s)
    ]


def _place_indexed(
    rng: np.random.Generator,
    lengths: Sequence[float],
    duration_s: float,
    taken: Sequence[tuple[float, float]] = (),
    gap_s: float = 20.0,
) -> list[tuple[float, float, int]]:
    """:func:`_place` with, for each span, the index of its length in ``lengths``."""
    placed: list[tuple[float, float, int]] = []
    for index, length in enumerate(lengths):
        for _ in range(50):
            onset = (
                round(float(rng.uniform(5.0, duration_s - 5.0 - length)), 4)
                if duration_s - 10.0 > length
                else -1.0
            )
            if onset < 0:
                break
            offset = round(onset + length, 4)
            spans = (*taken, *((a, b) for a, b, _ in placed))
            if all(offset + gap_s <= a or onset >= b + gap_s for a, b in spans):
                placed.append((onset, offset, index))
                break
    return sorted(placed)


def _seizure(
    rng: np.random.Generator, onset: float, offset: float, style: dict[str, Any]
) -> SeizureSpec:
    duration = offset - onset
    if style["generalized"]:
        label = "absz" if duration <= 30 else "gnsz"
        return SeizureSpec(
            onset, offset, label, None,
            f_start_hz=float(rng.uniform(3.0, 4.0)), f_end_hz=float(rng.uniform(2.5, 3.0)),
            amplitude_uV=float(rng.uniform(120.0, 250.0)), spread_speed=0.0, spread_length=0.0,
        )  # fmt: skip
    label = _choice(rng, {"fnsz": 0.6, "cpsz": 0.25, "tcsz": 0.15})
    length = {"fnsz": (0.35, 0.6), "cpsz": (0.5, 0.8), "tcsz": (1.2, 2.0)}[label]
    return SeizureSpec(
        onset, offset, label, style["focus"],
        f_start_hz=float(rng.uniform(5.0, 9.0)), f_end_hz=float(rng.uniform(2.5, 4.0)),
        amplitude_uV=float(rng.uniform(80.0, 200.0)),
        spread_speed=float(rng.uniform(0.15, 0.5)), spread_length=float(rng.uniform(*length)),
    )  # fmt: skip


def _artifacts(
    rng: np.random.Generator, duration_s: float, taken: Sequence[tuple[float, float]]
) -> tuple[ArtifactSpec, ...]:
    """Chewing and movement hard negatives, about one of each per 20 min, away from seizures."""
    kinds = ["chewing"] * int(rng.poisson(duration_s / 1200)) + ["movement"] * int(
        rng.poisson(duration_s / 1200)
    )
    lengths = [float(rng.uniform(3, 20) if k == "chewing" else rng.uniform(4, 30)) for k in kinds]
    out = []
    # Each span keeps its own kind (version 1 paired the sorted spans with the kinds in
    # draw order, so a span could get another artifact's kind).
    for onset, offset, index in _place_indexed(rng, lengths, duration_s, taken, gap_s=10.0):
        kind = kinds[index]
        if kind == "chewing":
            rate, amp, electrodes = (
                rng.uniform(5, 8),
                rng.uniform(30, 80),
                LEFT_TEMPORAL + RIGHT_TEMPORAL,
            )
        else:
            out.append(_movement(rng, onset, offset))
            continue
        out.append(ArtifactSpec(kind, onset, offset, float(rate), float(amp), electrodes))
    return tuple(out)


def _movement(rng: np.random.Generator, onset: float, offset: float) -> ArtifactSpec:
    """A movement artifact on [onset, offset]: 1-3 Hz, 60-180 µV, 2-4 neighbouring electrodes."""
    center = int(rng.integers(0, len(CHANNELS)))
    near = np.argsort(DIST[center])[: int(rng.integers(2, 5))]
    rate, amp = rng.uniform(1, 3), rng.uniform(60, 180)
    electrodes = tuple(ELECTRODES[i] for i in sorted(near))
    return ArtifactSpec("movement", onset, offset, float(rate), float(amp), electrodes)


def _extra_movement(
    rng: np.random.Generator,
    duration_s: float,
    seizures: Sequence[tuple[float, float]],
    artifacts: Sequence[ArtifactSpec],
) -> tuple[ArtifactSpec, ...]:
    """Generator version 2: more movement artifacts, about one more per 10 min of recording.

    Drawn from their own random stream (``spawn_key=(2,)``) so every draw of version 1
    (files, seizures, the first artifacts) stays as it was; placed 10 s away from the
    seizures and from the artifacts already there. Same distribution as :func:`_movement`.
    """
    lengths = [float(rng.uniform(4, 30)) for _ in range(int(rng.poisson(duration_s / 600)))]
    taken = [*seizures, *((a.onset_s, a.offset_s) for a in artifacts)]
    spans = _place(rng, lengths, duration_s, taken, gap_s=10.0)
    return tuple(_movement(rng, onset, offset) for onset, offset in spans)


def plan_corpus(n_patients: int, hours: float, seed: int) -> list[FilePlan]:
    """Every file of the corpus: layout, channels, durations, seizures, hard negatives.

    Cheap (no signals); :func:`generate_corpus` renders it. Raises ValueError on bad sizes.
    """
    if n_patients < 1:
        raise ValueError(f"--patients must be at least 1, got {n_patients}")
    if not hours > 0:
        raise ValueError(f"--hours must be positive, got {hours}")
    rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(0,)))
    extra_rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(2,)))
    patients = _patient_ids(rng, n_patients)
    # Aim for files of about 10 min on average, so short corpora still have several per patient.
    lam = float(np.clip(hours * 60.0 / n_patients / 10.0, 1.0, 12.0))

    layout = []  # (patient, session, montage, sfreq, token, start)
    for patient in patients:
        n_files = int(np.clip(1 + rng.poisson(lam - 1.0), 1, 12))
        n_sessions = int(rng.integers(math.ceil(n_files / 4), min(3, n_files) + 1))
        per_session = np.ones(n_sessions, dtype=int)
        for _ in range(n_files - n_sessions):
            open_ = np.flatnonzero(per_session < 4)
            per_session[open_[int(rng.integers(0, open_.size))]] += 1
        days = np.sort(rng.choice(np.arange(16 * 365), size=n_sessions, replace=False))
        number = 0
        for n_tokens, day in zip(per_session, days, strict=True):
            number += int(rng.integers(1, 4))
            date = dt.date(2002, 1, 1) + dt.timedelta(days=int(day))
            session = f"s{number:03d}_{date:%Y_%m_%d}"
            montage, sfreq = _choice(rng, MONTAGES), _choice(rng, SFREQS)
            clock = dt.datetime.combine(
                date, dt.time(int(rng.integers(7, 18)), int(rng.integers(0, 60)))
            )
            for token in range(int(n_tokens)):
                layout.append((patient, session, montage, sfreq, token, clock))
                clock += dt.timedelta(minutes=int(rng.integers(20, 90)))

    durations = _durations(rng, len(layout), hours)
    seizure_free = {p: bool(rng.random() < SEIZURE_FREE_PATIENTS) for p in patients}
    if all(seizure_free.values()):  # a corpus needs seizures: the first patient has them
        seizure_free[patients[0]] = False
    has_seizure = rng.random(len(layout)) < SEIZURE_FILE_FRACTION
    has_seizure &= np.array([not seizure_free[row[0]] for row in layout])
    # Seizures first, so the splits can be balanced on them.
    spans_of: list[list[tuple[float, float]]] = [[] for _ in layout]
    for row_index in np.flatnonzero(has_seizure):
        duration = float(durations[row_index])
        spans_of[row_index] = _place(rng, _seizure_lengths(rng, duration), duration)

    styles: dict[str, dict[str, Any]] = {
        p: {"generalized": bool(rng.random() < 0.3), "focus": FOCI[int(rng.integers(0, len(FOCI)))],
            "background_uV": float(rng.uniform(12, 22)), "alpha_hz": float(rng.uniform(8.5, 11.5)),
            "alpha_uV": float(rng.uniform(10, 25))}
        for p in patients
    }  # fmt: skip
    # hours, seizures, has seizures; then seizures per region (generalized, then each focus
    # region), so that no split's seizures come from regions the others never see
    features = np.zeros((n_patients, 3 + len(REGIONS)))
    row_of = {p: i for i, p in enumerate(patients)}
    for index, row in enumerate(layout):
        features[row_of[row[0]], :2] += (durations[index] / 3600.0, len(spans_of[index]))
    features[:, 2] = features[:, 1] > 0
    for i, patient in enumerate(patients):
        style = styles[patient]
        region = "generalized" if style["generalized"] else _REGION_OF[style["focus"]]
        features[i, 3 + REGIONS.index(region)] = features[i, 1]
    split_of = _balanced_splits(rng, patients, features, weights=_BALANCE_WEIGHTS)
    if n_patients >= 3:
        for split in SPLITS:  # every split gets at least one seizure: in its longest file
            rows = [i for i, row in enumerate(layout) if split_of[row[0]] == split]
            if not any(spans_of[i] for i in rows):
                longest = max(rows, key=lambda i: durations[i])
                duration = float(durations[longest])
                spans_of[longest] = _place(rng, [min(30.0, duration / 4)], duration)

    plans = []
    for index, (patient, session, montage, sfreq, token, clock) in enumerate(layout):
        style, duration = styles[patient], int(durations[index])
        spans = spans_of[index]
        seizures = tuple(_seizure(rng, a, b, style) for a, b in spans)
        missing_p = 0.15 if montage == "01_tcp_ar" else 0.03
        missing = ("Fz", "Pz") if rng.random() < missing_p else ()
        names_1010 = bool(rng.random() < 0.08)
        line = rng.uniform(15, 40) if rng.random() < 0.1 else rng.uniform(3, 10)
        spec = RecordSpec(
            duration_s=duration, sfreq=sfreq, montage=montage,
            labels=_labels(rng, montage, missing, names_1010),
            background_uV=style["background_uV"], alpha_hz=style["alpha_hz"],
            alpha_uV=style["alpha_uV"], blink_rate_hz=float(rng.uniform(0.05, 0.3)),
            muscle_rate_hz=float(rng.uniform(0.01, 0.06)), pop_rate_hz=float(rng.uniform(0.001, 0.008)),
            line_uV=float(line), heart_rate_bpm=float(rng.uniform(55, 100)),
            seizures=seizures, artifacts=_artifacts(rng, duration, spans),
        )  # fmt: skip
        extra = _extra_movement(extra_rng, duration, spans, spec.artifacts)
        spec = dataclasses.replace(spec, artifacts=(*spec.artifacts, *extra))
        stem = f"{patient}_{session[:4]}_t{token:03d}"
        plans.append(
            FilePlan(
                index,
                split_of[patient],
                patient,
                session,
                montage,
                stem,
                clock.isoformat(),
                missing,
                names_1010,
                bool(rng.random() < 0.7),
                spec,
            )
        )
    return plans


# ---------------------------------------------------------------------------- writing


def write_edf(
    path: str | os.PathLike[str],
    data_uV: np.ndarray,
    ch_names: Sequence[str],
    sfreq: int,
    *,
    patient: str = "X",
    start: dt.datetime | None = None,
) -> None:
    """Write one EDF+ file atomically: ``data_uV`` (n_channels, n_samples) in µV, 1 s records.

    Values are clipped to ±5000 µV (the physical range) and stored as 16-bit integers.
    ``n_samples`` must be a whole number of seconds at the integer rate ``sfreq``.
    """
    path = Path(path)
    data = np.asarray(data_uV, dtype=np.float64)
    if data.ndim != 2 or data.shape[0] != len(ch_names):
        raise ValueError(
            f"{path}: data_uV must be (n_channels, n_samples) with one row per name; got shape "
            f"{data.shape} for {len(ch_names)} channel names"
        )
    if int(sfreq) != sfreq or sfreq <= 0 or data.shape[1] % int(sfreq):
        raise ValueError(
            f"{path}: {data.shape[1]} samples at {sfreq} Hz is not a whole number of 1 s data "
            "records; use an integer rate and trim or pad the signal to whole seconds"
        )
    start = start or dt.datetime(2000, 1, 1)
    np.clip(data, -PHYSICAL_MAX_UV, PHYSICAL_MAX_UV, out=data)
    signals = [
        EdfSignal(
            row,
            int(sfreq),
            label=name,
            physical_dimension="uV",
            physical_range=(-PHYSICAL_MAX_UV, PHYSICAL_MAX_UV),
            digital_range=(-32767, 32767),
        )
        for row, name in zip(data, ch_names, strict=True)
    ]
    edf = Edf(
        signals,
        patient=Patient(code=patient),
        recording=Recording(startdate=start.date()),
        starttime=start.time(),
        data_record_duration=1.0,
    )
    with atomic_open(path, "wb") as fh:
        edf.write(cast(io.BufferedWriter, fh))


def format_csv(
    plan_seizures: Sequence[SeizureSpec],
    duration_s: float,
    bname: str,
    montage: str,
    *,
    fill_background: bool = True,
) -> str:
    """Text of a per-channel ``.csv`` (csv_v1.0.0): one row per TCP channel and interval.

    A channel's seizure row starts when one of its two electrodes joins the seizure; the focus
    pairs start at the onset, so the union over channels equals the ``.csv_bi`` seizures.
    """
    rows: list[tuple[int, float, float, str]] = []
    pairs = tcp_pairs(montage)
    for sz in plan_seizures:
        if sz.generalized:
            starts = {k: sz.onset_s for k in range(len(pairs))}
        else:
            gain, delay = focal_spread(sz)
            starts = {}
            for k, pair in enumerate(pairs):
                idx = [_ELECTRODE_UPPER[e] for e in pair.split("-")]
                joined = [delay[i] for i in idx if gain[i] >= 0.3]
                if joined:
                    starts[k] = round(sz.onset_s + min(joined), 4)
        rows += [(k, start, sz.offset_s, sz.label) for k, start in starts.items()]
    if fill_background:
        for k in range(len(pairs)):
            cursor = 0.0
            for _, a, b, _ in sorted(r for r in rows if r[0] == k):
                if a > cursor:
                    rows.append((k, cursor, a, "bckg"))
                cursor = b
            if cursor < duration_s:
                rows.append((k, cursor, float(duration_s), "bckg"))
    lines = [
        "# version = csv_v1.0.0",
        f"# bname = {bname}",
        f"# duration = {duration_s:.4f} secs",
        "# montage_file = nedc_eas_default_montage.txt",
        "#",
        "channel,start_time,stop_time,label,confidence",
    ]
    lines += [f"{pairs[k]},{a:.4f},{b:.4f},{lab},1.0000" for k, a, b, lab in sorted(rows)]
    return "\n".join(lines) + "\n"


#: TUSZ seizure type -> SzCORE / HED-SCORE event type, for the BIDS layout.
HED_TYPES: dict[str, str] = {
    "fnsz": "sz_foc",
    "cpsz": "sz_foc_ia",
    "tcsz": "sz_gen_m_tonicClonic",
    "gnsz": "sz_gen",
    "absz": "sz_gen_nm_typical",
}
LAYOUTS = ("tusz", "bids")


def format_bids_events(
    seizures: Sequence[SeizureSpec], duration_s: float, start: dt.datetime
) -> str:
    """Text of a SzCORE ``*_events.tsv`` for the seizures of one synthetic file."""
    stamp = start.strftime("%Y-%m-%d %H:%M:%S")
    rows = [
        (f"{sz.onset_s:.2f}", f"{sz.offset_s - sz.onset_s:.2f}", HED_TYPES.get(sz.label, "sz"))
        for sz in sorted(seizures, key=lambda sz: sz.onset_s)
    ] or [("0.00", f"{duration_s:.2f}", "bckg")]
    lines = ["onset\tduration\teventType\tconfidence\tchannels\tdateTime\trecordingDuration"]
    lines += [f"{a}\t{d}\t{kind}\tn/a\tn/a\t{stamp}\t{duration_s:.2f}" for a, d, kind in rows]
    return "\n".join(lines) + "\n"


def _write_bids_top(out: Path, plans: Sequence[FilePlan], seed: int) -> None:
    """dataset_description.json, participants.tsv (with the split) and README."""
    atomic_write_json(
        out / "dataset_description.json",
        {
            "Name": f"brain-go-brr synthetic EEG corpus (seed {seed})",
            "BIDSVersion": "1.9.0",
            "DatasetType": "raw",
            "GeneratedBy": [{"Name": "brain-go-brr synth", "Version": str(GENERATOR_VERSION)}],
        },
    )
    splits = {p.patient: p.split for p in plans}
    rows = [f"sub-{patient}\t{splits[patient]}" for patient in sorted(splits)]
    atomic_write_text(out / "participants.tsv", "participant_id\tsplit\n" + "\n".join(rows) + "\n")
    atomic_write_text(
        out / "README",
        "Synthetic EEG written by 'brain-go-brr synth --layout bids': TUSZ-like recordings "
        "(EDF channel names and rates as in TUSZ) with SzCORE events.tsv labels.\n",
    )


def _render_and_write(
    out_dir: str, plan: FilePlan, seed: int, layout: str = "tusz"
) -> dict[str, Any]:
    """Worker: render file ``plan.index`` with its own RNG, write EDF + labels, return its info."""
    rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(1, plan.index)))
    rendered = render_record(plan.spec, rng)
    edf_path = Path(out_dir) / plan.path_in(layout)
    start = dt.datetime.fromisoformat(plan.start)
    write_edf(
        edf_path,
        rendered.data_uV,
        rendered.labels,
        rendered.sfreq,
        patient=plan.patient,
        start=start,
    )
    spec = plan.spec
    if layout == "bids":
        stem = edf_path.name[: -len("_eeg.edf")]
        events_text = format_bids_events(spec.seizures, spec.duration_s, start)
        atomic_write_text(edf_path.with_name(stem + "_events.tsv"), events_text)
        sidecar = {
            "TaskName": "szMonitoring",
            "SamplingFrequency": spec.sfreq,
            "PowerLineFrequency": 60,
            "EEGReference": "linked ears" if plan.montage == "02_tcp_le" else "common reference",
            "RecordingDuration": spec.duration_s,
            "EEGChannelCount": sum(1 for label in spec.labels if label.startswith("EEG ")),
        }
        atomic_write_json(edf_path.with_name(stem + "_eeg.json"), sidecar)
        return _manifest_entry(plan, rendered, layout)
    events = [Event(sz.onset_s, sz.offset_s, "seiz") for sz in spec.seizures]
    bi = format_csv_bi(events, spec.duration_s, plan.stem, fill_background=plan.fill_background)
    atomic_write_text(edf_path.with_suffix(".csv_bi"), bi)
    per_channel = format_csv(
        spec.seizures,
        spec.duration_s,
        plan.stem,
        plan.montage,
        fill_background=plan.fill_background,
    )
    atomic_write_text(edf_path.with_suffix(".csv"), per_channel)
    return _manifest_entry(plan, rendered, layout)


def _manifest_entry(plan: FilePlan, rendered: Rendered, layout: str = "tusz") -> dict[str, Any]:
    spec = plan.spec
    return {
        "path": plan.path_in(layout).as_posix(),
        "split": plan.split,
        "patient": plan.patient,
        "session": plan.session,
        "montage": plan.montage,
        "sfreq": spec.sfreq,
        "duration_s": spec.duration_s,
        "start": plan.start,
        "channels": list(spec.labels),
        "missing_channels": list(plan.missing),
        "names_1010": plan.names_1010,
        "fill_background": plan.fill_background,
        "seizures": [asdict(sz) for sz in spec.seizures],
        "artifacts": {
            "hard_negatives": [asdict(a) for a in spec.artifacts],
            **rendered.events,
            "line_uV": spec.line_uV,
        },
        "background": {
            "background_uV": spec.background_uV,
            "alpha_hz": spec.alpha_hz,
            "alpha_uV": spec.alpha_uV,
            "heart_rate_bpm": spec.heart_rate_bpm,
        },
    }


def _summary(out_dir: Path, entries: list[dict[str, Any]]) -> dict[str, Any]:
    totals: dict[str, dict[str, float]] = {}
    for split in SPLITS:
        rows = [e for e in entries if e["split"] == split]
        seizures = [s for e in rows for s in e["seizures"]]
        totals[split] = {
            "patients": len({e["patient"] for e in rows}),
            "files": len(rows),
            "files_with_seizures": sum(1 for e in rows if e["seizures"]),
            "seizures": len(seizures),
            "hours": sum(e["duration_s"] for e in rows) / 3600.0,
            "seizure_hours": sum(s["offset_s"] - s["onset_s"] for s in seizures) / 3600.0,
        }
    return {"out_dir": str(out_dir), "files": len(entries), "splits": totals}


def _corpus_folders(out: Path) -> list[Path]:
    """The non-empty corpus folders under ``out``: ``edf/`` and BIDS ``sub-*``."""
    folders = [out / "edf"] if (out / "edf").is_dir() else []
    folders += sorted(p for p in out.glob("sub-*") if p.is_dir())
    return [f for f in folders if any(f.iterdir())]


def generate_corpus(
    out_dir: str | os.PathLike[str],
    n_patients: int,
    hours: float,
    seed: int,
    workers: int = 1,
    *,
    overwrite: bool = False,
    progress: bool = False,
    layout: str = "tusz",
) -> dict[str, Any]:
    """Write a synthetic corpus to ``out_dir``; returns a summary per split.

    ``layout`` is ``"tusz"`` (TUSZ v2.0.3 folders, csv_bi/csv labels) or ``"bids"`` (a
    BIDS-EEG dataset with SzCORE events.tsv labels); both hold the same recordings.
    ``workers`` processes render files in parallel; the output does not depend on it.
    An ``out_dir`` that already holds a corpus (``edf/`` or ``sub-*``) is refused unless
    ``overwrite`` (and then only when it is a synthetic corpus: it has ``synth_manifest.json``
    or the ``.synth_incomplete.json`` marker of an interrupted run). An interrupted run with
    the same settings is simply redone in place: the files are deterministic.
    """
    if layout not in LAYOUTS:
        raise ValueError(f"--layout must be one of {', '.join(LAYOUTS)}, got {layout!r}")
    out = Path(out_dir)
    settings: dict[str, Any] = {"n_patients": n_patients, "hours": hours, "seed": seed}
    if layout != "tusz":
        settings["layout"] = layout
    marker = out / INCOMPLETE
    resuming = marker.exists() and json.loads(marker.read_text()) == settings
    existing = _corpus_folders(out)
    if existing and not resuming:
        if not overwrite:
            raise FileExistsError(
                f"{existing[0]} already exists; pass --overwrite (overwrite=True) to replace a "
                "synthetic corpus, or choose an empty OUT"
            )
        if not ((out / MANIFEST).exists() or marker.exists()):
            raise FileExistsError(
                f"{out} has a corpus ({existing[0].name}) but no {MANIFEST}: it is not a "
                "synthetic corpus, refusing to delete it; choose another OUT"
            )
        (out / MANIFEST).unlink(missing_ok=True)
        for folder in existing:
            shutil.rmtree(folder)
        for name in ("dataset_description.json", "participants.tsv", "README"):
            (out / name).unlink(missing_ok=True)
    atomic_write_json(marker, settings)
    plans = plan_corpus(n_patients, hours, seed)
    entries: dict[int, dict[str, Any]] = {}
    with _progress(progress) as bar:
        task = bar.add_task("synth", total=sum(p.spec.duration_s for p in plans) / 3600.0)
        if workers <= 1:
            for plan in plans:
                entries[plan.index] = _render_and_write(str(out), plan, seed, layout)
                bar.advance(task, plan.spec.duration_s / 3600.0)
        else:
            with ProcessPoolExecutor(max_workers=workers) as pool:
                # Longest first, so the last file to finish is a short one.
                ordered = sorted(plans, key=lambda p: -p.spec.duration_s * p.spec.sfreq)
                futures = {
                    pool.submit(_render_and_write, str(out), p, seed, layout): p for p in ordered
                }
                for future in as_completed(futures):
                    plan = futures[future]
                    entries[plan.index] = future.result()
                    bar.advance(task, plan.spec.duration_s / 3600.0)
    ordered_entries = [entries[i] for i in range(len(plans))]
    summary = _summary(out, ordered_entries)
    if layout == "bids":
        _write_bids_top(out, plans, seed)
    manifest = {
        "generator": "brain_go_brr.data.synth",
        "generator_version": GENERATOR_VERSION,
        "layout": layout,
        "seed": seed,
        "settings": {"n_patients": n_patients, "hours": hours},
        "totals": summary["splits"],
        "files": ordered_entries,
    }
    atomic_write_json(out / MANIFEST, manifest)
    marker.unlink()
    return summary


def _progress(enabled: bool) -> Any:
    from rich.progress import (
        BarColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        TextColumn("{task.completed:.2f}/{task.total:.2f} h of EEG"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        disable=not enabled,
    )


def make_recording(
    duration_s: int = 120,
    sfreq: int = 256,
    seed: int = 0,
    *,
    montage: str = "01_tcp_ar",
    seizures: Sequence[tuple[float, float]] = ((40.0, 70.0),),
    generalized: bool = False,
    focus: str = "T3",
    missing: tuple[str, ...] = (),
    artifacts: Sequence[ArtifactSpec] = (),
) -> tuple[Rendered, RecordSpec]:
    """One synthetic recording in memory, for tests: ``(rendered, spec)``.

    ``seizures`` are (onset_s, offset_s); each is a focal ``fnsz`` at ``focus`` evolving from
    8 to 3 Hz, or a 3 Hz ``absz``/``gnsz`` spike-and-wave when ``generalized``.
    """
    specs = []
    for onset, offset in seizures:
        if generalized:
            label = "absz" if offset - onset <= 30 else "gnsz"
            specs.append(SeizureSpec(onset, offset, label, None, 3.5, 2.8, 200.0, 0.0, 0.0))
        else:
            specs.append(SeizureSpec(onset, offset, "fnsz", focus, 8.0, 3.0, 150.0, 0.3, 0.5))
    rng = np.random.default_rng(seed)
    spec = RecordSpec(
        duration_s=duration_s, sfreq=sfreq, montage=montage,
        labels=_labels(rng, montage, missing, names_1010=False),
        background_uV=15.0, alpha_hz=10.0, alpha_uV=20.0, blink_rate_hz=0.15,
        muscle_rate_hz=0.03, pop_rate_hz=0.003, line_uV=8.0, heart_rate_bpm=70.0,
        seizures=tuple(specs), artifacts=tuple(artifacts),
    )  # fmt: skip
    return render_record(spec, rng), spec


# ---------------------------------------------------------------------------- CLI


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "out", type=Path, help="output folder (gets edf/ or sub-*/, and synth_manifest.json)"
    )
    parser.add_argument("--patients", type=int, default=20, help="number of patients (default 20)")
    parser.add_argument("--hours", type=float, default=8.0, help="total EEG hours (default 8)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.add_argument(
        "--workers",
        type=int,
        default=os.cpu_count() or 1,
        help="parallel processes (default: all cores)",
    )
    parser.add_argument(
        "--overwrite", action="store_true", help="replace an existing synthetic corpus in OUT"
    )
    parser.add_argument(
        "--layout",
        choices=LAYOUTS,
        default="tusz",
        help="tusz (default): TUSZ v2.0.3 folders with csv_bi/csv; bids: a BIDS-EEG dataset "
        "with SzCORE events.tsv and participants.tsv splits",
    )


def run(args: argparse.Namespace) -> int:
    try:
        summary = generate_corpus(
            args.out, args.patients, args.hours, args.seed, args.workers,
            overwrite=args.overwrite, progress=True, layout=args.layout,
        )  # fmt: skip
    except (ValueError, FileExistsError) as exc:
        print(f"brain-go-brr synth: {exc}")
        return 2
    for split, t in summary["splits"].items():
        print(
            f"{split:<5} {t['patients']:>3} patients {t['files']:>4} files {t['hours']:7.2f} h "
            f"{t['seizures']:>4} seizures {t['seizure_hours']:6.2f} h seizure"
        )
    print(f"wrote {summary['files']} files and {MANIFEST} to {args.out}")
    return 0
