"""``brain-go-brr prepare``: a TUSZ or BIDS tree -> the window cache (layout in cache.py).

::

    brain-go-brr prepare --root ROOT --cache CACHE [--workers N] [--splits train dev]
                         [--limit N] [--set KEY=VALUE ...] [--quiet]
                         [--split-by auto|participants|subjects|fractions|all]
                         [--fractions 0.6 0.2 0.2] [--split-seed 0] [--all-split eval]
                         [--subjects SPLIT=sub-01,sub-02 ...]

``ROOT`` is either TUSZ v2.0.3 (``edf/{train,dev,eval}/<patient>/<session>/<montage>/*.edf``
with the ``.csv_bi`` (or ``.csv``) label files beside each EDF; the split is the folder), or
a BIDS-EEG dataset, recognised by its ``dataset_description.json``
(``sub-XX/ses-YY/eeg/*_eeg.edf`` with ``*_events.tsv`` beside each; the subject is the
patient and the split comes from :mod:`brain_go_brr.data.bids`). Each EDF goes through
:func:`brain_go_brr.data.preprocess.load_record` in a pool of processes, one record per
task; a finished record is written at once as a shard keyed by its path, the size and
mtime of the EDF and its label files, and the preprocessing fingerprint. Then:

- a killed run resumes where it stopped: finished shards are not redone;
- a second run over an unchanged tree does nothing (and says so);
- a changed preprocessing setting changes every key, so every record is rebuilt; a changed
  file rebuilds that record only (unchanged records are copied from the packed split);
- a file that cannot be used is skipped with the reason from ``RecordSkipped`` and the run
  goes on; an unexpected error is reported the same way but retried on the next run.

When every record is done, each changed split is packed into its memory-mapped arrays and
``CACHE/prepare_report.json`` is written::

    {"records": [{"path", "split", "patient", "status": "ok" | "skipped", "reason",
                  "duration_s", "seizure_s", "n_seizures", "orig_sfreq", "montage",
                  "interpolated": [channel names]}],
     "totals": {"<split>": {"records", "skipped", "hours", "seizure_hours"}}}

``path`` is relative to ``ROOT``; seizure figures are after clipping to the recording;
``records`` counts the cached records of a split, ``skipped`` the skipped ones. The report
also has ``"source": {"layout": "tusz" | "bids", "split_method": "...",
"unassigned_subjects": [...]}``: how the splits were made, and the BIDS subjects that a
``subjects`` split left out.

For Hydra entry points, :func:`ensure_prepared` takes a ``conf/data/*.yaml`` config: for
``data=synthetic`` it generates the corpus and prepares it on first use (a no-op later);
for ``data=tusz`` and ``data=bids`` it needs ``data.root``.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import hashlib
import json
import os
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from brain_go_brr.annotations import events_tsv_path
from brain_go_brr.config import plain_dict
from brain_go_brr.data.bids import (
    SPLIT_METHODS,
    BidsError,
    BidsSplitConfig,
    assign_splits,
    find_recordings,
    is_bids_root,
)
from brain_go_brr.data.bids import SPLITS as BIDS_SPLITS
from brain_go_brr.data.cache import (
    SHARDS_DIR,
    SplitCache,
    pack_split,
    read_index,
    read_shard,
    record_meta,
    write_shard,
)
from brain_go_brr.data.preprocess import PreprocessConfig, RecordSkipped, load_record
from brain_go_brr.io import atomic_write_json
from brain_go_brr.paths import default_cache_root

SPLITS: tuple[str, ...] = ("train", "dev", "eval")
REPORT_NAME = "prepare_report.json"
#: Version of the rules that skip a record; a remembered skip of older rules is retried.
#: 2: flat Fz/Pz are interpolated, not skipped; bipolar montages get their own reason.
SKIP_RULES = 2


@dataclass(frozen=True)
class SourceRecord:
    """One EDF of the tree and the key of its prepared form."""

    path: Path  # the EDF file
    rel_path: str  # relative to the data root, posix separators
    split: str
    patient: str
    key: str  # hash of rel_path, file sizes/mtimes and the preprocessing fingerprint


@dataclass(frozen=True)
class PrepareSummary:
    """What a :func:`prepare` run did."""

    cache_dir: Path
    processed: int  # records read and preprocessed in this run
    reused: int  # records already in the cache or in a shard
    skipped: int  # records skipped (this run or remembered)
    packed_splits: tuple[str, ...]  # splits whose arrays were rewritten
    noop: bool  # nothing had changed
    process_s: float  # wall time reading and preprocessing (the worker pool)
    pack_s: float  # wall time packing splits and writing the report


class PrepareError(RuntimeError):
    """The tree cannot be prepared as a whole (e.g. a patient in two splits)."""


# ----------------------------------------------------------------------------- scanning


def _file_stamp(path: Path) -> str:
    try:
        st = path.stat()
    except FileNotFoundError:
        return "-"
    return f"{st.st_size}:{st.st_mtime_ns}"


def record_key(edf: Path, rel_path: str, fingerprint: str) -> str:
    """Key of a record's prepared form: changes when the EDF, its labels or the settings do."""
    stamps = [_file_stamp(edf.with_suffix(s)) for s in (".edf", ".csv_bi", ".csv")]
    tsv = events_tsv_path(edf)
    if tsv is not None:  # BIDS: the events.tsv (TUSZ keys stay as they were)
        stamps.append(_file_stamp(tsv))
    text = "|".join([rel_path, *stamps, fingerprint])
    return hashlib.sha1(text.encode()).hexdigest()[:20]


