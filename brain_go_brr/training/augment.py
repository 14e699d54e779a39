"""Training-time augmentation of batches: left-right hemisphere mirroring.

TUSZ's ``.csv_bi`` labels say *when* a seizure happens, not *where*, so swapping the two
hemispheres of a window (Fp1<->Fp2, F3<->F4, ..., midline electrodes kept; see
:data:`brain_go_brr.data.channels.MIRROR`) keeps its labels right and shows the model a
focal seizure at the mirrored focus. The detector's first layers mix the 19 channels, so it
does not get this symmetry for free; with few training patients (the synthetic demo corpus
has 14 training seizures from 5 foci) it is the cheapest way to more seizure locations.

Which windows are mirrored is a pure function of ``(seed, global step, rank)``: a resumed
run mirrors exactly the windows an uninterrupted one would.
"""

from __future__ import annotations

import numpy as np
import torch

from brain_go_brr.data.channels import MIRROR


def check_probability(p: float) -> float:
    """``p`` as a float, or a ValueError naming ``module.hemisphere_flip`` when outside [0, 1]."""
    if not 0.0 <= p <= 1.0:
        raise ValueError(
            f"module.hemisphere_flip={p}: a probability, between 0 (off) and 1 (every window)"
        )
    return float(p)


def draw_mirror_mask(p: float, n_windows: int, seed: int, step: int, rank: int = 0) -> np.ndarray:
    """``(n_windows,)`` bool: which windows of the batch of optimizer step ``step`` to mirror.

    Each window independently with probability ``p`` (0 <= p <= 1), from a generator seeded by
    ``(seed, step, rank)`` and nothing else.
    """
    if check_probability(p) == 0.0:
        return np.zeros(n_windows, dtype=bool)
    rng = np.random.default_rng([int(seed), int(step), int(rank)])
    return rng.random(n_windows) < p


def mirror_hemispheres(x: torch.Tensor, mask: np.ndarray | torch.Tensor) -> torch.Tensor:
    """``x`` (B, 19, T) with the channels of the windows where ``mask`` (B,) is true mirrored.

    Returns a new tensor (``x`` is left as it is) on ``x``'s device, in ``x``'s dtype.
    """
    if x.dim() != 3 or x.shape[1] != len(MIRROR):
        raise ValueError(f"expected x of shape (B, {len(MIRROR)}, T), got {tuple(x.shape)}")
    keep = torch.as_tensor(mask, dtype=torch.bool, device=x.device)
    if keep.shape != (x.shape[0],):
        raise ValueError(f"mask of shape {tuple(keep.shape)} for a batch of {x.shape[0]}")
    mirrored = x[:, list(MIRROR), :]
    return torch.where(keep[:, None, None], mirrored, x)
