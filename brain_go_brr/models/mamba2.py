"""Mamba2 in pure PyTorch, its bidirectional layer and stack, and the kernel backend choice.

Interface (shared with the model code)::

    Mamba2(d_model, d_state=16, d_conv=4, expand=2, headdim=8, ngroups=1, chunk_size=64,
           backend="auto", recompute=True)         forward (B, L, d_model) -> (B, L, d_model)
    BiMamba2Stack(d_model, n_layers, d_state, d_conv=4, expand=2, headdim=8, chunk_size=64,
                  backend="auto", ngroups=1, recompute=True)
                                                   forward (B, L, d_model) -> (B, L, d_model)

Each :class:`BiMamba2` layer: pre-norm (RMSNorm), a forward and a time-reversed Mamba2
(separate weights), averaged, plus the residual; the stack ends with an RMSNorm.
``chunk_size`` only trades speed for memory (results agree to float32 rounding); on CPU
our scan is fastest at 16-32 (``benchmarks/mamba_vs_hf.py``), the CUDA kernels at 64-256.

:class:`Mamba2` follows ``mamba_ssm.Mamba2`` (Dao & Gu 2024) step by step:

1. ``in_proj`` maps each step to ``[z | x B C | dt]`` (widths ``d_inner``,
   ``d_inner + 2 ngroups d_state``, ``nheads``);
2. a causal depthwise ``conv1d`` (kernel ``d_conv``) and SiLU mix ``x B C`` over time;
3. ``dt = softplus(dt + dt_bias)``, ``A = -exp(A_log)``; the SSD scan (:mod:`.ssd`) with the
   ``D`` skip gives ``y``;
4. gated RMSNorm ``norm(y * silu(z))`` (per group of ``d_inner / ngroups`` channels);
5. ``out_proj`` back to ``d_model``.

Its parameters have the names and shapes of ``mamba_ssm.Mamba2`` (``in_proj.weight``,
``conv1d.weight``, ``conv1d.bias``, ``dt_bias``, ``A_log``, ``D``, ``norm.weight``,
``out_proj.weight``; no buffers), so a state dict loads into either in strict mode.

Memory in training: with ``recompute=True`` (the default) the pure-PyTorch block keeps only
its input for the backward pass and recomputes its internals there, as ``mamba_ssm``'s fused
kernel does (which keeps its input projection). The internals are about 15 tensors of
``d_inner`` channels per step, many times the block's input (peak memory per window with
and without recompute: BENCHMARKS.md). Sequences are recomputed in groups of at most
:data:`RECOMPUTE_GROUP_ELEMENTS` steps x channels, so the backward's temporaries stay bounded
whatever the batch. The price is one more forward of the block in the backward pass.

Backends: ``"torch"`` always runs our chunked scan; ``"cuda"`` runs the fused
``mamba_ssm`` kernel and fails with an install hint when ``mamba_ssm`` is missing;
``"numba"`` runs our compiled CPU kernels (:mod:`.cpu_kernels`) for inference on CPU and
fails with an install hint when ``numba`` is missing; ``"auto"`` picks ``mamba_ssm`` for
CUDA inputs when it imports, the compiled CPU kernels for CPU inference when ``numba``
imports, and the chunked scan otherwise. Training (gradients needed) on CPU always runs the
chunked scan: the compiled kernels have no backward. The choice is logged once per process
per path. ``mamba_ssm`` and ``numba`` are imported lazily, on first use (``mamba_ssm`` does
not import at all on machines without CUDA).

The compiled CPU path runs the recurrence step by step in float32 (the sequential form of
the same scan) with the convolution and its SiLU, the D skip, the ``silu(z)`` gate and the
RMSNorm fused around it (one LLVM vector kernel with the state in registers,
:mod:`.cpu_scan`, or numba's :mod:`.cpu_kernels` where no lane width fits or
``BGB_LLVM_SCAN=0``), and the layer's pre-norm in its own compiled pass; it agrees with the chunked scan to float32 rounding (``tests/test_mamba2.py``) and
is what makes v3 inference fast on a CPU (``BENCHMARKS.md``). Under bfloat16
autocast the projections run in bfloat16 and the kernels in float32, reading and writing
the bfloat16 tensors of the products directly. In float32 on CPU every projection
(both paths, inference and training) goes through oneDNN (:mod:`.cpu_linear`), which ran
these tall, narrow products about twice as fast as ATen's ``F.linear`` here.

``forward(u, reverse=True)`` runs the mixer over the time-reversed sequence and returns its
outputs in the original order (``flip(forward(flip(u)))``); the compiled path does this by
walking time backwards, without the two copies.
"""

