"""Data pipeline benchmark: prepare throughput, cache size, DataModule training windows/s.

Each number is measured against the plain alternative in the same run, on a synthetic
TUSZ-layout corpus (generated once under the default cache root and reused):

1. ``prepare`` (read + preprocess + cache, ``--workers`` processes) in x real time (EEG hours
   per wall-clock hour) vs straightforward per-file mne calls (``read_raw_edf``, ``pick``,
   ``set_eeg_reference``, ``resample``, ``filter``, ``notch_filter``) with as many processes;
2. cache bytes per EEG hour vs a cache of 60 s float32 windows at 10 s stride (6x overlap),
   whose size is computed from the same records' window counts (not written);
3. training windows/s at batch 8 from ``TUSZDataModule`` vs a per-window ``Dataset`` over
   the same memory-mapped cache with PyTorch's default collate, both at 0 and 2 workers.

Usage: ``python benchmarks/bench_data.py [--hours 5] [--patients 12] [--workers 2]``
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import torch
from _common import write_section
from torch.utils.data import DataLoader, Dataset

from brain_go_brr.data.cache import SFREQ, SplitCache
from brain_go_brr.data.channels import CHANNELS, map_channels
from brain_go_brr.data.datamodule import TUSZDataModule
from brain_go_brr.data.prepare import prepare
from brain_go_brr.data.synth import generate_corpus
from brain_go_brr.paths import default_cache_root

WINDOW = 60 * SFREQ
BATCH = 8


def corpus(n_patients: int, hours: float, seed: int, workers: int) -> Path:
    root = default_cache_root() / "bench_data" / f"p{n_patients}_h{hours:g}_s{seed}"
    if not (root / "synth_manifest.json").exists():
        shutil.rmtree(root, ignore_errors=True)
        generate_corpus(root, n_patients, hours, seed, workers=workers, progress=True)
    return root


# ----------------------------------------------------------------------------- 1. prepare


def mne_baseline_one(path: str) -> float:
    """Read and preprocess one file the straightforward way; returns its duration in s."""
    import mne

    raw = mne.io.read_raw_edf(path, preload=True, verbose="error")
    found = map_channels(raw.ch_names)
    present = [c for c in CHANNELS if c in found]
    raw.pick([found[c] for c in present])
    raw.set_eeg_reference("average", verbose="error")
    raw.resample(SFREQ, verbose="error")
    raw.filter(0.5, 120.0, verbose="error")
    raw.notch_filter(60.0, verbose="error")
    data = raw.get_data().astype(np.float32)
    med = np.median(data, axis=1, keepdims=True)
    q75, q25 = np.percentile(data, [75, 25], axis=1, keepdims=True)
    np.clip((data - med) / ((q75 - q25) / 1.349), -10, 10, out=data)
    return float(raw.times[-1] + 1 / SFREQ)


def cpu_s() -> float:
    """CPU seconds of this process and its finished (joined) children, user + system."""
    me, kids = (
        resource.getrusage(resource.RUSAGE_SELF),
        resource.getrusage(resource.RUSAGE_CHILDREN),
    )
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def bench_prepare(root: Path, workers: int, scratch: Path) -> dict[str, Any]:
    t0, c0 = time.perf_counter(), cpu_s()
    summary = prepare(root, scratch / "cache", workers=workers, progress=False)
    ours_s, ours_cpu = time.perf_counter() - t0, cpu_s() - c0
    caches = [SplitCache(scratch / "cache", s) for s in ("train", "dev", "eval")]
    eeg_h = sum(float(c.n_samples.sum()) for c in caches) / SFREQ / 3600

    files = [str(p) for p in sorted((root / "edf").rglob("*.edf"))]
    t0, c0 = time.perf_counter(), cpu_s()
    with ProcessPoolExecutor(max_workers=workers) as pool:
        baseline_eeg_s = sum(pool.map(mne_baseline_one, files))
    mne_s, mne_cpu = time.perf_counter() - t0, cpu_s() - c0
    return {
        "eeg_h": eeg_h,
        "files": len(files),
        "ours_s": ours_s,
        "ours_x": eeg_h * 3600 / ours_s,
        "process_s": summary.process_s,
        "ours_cpu_h": ours_cpu / eeg_h,
        "mne_cpu_h": mne_cpu / (baseline_eeg_s / 3600),
        "pack_s": summary.pack_s,
        "mne_s": mne_s,
        "mne_x": baseline_eeg_s / mne_s,
        "caches": caches,
    }


# ----------------------------------------------------------------------------- 2. size


def bench_size(cache_dir: Path, caches: list[SplitCache], eeg_h: float) -> dict[str, float]:
    ours = sum(p.stat().st_size for p in cache_dir.rglob("*") if p.is_file())
    n_windows = 0
    for c in caches:
        n = c.n_samples
        n_windows += int(np.sum(np.where(n <= WINDOW, 1, (n - WINDOW) // (10 * SFREQ) + 1)))
    # Windows of 19 x 15360 float32 signals plus float32 labels, as the reference stored them.
    windowed = n_windows * (19 + 1) * WINDOW * 4
    return {"ours_mb_h": ours / 1e6 / eeg_h, "windowed_mb_h": windowed / 1e6 / eeg_h}


# ----------------------------------------------------------------------------- 3. loading


class NaiveWindows(Dataset[dict[str, torch.Tensor]]):
    """One window per item, collated by PyTorch's default collate."""

    def __init__(self, cache: SplitCache, records: np.ndarray, starts: np.ndarray) -> None:
        self.cache, self.records, self.starts = cache, records, starts

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, k: int) -> dict[str, torch.Tensor]:
        r, s = int(self.records[k]), int(self.starts[k])
        return {
            "x": torch.from_numpy(np.array(self.cache.signals(r)[:, s : s + WINDOW])),
            "y": torch.from_numpy(self.cache.labels(r)[s : s + WINDOW].astype(np.float32)),
            "record": torch.tensor(r),
            "start": torch.tensor(s),
        }


