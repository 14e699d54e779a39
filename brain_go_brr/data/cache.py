"""The window cache on disk: one memory-mapped float16 array per split, windows are views.

Layout of a cache folder (written by ``brain-go-brr prepare``, read by the DataModule)::

    CACHE/
      prepare_report.json          per-record outcome and per-split totals (see prepare.py)
      <split>/index.json           the records of the split, in order (record index = position)
      <split>/signals-<tag>.npy    float16, flat: record i is (19, n_i) C-contiguous at 19*offset_i
      <split>/labels-<tag>.npy     uint8, flat: record i is (n_i,) at offset_i, 1 = seizure
      shards/<key>.npz             a prepared record not yet packed into its split (resume)
      shards/<key>.skip.json       a record skipped for a reason (not retried while unchanged)

Every recording is stored once at 256 Hz: 19 channels x 2 bytes = 35.0 MB per hour of EEG,
plus 0.9 MB of labels. A 60 s training window at 10 s stride is ``signals(i)[:, s:s + 15360]``,
a view into the memory map, so a 6x window overlap costs nothing on disk.

``index.json`` names the array files it goes with; it is replaced last and atomically, so a
reader always sees a consistent split even while ``prepare`` rewrites it. The ``<tag>`` is a
hash of the packed records' keys, so a changed split gets new file names.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from brain_go_brr.annotations import Event
from brain_go_brr.data.channels import N_CHANNELS
from brain_go_brr.io import atomic_open, atomic_write_json

#: Sampling rate of everything in the cache (Hz).
SFREQ = 256
#: Cache format version, bumped when the layout changes (older caches are rebuilt).
FORMAT_VERSION = 1
INDEX_NAME = "index.json"
SHARDS_DIR = "shards"


@dataclass(frozen=True)
class RecordInfo:
    """One cached recording of a split (``TUSZDataModule.split_records`` returns these)."""

    record_id: str  # file stem, e.g. "aaaaaasf_s001_t000"
    patient: str  # file-name prefix before the first "_"
    path: str  # EDF path relative to the data root (posix)
    n_samples: int  # length at 256 Hz
    duration_s: float  # of the EDF recording (n_samples / 256 up to one sample)
    seizures: list[Event] = field(default_factory=list)  # after clipping to the recording
    orig_sfreq: float = 0.0  # sampling rate of the EDF (Hz)
    montage: str | None = None  # e.g. "01_tcp_ar"
    interpolated: list[str] = field(default_factory=list)  # channels filled by interpolation


def record_meta(
    *,
    key: str,
    rel_path: str,
    patient: str,
    n_samples: int,
    duration_s: float,
    seizures: Sequence[Event],
    orig_sfreq: float,
    montage: str | None,
    interpolated: Sequence[str],
    warnings: Sequence[str] = (),
) -> dict[str, Any]:
    """The JSON entry of one record in ``index.json`` (and in its shard)."""
    return {
        "key": key,
        "record_id": Path(rel_path).stem,
        "patient": patient,
        "path": rel_path,
        "n_samples": int(n_samples),
        "duration_s": float(duration_s),
        "seizures": [[float(e.start_s), float(e.stop_s)] for e in seizures],
        "orig_sfreq": float(orig_sfreq),
        "montage": montage,
        "interpolated": list(interpolated),
        "warnings": list(warnings),
    }


def _info(meta: dict[str, Any]) -> RecordInfo:
    return RecordInfo(
        record_id=meta["record_id"],
        patient=meta["patient"],
        path=meta["path"],
        n_samples=meta["n_samples"],
        duration_s=meta["duration_s"],
        seizures=[Event(a, b, "seiz") for a, b in meta["seizures"]],
        orig_sfreq=meta["orig_sfreq"],
        montage=meta["montage"],
        interpolated=list(meta["interpolated"]),
    )


# ----------------------------------------------------------------------------- shards


def write_shard(path: Path, signals: np.ndarray, labels: np.ndarray, meta: dict[str, Any]) -> None:
    """Store one prepared record atomically: signals (19, n) float16, labels (n,) uint8."""
    if signals.shape != (N_CHANNELS, labels.shape[0]):
        raise ValueError(
            f"{meta['path']}: signals {signals.shape} and labels {labels.shape} disagree; "
            f"expected ({N_CHANNELS}, n) and (n,)"
        )
    with atomic_open(path, "wb") as fh:
        np.savez(
            fh,
            signals=np.ascontiguousarray(signals, dtype=np.float16),
            labels=np.ascontiguousarray(labels, dtype=np.uint8),
            meta=np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8),
        )


def read_shard(path: Path) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    """``(signals (19, n) float16, labels (n,) uint8, meta)`` of a shard file."""
    with np.load(path, allow_pickle=False) as z:
        meta = json.loads(z["meta"].tobytes().decode())
        return z["signals"], z["labels"], meta


# ----------------------------------------------------------------------------- packed splits


def _npy_header(fh: Any, dtype: np.dtype[Any], total: int) -> None:
    descr = np.lib.format.dtype_to_descr(dtype)
    np.lib.format.write_array_header_2_0(
        fh, {"descr": descr, "fortran_order": False, "shape": (total,)}
    )


def pack_split(
    split_dir: Path,
    metas: Sequence[dict[str, Any]],
    load: Callable[[dict[str, Any]], tuple[np.ndarray, np.ndarray]],
    *,
    fingerprint: str,
) -> None:
    """Write the split ``split_dir`` holding ``metas`` in order; ``load(meta)`` gives its arrays.

    Records are streamed one at a time into the two flat ``.npy`` files (memory stays at one
    record), then ``index.json`` is replaced, then array files it no longer names are removed.
    """
    split_dir.mkdir(parents=True, exist_ok=True)
    keys = "\n".join(m["key"] for m in metas)
    tag = hashlib.sha1(f"{fingerprint}\n{keys}".encode()).hexdigest()[:12]
    signals_name, labels_name = f"signals-{tag}.npy", f"labels-{tag}.npy"
    offsets = np.concatenate([[0], np.cumsum([m["n_samples"] for m in metas])]).astype(int)
    total = int(offsets[-1])
    with (
        atomic_open(split_dir / signals_name, "wb") as sig_fh,
        atomic_open(split_dir / labels_name, "wb") as lab_fh,
    ):
        _npy_header(sig_fh, np.dtype(np.float16), N_CHANNELS * total)
        _npy_header(lab_fh, np.dtype(np.uint8), total)
        for meta in metas:
            signals, labels = load(meta)
            if signals.shape != (N_CHANNELS, meta["n_samples"]) or labels.shape != (
                meta["n_samples"],
            ):
                raise RuntimeError(
                    f"{meta['path']}: cached arrays {signals.shape}/{labels.shape} do not "
                    f"match n_samples={meta['n_samples']}; delete {split_dir} and prepare again"
                )
            sig_fh.write(np.ascontiguousarray(signals, dtype=np.float16).data)
            lab_fh.write(np.ascontiguousarray(labels, dtype=np.uint8).data)
    index = {
        "format": FORMAT_VERSION,
        "sfreq": SFREQ,
        "n_channels": N_CHANNELS,
        "fingerprint": fingerprint,
        "signals": signals_name,
        "labels": labels_name,
        "n_samples_total": total,
        "records": [{**m, "offset": int(o)} for m, o in zip(metas, offsets[:-1], strict=True)],
    }
    atomic_write_json(split_dir / INDEX_NAME, index, indent=1)
    for old in [*split_dir.glob("signals-*.npy"), *split_dir.glob("labels-*.npy")]:
        if old.name not in (signals_name, labels_name):
            old.unlink(missing_ok=True)


def read_index(split_dir: Path) -> dict[str, Any] | None:
    """The parsed ``index.json`` of a split, or ``None`` if absent or of another format."""
    path = split_dir / INDEX_NAME
    if not path.exists():
        return None
    index: dict[str, Any] = json.loads(path.read_text())
    return index if index.get("format") == FORMAT_VERSION else None


class SplitCache:
    """Read access to one prepared split: per-record views into two memory maps.

    The memory maps open lazily in each process, so the object pickles cheaply into
    DataLoader workers (a pickled ``np.memmap`` would copy its whole contents).
    """

    def __init__(self, cache_dir: str | Path, split: str) -> None:
        self.cache_dir = Path(cache_dir)
        self.split = split
        self.split_dir = self.cache_dir / split
        index = read_index(self.split_dir)
        if index is None:
            raise FileNotFoundError(
                f"{self.split_dir / INDEX_NAME}: no prepared '{split}' split in cache "
                f"{self.cache_dir}; run 'brain-go-brr prepare --root TUSZ_ROOT --cache "
                f"{self.cache_dir}' (or use data=synthetic)"
            )
        self._index = index
        self._metas: list[dict[str, Any]] = index["records"]
        self.records: list[RecordInfo] = [_info(m) for m in self._metas]
        self.keys: list[str] = [m["key"] for m in self._metas]  # prepare's record keys
        self.offsets = np.array([m["offset"] for m in self._metas], dtype=np.int64)  # (R,)
        self.n_samples = np.array([m["n_samples"] for m in self._metas], dtype=np.int64)  # (R,)
        self._signals: np.ndarray | None = None
        self._labels: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self._metas)

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_signals": None, "_labels": None}

    def _open(self) -> tuple[np.ndarray, np.ndarray]:
        if self._signals is None or self._labels is None:
            self._signals = np.load(self.split_dir / self._index["signals"], mmap_mode="r")
            self._labels = np.load(self.split_dir / self._index["labels"], mmap_mode="r")
        return self._signals, self._labels

    def signals(self, i: int) -> np.ndarray:
        """Record ``i`` as a read-only (19, n) float16 view into the memory map."""
        flat, _ = self._open()
        off, n = int(self.offsets[i]), int(self.n_samples[i])
        return flat[N_CHANNELS * off : N_CHANNELS * (off + n)].reshape(N_CHANNELS, n)

    def labels(self, i: int) -> np.ndarray:
        """Record ``i``'s per-sample seizure mask, a read-only (n,) uint8 view."""
        _, flat = self._open()
        off, n = int(self.offsets[i]), int(self.n_samples[i])
        return flat[off : off + n]

    def all_labels(self) -> np.ndarray:
        """Every record's labels back to back, (sum n,) uint8 (a view)."""
        return self._open()[1]

    def nbytes(self) -> int:
        """Bytes on disk of this split (arrays and index)."""
        names = (self._index["signals"], self._index["labels"], INDEX_NAME)
        return sum((self.split_dir / name).stat().st_size for name in names)
