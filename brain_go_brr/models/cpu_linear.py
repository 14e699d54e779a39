"""Float32 linear maps for CPU inference through oneDNN: ``F.linear``'s product, faster.

ATen sends a float32 ``F.linear`` on CPU to the BLAS (MKL in the PyPI wheels). On the tall,
narrow products of the Mamba2 blocks (node stream: 36 480 rows x 64 -> 128 or 160; edge
stream: 328 320 rows x 16 -> 32 or 48) that reached about half the speed of oneDNN's inner
product on this project's 2-core AMD EPYC (AVX-512) machine, with results equal to float32
rounding (bitwise equal on every shape we tried). oneDNN is reached through
``torch.ops.mkldnn._linear_pointwise``, the op that ``torch.compile``'s CPU backend emits for
linear layers; it is a private op, so it is checked once against ``F.linear`` on a small
example and, if it is missing or disagrees, every call falls back to ``F.linear`` (logged).
``BGB_ONEDNN_LINEAR=0`` in the environment (or ``cpu_linear.ENABLED = False``) turns the
path off, e.g. on a CPU whose BLAS is the faster one (``benchmarks/bench_model.py`` times v3
both ways).

Float32 on CPU takes this path, in inference and in training (:class:`_LinearFunction`
gives the op a backward: the input's gradient is another oneDNN product, the weight's a
plain ``mm`` over all rows). Under autocast ``F.linear`` already runs its 16-bit products
through oneDNN, and other devices and dtypes have nothing to gain: :func:`linear` and
:func:`linear_add` call ``F.linear`` / ``addmm`` there.
"""

from __future__ import annotations

import functools
import logging
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from brain_go_brr.config import env_flag

log = logging.getLogger(__name__)

#: Whether CPU float32 products may go through oneDNN (environment ``BGB_ONEDNN_LINEAR``).
ENABLED = env_flag("BGB_ONEDNN_LINEAR")


@functools.cache
def _onednn_linear() -> Any:
    """``torch.ops.mkldnn._linear_pointwise`` if it exists and agrees with ``F.linear``."""
    try:
        if not torch.backends.mkldnn.is_available():
            raise RuntimeError("torch was built without oneDNN (mkldnn)")
        op = torch.ops.mkldnn._linear_pointwise
        generator = torch.Generator().manual_seed(0)
        x = torch.randn(37, 16, generator=generator)
        weight = torch.randn(24, 16, generator=generator)
        other = torch.randn(37, 24, generator=generator)
        expected = F.linear(x, weight)
        ok = torch.allclose(op(x, weight, None, "none", [], ""), expected, atol=1e-5) and (
            torch.allclose(op.binary(x, other, weight, None, "add"), expected + other, atol=1e-5)
        )
        if not ok:
            raise RuntimeError("its result differs from F.linear")
    except (AttributeError, RuntimeError) as err:
        log.info("oneDNN linear unavailable (%s): CPU inference uses F.linear", err)
        return None
    return op


def _takes_onednn(x: Tensor, weight: Tensor) -> bool:
    return (
        ENABLED
        and x.device.type == "cpu"
        and x.dtype == torch.float32
        and weight.dtype == torch.float32
        and not torch.is_autocast_enabled("cpu")
        and _onednn_linear() is not None
    )


def _needs_grad(*tensors: Tensor) -> bool:
    return torch.is_grad_enabled() and any(t.requires_grad for t in tensors)


class _LinearFunction(torch.autograd.Function):
    """``x @ weight.T`` through oneDNN, with its backward. x (..., in), weight (out, in)."""

    @staticmethod
    def forward(ctx: Any, x: Tensor, weight: Tensor) -> Tensor:
        ctx.save_for_backward(x, weight)
        out: Tensor = _onednn_linear()(x, weight, None, "none", [], "")
        return out

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor | None, Tensor | None]:
        x, weight = ctx.saved_tensors
        grad_x = grad_weight = None
        if ctx.needs_input_grad[0]:  # (..., out) @ (out, in)
            grad_x = _onednn_linear()(grad, weight.t().contiguous(), None, "none", [], "")
        if ctx.needs_input_grad[1]:  # (out, rows) @ (rows, in)
            grad_weight = grad.reshape(-1, grad.shape[-1]).t().mm(x.reshape(-1, x.shape[-1]))
        return grad_x, grad_weight


def linear(x: Tensor, weight: Tensor) -> Tensor:
    """``F.linear(x, weight)`` (no bias). Shapes: x (..., in), weight (out, in) -> (..., out)."""
    if not _takes_onednn(x, weight):
        return F.linear(x, weight)
    if _needs_grad(x, weight):
        result: Tensor = _LinearFunction.apply(x, weight)
        return result
    out: Tensor = _onednn_linear()(x, weight, None, "none", [], "")
    return out


def linear_add(x: Tensor, weight: Tensor, other: Tensor) -> Tensor:
    """``other + F.linear(x, weight)`` in one product (a new tensor; ``other`` is kept).

    Shapes: x (rows, in), weight (out, in), other (rows, out) -> (rows, out).
    """
    if (
        _takes_onednn(x, weight)
        and other.dtype == torch.float32
        and not _needs_grad(x, weight, other)
    ):
        out: Tensor = _onednn_linear().binary(x, other, weight, None, "add")
        return out
    return torch.addmm(other, x, weight.T)