def windows_per_s(loader: DataLoader[Any], n_windows: int, warmup_batches: int = 20) -> float:
    it = iter(loader)
    for _ in range(warmup_batches):
        next(it)
    done, t0 = 0, time.perf_counter()
    while done < n_windows:
        try:
            batch = next(it)
        except StopIteration:
            it = iter(loader)
            continue
        done += batch["x"].shape[0]
    return done / (time.perf_counter() - t0)


def bench_loading(cache_dir: Path, n_windows: int) -> dict[str, float]:
    results = {}
    for workers in (0, 2):
        dm = TUSZDataModule(cache_dir, batch_size=BATCH, num_workers=workers)
        dm.setup("fit")
        results[f"ours_w{workers}"] = windows_per_s(dm.train_dataloader(), n_windows)
        cache, table = dm.cache("train"), dm.train_table()
        ids = dm.train_sampler().epoch_ids(0)
        naive = NaiveWindows(cache, table.record[ids], table.start[ids])
        loader = DataLoader(
            naive,
            batch_size=BATCH,
            shuffle=True,
            num_workers=workers,
            persistent_workers=workers > 0,
        )
        results[f"naive_w{workers}"] = windows_per_s(loader, n_windows)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--hours", type=float, default=5.0)
    parser.add_argument("--patients", type=int, default=12)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--windows", type=int, default=4000, help="windows timed per loader")
    args = parser.parse_args()

    root = corpus(args.patients, args.hours, args.seed, args.workers)
    with tempfile.TemporaryDirectory(prefix="bench_data_") as tmp:
        scratch = Path(tmp)
        prep = bench_prepare(root, args.workers, scratch)
        size = bench_size(scratch / "cache", prep["caches"], prep["eeg_h"])
        load = bench_loading(scratch / "cache", args.windows)
    load_avg = os.getloadavg()[0]

    rows = [
        ("prepare throughput (x real time)", f"{prep['ours_x']:,.0f}x", f"{prep['mne_x']:,.0f}x",
         "≥ 6000x", f"{prep['ours_x'] / prep['mne_x']:.1f}x"),
        ("CPU seconds per EEG hour", f"{prep['ours_cpu_h']:.1f}", f"{prep['mne_cpu_h']:.1f}",
         "≤ 1.2", f"{prep['mne_cpu_h'] / prep['ours_cpu_h']:.1f}x"),
        ("cache size (MB per EEG hour)", f"{size['ours_mb_h']:.1f}", f"{size['windowed_mb_h']:.0f}",
         "≤ 40", f"{size['windowed_mb_h'] / size['ours_mb_h']:.1f}x smaller"),
        ("training windows/s, batch 8, 0 workers", f"{load['ours_w0']:,.0f}",
         f"{load['naive_w0']:,.0f}", "≥ 2000", f"{load['ours_w0'] / load['naive_w0']:.1f}x"),
        ("training windows/s, batch 8, 2 workers", f"{load['ours_w2']:,.0f}",
         f"{load['naive_w2']:,.0f}", "≥ 2000", f"{load['ours_w2'] / load['naive_w2']:.1f}x"),
    ]  # fmt: skip
    table = "\n".join(
        ["| measure | ours | plain alternative | target | ratio |", "|---|---|---|---|---|"]
        + [f"| {' | '.join(r)} |" for r in rows]
    )
    body = (
        f"Synthetic corpus: {args.patients} patients, {prep['eeg_h']:.2f} h of EEG in "
        f"{prep['files']} files (seed {args.seed}); {args.workers} worker processes for both "
        f"prepare runs. `prepare` took {prep['ours_s']:.1f} s ({prep['process_s']:.1f} s "
        f"reading and preprocessing in the pool, {prep['pack_s']:.1f} s packing the splits, the "
        f"rest scanning), the per-file mne calls {prep['mne_s']:.1f} s. The windowed-cache size is computed from the window count "
        f"(float32 signals and labels, 60 s at 10 s stride), not written. Loading: "
        f"{args.windows} windows after 20 warm-up batches, page cache warm.\n\n{table}\n\n"
        f"Load average during the run: {load_avg:.1f} on {os.cpu_count()} cores"
        + (
            " (other jobs shared the machine, so wall-clock figures are pessimistic and noisy)"
            if load_avg > 1.5
            else ""
        )
        + ". From the CPU "
        f"cost alone, `prepare` on {args.workers} idle cores would run at about "
        f"{args.workers * 3600 / prep['ours_cpu_h']:,.0f}x real time (an estimate, not a "
        "measurement); in-process batch assembly is one copy per window out of the page "
        "cache, while worker processes add a shared-memory hand-over per 4.7 MB batch, which "
        "dominates on a loaded 2-core machine.\n\n"
        "Plain alternatives: per-file `mne` (`read_raw_edf`, `pick`, `set_eeg_reference`, "
        "`resample`, `filter`, `notch_filter`, then the same robust scaling); a per-window "
        "`Dataset` over the same memory-mapped cache with `DataLoader(batch_size=8, "
        "shuffle=True)` and default collate."
    )
    print(body)
    write_section("bench_data", "Data pipeline (prepare, cache size, DataModule)", body)


if __name__ == "__main__":
    main()
