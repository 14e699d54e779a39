"""Mamba2 in plain PyTorch, its bidirectional layer and stack, with ``mamba_ssm`` on CUDA.

Interface (shared with the model code)::

    Mamba2Config(d_state=16, d_conv=4, expand=2, headdim=8, ngroups=1, chunk_size=64,
                 backend="auto", recompute=True)
    Mamba2(d_model, config)              forward (B, L, d_model) -> (B, L, d_model)
    BiMamba2Stack(d_model, n_layers, config)
                                         forward (B, L, d_model) -> (B, L, d_model)

Each :class:`BiMamba2` layer: pre-norm (RMSNorm), a forward and a time-reversed Mamba2
(separate weights), averaged, plus the residual; the stack ends with an RMSNorm.
``chunk_size`` only trades speed for memory (results agree to float32 rounding).

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

Memory in training: with ``recompute=True`` (the default) the block keeps only its input for
the backward pass and recomputes its internals there, as ``mamba_ssm``'s fused kernel does
(which keeps its input projection). The internals are about 15 tensors of ``d_inner``
channels per step, many times the block's input (peak memory per window with and without
recompute: BENCHMARKS.md). Sequences are recomputed in groups of at most
:data:`RECOMPUTE_GROUP_ELEMENTS` steps x channels, so the backward's temporaries stay bounded
whatever the batch. The price is one more forward of the block in the backward pass.

Backends: ``"torch"`` always runs our chunked scan; ``"cuda"`` runs the fused ``mamba_ssm``
kernel and fails with an install hint when ``mamba_ssm`` is missing; ``"auto"`` picks
``mamba_ssm`` for CUDA inputs when it imports, and the chunked scan otherwise. The choice is
logged once per process per path; ``mamba_ssm`` is imported lazily, on first use (it does not
import at all on machines without CUDA). Everything here, training included, runs on public
PyTorch ops. CPU inference gets its compiled kernels from :mod:`brain_go_brr.accel`, applied
to a built model from outside (the model never imports it).

``forward(u, reverse=True)`` runs the mixer over the time-reversed sequence and returns its
outputs in the original order (``flip(forward(flip(u)))``).
"""

from __future__ import annotations

import functools
import logging
import math
from dataclasses import dataclass
from typing import Any, cast

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

from brain_go_brr.models.ssd import ssd_scan

log = logging.getLogger(__name__)

BACKENDS = ("auto", "torch", "cuda")
_INSTALL_HINT = (
    "install the CUDA kernels with `pip install .[gpu]` (needs a CUDA toolkit and a CUDA "
    "build of torch), or set backend='torch' to use the pure-PyTorch scan"
)
_announced: set[str] = set()
#: Recompute groups of sequences with at most this many (steps x d_inner) elements: each
#: of the ~15 internal tensors of a group is then at most 4 MB in float32.
RECOMPUTE_GROUP_ELEMENTS = 1 << 20


@dataclass(frozen=True)
class Mamba2Config:
    """Everything of a :class:`Mamba2` block but its width (shared by the blocks of a stack).

    Attributes:
        d_state: state size per head (``N``).
        d_conv: kernel width of the causal depthwise convolution.
        expand: ``d_inner = expand * d_model``.
        headdim: channels per head (``P``); ``nheads = d_inner / headdim``.
        ngroups: groups sharing ``B`` and ``C`` (``nheads`` must be a multiple).
        chunk_size: chunk length of the SSD scan (a speed/memory knob; results do not
            depend on it).
        backend: ``"auto"``, ``"torch"`` or ``"cuda"`` (module docstring).
        recompute: in training, keep only the input for backward and recompute the
            block's internals there (module docstring); no effect without gradients or on
            the ``mamba_ssm`` path.
    """

    d_state: int = 16
    d_conv: int = 4
    expand: int = 2
    headdim: int = 8
    ngroups: int = 1
    chunk_size: int = 64
    backend: str = "auto"
    recompute: bool = True

    def __post_init__(self) -> None:
        if self.backend not in BACKENDS:
            raise ValueError(f"Mamba2: backend {self.backend!r} is not one of {BACKENDS}")


