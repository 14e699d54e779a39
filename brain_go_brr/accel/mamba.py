"""The compiled CPU inference path of a :class:`~brain_go_brr.models.mamba2.BiMamba2Stack`.

:func:`brain_go_brr.accel.accelerate` turns each stack of a built model into a
:class:`FastBiMamba2Stack`: the same module (same parameters, same state dict) whose forward
runs the compiled kernels when the call is CPU inference (no gradient needed, float32 or
bfloat16 input), and the plain PyTorch forward otherwise (training, CUDA, other dtypes).

Per :class:`~brain_go_brr.models.mamba2.BiMamba2` layer:

- the pre-norm runs in :func:`.kernels.rms_norm` (written in bfloat16 under bfloat16
  autocast, ready for both directions' products);
- per direction, the three pieces of ``in_proj`` are their own products (``z``, ``xBC``,
  ``dt``: every input of the kernels contiguous);
- the causal convolution with its SiLU, ``dt`` and its decay, the scan with the ``D`` skip,
  the ``silu(z)`` gate and the grouped RMSNorm run in one LLVM vector kernel with the state
  in registers (:mod:`.scan`, the ``llvm_scan`` kernel), or in numba's kernels
  (:mod:`.kernels`) where no lane width fits the block or ``llvm_scan`` is not chosen; the
  reverse direction walks time backwards, without copies;
- both directions' output projections add straight into the residual (two ``addmm``), so
  neither projected output nor their sum is materialised.

The recurrence runs step by step in float32 (the sequential form of the chunked scan); it
agrees with the plain model to float32 rounding (``tests/test_mamba2.py``). Under bfloat16
autocast the projections run in bfloat16 and the kernels in float32, reading and writing
the bfloat16 tensors of the products directly.
"""

from __future__ import annotations

import functools
import logging
from typing import Any, cast

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from brain_go_brr.models.mamba2 import BiMamba2, BiMamba2Stack, Mamba2

log = logging.getLogger(__name__)

#: The LLVM scan splits its sequences over torch's intra-op thread count from this many
#: output values on (smaller calls run on the calling thread: a hand-off costs more).
_SCAN_THREADS_FROM = 1 << 16
_announced: set[str] = set()


def _announce(path: str, why: str) -> None:
    if path not in _announced:
        _announced.add(path)
        log.info("Mamba2 CPU inference: %s (%s)", path, why)


@functools.cache
def kernels_module() -> Any:
    """:mod:`.kernels` (numba), or ``None`` where numba does not import."""
    try:
        from brain_go_brr.accel import kernels
    except ImportError as err:
        log.debug("numba unavailable: %s", err)
        return None
    return kernels


@functools.cache
def scan_module() -> Any:
    """:mod:`.scan` (the LLVM vector scan), or ``None`` where llvmlite does not import."""
    try:
        from brain_go_brr.accel import scan
    except ImportError as err:  # pragma: no cover - llvmlite comes with numba
        log.debug("llvmlite unavailable: %s", err)
        return None
    return scan