from __future__ import annotations

import functools
import logging
import math
from typing import Any, cast

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

from brain_go_brr.config import env_flag
from brain_go_brr.models.cpu_linear import linear, linear_add
from brain_go_brr.models.ssd import ssd_scan

log = logging.getLogger(__name__)

BACKENDS = ("auto", "torch", "cuda", "numba")
_INSTALL_HINT = (
    "install the CUDA kernels with `pip install .[gpu]` (needs a CUDA toolkit and a CUDA "
    "build of torch), or set backend='torch' to use the pure-PyTorch scan"
)
_NUMBA_HINT = (
    "install numba (`pip install numba`, a dependency of this package) for the compiled "
    "CPU inference kernels, or set backend='torch' to use the pure-PyTorch scan"
)
_announced: set[str] = set()
#: Recompute groups of sequences with at most this many (steps x d_inner) elements: each
#: of the ~15 internal tensors of a group is then at most 4 MB in float32.
RECOMPUTE_GROUP_ELEMENTS = 1 << 20
#: The LLVM scan splits its sequences over torch's intra-op thread count from this many
#: output values on (smaller calls run on the calling thread: a hand-off costs more than they do).
_SCAN_THREADS_FROM = 1 << 16


@functools.cache
def _mamba_ssm_kernel() -> Any:
    """The fused ``mamba_ssm`` split-conv-scan function, or ``None`` if it does not import."""
    try:
        from mamba_ssm.ops.triton.ssd_combined import mamba_split_conv1d_scan_combined
    except ImportError as err:  # also raised on machines without CUDA
        log.debug("mamba_ssm unavailable: %s", err)
        return None
    return mamba_split_conv1d_scan_combined


@functools.cache
def _cpu_kernels() -> Any:
    """:mod:`.cpu_kernels` (compiled CPU inference kernels), or ``None`` without numba."""
    try:
        from brain_go_brr.models import cpu_kernels
    except ImportError as err:
        log.debug("numba unavailable: %s", err)
        return None
    return cpu_kernels


#: Whether CPU inference may run the scan as the LLVM vector kernel of :mod:`.cpu_scan`
#: (environment ``BGB_LLVM_SCAN``; off: the numba kernels of :mod:`.cpu_kernels`).
LLVM_SCAN = env_flag("BGB_LLVM_SCAN")


@functools.cache
def _cpu_scan() -> Any:
    """:mod:`.cpu_scan` (the LLVM vector scan), or ``None`` if llvmlite does not import."""
    try:
        from brain_go_brr.models import cpu_scan
    except ImportError as err:  # pragma: no cover - llvmlite comes with numba
        log.debug("llvmlite unavailable: %s", err)
        return None
    return cpu_scan


def _scan_shape(mixer: Mamba2, xbc: Tensor, dt_raw: Tensor, z: Tensor, out: Tensor) -> Any:
    """The :class:`.cpu_scan.ScanShape` of this call, or ``None`` where the numba scan runs."""
    scan = _cpu_scan() if LLVM_SCAN else None
    if scan is None:
        _announce("numba scan", "the LLVM scan is off (BGB_LLVM_SCAN=0) or llvmlite is missing")
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
    _announce("LLVM vector scan", f"CPU inference on {shape.lanes} lanes, models/cpu_scan.py")
    return shape


