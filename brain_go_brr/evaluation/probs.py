"""The probability cache of an evaluation run: one compressed track per recording + an index.

``evaluate.py`` runs the model once per split and stores what it predicted here, so that
post-processing and scoring can be re-run (``probs_dir=...``, Hydra sweeps over ``post.*``)
without the model. Layout, inside the run directory::

    probs/
      index.json                  # what was cached, from which checkpoint (below)
      <record_id>.npz             # prob_u8: (n_samples,) uint8, the 256 Hz probability track

Quantisation: ``prob_u8 = round(p * 255)``, read back as ``prob_u8 / 255`` (a step of
0.0039, well under the spacing of any threshold we sweep). The track keeps the full 256 Hz
rate so events land on the same samples as the reference; compressed, a mostly-background
hour takes well under 1 MB.

``index.json``::

    {"format": 1, "sfreq": 256, "quantisation": "uint8 round(p*255)",
     "split": "dev", "source": {"ckpt_path": ..., "ckpt_bytes": ..., "ckpt_mtime": ...},
     "records": [{"record_id", "patient", "path", "n_samples", "duration_s",
                  "seizures": [[start_s, stop_s], ...], "file"}]}

The index is rewritten atomically after every record, so a killed run resumes where it
stopped: a record counts as cached only once both its file and its index entry exist.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from brain_go_brr.annotations import Event
from brain_go_brr.io import atomic_open, atomic_write_json

FORMAT_VERSION = 1
SFREQ_HZ = 256
_QUANT_LEVELS = 255


class ProbCacheError(RuntimeError):
    """A probability cache that is missing, empty or from another checkpoint."""


@dataclass
class CachedRecord:
    """One recording of the cache: what scoring needs besides the probability track."""

    record_id: str
    patient: str
    path: str  # relative to the data root
    n_samples: int  # at 256 Hz
    duration_s: float
    seizures: list[Event] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "record_id": self.record_id,
            "patient": self.patient,
            "path": self.path,
            "n_samples": self.n_samples,
            "duration_s": self.duration_s,
            "seizures": [[e.start_s, e.stop_s] for e in self.seizures],
            "file": f"{self.record_id}.npz",
        }

    @classmethod
    def from_json(cls, row: dict[str, Any]) -> CachedRecord:
        return cls(
            record_id=str(row["record_id"]),
            patient=str(row["patient"]),
            path=str(row["path"]),
            n_samples=int(row["n_samples"]),
            duration_s=float(row["duration_s"]),
            seizures=[Event(float(a), float(b)) for a, b in row["seizures"]],
        )


def quantise(prob: np.ndarray) -> np.ndarray:
    """(n,) float probabilities in [0, 1] -> (n,) uint8 levels."""
    return np.rint(np.clip(prob, 0.0, 1.0) * _QUANT_LEVELS).astype(np.uint8)


def dequantise(levels: np.ndarray) -> np.ndarray:
    """(n,) uint8 levels -> (n,) float32 probabilities."""
    return levels.astype(np.float32) / np.float32(_QUANT_LEVELS)


class ProbCache:
    """Read and append the ``probs/`` folder of one evaluation run.

    Args:
        root: the ``probs/`` folder (created on the first write).
        split: the data split the probabilities belong to.
        source: identifies the checkpoint (path, size, mtime); appending to a cache made
            from another checkpoint is refused, because the tracks would silently mix.
    """

    def __init__(self, root: Path, split: str | None = None, source: dict[str, Any] | None = None):
        self.root = Path(root)
        self.index_path = self.root / "index.json"
        self.records: dict[str, CachedRecord] = {}
        self.split = split
        self.source = source
        if self.index_path.exists():
            self._load()

    def _load(self) -> None:
        try:
            index = json.loads(self.index_path.read_text())
        except json.JSONDecodeError as exc:
            raise ProbCacheError(
                f"{self.index_path}: unreadable probability index ({exc}); delete the folder "
                "and evaluate again"
            ) from None
        if index.get("format") != FORMAT_VERSION:
            raise ProbCacheError(
                f"{self.index_path}: cache format {index.get('format')!r}, this code reads "
                f"{FORMAT_VERSION}; evaluate the checkpoint again into a new run directory"
            )
        if self.split is not None and index["split"] != self.split:
            raise ProbCacheError(
                f"{self.index_path}: cache holds split {index['split']!r}, asked for "
                f"{self.split!r}; use another run directory for another split"
            )
        if self.source is not None and index["source"] != self.source:
            raise ProbCacheError(
                f"{self.index_path}: cache was made from {index['source']}, not from "
                f"{self.source}; evaluate into a new run directory (the default) instead of "
                "resuming this one"
            )
        self.split, self.source = index["split"], index["source"]
        for row in index["records"]:
            rec = CachedRecord.from_json(row)
            if (self.root / f"{rec.record_id}.npz").exists():
                self.records[rec.record_id] = rec

    @classmethod
    def open_existing(cls, run_or_probs_dir: str | Path) -> ProbCache:
        """The cache of a finished run: ``run_dir`` or its ``probs/`` folder; never empty."""
        path = Path(run_or_probs_dir)
        root = path if (path / "index.json").exists() else path / "probs"
        if not (root / "index.json").exists():
            raise ProbCacheError(
                f"{path}: no cached probabilities (expected {root / 'index.json'}); pass the "
                "run directory of an earlier 'python evaluate.py ckpt_path=...'"
            )
        cache = cls(root)
        if not cache.records:
            raise ProbCacheError(
                f"{root}: the probability cache is empty (index lists no record whose .npz "
                "exists); run evaluate.py with ckpt_path= first"
            )
        return cache

    def __contains__(self, record_id: str) -> bool:
        return record_id in self.records

    def __len__(self) -> int:
        return len(self.records)

    def add(self, record: CachedRecord, prob: np.ndarray) -> None:
        """Store ``prob``: (n_samples,) float at 256 Hz, then list it in the index."""
        if prob.shape != (record.n_samples,):
            raise ValueError(
                f"{record.record_id}: probability track has shape {prob.shape}, expected "
                f"({record.n_samples},) samples at {SFREQ_HZ} Hz"
            )
        with atomic_open(self.root / f"{record.record_id}.npz", "wb") as fh:
            np.savez_compressed(fh, prob_u8=quantise(prob))
        self.records[record.record_id] = record
        # Sorted by id, so a resumed run lists (and scores) records in the same order.
        self.records = dict(sorted(self.records.items()))
        self._write_index()

    def _write_index(self) -> None:
        atomic_write_json(
            self.index_path,
            {
                "format": FORMAT_VERSION,
                "sfreq": SFREQ_HZ,
                "quantisation": "uint8 round(p*255)",
                "split": self.split,
                "source": self.source,
                "records": [r.to_json() for r in self.records.values()],
            },
        )

    def load(self, record_id: str) -> np.ndarray:
        """(n_samples,) float32 probability track of one cached record."""
        rec = self.records[record_id]
        with np.load(self.root / f"{record_id}.npz") as npz:
            levels = npz["prob_u8"]
        if levels.shape != (rec.n_samples,):
            raise ProbCacheError(
                f"{self.root / (record_id + '.npz')}: {levels.shape[0]} samples, the index says "
                f"{rec.n_samples}; delete this file and evaluate again to recompute it"
            )
        return dequantise(levels)

    def items(self) -> Iterator[tuple[CachedRecord, np.ndarray]]:
        """(record, probability track) for every cached record, in index order."""
        for record_id, rec in self.records.items():
            yield rec, self.load(record_id)
