"""The on-disk cache: packing, memory-mapped views, shards, size per hour."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest
from data_fixtures import fake_record, make_split

from brain_go_brr.data.cache import SFREQ, SplitCache, read_shard, write_shard

W = 60 * SFREQ  # 15360 samples


def test_packed_split_round_trips_every_record(tmp_path: Path) -> None:
    arrays = make_split(tmp_path, "train", [(W + 1000, [(100, 900)]), (5000, []), (3 * W, [])])
    cache = SplitCache(tmp_path, "train")
    assert len(cache) == 3
    assert cache.n_samples.tolist() == [W + 1000, 5000, 3 * W]
    assert cache.offsets.tolist() == [0, W + 1000, W + 6000]
    for i, (signals, labels) in enumerate(arrays.values()):
        assert cache.signals(i).dtype == np.float16
        np.testing.assert_array_equal(cache.signals(i), signals)
        np.testing.assert_array_equal(cache.labels(i), labels)
    info = cache.records[0]
    assert info.record_id == "p000_s001_t000"
    assert info.patient == "p000"
    assert info.seizures[0].start_s == pytest.approx(100 / SFREQ)
    assert info.n_samples == W + 1000


def test_windows_are_read_only_views_into_one_memory_map(tmp_path: Path) -> None:
    make_split(tmp_path, "dev", [(3 * W, []), (2 * W, [])])
    cache = SplitCache(tmp_path, "dev")
    stride = 10 * SFREQ
    first, second = cache.signals(0)[:, 0:W], cache.signals(0)[:, stride : stride + W]
    # Overlapping windows share their bytes: nothing was copied per window.
    assert np.shares_memory(first, second)
    other_record = cache.signals(1)[:, 0:W]
    assert not np.shares_memory(first, other_record)
    base = first
    while base.base is not None and not isinstance(base, np.memmap):
        base = base.base
    assert isinstance(base, np.memmap)
    with pytest.raises(ValueError, match="read-only"):
        first[0, 0] = 1.0


def test_split_cache_pickles_without_its_data(tmp_path: Path) -> None:
    make_split(tmp_path, "train", [(4 * W, [])])
    cache = SplitCache(tmp_path, "train")
    expected = np.array(cache.signals(0)[:, :10])
    clone = pickle.loads(pickle.dumps(cache))
    assert len(pickle.dumps(cache)) < 20_000  # 4 min of 19-channel float16 is 1.8 MB
    np.testing.assert_array_equal(clone.signals(0)[:, :10], expected)


def test_cache_is_under_40_mb_per_eeg_hour(tmp_path: Path) -> None:
    n = 15 * 60 * SFREQ  # two records, 30 min in all
    make_split(tmp_path, "train", [(n, [(0, 1000)]), (n, [])])
    cache = SplitCache(tmp_path, "train")
    hours = 2 * n / SFREQ / 3600
    mb_per_hour = cache.nbytes() / hours / 1e6
    assert 35.0 < mb_per_hour <= 40.0  # 19 ch x 256 Hz x 2 B = 35.0 MB/h of signal


def test_repacking_removes_the_old_arrays(tmp_path: Path) -> None:
    make_split(tmp_path, "eval", [(W, [])])
    make_split(tmp_path, "eval", [(W, []), (2 * W, [])], seed=5)
    files = sorted(p.name for p in (tmp_path / "eval").iterdir())
    assert len(files) == 3  # index.json + one signals + one labels file
    assert len(SplitCache(tmp_path, "eval")) == 2


def test_shard_round_trip_and_shape_check(tmp_path: Path) -> None:
    signals, labels = fake_record(1000, [(10, 20)], seed=1)
    meta = {"key": "k", "path": "edf/x.edf", "n_samples": 1000}
    write_shard(tmp_path / "k.npz", signals, labels, meta)
    s2, l2, m2 = read_shard(tmp_path / "k.npz")
    np.testing.assert_array_equal(s2, signals)
    np.testing.assert_array_equal(l2, labels)
    assert m2 == meta
    with pytest.raises(ValueError, match=r"edf/x\.edf: signals \(19, 1000\) and labels \(999,\)"):
        write_shard(tmp_path / "bad.npz", signals, labels[:-1], meta)


def test_missing_split_names_the_fix(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"no prepared 'dev' split.*brain-go-brr prepare"):
        SplitCache(tmp_path, "dev")