def _kernel_input(projected: Tensor) -> Tensor:
    """A projection's output as :mod:`.cpu_kernels` reads it: float32 as is, bfloat16 as
    its ``uint16`` bits (widened in the kernel), any other dtype converted to float32."""
    if projected.dtype == torch.bfloat16:
        return projected.contiguous().view(torch.uint16)
    return projected.float().contiguous()


def _compiled_rms_norm(norm: nn.RMSNorm, u: Tensor) -> Tensor:
    """``norm(u)`` through :func:`.cpu_kernels.rms_norm` (CPU inference, float32 ``u``; the
    stacks' norms, built with a weight and ``eps=1e-5``).

    Written in bfloat16 under bfloat16 autocast (the input of 16-bit products), else in
    float32. Shapes: (..., d) -> (..., d).
    """
    kernels = _cpu_kernels()
    kernels.set_threads(torch.get_num_threads())
    low = torch.is_autocast_enabled("cpu") and torch.get_autocast_dtype("cpu") == torch.bfloat16
    out = torch.empty(u.shape, dtype=torch.uint16 if low else torch.float32)
    width = u.shape[-1]
    kernels.rms_norm(
        u.contiguous().view(-1, width).numpy(),
        norm.weight.detach().float().numpy(),
        norm.eps,
        out.view(-1, width).numpy(),
    )
    return out.view(torch.bfloat16) if low else out


def _announce(backend: str, why: str) -> None:
    if backend not in _announced:
        _announced.add(backend)
        log.info("Mamba2 backend: %s (%s)", backend, why)


class RMSNormGated(nn.Module):
    """Gated RMSNorm ``rmsnorm(y * silu(z)) * weight``, normalised per group of channels.

    Same parameter (``weight`` of shape ``(dim,)``) and arithmetic as ``mamba_ssm``'s
    ``RMSNormGated(norm_before_gate=False)``; statistics are taken in float32.

    Shapes: ``y``, ``z``: (..., dim) -> (..., dim).
    """

    def __init__(self, dim: int, group_size: int, eps: float = 1e-5) -> None:
        super().__init__()
        if dim % group_size:
            raise ValueError(
                f"RMSNormGated: dim {dim} is not a multiple of group_size {group_size}"
            )
        self.dim, self.group_size, self.eps = dim, group_size, eps
        self.weight = nn.Parameter(torch.ones(dim))

    def reset_parameters(self) -> None:
        nn.init.ones_(self.weight)

    def forward(self, y: Tensor, z: Tensor) -> Tensor:
        gated = (y * F.silu(z)).float()
        if self.group_size == self.dim:
            return F.rms_norm(gated, (self.dim,), self.weight.float(), self.eps).to(y.dtype)
        grouped = gated.unflatten(-1, (-1, self.group_size))  # (..., groups, group_size)
        normed = F.rms_norm(grouped, (self.group_size,), eps=self.eps).flatten(-2)
        return (normed * self.weight).to(y.dtype)

    def extra_repr(self) -> str:
        return f"{self.dim}, group_size={self.group_size}, eps={self.eps}"