class FastBiMamba2Stack(BiMamba2Stack):
    """A :class:`BiMamba2Stack` whose CPU inference runs the compiled kernels.

    Made by :func:`brain_go_brr.accel.accelerate` from a built stack (never constructed
    directly). ``accel_kernels`` names the kernels this stack may use (``llvm_scan``; the
    numba kernels are always used on the compiled path).
    """

    accel_kernels: frozenset[str] = frozenset()

    def forward(self, u: Tensor) -> Tensor:
        if not self._compiled_call(u):
            return super().forward(u)
        if u.dtype != torch.float32:
            u = u.float()  # the residual stream in float32, as the plain stack keeps it
        for layer in self.layers:
            u = self._layer(cast(BiMamba2, layer), u)
        with torch.autocast("cpu", enabled=False):  # the stack's output in float32
            return _rms_norm(self.norm, u)

    def _compiled_call(self, u: Tensor) -> bool:
        if u.device.type != "cpu" or u.shape[1] == 0:
            return False
        if u.dtype not in (torch.float32, torch.bfloat16, torch.float16):
            return False
        if torch.is_grad_enabled() and (
            u.requires_grad or any(p.requires_grad for p in self.parameters())
        ):
            _announce("plain PyTorch", "gradients needed: the compiled kernels have no backward")
            return False
        return kernels_module() is not None

    def _layer(self, layer: BiMamba2, u: Tensor) -> Tensor:
        """``u + (out_fwd(y_fwd) + out_bwd(y_bwd)) / 2``, the two projections as ``addmm``.

        Same result as :meth:`BiMamba2.forward` to float32 rounding. Shapes: (b, l, d).
        """
        normed = _rms_norm(layer.norm, u)
        y_fwd = mix(layer.mamba_fwd, normed, False, self.accel_kernels).flatten(0, 1)
        y_bwd = mix(layer.mamba_bwd, normed, True, self.accel_kernels).flatten(0, 1)
        w_fwd, w_bwd = layer.mamba_fwd.out_proj.weight, layer.mamba_bwd.out_proj.weight
        if torch.is_autocast_enabled("cpu"):
            # addmm is not autocast: the projections in 16 bits as Linear would run them,
            # added to the residual in its own (float32) precision.
            dtype = torch.get_autocast_dtype("cpu")
            y_fwd, y_bwd, w_fwd, w_bwd = (t.to(dtype) for t in (y_fwd, y_bwd, w_fwd, w_bwd))
            projected = torch.mm(y_fwd, w_fwd.T).addmm_(y_bwd, w_bwd.T)
            return u.add(projected.view(u.shape), alpha=0.5)
        # u + (W_f y_f + W_b y_b) / 2 as two products that add into their input (the
        # factor 0.5 is exact: a power of two)
        out = torch.addmm(u.flatten(0, 1), y_fwd, w_fwd.detach().T, alpha=0.5)
        return out.addmm_(y_bwd, w_bwd.detach().T, alpha=0.5).view(u.shape)


def _kernel_input(projected: Tensor) -> Tensor:
    """A projection's output as :mod:`.kernels` reads it: float32 as is, bfloat16 as its
    ``uint16`` bits (widened in the kernel), any other dtype converted to float32."""
    if projected.dtype == torch.bfloat16:
        return projected.contiguous().view(torch.uint16)
    return projected.float().contiguous()


def _rms_norm(norm: nn.RMSNorm, u: Tensor) -> Tensor:
    """``norm(u)`` through :func:`.kernels.rms_norm` (float32 ``u``; the stacks' norms, built
    with a weight and ``eps=1e-5``).

    Written in bfloat16 under bfloat16 autocast (the input of 16-bit products), else in
    float32. Shapes: (..., d) -> (..., d).
    """
    kernels = kernels_module()
    kernels.set_threads(torch.get_num_threads())
    low = torch.is_autocast_enabled("cpu") and torch.get_autocast_dtype("cpu") == torch.bfloat16
    out = torch.empty(u.shape, dtype=torch.uint16 if low else torch.float32)
    width = u.shape[-1]
    kernels.rms_norm(
        u.contiguous().view(-1, width).numpy(),
        norm.weight.detach().float().numpy(),
        norm.eps if norm.eps is not None else torch.finfo(torch.float32).eps,
        out.view(-1, width).numpy(),
    )
    return out.view(torch.bfloat16) if low else out


