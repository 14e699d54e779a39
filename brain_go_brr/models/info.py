"""``brain-go-brr model-info``: live parameters and FLOPs per stage of a model.

Usage: ``brain-go-brr model-info model=v3 [pe=semi] [window_samples=15360]`` (Hydra overrides
of ``conf/model_info.yaml``).

- Live parameters: a forward and backward pass on a short random input; a parameter is live
  when it receives a gradient. Any dead parameter is listed by name.
- FLOPs: one forward pass of one window (batch 1) under ``torch.utils.flop_counter``
  (``FlopCounterMode``), which counts 2 FLOPs per multiply-add of matrix products and
  convolutions (``mm``, ``bmm``, ``addmm``, ``convolution``; ``einsum`` and ``@`` reach it
  as ``bmm``/``mm``, so the SSD scan's chunk products are counted). Element-wise work
  (exp, softplus, norms, scatter in the GNN) and ``eigh`` are not counted.
"""

from __future__ import annotations

import argparse

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode


def stage_parameters(model: nn.Module) -> dict[str, int]:
    """Parameter count per top-level child module (the stages), in forward order."""
    return {
        name: sum(p.numel() for p in child.parameters()) for name, child in model.named_children()
    }


def dead_parameters(model: nn.Module, n_channels: int = 19, n_samples: int = 1024) -> list[str]:
    """Names of the parameters that get no gradient from a forward+backward pass.

    Runs in training mode on a random (2, n_channels, n_samples) input (seed 0) and restores
    the model's mode and clears its gradients afterwards.
    """
    was_training = model.training
    model.train()
    model.zero_grad(set_to_none=True)
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(2, n_channels, n_samples, generator=generator)
    model(x).square().mean().backward()
    dead = [name for name, p in model.named_parameters() if p.grad is None]
    model.zero_grad(set_to_none=True)
    model.train(was_training)
    return dead


def stage_flops(model: nn.Module, n_channels: int = 19, n_samples: int = 15360) -> dict[str, int]:
    """Forward FLOPs of one window per top-level stage (``torch.utils.flop_counter``).

    Returns ``{stage: flops}`` for every stage, plus ``"total"``; anything counted outside
    the named stages (the model's own forward) is reported as ``"(glue)"`` when non-zero.

    Count a plain model (as built): Mamba2 blocks are then counted on their chunked SSD scan
    (the formulation ``mamba_ssm`` computes too). The compiled kernels of
    :mod:`brain_go_brr.accel` are invisible to the counter, so an accelerated model is
    refused.
    """
    accelerated = sorted(
        {
            type(m).__name__
            for m in model.modules()
            if type(m).__module__.startswith("brain_go_brr.accel")
        }
    )
    if accelerated:
        raise ValueError(
            f"stage_flops: {accelerated} run compiled kernels the FLOP counter cannot see; "
            "count the model before brain_go_brr.accel.accelerate() (or after "
            "accelerate(model, enabled=False))"
        )
    root = type(model).__name__
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(torch.zeros(1, n_channels, n_samples))
    counts = {name: sum(ops.values()) for name, ops in counter.get_flop_counts().items()}
    per_stage = {name: counts.get(f"{root}.{name}", 0) for name, _ in model.named_children()}
    total = counter.get_total_flops()
    glue = total - sum(per_stage.values())
    if glue:
        per_stage["(glue)"] = glue
    per_stage["total"] = total
    return per_stage


def report(model: nn.Module, n_channels: int, n_samples: int) -> str:
    """The model-info table as text."""
    params = stage_parameters(model)
    flops = stage_flops(model, n_channels, n_samples)
    dead = dead_parameters(model, n_channels)
    seconds = n_samples / 256
    lines = [
        f"{type(model).__name__}: FLOPs per {seconds:g} s window ({n_samples} samples, batch 1, "
        "torch.utils.flop_counter, 2 per multiply-add)",
        f"{'stage':<16}{'parameters':>14}{'GFLOP':>10}",
    ]
    for name in flops:
        count = params.get(name, sum(params.values()) if name == "total" else 0)
        lines.append(f"{name:<16}{count:>14,}{flops[name] / 1e9:>10.3f}")
    total = sum(params.values())
    if dead:
        lines.append(f"dead parameters (no gradient): {', '.join(dead)}")
    else:
        lines.append(f"live parameters: {total:,} of {total:,} (every parameter gets a gradient)")
    return "\n".join(lines)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "overrides",
        nargs="*",
        help="Hydra overrides of conf/model_info.yaml, e.g. model=v3_tiny pe=semi",
    )


def run(args: argparse.Namespace) -> int:
    from hydra import compose, initialize_config_dir
    from hydra.utils import instantiate

    from brain_go_brr.paths import conf_dir

    with initialize_config_dir(config_dir=str(conf_dir()), version_base="1.3"):
        cfg = compose(config_name="model_info", overrides=list(args.overrides))
    # Seeded: the SSD scan halves its chunk where a chunk decays too much, so the FLOP count
    # depends (by up to ~0.4 GFLOP for v3) on the random dt initialisation.
    torch.manual_seed(0)
    model = instantiate(cfg.model)
    print(report(model, int(cfg.model.n_channels), int(cfg.window_samples)))
    return 0
