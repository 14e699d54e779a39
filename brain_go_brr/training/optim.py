"""AdamW with parameter groups and a per-step warm-up + cosine learning-rate schedule.

Weight decay pulls weights toward zero; on normalisation gains, biases and the Mamba2 state
parameters (``A_log``, ``D``, ``dt_bias``) that is not regularisation but a change of the
model's dynamics, so those parameters get no decay.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import torch
from torch import nn

log = logging.getLogger(__name__)

#: Parameter names (last component) that never get weight decay: the Mamba2 SSM state.
NO_DECAY_NAMES: frozenset[str] = frozenset({"A_log", "D", "dt_bias"})


@dataclass
class OptimConfig:
    """AdamW and schedule settings (Hydra group ``optim`` in ``conf/train.yaml``)."""

    lr: float = 3e-4  # peak learning rate, reached at the end of warm-up
    weight_decay: float = 0.05  # decoupled decay of the decayed group
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = 1e-8
    warmup_steps: int | None = None  # optimizer steps of linear warm-up; None: warmup_ratio
    warmup_ratio: float = 0.05  # warm-up as a fraction of all steps when warmup_steps is None
    min_lr_ratio: float = 0.01  # the cosine ends at lr * min_lr_ratio

    def __post_init__(self) -> None:
        b1, b2 = self.betas  # a YAML list is as good as a tuple
        self.betas = (float(b1), float(b2))


def _is_norm(module: nn.Module) -> bool:
    # Covers LayerNorm, GroupNorm, BatchNorm*, RMSNorm and the Mamba2 gated RMSNorm.
    return isinstance(
        module, nn.LayerNorm | nn.GroupNorm | nn.modules.batchnorm._NormBase | nn.RMSNorm
    ) or type(module).__name__.lower().endswith("norm")


def param_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """Split the trainable parameters of ``model`` into a decayed and a non-decayed group.

    No decay: every parameter of a normalisation module, every ``bias``, and ``A_log``,
    ``D``, ``dt_bias``. Each group carries ``names`` (for logging and tests).
    """
    decay: dict[str, nn.Parameter] = {}
    no_decay: dict[str, nn.Parameter] = {}
    for module_name, module in model.named_modules():
        for param_name, param in module.named_parameters(recurse=False):
            if not param.requires_grad:
                continue
            full = f"{module_name}.{param_name}" if module_name else param_name
            if _is_norm(module) or param_name == "bias" or param_name in NO_DECAY_NAMES:
                no_decay[full] = param
            else:
                decay[full] = param
    return [
        {"params": list(decay.values()), "names": list(decay), "weight_decay": weight_decay},
        {"params": list(no_decay.values()), "names": list(no_decay), "weight_decay": 0.0},
    ]


def build_adamw(model: nn.Module, cfg: OptimConfig) -> torch.optim.AdamW:
    """AdamW over :func:`param_groups` (the ``names`` keys are dropped before torch sees them)."""
    groups = [
        {k: v for k, v in g.items() if k != "names"}
        for g in param_groups(model, cfg.weight_decay)
        if g["params"]
    ]
    beta1, beta2 = cfg.betas
    return torch.optim.AdamW(groups, lr=cfg.lr, betas=(beta1, beta2), eps=cfg.eps)


def warmup_steps_for(cfg: OptimConfig, total_steps: int) -> int:
    """The warm-up length in optimizer steps: explicit, or a fraction of ``total_steps``."""
    if cfg.warmup_steps is not None:
        return max(0, int(cfg.warmup_steps))
    return max(0, round(cfg.warmup_ratio * total_steps))


def warmup_cosine_factor(step: int, warmup_steps: int, total_steps: int, min_ratio: float) -> float:
    """Multiplier of the peak learning rate at optimizer step ``step`` (0-based).

    1. ``step < warmup_steps``: linear from ``1 / warmup_steps`` up to 1;
    2. afterwards: half a cosine from 1 down to ``min_ratio`` at ``total_steps``;
    3. past ``total_steps``: ``min_ratio``.
    """
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    decay_steps = max(1, total_steps - warmup_steps)
    progress = min(1.0, (step - warmup_steps) / decay_steps)
    return min_ratio + (1.0 - min_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))


def build_scheduler(
    optimizer: torch.optim.Optimizer, cfg: OptimConfig, total_steps: int
) -> torch.optim.lr_scheduler.LambdaLR:
    """Per-step warm-up then cosine (stepped once per optimizer step); logs the warm-up length."""
    warmup = warmup_steps_for(cfg, total_steps)
    if total_steps > 0 and warmup >= total_steps:
        log.warning(
            "optim: warm-up of %d steps is not shorter than the %d training steps; "
            "the learning rate never reaches its cosine phase (lower optim.warmup_steps)",
            warmup,
            total_steps,
        )
    log.info(
        "optim: AdamW lr=%g, %d warm-up steps then cosine to %g over %d steps",
        cfg.lr,
        warmup,
        cfg.lr * cfg.min_lr_ratio,
        total_steps,
    )
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer,
        lambda step: warmup_cosine_factor(step, warmup, total_steps, cfg.min_lr_ratio),
    )
