"""``make gpu-check`` on a machine without CUDA: it says so, lists its checks, exits 0."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.skipif(torch.cuda.is_available(), reason="a CUDA device is here: the real check runs")
def test_gpu_check_without_cuda_lists_what_it_would_check() -> None:
    done = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "gpu_check.py")],
        capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    out = done.stdout
    assert "no CUDA device on this machine; nothing was run" in out
    for item in ("mamba2:", "train rtx4090:", "train a100/h100:", "inference:", "train.py on the GPU",
                 "evaluate.py with that checkpoint", "detect --device cuda"):  # fmt: skip
        assert item in out, item
