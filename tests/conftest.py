"""Shared fixtures: the read-only ``../shared`` kit, GPU skipping, offline W&B."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DIR = REPO_ROOT.parent / "shared"
NEDC_DEMO = SHARED_DIR / "nedc_demo"

os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("MPLBACKEND", "Agg")


@pytest.fixture
def nedc_demo() -> Path:
    """The NEDC v6.0.0 demo set in ``../shared/nedc_demo``; skips where it is absent."""
    if not (NEDC_DEMO / "ref").is_dir():
        pytest.skip(f"NEDC demo kit not found at ../shared/nedc_demo (looked in {NEDC_DEMO})")
    return NEDC_DEMO


@pytest.fixture
def nedc_nfc() -> Path:
    """A local NEDC EEG Eval v6.0.0 (``$NEDC_NFC``, as its README sets it); skips without one.

    NEDC is never part of this repository. Its ``toml`` and ``lxml`` must be importable by
    this interpreter (installed, or on ``PYTHONPATH``); its ``lib/`` is added by the test.
    """
    root = os.environ.get("NEDC_NFC")
    if not root or not (Path(root) / "bin" / "nedc_eeg_eval").is_file():
        pytest.skip("NEDC v6.0.0 not given: set NEDC_NFC=PATH/TO/nedc_eeg_eval/v6.0.0")
    return Path(root)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    try:
        import torch

        has_cuda = torch.cuda.is_available()
    except ImportError:
        has_cuda = False
    if has_cuda:
        return
    skip_gpu = pytest.mark.skip(reason="needs a CUDA device (none available on this machine)")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip_gpu)