@functools.cache
def _mamba_ssm_kernel() -> Any:
    """The fused ``mamba_ssm`` split-conv-scan function, or ``None`` if it does not import."""
    try:
        from mamba_ssm.ops.triton.ssd_combined import mamba_split_conv1d_scan_combined
    except ImportError as err:  # also raised on machines without CUDA
        log.debug("mamba_ssm unavailable: %s", err)
        return None
    return mamba_split_conv1d_scan_combined


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
        config: the block's settings (:class:`Mamba2Config`; default: its defaults).
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
        config: Mamba2Config | None = None,
        dt_min: float = 0.001,
        dt_max: float = 0.1,
        dt_init_floor: float = 1e-4,
        A_init_range: tuple[float, float] = (1.0, 16.0),
    ) -> None:
        super().__init__()
        cfg = self.config = config or Mamba2Config()
        if cfg.backend == "cuda" and _mamba_ssm_kernel() is None:
            raise ImportError(
                f"Mamba2 backend 'cuda' asked for but mamba_ssm does not import; {_INSTALL_HINT}"
            )
        d_inner = cfg.expand * d_model
        if d_inner % cfg.headdim:
            raise ValueError(
                f"Mamba2: d_inner = expand * d_model = {d_inner} is not a multiple of "
                f"headdim {cfg.headdim}"
            )
        nheads = d_inner // cfg.headdim
        if nheads % cfg.ngroups:
            raise ValueError(f"Mamba2: nheads {nheads} is not a multiple of ngroups {cfg.ngroups}")
        self.d_model, self.d_state, self.d_conv = d_model, cfg.d_state, cfg.d_conv
        self.expand, self.headdim, self.ngroups = cfg.expand, cfg.headdim, cfg.ngroups
        self.chunk_size, self.backend, self.recompute = cfg.chunk_size, cfg.backend, cfg.recompute
        self.d_inner, self.nheads = d_inner, nheads
        self.dt_min, self.dt_max, self.dt_init_floor = dt_min, dt_max, dt_init_floor
        self.A_init_range = A_init_range
        d_state, ngroups, d_conv = cfg.d_state, cfg.ngroups, cfg.d_conv

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
        """Which implementation runs this call: ``"mamba_ssm"`` or ``"torch"``."""
        if self.backend == "torch":
            _announce("torch", "backend='torch' asked for")
            return "torch"
        if u.is_cuda:
            if _mamba_ssm_kernel() is None:
                _announce(
                    "torch", f"mamba_ssm does not import; for the fused kernels, {_INSTALL_HINT}"
                )
                return "torch"
            _announce("mamba_ssm", "CUDA input and mamba_ssm imports")
            return "mamba_ssm"
        if self.backend == "cuda":
            raise RuntimeError(f"Mamba2 backend 'cuda' needs CUDA inputs, got a {u.device} tensor")
        return "torch"

    def forward(self, u: Tensor, reverse: bool = False) -> Tensor:
        """``u`` (batch, length, d_model) -> (batch, length, d_model).

        ``reverse=True``: the mixer reads the sequence backwards in time (outputs in the
        original order), i.e. ``flip(forward(flip(u)))``.
        """
        path = self._path(u)
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

    def _forward_torch(self, u: Tensor) -> Tensor:
        # in_proj's rows are [z | x | B C | dt]. Projecting each piece on its own (same
        # weights, same result as one matmul split afterwards) keeps every piece contiguous:
        # element-wise CPU kernels on strided column slices run several times slower.
        gn = self.ngroups * self.d_state
        z_rows, x_rows, bc_rows, dt_rows = self.in_proj.weight.split(
            [self.d_inner, self.d_inner, 2 * gn, self.nheads]
        )
        z = F.linear(u, z_rows)  # (b, l, d_inner)
        x = F.silu(self._causal_conv(F.linear(u, x_rows), 0))  # (b, l, d_inner)
        bc = F.silu(self._causal_conv(F.linear(u, bc_rows), self.d_inner))  # (b, l, 2 g n)
        dt = F.linear(u, dt_rows)  # (b, l, h)
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
        return F.linear(y, self.out_proj.weight)

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

    def __init__(self, d_model: int, config: Mamba2Config | None = None) -> None:
        super().__init__()
        self.norm = nn.RMSNorm(d_model, eps=1e-5)
        self.mamba_fwd = Mamba2(d_model, config)
        self.mamba_bwd = Mamba2(d_model, config)

    def forward(self, u: Tensor) -> Tensor:
        normed = self.norm(u)
        backward = self.mamba_bwd(normed, reverse=True)
        return u + 0.5 * (self.mamba_fwd(normed) + backward)


class BiMamba2Stack(nn.Module):
    """``n_layers`` :class:`BiMamba2` layers followed by a final RMSNorm.

    Args:
        d_model: width of the input and output.
        n_layers: bidirectional layers.
        config: the settings every block of the stack shares (:class:`Mamba2Config`).

    Shapes: ``u``: (batch, length, d_model) -> (batch, length, d_model).
    """

    def __init__(self, d_model: int, n_layers: int, config: Mamba2Config | None = None) -> None:
        super().__init__()
        if n_layers < 1:
            raise ValueError(f"BiMamba2Stack: n_layers must be >= 1, got {n_layers}")
        self.config = config or Mamba2Config()
        self.layers = nn.ModuleList(BiMamba2(d_model, self.config) for _ in range(n_layers))
        self.norm = nn.RMSNorm(d_model, eps=1e-5)

    def forward(self, u: Tensor) -> Tensor:
        # The residual stream stays in float32 under autocast (as mamba_ssm's
        # residual_in_fp32): only the projections inside the layers run in 16 bits.
        if u.dtype in (torch.float16, torch.bfloat16):
            u = u.float()
        for layer in self.layers:
            u = layer(u)
        out: Tensor = self.norm(u)
        return out
