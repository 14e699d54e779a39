"""Hemisphere mirroring (brain_go_brr/training/augment.py) and its use in a training step."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from brain_go_brr.data.channels import CHANNELS, MIRROR
from brain_go_brr.training.augment import draw_mirror_mask, mirror_hemispheres


def test_mirror_swaps_homologous_electrodes_and_keeps_the_midline() -> None:
    pairs = {CHANNELS[i]: CHANNELS[j] for i, j in enumerate(MIRROR)}
    assert pairs["Fp1"] == "Fp2" and pairs["F7"] == "F8" and pairs["T5"] == "T6"
    assert pairs["O2"] == "O1" and pairs["C4"] == "C3"
    assert [pairs[m] for m in ("Fz", "Cz", "Pz")] == ["Fz", "Cz", "Pz"]
    assert sorted(MIRROR) == list(range(len(CHANNELS)))  # a permutation...
    assert all(MIRROR[MIRROR[i]] == i for i in range(len(CHANNELS)))  # ...and its own inverse


def test_mirror_hemispheres_moves_a_focal_discharge_to_the_other_side() -> None:
    x = torch.zeros(3, 19, 50)
    x[:, CHANNELS.index("F3")] = 1.0  # a left frontal "focus" in every window
    x[:, CHANNELS.index("Cz")] = 2.0
    out = mirror_hemispheres(x, np.array([True, False, True]))
    f3, f4, cz = (CHANNELS.index(n) for n in ("F3", "F4", "Cz"))
    assert torch.equal(out[1], x[1])  # not selected: unchanged
    for b in (0, 2):
        assert out[b, f4].eq(1).all() and out[b, f3].eq(0).all() and out[b, cz].eq(2).all()
    assert x[0, f3].eq(1).all()  # the input is not modified in place
    assert out.dtype == x.dtype


def test_mirror_mask_is_a_function_of_seed_step_and_rank() -> None:
    a = draw_mirror_mask(0.5, 64, seed=3, step=10)
    assert np.array_equal(a, draw_mirror_mask(0.5, 64, seed=3, step=10))  # resumable
    assert not np.array_equal(a, draw_mirror_mask(0.5, 64, seed=3, step=11))
    assert not np.array_equal(a, draw_mirror_mask(0.5, 64, seed=3, step=10, rank=1))
    assert 16 < a.sum() < 48
    assert not draw_mirror_mask(0.0, 64, seed=3, step=10).any()
    assert draw_mirror_mask(1.0, 64, seed=3, step=10).all()
    with pytest.raises(ValueError, match=r"hemisphere_flip=1\.5"):
        draw_mirror_mask(1.5, 4, seed=0, step=0)


class _Recorder(torch.nn.Module):
    """A detector that remembers its input and returns zeros with a gradient."""

    def __init__(self) -> None:
        super().__init__()
        self.w = torch.nn.Parameter(torch.zeros(()))
        self.seen: list[torch.Tensor] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.seen.append(x.detach().clone())
        return x[:, 0] * 0 + self.w


def test_training_mirrors_the_windows_drawn_for_each_step() -> None:
    import lightning as L
    from torch.utils.data import DataLoader

    from brain_go_brr.training.module import SeizureDetectorModule

    gen = torch.Generator().manual_seed(0)
    batches = [{"x": torch.randn(6, 19, 32, generator=gen).half(), "y": torch.zeros(6, 32)}]
    batches += [{"x": torch.randn(6, 19, 32, generator=gen).half(), "y": torch.zeros(6, 32)}]
    detector = _Recorder()
    module = SeizureDetectorModule(detector, hemisphere_flip=0.5, seed=7)
    L.Trainer(
        max_epochs=1, accelerator="cpu", logger=False, enable_checkpointing=False,
        enable_progress_bar=False, enable_model_summary=False, limit_val_batches=0,
    ).fit(module, DataLoader(batches, batch_size=None))  # fmt: skip
    assert len(detector.seen) == 2
    masks = [draw_mirror_mask(0.5, 6, seed=7, step=step) for step in (0, 1)]
    assert all(0 < m.sum() < 6 for m in masks)  # this seed mirrors some windows, keeps others
    for seen, batch, mask in zip(detector.seen, batches, masks, strict=True):
        assert torch.equal(seen, mirror_hemispheres(batch["x"], mask).float())
        assert not torch.equal(seen, batch["x"].float())
