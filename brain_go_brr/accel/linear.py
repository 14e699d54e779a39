"""Float32 linear maps for CPU inference through oneDNN: ``F.linear``'s product, faster.

ATen sends a float32 ``F.linear`` on CPU to the BLAS (MKL in the PyPI wheels). On the tall,
narrow products of the Mamba2 blocks (many rows, 16-64 columns in, 32-160 out) oneDNN's
inner product ran faster here, with results equal to float32 rounding (bitwise equal on
every shape we tried); ``benchmarks/bench_accel.py`` measures it. oneDNN is reached through
``torch.ops.mkldnn._linear_pointwise``, the op that ``torch.compile``'s CPU backend emits for
linear layers when it freezes weights. It is a private op, so it is checked once against
``F.linear`` on a small example and, if it is missing or disagrees, every call falls back to
``F.linear`` (logged).

Inference only: :func:`linear` and :func:`linear_add` are called by the compiled Mamba2 path
of :mod:`brain_go_brr.accel.mamba`, which runs without gradients. They refuse tensors that
need a gradient (training runs on public PyTorch ops only, :mod:`brain_go_brr.models`), and
call ``F.linear`` / ``addmm`` under autocast (which already runs its 16-bit products through
oneDNN) and for other dtypes and devices.
"""

from __future__ import annotations

import functools
import logging
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

log = logging.getLogger(__name__)


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


def available() -> bool:
    """Whether the oneDNN product exists here and agrees with ``F.linear``."""
    return _onednn_linear() is not None


def _takes_onednn(x: Tensor, weight: Tensor) -> bool:
    return (
        x.device.type == "cpu"
        and x.dtype == torch.float32
        and weight.dtype == torch.float32
        and not torch.is_autocast_enabled("cpu")
        and _onednn_linear() is not None
    )


def _check_no_grad(*tensors: Tensor) -> None:
    if torch.is_grad_enabled() and any(t.requires_grad for t in tensors):
        raise RuntimeError(
            "brain_go_brr.accel.linear is for inference: its oneDNN product has no backward; "
            "train on the plain model (brain_go_brr.models), or run under torch.no_grad()"
        )


def linear(x: Tensor, weight: Tensor) -> Tensor:
    """``F.linear(x, weight)`` (no bias). Shapes: x (..., in), weight (out, in) -> (..., out)."""
    _check_no_grad(x, weight)
    if not _takes_onednn(x, weight):
        return F.linear(x, weight)
    out: Tensor = _onednn_linear()(x, weight, None, "none", [], "")
    return out


def linear_add(x: Tensor, weight: Tensor, other: Tensor) -> Tensor:
    """``other + F.linear(x, weight)`` in one product (a new tensor; ``other`` is kept).

    Shapes: x (rows, in), weight (out, in), other (rows, out) -> (rows, out).
    """
    _check_no_grad(x, weight, other)
    if _takes_onednn(x, weight) and other.dtype == torch.float32:
        out: Tensor = _onednn_linear().binary(x, other, weight, None, "add")
        return out
    return torch.addmm(other, x, weight.T)