def scan(
    root: Path,
    splits: Sequence[str],
    fingerprint: str,
    limit: int | None = None,
    bids: BidsSplitConfig | None = None,
) -> tuple[list[SourceRecord], dict[str, Any]]:
    """The EDF files of ``root`` (sorted by path; first ``limit`` per split), and a
    description of the source for the report (``layout``, ``split_method``, ...).

    A BIDS root (``dataset_description.json``) is split by ``bids``; a TUSZ root by its
    ``edf/<split>/`` folders. Raises PrepareError when a patient appears in two splits,
    naming the patient, or when the tree cannot be read as either.
    """
    if is_bids_root(root):
        sources, info = _scan_bids(root, splits, fingerprint, limit, bids or BidsSplitConfig())
    else:
        sources, info = (
            _scan_tusz(root, splits, fingerprint, limit),
            {
                "layout": "tusz",
                "split_method": "the edf/<split>/ folders of TUSZ v2.0.3",
                "unassigned_subjects": [],
            },
        )
    first_seen: dict[str, SourceRecord] = {}
    for src in sources:
        other = first_seen.setdefault(src.patient, src)
        if other.split != src.split:
            raise PrepareError(
                f"patient {src.patient} appears in two splits: {other.rel_path} ({other.split}) "
                f"and {src.rel_path} ({src.split}); splits must be patient-disjoint, so move "
                "or remove that patient's files in one of them"
            )
    return sources, info


def _scan_tusz(
    root: Path, splits: Sequence[str], fingerprint: str, limit: int | None
) -> list[SourceRecord]:
    edf_dir = root / "edf"
    if not edf_dir.is_dir():
        raise PrepareError(
            f"{root}: no 'edf' folder and no dataset_description.json; --root must be the "
            "TUSZ v2.0.3 folder that holds edf/train, edf/dev and edf/eval (or a tree written "
            "by 'brain-go-brr synth'), or the top of a BIDS dataset"
        )
    sources: list[SourceRecord] = []
    for split in splits:
        files = sorted((edf_dir / split).rglob("*.edf")) if (edf_dir / split).is_dir() else []
        for path in files[:limit]:
            rel = path.relative_to(root).as_posix()
            patient = path.name.split("_", 1)[0]
            sources.append(
                SourceRecord(path, rel, split, patient, record_key(path, rel, fingerprint))
            )
    if not sources:
        raise PrepareError(
            f"{edf_dir}: no .edf files under {', '.join(f'edf/{s}' for s in splits)}; "
            "check --root and --splits"
        )
    return sources


