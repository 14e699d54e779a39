"""Builders shared by the cache, prepare and DataModule tests (imported by those modules).

Two kinds of data: hand-made caches packed straight from arrays (instant, exact values), and
one tiny synthetic TUSZ-layout corpus generated and prepared once per test session.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from brain_go_brr.annotations import Event
from brain_go_brr.data.cache import SFREQ, pack_split, record_meta

_SESSION: dict[str, Path] = {}


def fake_record(n_samples: int, seizures: list[tuple[int, int]], seed: int):
    """(signals (19, n) float16, labels (n,) uint8) with seizure sample ranges [a, b)."""
    rng = np.random.default_rng(seed)
    signals = rng.standard_normal((19, n_samples)).astype(np.float16)
    labels = np.zeros(n_samples, dtype=np.uint8)
    for a, b in seizures:
        labels[a:b] = 1
    return signals, labels


def make_split(
    cache_dir: Path,
    split: str,
    records: list[tuple[int, list[tuple[int, int]]]],
    seed: int = 0,
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Pack ``records`` [(n_samples, seizure sample ranges)] as ``split``; returns arrays by key."""
    arrays: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    metas: list[dict[str, Any]] = []
    for i, (n, seizures) in enumerate(records):
        key = f"{split}{i:04d}"
        arrays[key] = fake_record(n, seizures, seed + i)
        events = [Event(a / SFREQ, b / SFREQ) for a, b in seizures]
        metas.append(
            record_meta(
                key=key,
                rel_path=f"edf/{split}/p{i:03d}/s001_2020/01_tcp_ar/p{i:03d}_s001_t000.edf",
                patient=f"p{i:03d}",
                n_samples=n,
                duration_s=n / SFREQ,
                seizures=events,
                orig_sfreq=256.0,
                montage="01_tcp_ar",
                interpolated=[],
            )
        )
    pack_split(cache_dir / split, metas, lambda m: arrays[m["key"]], fingerprint="test")
    return arrays


def tiny_corpus(factory: pytest.TempPathFactory) -> Path:
    """A 5-patient, 0.3 h synthetic TUSZ tree, generated once per session (read-only!)."""
    if "corpus" not in _SESSION:
        from brain_go_brr.data.synth import generate_corpus

        root = factory.mktemp("tiny_corpus")
        generate_corpus(root, n_patients=5, hours=0.3, seed=3, workers=1)
        _SESSION["corpus"] = root
    return _SESSION["corpus"]


def tiny_cache(factory: pytest.TempPathFactory) -> Path:
    """The prepared cache of :func:`tiny_corpus`, built once per session (read-only!)."""
    if "cache" not in _SESSION:
        from brain_go_brr.data.prepare import prepare

        cache = factory.mktemp("tiny_cache")
        prepare(tiny_corpus(factory), cache, workers=2, progress=False)
        _SESSION["cache"] = cache
    return _SESSION["cache"]


def group_config(group: str, name: str) -> Any:
    """``conf/<group>/<name>.yaml`` as Hydra composes it (its own defaults merged in: v3_tiny
    over v3, synthetic over tusz), as a DictConfig."""
    from hydra import compose, initialize_config_dir

    from brain_go_brr.paths import conf_dir

    with initialize_config_dir(str(conf_dir()), version_base="1.3"):
        return compose(config_name=f"{group}/{name}")[group]
