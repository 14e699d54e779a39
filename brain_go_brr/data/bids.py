"""BIDS-EEG datasets (the layout SzCORE and ``epilepsy2bids`` use) as a source for ``prepare``.

A BIDS root has ``dataset_description.json`` and, per recording,
``sub-XX/ses-YY/eeg/sub-XX_ses-YY_task-..._run-ZZ_eeg.edf`` with its
``..._events.tsv`` beside it (sessions are optional in BIDS: ``sub-XX/eeg/`` works too).
The subject (``sub-XX``) is the patient: splits never cut a subject.

Splits (``BidsSplitConfig.split_by``), each stated in ``prepare_report.json``:

* ``participants``: the ``split`` column of ``participants.tsv`` (the ``epilepsy2bids``
  conversion of TUSZ writes train/dev/eval there);
* ``subjects``: lists of subjects per split from the config; subjects in no list are left
  out (and listed in the report);
* ``fractions``: a seeded patient-level draw, ``fractions`` of the subjects for train, dev
  and eval, drawn separately among subjects with and without seizures, so that every split
  with a share gets a subject with seizures when there are enough;
* ``all``: every subject in one split (``all_split``, default ``eval``): evaluation only,
  e.g. a TUSZ-trained model on Siena;
* ``auto`` (the default): ``participants`` when ``participants.tsv`` has a ``split``
  column, else ``subjects`` when lists are given, else ``fractions``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from brain_go_brr.annotations import AnnotationError, events_tsv_path, read_events_tsv

SPLITS: tuple[str, ...] = ("train", "dev", "eval")
SPLIT_METHODS = ("auto", "participants", "subjects", "fractions", "all")
DESCRIPTION = "dataset_description.json"


class BidsError(ValueError):
    """A BIDS root that cannot be prepared as a whole; the message names the file and the fix."""


@dataclass(frozen=True)
class BidsSplitConfig:
    """How the subjects of a BIDS dataset are split (``data.bids.*`` in ``conf/data/bids.yaml``)."""

    split_by: str = "auto"  # auto | participants | subjects | fractions | all
    subjects: Mapping[str, Sequence[str]] = field(default_factory=dict)  # split -> sub-XX list
    fractions: tuple[float, float, float] = (0.6, 0.2, 0.2)  # train, dev, eval
    seed: int = 0  # of the fractions draw
    all_split: str = "eval"  # with split_by=all

    def __post_init__(self) -> None:
        if self.split_by not in SPLIT_METHODS:
            raise BidsError(
                f"bids split_by must be one of {', '.join(SPLIT_METHODS)}, got {self.split_by!r}"
            )
        if self.all_split not in SPLITS:
            raise BidsError(f"bids all_split must be one of {SPLITS}, got {self.all_split!r}")
        bad = sorted(set(self.subjects) - set(SPLITS))
        if bad:
            raise BidsError(f"bids subjects: unknown split(s) {bad}; use {', '.join(SPLITS)}")
        f = self.fractions
        if len(f) != 3 or min(f) < 0 or not math.isclose(sum(f), 1.0, abs_tol=1e-6):
            raise BidsError(
                f"bids fractions must be three non-negative shares of train, dev and eval "
                f"that add up to 1, got {list(f)}"
            )

    @classmethod
    def from_dict(cls, values: Mapping[str, Any] | None) -> BidsSplitConfig:
        values = dict(values or {})
        known = {"split_by", "subjects", "fractions", "seed", "all_split"}
        unknown = sorted(set(values) - known)
        if unknown:
            raise BidsError(f"bids: unknown key(s) {unknown}; valid keys: {sorted(known)}")
        if values.get("subjects") is None:
            values.pop("subjects", None)
        else:
            values["subjects"] = {
                str(k): [str(s) for s in v] for k, v in values["subjects"].items()
            }
        if "fractions" in values:
            values["fractions"] = tuple(float(x) for x in values["fractions"])
        return cls(**values)


@dataclass(frozen=True)
class BidsRecording:
    """One ``*_eeg.edf`` of the dataset."""

    path: Path
    subject: str  # sub-XX


def is_bids_root(root: Path) -> bool:
    """Does ``root`` look like a BIDS dataset (it has ``dataset_description.json``)?"""
    return (root / DESCRIPTION).is_file()


def find_recordings(root: Path) -> list[BidsRecording]:
    """Every ``sub-*/[ses-*/]eeg/*_eeg.edf`` under ``root``, sorted by path.

    Raises BidsError for a root without ``sub-*`` folders or without EDF recordings.
    """
    subjects = sorted(p for p in root.glob("sub-*") if p.is_dir())
    if not subjects:
        raise BidsError(
            f"{root}: has {DESCRIPTION} but no sub-* folders; --root must be the top of a BIDS "
            "dataset (sub-XX/ses-YY/eeg/*_eeg.edf), e.g. one written by epilepsy2bids"
        )
    found = [
        BidsRecording(path, subject.name)
        for subject in subjects
        for path in sorted(subject.rglob("*_eeg.edf"))
        if path.parent.name == "eeg"
    ]
    if not found:
        raise BidsError(
            f"{root}: no sub-*/ses-*/eeg/*_eeg.edf recordings in {len(subjects)} subject "
            "folder(s); this project reads BIDS EEG stored as EDF (convert BrainVision or "
            "EEGLAB files to EDF first)"
        )
    return found


def _read_participants(root: Path) -> dict[str, str] | None:
    """participant_id -> split from ``participants.tsv``, or None without a split column."""
    path = root / "participants.tsv"
    if not path.is_file():
        return None
    lines = [ln for ln in path.read_text(encoding="utf-8-sig").splitlines() if ln.strip()]
    if not lines:
        return None
    header = [h.strip() for h in lines[0].split("\t")]
    if "split" not in header:
        return None
    if "participant_id" not in header:
        raise BidsError(
            f"{path}: has a split column but no participant_id column; add it (sub-XX per row)"
        )
    id_col, split_col = header.index("participant_id"), header.index("split")
    out: dict[str, str] = {}
    for lineno, line in enumerate(lines[1:], start=2):
        fields = [f.strip() for f in line.split("\t")]
        if len(fields) <= max(id_col, split_col):
            raise BidsError(f"{path}:{lineno}: too few tab-separated fields; fix the row")
        subject, split = fields[id_col], fields[split_col]
        if split not in SPLITS:
            raise BidsError(
                f"{path}:{lineno}: split {split!r} of {subject} is not one of "
                f"{', '.join(SPLITS)}; fix the row or split with data.bids.split_by=fractions"
            )
        out[subject if subject.startswith("sub-") else f"sub-{subject}"] = split
    return out


def _has_seizures(recordings: Sequence[BidsRecording]) -> dict[str, bool]:
    """Per subject: does one of its events files hold a seizure? (unreadable files: no)."""
    out: dict[str, bool] = {}
    for rec in recordings:
        tsv = events_tsv_path(rec.path)
        seizures = False
        if tsv is not None and tsv.is_file():
            try:
                seizures = bool(read_events_tsv(tsv).seizures())
            except AnnotationError:
                seizures = False  # the record itself is skipped later, with the reason
        out[rec.subject] = out.get(rec.subject, False) or seizures
    return out


def _draw(subjects: list[str], fractions: Sequence[float], rng: np.random.Generator) -> list[int]:
    """Split index per subject of one group: counts by largest remainder of the shares, then
    one for every split with a share while others have more than one; shuffled, seeded."""
    n = len(subjects)
    exact = [f * n for f in fractions]
    counts = [int(x) for x in exact]
    order = sorted(range(3), key=lambda i: (-(exact[i] - counts[i]), i))
    for i in order[: n - sum(counts)]:
        counts[i] += 1
    for i in range(3):
        if fractions[i] > 0 and counts[i] == 0:
            donor = max(range(3), key=lambda j: (counts[j], -j))
            if counts[donor] > 1:
                counts[donor] -= 1
                counts[i] = 1
    labels = [s for s, c in enumerate(counts) for _ in range(c)]
    out = [0] * n
    for position, subject_index in enumerate(rng.permutation(n).tolist()):
        out[subject_index] = labels[position]
    return out


def assign_splits(
    root: Path, recordings: Sequence[BidsRecording], cfg: BidsSplitConfig
) -> tuple[dict[str, str], str]:
    """(subject -> split, a sentence saying how) for the subjects of ``recordings``.

    Subjects without a split (``subjects`` lists that leave them out) are not in the map.
    """
    subjects = sorted({r.subject for r in recordings})
    participants = _read_participants(root)
    method = cfg.split_by
    if method == "auto":
        method = (
            "participants"
            if participants is not None
            else ("subjects" if cfg.subjects else "fractions")
        )
    if method == "participants":
        if participants is None:
            raise BidsError(
                f"{root / 'participants.tsv'}: no such file or no split column; choose "
                "data.bids.split_by=fractions, subjects or all"
            )
        unlisted = [s for s in subjects if s not in participants]
        if unlisted:
            raise BidsError(
                f"{root / 'participants.tsv'}: no split for {len(unlisted)} subject(s) "
                f"({', '.join(unlisted[:5])}); add their rows or choose another split_by"
            )
        return {s: participants[s] for s in subjects}, "the split column of participants.tsv"
    if method == "subjects":
        mapping: dict[str, str] = {}
        for split, listed in cfg.subjects.items():
            for subject in listed:
                name = subject if subject.startswith("sub-") else f"sub-{subject}"
                if name in mapping and mapping[name] != split:
                    raise BidsError(
                        f"bids subjects: {name} is listed in {mapping[name]} and {split}; "
                        "a subject belongs to one split"
                    )
                mapping[name] = split
        absent = sorted(set(mapping) - set(subjects))
        if absent:
            raise BidsError(
                f"bids subjects: {', '.join(absent[:5])} not found under {root} "
                f"(subjects there: {', '.join(subjects[:5])}{', ...' if len(subjects) > 5 else ''})"
            )
        return mapping, "subject lists of the config (data.bids.subjects)"
    if method == "all":
        return {s: cfg.all_split for s in subjects}, f"every subject in {cfg.all_split}"
    seizures = _has_seizures(recordings)
    rng = np.random.default_rng(cfg.seed)
    mapping = {}
    for group in ([s for s in subjects if seizures[s]], [s for s in subjects if not seizures[s]]):
        for subject, index in zip(group, _draw(group, cfg.fractions, rng), strict=True):
            mapping[subject] = SPLITS[index]
    shares = "/".join(f"{f:g}" for f in cfg.fractions)
    return mapping, (
        f"seeded patient-level draw (seed {cfg.seed}, train/dev/eval {shares}, "
        "stratified by subjects with seizures)"
    )
