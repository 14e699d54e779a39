"""Focal loss on per-sample seizure logits.

Seizure samples are a few percent of TUSZ; the focal term (Lin et al., 2017, "Focal Loss for
Dense Object Detection") down-weights the many easy background samples so that the rare,
hard ones drive the gradient:

    p_t  = p if y == 1 else 1 - p            (p = sigmoid(logit))
    a_t  = alpha if y == 1 else 1 - alpha
    loss = mean(-a_t * (1 - p_t) ** gamma * log(p_t))
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def focal_loss(
    logits: torch.Tensor, targets: torch.Tensor, alpha: float = 0.5, gamma: float = 2.0
) -> torch.Tensor:
    """Mean binary focal loss.

    Args:
        logits: any shape, e.g. ``(B, T)`` per-sample logits (float32 recommended).
        targets: same shape, values in ``[0, 1]``.
        alpha: weight of the positive class (``1 - alpha`` for the negative class).
        gamma: focusing exponent; ``gamma = 0`` gives alpha-weighted cross-entropy.

    Returns:
        A scalar tensor.
    """
    if logits.shape != targets.shape:
        raise ValueError(
            f"focal_loss: logits {tuple(logits.shape)} and targets {tuple(targets.shape)} differ "
            "in shape; the detector must return one logit per input sample"
        )
    targets = targets.to(logits.dtype)
    # log(p_t) from the logits directly: stable where sigmoid saturates.
    ce = F.binary_cross_entropy_with_logits(logits, targets, reduction="none")  # = -log(p_t)
    p = torch.sigmoid(logits)
    p_t = p * targets + (1.0 - p) * (1.0 - targets)
    alpha_t = alpha * targets + (1.0 - alpha) * (1.0 - targets)
    return (alpha_t * (1.0 - p_t).pow(gamma) * ce).mean()


class FocalLoss(nn.Module):
    """:func:`focal_loss` as a module; ``alpha`` and ``gamma`` show in ``repr``."""

    def __init__(self, alpha: float = 0.5, gamma: float = 2.0) -> None:
        super().__init__()
        if not 0.0 <= alpha <= 1.0:
            raise ValueError(f"FocalLoss: alpha={alpha} must lie in [0, 1] (set loss.alpha)")
        if gamma < 0.0:
            raise ValueError(f"FocalLoss: gamma={gamma} must be >= 0 (set loss.gamma)")
        self.alpha = alpha
        self.gamma = gamma

    def forward(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return focal_loss(logits, targets, self.alpha, self.gamma)

    def extra_repr(self) -> str:
        return f"alpha={self.alpha}, gamma={self.gamma}"