def mix(mixer: Mamba2, u: Tensor, reverse: bool, kernels: frozenset[str]) -> Tensor:
    """Everything of ``mixer`` before ``out_proj``, with the element-wise work compiled
    (``reverse``: reading time backwards; ``kernels``: ``llvm_scan`` in it runs the LLVM
    scan where it fits). CPU inference only (call it without gradients).

    Shapes: ``u`` (b, l, d_model) -> (b, l, d_inner), float32 (bfloat16 under bfloat16
    autocast, ready for ``out_proj``'s bfloat16 product).
    """
    numba_kernels = kernels_module()
    numba_kernels.set_threads(torch.get_num_threads())
    gn = mixer.ngroups * mixer.d_state
    z_rows, xbc_rows, dt_rows = mixer.in_proj.weight.detach().split(
        [mixer.d_inner, mixer.d_inner + 2 * gn, mixer.nheads]
    )
    low = torch.get_autocast_dtype("cpu") if torch.is_autocast_enabled("cpu") else None
    if low is not None:
        # cast the input once for the three products (autocast would cast it per call)
        u = u.to(low)
    # The gate and the convolution's input go to the kernels as they come out of their
    # products (float32, or bfloat16 read as its bits): no conversion pass.
    z = _kernel_input(F.linear(u, z_rows))  # (b, l, d_inner), before its SiLU
    xbc_in = _kernel_input(F.linear(u, xbc_rows))  # (b, l, d_inner + 2 g n)
    dt_raw = _kernel_input(F.linear(u, dt_rows))  # (b, l, h)
    dt_bias = mixer.dt_bias.detach().float().contiguous()
    A = -torch.exp(mixer.A_log.detach().float())
    conv_weight = mixer.conv1d.weight.detach()[:, 0].float().t().contiguous()  # (d_conv, ch)
    conv_bias = cast(Tensor, mixer.conv1d.bias).detach().float().contiguous()
    # under bfloat16 autocast the result is written as bfloat16 for out_proj's product
    out = torch.empty(z.shape, dtype=torch.uint16 if low == torch.bfloat16 else torch.float32)
    shape = _scan_shape(mixer, xbc_in, dt_raw, z, out, kernels)
    if shape is not None:
        # dt, convolution, scan, gate and norm in one LLVM vector kernel (.scan)
        scan_module().conv_scan_gate_norm(
            shape,
            xbc_in,
            conv_weight,
            conv_bias,
            dt_raw,
            dt_bias,
            A,
            mixer.D.detach().float().contiguous(),
            z,
            mixer.norm.weight.detach().float().contiguous(),
            mixer.norm.eps,
            reverse,
            out,
            n_threads=torch.get_num_threads() if out.numel() >= _SCAN_THREADS_FROM else 1,
        )
        return out.view(torch.bfloat16) if out.dtype == torch.uint16 else out
    dt = torch.empty(dt_raw.shape, dtype=torch.float32)  # softplus(dt_raw + dt_bias)
    decay = torch.empty_like(dt)  # exp(dt * A)
    numba_kernels.dt_and_decay(
        dt_raw.view(-1, mixer.nheads).numpy(),
        dt_bias.numpy(),
        A.numpy(),
        dt.view(-1, mixer.nheads).numpy(),
        decay.view(-1, mixer.nheads).numpy(),
    )
    xbc = torch.empty(xbc_in.shape, dtype=torch.float32)
    numba_kernels.causal_conv_silu(
        xbc_in.numpy(), conv_weight.numpy(), conv_bias.numpy(), reverse, xbc.numpy()
    )
    numba_kernels.scan_gate_norm(
        xbc.numpy(),
        dt.numpy(),
        decay.numpy(),
        z.numpy(),
        mixer.D.detach().float().numpy(),
        mixer.norm.weight.detach().float().numpy(),
        mixer.norm.eps,
        mixer.nheads,
        mixer.ngroups,
        reverse,
        out.numpy(),
    )
    return out.view(torch.bfloat16) if out.dtype == torch.uint16 else out


def _scan_shape(
    mixer: Mamba2, xbc: Tensor, dt_raw: Tensor, z: Tensor, out: Tensor, kernels: frozenset[str]
) -> Any:
    """The :class:`.scan.ScanShape` of this call, or ``None`` where the numba scan runs."""
    scan = scan_module() if "llvm_scan" in kernels else None
    if scan is None:
        _announce("numba scan", "the LLVM scan is not chosen, or llvmlite is missing")
        return None
    shape = scan.ScanShape(
        d_inner=mixer.d_inner,
        d_state=mixer.d_state,
        nheads=mixer.nheads,
        ngroups=mixer.ngroups,
        d_conv=mixer.d_conv,
        bf16_input=xbc.dtype == torch.uint16,
        bf16_gate=z.dtype == torch.uint16,
        bf16_output=out.dtype == torch.uint16,
        bf16_dt=dt_raw.dtype == torch.uint16,
    )
    if not scan.supported(shape):
        _announce(
            "numba scan",
            f"d_inner={mixer.d_inner}, d_state={mixer.d_state}: no lane width of the LLVM "
            "scan fits these widths",
        )
        return None
    _announce("LLVM vector scan", f"{shape.lanes} lanes, brain_go_brr/accel/scan.py")
    return shape