def _scan_bids(
    root: Path, splits: Sequence[str], fingerprint: str, limit: int | None, cfg: BidsSplitConfig
) -> tuple[list[SourceRecord], dict[str, Any]]:
    try:
        recordings = find_recordings(root)
        split_of, method = assign_splits(root, recordings, cfg)
    except BidsError as exc:
        raise PrepareError(str(exc)) from None
    per_split: dict[str, list[SourceRecord]] = {split: [] for split in splits}
    for rec in recordings:
        split = split_of.get(rec.subject)
        if split not in per_split:
            continue
        rel = rec.path.relative_to(root).as_posix()
        per_split[split].append(
            SourceRecord(rec.path, rel, split, rec.subject, record_key(rec.path, rel, fingerprint))
        )
    sources = [src for split in splits for src in per_split[split][:limit]]
    if not sources:
        counts = {s: sum(1 for v in split_of.values() if v == s) for s in ("train", "dev", "eval")}
        raise PrepareError(
            f"{root}: no recording in split(s) {', '.join(splits)} (subjects per split with "
            f"{method}: {counts}); check --splits, or split with --split-by"
        )
    unassigned = sorted({r.subject for r in recordings} - set(split_of))
    return sources, {"layout": "bids", "split_method": method, "unassigned_subjects": unassigned}


# ----------------------------------------------------------------------------- one record


def _skip_outcome(src: SourceRecord, reason: str) -> dict[str, Any]:
    return {"key": src.key, "path": src.rel_path, "split": src.split, "patient": src.patient,
            "reason": reason, "rules": SKIP_RULES}  # fmt: skip


def process_record(src: SourceRecord, cfg: PreprocessConfig, shards_dir: Path) -> dict[str, Any]:
    """Prepare one EDF into its shard; returns ``{"status": "ok" | "skipped", ...}``.

    Runs in a worker process. A ``RecordSkipped`` is remembered in a ``.skip.json`` so an
    unchanged bad file is not read again; any other exception is reported but not remembered.
    """
    try:
        rec = load_record(src.path, cfg)
    except RecordSkipped as exc:
        outcome = _skip_outcome(src, exc.reason)
        atomic_write_json(shards_dir / f"{src.key}.skip.json", outcome)
        return {"status": "skipped", **outcome}
    except Exception as exc:  # one bad file must never stop the run
        reason = f"{src.rel_path}: unexpected {type(exc).__name__}: {exc} (retried next run)"
        return {"status": "skipped", **_skip_outcome(src, reason)}
    meta = record_meta(
        key=src.key,
        rel_path=src.rel_path,
        patient=src.patient,
        n_samples=rec.labels.shape[0],
        duration_s=rec.duration_s,
        seizures=rec.seizures,
        orig_sfreq=rec.orig_sfreq,
        montage=rec.montage,
        interpolated=rec.interpolated,
        warnings=rec.warnings,
    )
    write_shard(shards_dir / f"{src.key}.npz", rec.signals.astype(np.float16), rec.labels, meta)
    return {"status": "ok", **meta}