class Mamba2(nn.Module):
    """One Mamba2 mixer (causal, forward in time); see the module docstring for the steps.

    Args:
        d_model: width of the input and output.
        d_state: state size per head (``N``).
        d_conv: kernel width of the causal depthwise convolution.
        expand: ``d_inner = expand * d_model``.
        headdim: channels per head (``P``); ``nheads = d_inner / headdim``.
        ngroups: groups sharing ``B`` and ``C`` (``nheads`` must be a multiple).
        chunk_size: chunk length of the SSD scan (a speed/memory knob; results do not
            depend on it).
        backend: ``"auto"``, ``"torch"``, ``"cuda"`` or ``"numba"`` (module docstring).
        recompute: in training, keep only the input for backward and recompute the
            pure-PyTorch block's internals there (module docstring); no effect without
            gradients or on the ``mamba_ssm`` path.
        dt_min: ``dt`` at init is log-uniform in ``[dt_min, dt_max]``, stored through the
            inverse softplus.
        dt_max: see ``dt_min``.
        dt_init_floor: the floor of ``dt`` at init.
        A_init_range: ``A`` at init is uniform in this range (stored as ``log A``).

    Shapes: ``u``: (batch, length, d_model) -> (batch, length, d_model).
    """

    def __init__(
        self,
        d_model: int,
        d_state: int = 16,
        d_conv: int = 4,
        expand: int = 2,
        headdim: int = 8,
        ngroups: int = 1,
        chunk_size: int = 64,
        backend: str = "auto",
        recompute: bool = True,
        dt_min: float = 0.001,
        dt_max: float = 0.1,
        dt_init_floor: float = 1e-4,
        A_init_range: tuple[float, float] = (1.0, 16.0),
    ) -> None:
        super().__init__()
        if backend not in BACKENDS:
            raise ValueError(f"Mamba2: backend {backend!r} is not one of {BACKENDS}")
        if backend == "cuda" and _mamba_ssm_kernel() is None:
            raise ImportError(
                f"Mamba2 backend 'cuda' asked for but mamba_ssm does not import; {_INSTALL_HINT}"
            )
        if backend == "numba" and _cpu_kernels() is None:
            raise ImportError(
                f"Mamba2 backend 'numba' asked for but numba does not import; {_NUMBA_HINT}"
            )
        d_inner = expand * d_model
        if d_inner % headdim:
            raise ValueError(
                f"Mamba2: d_inner = expand * d_model = {d_inner} is not a multiple of headdim {headdim}"
            )
        nheads = d_inner // headdim
        if nheads % ngroups:
            raise ValueError(f"Mamba2: nheads {nheads} is not a multiple of ngroups {ngroups}")
        self.d_model, self.d_state, self.d_conv, self.expand = d_model, d_state, d_conv, expand
        self.headdim, self.ngroups, self.chunk_size, self.backend = (
            headdim,
            ngroups,
            chunk_size,
            backend,
        )
        self.d_inner, self.nheads = d_inner, nheads
        self.recompute = recompute
        self.dt_min, self.dt_max, self.dt_init_floor = dt_min, dt_max, dt_init_floor
        self.A_init_range = A_init_range

        conv_dim = d_inner + 2 * ngroups * d_state
        self.in_proj = nn.Linear(d_model, 2 * d_inner + 2 * ngroups * d_state + nheads, bias=False)
        self.conv1d = nn.Conv1d(conv_dim, conv_dim, d_conv, groups=conv_dim, padding=d_conv - 1)
        self.dt_bias = nn.Parameter(torch.empty(nheads))
        self.A_log = nn.Parameter(torch.empty(nheads))
        self.D = nn.Parameter(torch.empty(nheads))
        self.norm = RMSNormGated(d_inner, group_size=d_inner // ngroups)
        self.out_proj = nn.Linear(d_inner, d_model, bias=False)
        # Optimisers built the mamba_ssm way exclude these from weight decay.
        for p in (self.dt_bias, self.A_log, self.D):
            p._no_weight_decay = True  # type: ignore[attr-defined]
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Initialise as ``mamba_ssm.Mamba2`` does (default Linear/Conv1d init elsewhere)."""
        self.in_proj.reset_parameters()
        self.conv1d.reset_parameters()
        self.out_proj.reset_parameters()
        self.norm.reset_parameters()
        with torch.no_grad():
            log_lo, log_hi = math.log(self.dt_min), math.log(self.dt_max)
            dt = torch.exp(torch.rand(self.nheads) * (log_hi - log_lo) + log_lo)
            dt = dt.clamp(min=self.dt_init_floor)
            self.dt_bias.copy_(dt + torch.log(-torch.expm1(-dt)))  # softplus(dt_bias) == dt
            self.A_log.copy_(torch.empty(self.nheads).uniform_(*self.A_init_range).log())
            self.D.fill_(1.0)

    def extra_repr(self) -> str:
        return (
            f"d_model={self.d_model}, d_state={self.d_state}, d_conv={self.d_conv}, "
            f"expand={self.expand}, headdim={self.headdim}, ngroups={self.ngroups}, "
            f"nheads={self.nheads}, chunk_size={self.chunk_size}, backend={self.backend!r}, "
            f"recompute={self.recompute}"
        )

    def _path(self, u: Tensor) -> str:
        """Which implementation runs this call: ``"mamba_ssm"``, ``"numba"`` or ``"torch"``."""
        if self.backend == "torch":
            _announce("torch", "backend='torch' asked for")
            return "torch"
        if u.is_cuda:
            if self.backend == "numba":
                raise RuntimeError("Mamba2 backend 'numba' is for CPU inputs, got a CUDA tensor")
            if _mamba_ssm_kernel() is None:
                _announce(
                    "torch", f"mamba_ssm does not import; for the fused kernels, {_INSTALL_HINT}"
                )
                return "torch"
            _announce("mamba_ssm", "CUDA input and mamba_ssm imports")
            return "mamba_ssm"
        if self.backend == "cuda":
            raise RuntimeError(f"Mamba2 backend 'cuda' needs CUDA inputs, got a {u.device} tensor")
        if torch.is_grad_enabled() and (u.requires_grad or self.in_proj.weight.requires_grad):
            _announce("torch", "CPU training: the compiled CPU kernels have no backward")
            return "torch"
        if u.dtype not in (torch.float32, torch.bfloat16) or u.shape[1] == 0:
            return "torch"
        if _cpu_kernels() is None:
            _announce("torch", f"CPU inference without numba; for faster inference, {_NUMBA_HINT}")
            return "torch"
        _announce("numba", "CPU inference and numba imports")
        return "numba"

    def forward(self, u: Tensor, reverse: bool = False) -> Tensor:
        """``u`` (batch, length, d_model) -> (batch, length, d_model).

        ``reverse=True``: the mixer reads the sequence backwards in time (outputs in the
        original order), i.e. ``flip(forward(flip(u)))``.
        """
        path = self._path(u)
        if path == "numba":
            return self._forward_compiled(u, reverse)
        if reverse:
            return self._forward_in_order(u.flip(1), path).flip(1)
        return self._forward_in_order(u, path)

    def _forward_in_order(self, u: Tensor, path: str) -> Tensor:
        """The mixer over ``u`` in its own time order, on the ``"torch"`` or ``"mamba_ssm"`` path."""
        if path == "mamba_ssm":
            return self._forward_mamba_ssm(self.in_proj(u))
        if not (self.recompute and torch.is_grad_enabled()):
            return self._forward_torch(u)
        per_group = max(1, RECOMPUTE_GROUP_ELEMENTS // max(1, u.shape[1] * self.d_inner))
        parts = [
            cast(Tensor, checkpoint(self._forward_torch, part, use_reentrant=False))
            for part in u.split(per_group)
        ]
        return parts[0] if len(parts) == 1 else torch.cat(parts)

    def _forward_compiled(self, u: Tensor, reverse: bool) -> Tensor:
        """CPU inference through :mod:`.cpu_kernels`: projections in torch, the rest compiled."""
        return linear(self._mix_compiled(u, reverse), self.out_proj.weight.detach())

    def _mix_compiled(self, u: Tensor, reverse: bool) -> Tensor:
        """Everything before ``out_proj``, with the element-wise work compiled.

        Same steps as :meth:`_forward_torch`. The causal convolution and the scan with its
        D skip, gate and RMSNorm run in :mod:`.cpu_kernels`, so the (batch, length, d_inner)
        intermediates are written once instead of once per element-wise operation. Each
        piece of ``in_proj`` is its own matmul, so every input of the kernels is contiguous
        (reading them as column slices of one wide projection made the kernels much slower).

        Shapes: ``u`` (b, l, d_model) -> (b, l, d_inner), float32 (bfloat16 under bfloat16
        autocast, ready for ``out_proj``'s bfloat16 product).
        """
        kernels = _cpu_kernels()
        kernels.set_threads(torch.get_num_threads())
        gn = self.ngroups * self.d_state
        z_rows, xbc_rows, dt_rows = self.in_proj.weight.detach().split(
            [self.d_inner, self.d_inner + 2 * gn, self.nheads]
        )
        low = torch.get_autocast_dtype("cpu") if torch.is_autocast_enabled("cpu") else None
        if low is not None:
            # cast the input once for the three products (autocast would cast it per call)
            u = u.to(low)
        # linear(): float32 products through oneDNN (.cpu_linear); F.linear under autocast.
        # The gate and the convolution's input go to the kernels as they come out of their
        # products (float32, or bfloat16 read as its bits): no conversion pass.
        z = _kernel_input(linear(u, z_rows))  # (b, l, d_inner), before its SiLU
        xbc_in = _kernel_input(linear(u, xbc_rows))  # (b, l, d_inner + 2 g n)
        dt_raw = _kernel_input(linear(u, dt_rows))  # (b, l, h)
        dt_bias = self.dt_bias.detach().float().contiguous()
        A = -torch.exp(self.A_log.detach().float())
        conv_weight = self.conv1d.weight.detach()[:, 0].float().t().contiguous()  # (d_conv, ch)
        conv_bias = cast(Tensor, self.conv1d.bias).detach().float().contiguous()
        # under bfloat16 autocast the result is written as bfloat16 for out_proj's product
        out = torch.empty(z.shape, dtype=torch.uint16 if low == torch.bfloat16 else torch.float32)
        shape = _scan_shape(self, xbc_in, dt_raw, z, out)
        if shape is not None:
            # dt, convolution, scan, gate and norm in one LLVM vector kernel (.cpu_scan)
            _cpu_scan().conv_scan_gate_norm(
                shape,
                xbc_in,
                conv_weight,
                conv_bias,
                dt_raw,
                dt_bias,
                A,
                self.D.detach().float().contiguous(),
                z,
                self.norm.weight.detach().float().contiguous(),
                self.norm.eps,
                reverse,
                out,
                n_threads=torch.get_num_threads() if out.numel() >= _SCAN_THREADS_FROM else 1,
            )
            return out.view(torch.bfloat16) if out.dtype == torch.uint16 else out
        dt = torch.empty(dt_raw.shape, dtype=torch.float32)  # softplus(dt_raw + dt_bias)
        decay = torch.empty_like(dt)  # exp(dt * A)
        kernels.dt_and_decay(
            dt_raw.view(-1, self.nheads).numpy(),
            dt_bias.numpy(),
            A.numpy(),
            dt.view(-1, self.nheads).numpy(),
            decay.view(-1, self.nheads).numpy(),
        )
        xbc = torch.empty(xbc_in.shape, dtype=torch.float32)
        kernels.causal_conv_silu(
            xbc_in.numpy(), conv_weight.numpy(), conv_bias.numpy(), reverse, xbc.numpy()
        )
        kernels.scan_gate_norm(
            xbc.numpy(),
            dt.numpy(),
            decay.numpy(),
            z.numpy(),
            self.D.detach().float().numpy(),
            self.norm.weight.detach().float().numpy(),
            self.norm.eps,
            self.nheads,
            self.ngroups,
            reverse,
            out.numpy(),
        )
        return out.view(torch.bfloat16) if out.dtype == torch.uint16 else out

    def _forward_torch(self, u: Tensor) -> Tensor:
        # in_proj's rows are [z | x | B C | dt]. Projecting each piece on its own (same
        # weights, same result as one matmul split afterwards) keeps every piece contiguous:
        # element-wise CPU kernels on strided column slices run several times slower.
        gn = self.ngroups * self.d_state
        z_rows, x_rows, bc_rows, dt_rows = self.in_proj.weight.split(
            [self.d_inner, self.d_inner, 2 * gn, self.nheads]
        )
        z = linear(u, z_rows)  # (b, l, d_inner)
        x = F.silu(self._causal_conv(linear(u, x_rows), 0))  # (b, l, d_inner)
        bc = F.silu(self._causal_conv(linear(u, bc_rows), self.d_inner))  # (b, l, 2 g n)
        dt = linear(u, dt_rows)  # (b, l, h)
        B, C = bc.split([gn, gn], dim=-1)
        # The scan runs in float32 even under autocast: its decays are exponentials of
        # running sums, which bfloat16 cannot hold.
        with torch.autocast(u.device.type, enabled=False):
            y = self._scan(
                x.float().unflatten(-1, (self.nheads, self.headdim)),  # (b, l, h, p)
                F.softplus(dt.float() + self.dt_bias.float()),  # (b, l, h)
                -torch.exp(self.A_log.float()),  # (h,)
                B.float().unflatten(-1, (self.ngroups, self.d_state)),  # (b, l, g, n)
                C.float().unflatten(-1, (self.ngroups, self.d_state)),  # (b, l, g, n)
            )
        y = self.norm(y.flatten(2).to(z.dtype), z)  # (b, l, d_inner)
        return linear(y, self.out_proj.weight)

    def _scan(self, x: Tensor, dt: Tensor, A: Tensor, B: Tensor, C: Tensor) -> Tensor:
        """The SSD scan with the ``D`` skip (shapes in :mod:`.ssd`); float32 in and out."""
        return ssd_scan(x, dt, A, B, C, self.D.float(), chunk_size=self.chunk_size)

    def _causal_conv(self, xbc: Tensor, first_channel: int) -> Tensor:
        """Depthwise ``conv1d`` over time on channels ``first_channel ..`` of ``self.conv1d``.

        Output t sees inputs t-d_conv+1 .. t. Written as ``d_conv`` shifted multiply-adds in
        the (b, l, channels) layout: same result as ``self.conv1d`` with its padding trimmed,
        without the two transposes or a padded copy, and several times faster than the CPU
        depthwise-convolution backward.
        """
        length, width = xbc.shape[1], xbc.shape[2]
        channels = slice(first_channel, first_channel + width)
        weight = self.conv1d.weight[channels, 0].to(xbc.dtype)  # (width, d_conv)
        bias = cast(Tensor, self.conv1d.bias)[channels].to(xbc.dtype)  # built with bias=True
        out = torch.addcmul(bias, xbc, weight[:, -1])  # the last tap reads step t itself
        for k in range(self.d_conv - 1):
            shift = self.d_conv - 1 - k  # tap k reads step t - shift
            if shift < length:
                out[:, shift:].addcmul_(xbc[:, : length - shift], weight[:, k])
        return out

    def _forward_mamba_ssm(self, zxbcdt: Tensor) -> Tensor:
        kernel = _mamba_ssm_kernel()
        return kernel(
            zxbcdt,
            self.conv1d.weight.squeeze(1),  # (conv_dim, d_conv)
            self.conv1d.bias,
            self.dt_bias,
            -torch.exp(self.A_log.float()),
            D=self.D,
            chunk_size=self.chunk_size,
            activation="silu",
            rmsnorm_weight=self.norm.weight,
            rmsnorm_eps=self.norm.eps,
            outproj_weight=self.out_proj.weight,
            outproj_bias=None,
            headdim=self.headdim,
            ngroups=self.ngroups,
            norm_before_gate=False,
        )


class BiMamba2(nn.Module):
    """Bidirectional Mamba2 layer: ``u + (fwd(n) + flip(bwd(flip(n)))) / 2``, ``n = norm(u)``.

    The two directions have separate weights; the backward one reads the sequence
    reversed, so every output step sees both its past and its future.

    Shapes: ``u``: (batch, length, d_model) -> (batch, length, d_model).
    """

    def __init__(self, d_model: int, **mamba_kwargs: Any) -> None:
        super().__init__()
        self.norm = nn.RMSNorm(d_model, eps=1e-5)
        self.mamba_fwd = Mamba2(d_model, **mamba_kwargs)
        self.mamba_bwd = Mamba2(d_model, **mamba_kwargs)

    def forward(self, u: Tensor) -> Tensor:
        if u.dtype == torch.float32 and self.mamba_fwd._path(u) == "numba":
            return self._forward_compiled(u)
        normed = self.norm(u)
        backward = self.mamba_bwd(normed, reverse=True)
        return u + 0.5 * (self.mamba_fwd(normed) + backward)

    def _forward_compiled(self, u: Tensor) -> Tensor:
        """CPU inference: ``u + (out_fwd(y_fwd) + out_bwd(y_bwd)) / 2`` as two ``addmm``.

        The pre-norm runs compiled (in bfloat16 out under bfloat16 autocast, ready for both
        directions' products). The output projections accumulate straight into the
        residual, so neither direction's projected output nor their sum is materialised.
        Same result as the two-call path to float32 rounding.
        """
        normed = _compiled_rms_norm(self.norm, u)
        y_fwd = self.mamba_fwd._mix_compiled(normed, reverse=False).flatten(0, 1)
        y_bwd = self.mamba_bwd._mix_compiled(normed, reverse=True).flatten(0, 1)
        w_fwd, w_bwd = self.mamba_fwd.out_proj.weight, self.mamba_bwd.out_proj.weight
        if torch.is_autocast_enabled("cpu"):
            # addmm is not autocast: the projections in 16 bits as Linear would run them,
            # added to the residual in its own (float32) precision.
            dtype = torch.get_autocast_dtype("cpu")
            y_fwd, y_bwd, w_fwd, w_bwd = (t.to(dtype) for t in (y_fwd, y_bwd, w_fwd, w_bwd))
            projected = torch.mm(y_fwd, w_fwd.T).addmm_(y_bwd, w_bwd.T)
            return u.add(projected.view(u.shape), alpha=0.5)
        # u + (W_f y_f + W_b y_b) / 2 as two products that add into their input (the
        # halved weights are exact: a power of two)
        out = linear_add(y_fwd, w_fwd.detach() * 0.5, u.flatten(0, 1))
        return linear_add(y_bwd, w_bwd.detach() * 0.5, out).view(u.shape)


class BiMamba2Stack(nn.Module):
    """``n_layers`` :class:`BiMamba2` layers followed by a final RMSNorm.

    Args: as :class:`Mamba2`, plus ``n_layers``.

    Shapes: ``u``: (batch, length, d_model) -> (batch, length, d_model).
    """

    def __init__(
        self,
        d_model: int,
        n_layers: int,
        d_state: int = 16,
        d_conv: int = 4,
        expand: int = 2,
        headdim: int = 8,
        chunk_size: int = 64,
        backend: str = "auto",
        ngroups: int = 1,
        recompute: bool = True,
    ) -> None:
        super().__init__()
        if n_layers < 1:
            raise ValueError(f"BiMamba2Stack: n_layers must be >= 1, got {n_layers}")
        self.layers = nn.ModuleList(
            BiMamba2(
                d_model,
                d_state=d_state,
                d_conv=d_conv,
                expand=expand,
                headdim=headdim,
                ngroups=ngroups,
                chunk_size=chunk_size,
                backend=backend,
                recompute=recompute,
            )
            for _ in range(n_layers)
        )
        self.norm = nn.RMSNorm(d_model, eps=1e-5)

    def forward(self, u: Tensor) -> Tensor:
        # The residual stream stays in float32 under autocast (as mamba_ssm's
        # residual_in_fp32): only the projections inside the layers run in 16 bits.
        if u.dtype in (torch.float16, torch.bfloat16):
            u = u.float()
        for layer in self.layers:
            u = layer(u)
        if cast(BiMamba2, self.layers[0]).mamba_fwd._path(u) == "numba":
            with torch.autocast("cpu", enabled=False):  # the stack's output in float32
                return _compiled_rms_norm(self.norm, u)
        return self.norm(u)
