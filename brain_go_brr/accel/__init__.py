"""CPU inference speed-ups, applied to a built model from outside: :func:`accelerate`.

The model (:mod:`brain_go_brr.models`) is plain PyTorch and never imports this package.
``accelerate(model)`` turns, in place, each Mamba2 stack into
:class:`~.mamba.FastBiMamba2Stack` and the graph network into
:class:`~.graph.FastGraphNetwork`: the same modules with the same parameters and state dict,
whose forward runs compiled kernels when a call is CPU inference (no gradient needed) and
the plain forward otherwise, so an accelerated model still trains, on public PyTorch ops
only, and runs unchanged on CUDA.

Kernels (``KERNELS``; ``benchmarks/bench_model.py`` measures each against ``torch.compile``
in the same run, BENCHMARKS.md):

- ``mamba``: the Mamba2 blocks in compiled kernels (:mod:`.kernels`, numba: pre-norm, dt,
  convolution, scan with gate and norm);
- ``llvm_scan``: within them, the convolution, scan, gate and norm as one LLVM vector kernel
  with the state in registers (:mod:`.scan`);
- ``graph``: the graph network's propagation as sparse CSR products (:mod:`.graph`; public
  sparse ops, no compiled code).

One switch turns everything off: ``BGB_ACCEL=0`` in the environment (or
``accelerate(model, enabled=False)``). ``detect``, ``szcore``, ``evaluate.py``, training's
validation and the benchmarks all go through :func:`accelerate` (via
:func:`brain_go_brr.inference.load_checkpoint` and :func:`brain_go_brr.training.train`).
numba (which brings llvmlite) is the ``accel`` extra; without it the model runs plain,
logged once.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import TypeVar, cast

from torch import nn

from brain_go_brr.config import env_flag
from brain_go_brr.models.gnn import GraphNetwork
from brain_go_brr.models.mamba2 import BiMamba2Stack

log = logging.getLogger(__name__)
ModuleT = TypeVar("ModuleT", bound=nn.Module)

#: Every kernel :func:`accelerate` may apply (module docstring).
KERNELS: tuple[str, ...] = ("mamba", "llvm_scan", "graph")
#: The environment switch: ``BGB_ACCEL=0`` (or false, no, off) leaves every model plain.
SWITCH = "BGB_ACCEL"


def enabled() -> bool:
    """Whether the switch (``BGB_ACCEL``, on by default) allows the speed-ups."""
    return env_flag(SWITCH)


def available() -> bool:
    """Whether the compiled Mamba2 kernels import here (numba, the ``accel`` extra)."""
    from brain_go_brr.accel.mamba import kernels_module

    return kernels_module() is not None


def accelerate(
    model: ModuleT, enabled: bool | None = None, kernels: Iterable[str] = KERNELS
) -> ModuleT:
    """``model`` with the CPU inference kernels applied in place (and returned).

    Args:
        model: any module; its :class:`BiMamba2Stack` and :class:`GraphNetwork` submodules
            (itself included) are converted, the rest is left alone.
        enabled: ``False`` leaves the model plain (and undoes an earlier call); ``None``
            reads the ``BGB_ACCEL`` switch.
        kernels: which of :data:`KERNELS` to apply (the benchmarks time them one by one).
    """
    from brain_go_brr.accel.graph import FastGraphNetwork
    from brain_go_brr.accel.mamba import FastBiMamba2Stack

    chosen = frozenset(kernels)
    unknown = sorted(chosen - set(KERNELS))
    if unknown:
        raise ValueError(f"accelerate: unknown kernel(s) {unknown}; choose from {list(KERNELS)}")
    on = env_flag(SWITCH) if enabled is None else enabled
    if on and "mamba" in chosen and not available():
        log.info("accel: numba does not import, so Mamba2 runs plain (pip install '.[accel]')")
    for module in model.modules():
        kind = type(module)
        if issubclass(kind, BiMamba2Stack):
            if on and "mamba" in chosen:
                module.__class__ = FastBiMamba2Stack
                cast(FastBiMamba2Stack, module).accel_kernels = chosen
            elif kind is FastBiMamba2Stack:
                module.__class__ = BiMamba2Stack
        elif issubclass(kind, GraphNetwork):
            if on and "graph" in chosen:
                module.__class__ = FastGraphNetwork
            elif kind is FastGraphNetwork:
                module.__class__ = GraphNetwork
    return model


def applied(model: nn.Module) -> list[str]:
    """The kernels in effect on ``model`` (empty for a plain model), in :data:`KERNELS` order."""
    from brain_go_brr.accel.graph import FastGraphNetwork
    from brain_go_brr.accel.mamba import FastBiMamba2Stack

    found: set[str] = set()
    for module in model.modules():
        if isinstance(module, FastBiMamba2Stack) and available():
            found |= {"mamba"} | (set(module.accel_kernels) & {"llvm_scan"})
        elif isinstance(module, FastGraphNetwork):
            found.add("graph")
    return [k for k in KERNELS if k in found]


__all__ = ["KERNELS", "SWITCH", "accelerate", "applied", "available", "enabled"]