def _run_pool(
    todo: list[SourceRecord], cfg: PreprocessConfig, shards_dir: Path, workers: int, show: bool
) -> Iterator[dict[str, Any]]:
    columns = (
        TextColumn("prepare"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
    )
    with Progress(*columns, disable=not show) as progress:
        task = progress.add_task("prepare", total=len(todo))
        if workers <= 1:
            for src in todo:
                yield process_record(src, cfg, shards_dir)
                progress.advance(task)
            return
        pool = ProcessPoolExecutor(max_workers=workers)
        try:
            futures = [pool.submit(process_record, src, cfg, shards_dir) for src in todo]
            for fut in as_completed(futures):
                yield fut.result()
                progress.advance(task)
        finally:
            # On Ctrl-C, don't run the queued records first; finished shards are kept.
            pool.shutdown(wait=True, cancel_futures=True)


# ----------------------------------------------------------------------------- the run


@contextlib.contextmanager
def _locked(cache_dir: Path) -> Iterator[None]:
    """Serialise concurrent ``prepare`` runs on one cache (e.g. every DDP rank at start-up)."""
    cache_dir.mkdir(parents=True, exist_ok=True)
    with open(cache_dir / ".prepare.lock", "a") as fh:  # "a": no write, no mtime change
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _report_entry(meta: dict[str, Any], split: str) -> dict[str, Any]:
    seizure_s = round(sum(b - a for a, b in meta["seizures"]), 4)
    return {
        "path": meta["path"],
        "split": split,
        "patient": meta["patient"],
        "status": "ok",
        "reason": None,
        "duration_s": meta["duration_s"],
        "seizure_s": seizure_s,
        "n_seizures": len(meta["seizures"]),
        "orig_sfreq": meta["orig_sfreq"],
        "montage": meta["montage"],
        "interpolated": meta["interpolated"],
    }


def build_report(
    sources: Sequence[SourceRecord],
    metas: Mapping[str, dict[str, Any]],
    skips: Mapping[str, dict[str, Any]],
    source_info: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The ``prepare_report.json`` contents for ``sources`` (ok metas and skip outcomes by key)."""
    records: list[dict[str, Any]] = []
    totals: dict[str, dict[str, float]] = {}
    for src in sources:
        tot = totals.setdefault(
            src.split, {"records": 0, "skipped": 0, "hours": 0.0, "seizure_hours": 0.0}
        )
        if src.key in metas:
            entry = _report_entry(metas[src.key], src.split)
            tot["records"] += 1
            tot["hours"] += entry["duration_s"] / 3600
            tot["seizure_hours"] += entry["seizure_s"] / 3600
        else:
            entry = {
                "path": src.rel_path, "split": src.split, "patient": src.patient,
                "status": "skipped", "reason": skips[src.key]["reason"], "duration_s": None,
                "seizure_s": None, "n_seizures": None, "orig_sfreq": None, "montage": None,
                "interpolated": [],
            }  # fmt: skip
            tot["skipped"] += 1
        records.append(entry)
    return {"source": dict(source_info or {}), "records": records, "totals": totals}


def prepare(
    root: str | Path,
    cache_dir: str | Path,
    cfg: PreprocessConfig | None = None,
    *,
    splits: Sequence[str] = SPLITS,
    workers: int = 1,
    limit: int | None = None,
    progress: bool = True,
    console: Console | None = None,
    bids: BidsSplitConfig | None = None,
) -> PrepareSummary:
    """Bring ``cache_dir`` up to date with the tree at ``root`` (see the module docstring).

    ``bids`` chooses the splits of a BIDS root (default: ``BidsSplitConfig()``, i.e.
    participants.tsv's split column, else a seeded draw).
    """
    root, cache_dir = Path(root), Path(cache_dir)
    cfg = cfg or PreprocessConfig()
    console = console or Console(stderr=True, quiet=not progress, soft_wrap=True)
    fingerprint = cfg.fingerprint()
    sources, source_info = scan(root, splits, fingerprint, limit, bids)
    if source_info["layout"] == "bids":
        console.print(f"BIDS dataset {root}: splits from {source_info['split_method']}")
    shards_dir = cache_dir / SHARDS_DIR
    with _locked(cache_dir):
        shards_dir.mkdir(parents=True, exist_ok=True)
        # A BIDS split assignment can change between runs: every requested split is then
        # rewritten, so that no subject stays behind in a split it has left.
        split_names = sorted({s.split for s in sources})
        if source_info["layout"] == "bids":
            split_names = sorted(set(split_names) | set(splits))
        packed: dict[str, dict[str, dict[str, Any]]] = {}  # split -> key -> meta
        for split in split_names:
            index = read_index(cache_dir / split)
            packed[split] = {m["key"]: m for m in index["records"]} if index else {}
        skips: dict[str, dict[str, Any]] = {}
        todo: list[SourceRecord] = []
        reused = 0
        moved = _packed_elsewhere(cache_dir, sources, packed)
        for src in sources:
            skip_file = shards_dir / f"{src.key}.skip.json"
            if src.key in moved:  # packed in another split before: keep it as a shard
                old_split, i, meta = moved[src.key]
                old = SplitCache(cache_dir, old_split)
                write_shard(shards_dir / f"{src.key}.npz", old.signals(i), old.labels(i), meta)
            if src.key in packed[src.split] or (shards_dir / f"{src.key}.npz").exists():
                reused += 1
            elif (
                skip_file.exists()
                and (known := json.loads(skip_file.read_text())).get("rules") == SKIP_RULES
            ):
                skips[src.key] = known
            else:
                todo.append(src)

        t_start = time.perf_counter()
        if todo:
            console.print(
                f"preparing {len(todo)} of {len(sources)} records with {workers} worker(s) "
                f"({reused} already done, {len(skips)} known bad)"
            )
            for outcome in _run_pool(todo, cfg, shards_dir, workers, progress):
                if outcome["status"] == "skipped":
                    skips[outcome["key"]] = outcome
                    console.print(f"[yellow]skipped[/yellow] {escape(outcome['reason'])}")

        t_processed = time.perf_counter()
        metas: dict[str, dict[str, Any]] = {}
        packed_splits: list[str] = []
        for split in split_names:
            wanted = [s for s in sources if s.split == split and s.key not in skips]
            index = read_index(cache_dir / split)
            old_keys = [m["key"] for m in index["records"]] if index else None
            if old_keys is None and not any(s.split == split for s in sources):
                continue  # a BIDS split without subjects, never prepared: leave it absent
            split_metas: list[dict[str, Any]] = []
            for src in wanted:
                if src.key in packed[split]:
                    meta = {k: v for k, v in packed[split][src.key].items() if k != "offset"}
                else:
                    meta = read_shard(shards_dir / f"{src.key}.npz")[2]
                split_metas.append(meta)
                metas[src.key] = meta
            if old_keys != [m["key"] for m in split_metas]:
                _pack(cache_dir, split, split_metas, packed[split], shards_dir, fingerprint)
                packed_splits.append(split)

        report_path = cache_dir / REPORT_NAME
        noop = (
            not todo
            and not packed_splits
            and report_path.exists()
            and json.loads(report_path.read_text()).get("source") == source_info
        )
        if noop:
            console.print(f"cache {cache_dir} is up to date: nothing changed, nothing to do")
        else:
            atomic_write_json(report_path, build_report(sources, metas, skips, source_info))
            _remove_stale(shards_dir, keep={s.key for s in sources if s.key in skips})
            console.print(
                f"cache {cache_dir}: {len(metas)} records ready, {len(skips)} skipped, "
                f"splits rewritten: {', '.join(packed_splits) or 'none'}; report {report_path}"
            )
    return PrepareSummary(
        cache_dir,
        processed=len(todo),
        reused=reused,
        skipped=len(skips),
        packed_splits=tuple(packed_splits),
        noop=noop,
        process_s=t_processed - t_start,
        pack_s=time.perf_counter() - t_processed,
    )


def _pack(
    cache_dir: Path,
    split: str,
    metas: list[dict[str, Any]],
    old: Mapping[str, dict[str, Any]],
    shards_dir: Path,
    fingerprint: str,
) -> None:
    """Rewrite ``split`` from the old packed arrays (unchanged records) and new shards."""
    previous = SplitCache(cache_dir, split) if old else None
    position = {key: i for i, key in enumerate(previous.keys)} if previous else {}

    def load(meta: dict[str, Any]) -> tuple[np.ndarray, np.ndarray]:
        if previous is not None and meta["key"] in position:
            i = position[meta["key"]]
            return previous.signals(i), previous.labels(i)
        signals, labels, _ = read_shard(shards_dir / f"{meta['key']}.npz")
        return signals, labels

    pack_split(cache_dir / split, metas, load, fingerprint=fingerprint)


def _packed_elsewhere(
    cache_dir: Path,
    sources: Sequence[SourceRecord],
    packed: Mapping[str, Mapping[str, dict[str, Any]]],
) -> dict[str, tuple[str, int, dict[str, Any]]]:
    """Records now in one split and packed in another (a BIDS split that changed):
    key -> (old split, position there, meta), so they move without being prepared again."""
    wanted = {src.key for src in sources if src.key not in packed[src.split]}
    found: dict[str, tuple[str, int, dict[str, Any]]] = {}
    for split_dir in sorted(p for p in cache_dir.iterdir() if (p / "index.json").is_file()):
        index = read_index(split_dir)
        for i, meta in enumerate(index["records"] if index else []):
            if meta["key"] in wanted:
                found[meta["key"]] = (
                    split_dir.name, i, {k: v for k, v in meta.items() if k != "offset"}
                )  # fmt: skip
    return found


def _remove_stale(shards_dir: Path, keep: set[str]) -> None:
    """Delete packed shards and skip notes of records no longer in the tree."""
    for path in shards_dir.iterdir():
        key = path.name.split(".", 1)[0]
        if key not in keep:
            path.unlink(missing_ok=True)


# ----------------------------------------------------------------------------- Hydra configs


def synthetic_dir(n_patients: int, hours: float, seed: int) -> Path:
    """Where ``data=synthetic`` keeps a generated corpus and its cache (``corpus/``, ``cache/``).

    The name carries the generator version, so a changed generator never reuses an old corpus.
    """
    from brain_go_brr.data.synth import GENERATOR_VERSION

    name = f"p{n_patients}_h{hours:g}_s{seed}_g{GENERATOR_VERSION}"
    return default_cache_root() / "synthetic" / name


# source -> (is the root right?, "needs root" message, "wrong root" message, default cache)
_GIVEN_ROOTS: dict[str, tuple[Callable[[Path], bool], str, str, Callable[[Path], Path]]] = {
    "tusz": (
        lambda root: (root / "edf").is_dir(),
        "data=tusz needs the corpus location: pass data.root=/path/to/tusz_v2.0.3 (the folder "
        "holding edf/train, edf/dev, edf/eval), or train on the synthetic corpus with "
        "data=synthetic",
        "has no 'edf' folder; point data.root at the TUSZ v2.0.3 folder that holds edf/train, "
        "edf/dev and edf/eval, or use data=synthetic",
        lambda root: default_cache_root() / "tusz",
    ),
    "bids": (
        is_bids_root,
        "data=bids needs the dataset location: pass data.root=/path/to/bids_dataset (the "
        "folder holding dataset_description.json and sub-*/), e.g. a corpus converted by "
        "epilepsy2bids or written by 'brain-go-brr synth --layout bids'",
        "has no dataset_description.json; point data.root at the top folder of a BIDS "
        "dataset (it holds dataset_description.json and sub-*/)",
        lambda root: default_cache_root() / "bids" / root.resolve().name,
    ),
}


def _given_root(cfg: Mapping[str, Any], source: str) -> tuple[Path, Path]:
    """(root, cache folder) of a corpus the user points at (``data.root``), checked."""
    is_right, needs, wrong, default_cache = _GIVEN_ROOTS[source]
    if not cfg.get("root"):
        raise PrepareError(needs)
    root = Path(str(cfg["root"])).expanduser()
    if not is_right(root):
        raise PrepareError(f"data.root={root} {wrong}")
    cache = cfg.get("cache_dir")
    return root, Path(str(cache)).expanduser() if cache else default_cache(root)


def ensure_prepared(data_cfg: Mapping[str, Any]) -> Path:
    """Make sure the cache of a ``conf/data/*.yaml`` config is ready; returns its folder.

    ``source: synthetic`` generates the corpus (``synthetic.n_patients/hours/seed``) under
    :func:`brain_go_brr.paths.default_cache_root` on first use, then prepares it; later calls
    find everything in place and return at once. ``source: tusz`` prepares ``root`` (a
    TUSZ v2.0.3 folder) and ``source: bids`` a BIDS dataset (split by ``bids.*``); both stop
    with instructions when ``root`` is unset or wrong.
    """
    cfg = plain_dict(data_cfg)
    source = cfg.get("source")
    preprocess = PreprocessConfig.from_dict(dict(cfg.get("preprocess") or {}))
    splits = tuple(dict(cfg["splits"]).values())
    workers = int(cfg.get("prepare_workers") or os.cpu_count() or 1)
    if source == "synthetic":
        syn = cfg["synthetic"]
        n_patients, hours, seed = int(syn["n_patients"]), float(syn["hours"]), int(syn["seed"])
        base = synthetic_dir(n_patients, hours, seed)
        root = Path(cfg["root"]) if cfg.get("root") else base / "corpus"
        cache_dir = Path(cfg["cache_dir"]) if cfg.get("cache_dir") else base / "cache"
        with _locked(base):
            if not (root / "synth_manifest.json").exists():
                from brain_go_brr.data.synth import generate_corpus

                print(
                    f"data=synthetic: generating {n_patients} patients / {hours:g} h "
                    f"(seed {seed}) under {root} (first use only)",
                    file=sys.stderr,
                )
                generate_corpus(root, n_patients, hours, seed, workers=workers)
    elif source in _GIVEN_ROOTS:
        root, cache_dir = _given_root(cfg, source)
    else:
        raise PrepareError(f"data.source must be 'synthetic', 'tusz' or 'bids', got {source!r}")
    try:
        bids = BidsSplitConfig.from_dict(cfg.get("bids")) if source == "bids" else None
    except BidsError as exc:
        raise PrepareError(str(exc)) from None
    prepare(root, cache_dir, preprocess, splits=splits, workers=workers, progress=True, bids=bids)
    return cache_dir


# ----------------------------------------------------------------------------- CLI


def _parse_sets(items: Sequence[str]) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for item in items:
        key, sep, text = item.partition("=")
        if not sep or not key:
            raise SystemExit(f"--set {item!r}: expected KEY=VALUE, e.g. --set reference=none")
        values[key.strip()] = yaml.safe_load(text)
    return values


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--root",
        required=True,
        type=Path,
        help="TUSZ v2.0.3 folder (holds edf/) or BIDS dataset (holds dataset_description.json)",
    )
    parser.add_argument("--cache", required=True, type=Path, help="cache folder to create/update")
    parser.add_argument(
        "--workers", type=int, default=os.cpu_count() or 1, help="processes (default: all cores)"
    )
    parser.add_argument(
        "--splits", nargs="+", default=list(SPLITS), help="splits to prepare (default: all)"
    )
    parser.add_argument("--limit", type=int, default=None, help="first N files of each split only")
    parser.add_argument(
        "--set",
        dest="settings",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="preprocessing setting (a PreprocessConfig field, as in conf/data/*.yaml "
        "'preprocess'), e.g. --set reference=none; repeatable",
    )
    parser.add_argument("--quiet", action="store_true", help="no progress bar or messages")
    bids = parser.add_argument_group("BIDS splits (a TUSZ root is split by its edf/ folders)")
    bids.add_argument(
        "--split-by",
        choices=SPLIT_METHODS,
        default="auto",
        help="auto (default): participants.tsv's split column if any, else the --subjects "
        "lists if given, else a seeded draw by --fractions; all: every subject in --all-split",
    )
    bids.add_argument(
        "--fractions", type=float, nargs=3, default=[0.6, 0.2, 0.2], metavar=("TRAIN", "DEV", "EVAL"),
        help="shares of subjects for the seeded draw (default 0.6 0.2 0.2)",
    )  # fmt: skip
    bids.add_argument("--split-seed", type=int, default=0, help="seed of the draw (default 0)")
    bids.add_argument(
        "--all-split", choices=BIDS_SPLITS, default="eval", help="split of --split-by all"
    )
    bids.add_argument(
        "--subjects",
        action="append",
        default=[],
        metavar="SPLIT=sub-01,sub-02",
        help="the subjects of a split (repeatable; subjects in no list are left out)",
    )


def _bids_config(args: argparse.Namespace) -> BidsSplitConfig:
    subjects: dict[str, list[str]] = {}
    for item in args.subjects:
        split, sep, names = item.partition("=")
        if not sep:
            raise BidsError(f"--subjects {item!r}: expected SPLIT=sub-01,sub-02")
        subjects.setdefault(split.strip(), []).extend(n.strip() for n in names.split(",") if n)
    return BidsSplitConfig(
        split_by=args.split_by,
        subjects=subjects,
        fractions=tuple(args.fractions),
        seed=args.split_seed,
        all_split=args.all_split,
    )


def run(args: argparse.Namespace) -> int:
    try:
        cfg = PreprocessConfig.from_dict(_parse_sets(args.settings))
        bids = _bids_config(args)
    except (ValueError, BidsError) as exc:
        print(f"brain-go-brr prepare: {exc}", file=sys.stderr)
        return 1
    try:
        prepare(
            args.root,
            args.cache,
            cfg,
            splits=args.splits,
            workers=args.workers,
            limit=args.limit,
            progress=not args.quiet,
            bids=bids,
        )
    except PrepareError as exc:
        print(f"brain-go-brr prepare: {exc}", file=sys.stderr)
        return 1
    return 0
