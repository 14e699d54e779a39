"""Compiled CPU kernels for Mamba2 inference (numba): causal conv and the fused scan.

Imported lazily by :mod:`brain_go_brr.models.mamba2` (``numba`` is imported here at module
level, so importing this module fails cleanly with ``ImportError`` when numba is missing).
Both kernels work on float32 numpy views of contiguous torch tensors, write into a given
output array, and run ``prange`` over sequences (numba's thread pool).

Why: on CPU the chunked SSD scan of :mod:`.ssd` spends its time on a dozen element-wise
passes over (sequences, steps, d_inner) tensors, each a round trip to memory. The
recurrence itself is cheap (``d_state x d_inner`` multiply-adds per step), so running it
step by step, with the state of one sequence held in a small local array and the D skip,
the ``silu(z)`` gate and the grouped RMSNorm applied to each step's row while it is in
cache, takes one pass instead of twelve (``benchmarks/bench_model.py`` measures both).
Inference only: there is no backward here; training uses the chunked scan.

The loops index one-dimensional C-contiguous rows with ``range(row.shape[0])`` bounds:
that form is what numba/LLVM vectorise (offset arithmetic into a flat array, or strided
slices, fall back to scalar code and ran 3-7x slower).
"""

from __future__ import annotations

import numba
import numpy as np
from numba import njit, prange


@njit(parallel=True, fastmath=True, cache=True)
def causal_conv(
    x: np.ndarray,
    weight_t: np.ndarray,
    bias: np.ndarray,
    reverse: bool,
    out: np.ndarray,
) -> None:
    """Depthwise causal convolution over time, per channel.

    ``out[s, t, c] = bias[c] + sum_k weight_t[k, c] * x[s, t - K + 1 + k, c]``; with
    ``reverse`` the taps read ``t + K - 1 - k`` instead (the same convolution applied to the
    time-reversed sequence, outputs in the original order). Steps outside the sequence
    count as zero.

    Shapes: x (batch, length, C), weight_t (K, C) tap-major, bias (C,)
    -> out (batch, length, C).
    """
    batch, length, _ = x.shape
    taps = weight_t.shape[0]
    for s in prange(batch):
        xs = x[s]
        outs = out[s]
        for t in range(length):
            row = outs[t]
            for c in range(row.shape[0]):
                row[c] = bias[c]
            for k in range(taps):
                shift = taps - 1 - k
                src = t + shift if reverse else t - shift
                if 0 <= src < length:
                    xr = xs[src]
                    wk = weight_t[k]
                    for c in range(row.shape[0]):
                        row[c] += wk[c] * xr[c]


@njit(parallel=True, fastmath=True, cache=True)
def scan_gate_norm(
    xbc: np.ndarray,
    dt: np.ndarray,
    decay: np.ndarray,
    D: np.ndarray,
    norm_weight: np.ndarray,
    eps: float,
    nheads: int,
    ngroups: int,
    reverse: bool,
    out: np.ndarray,
) -> None:
    """The selective scan with the D skip, the gate and the grouped RMSNorm, step by step.

    Per sequence, head ``h`` (group ``g = h // (nheads / ngroups)``) and step ``t``::

        state_t = decay_t[h] * state_{t-1} + dt_t[h] * outer(x_t[h], B_t[g])   # (headdim, d_state)
        y_t[h]  = state_t @ C_t[g] + D[h] * x_t[h]
        out_t   = rmsnorm_per_group(y_t * gate_t) * norm_weight

    With ``reverse`` the scan runs from the last step to the first (outputs in the original
    order). The state is held as (ngroups, d_state, heads_per_group * headdim) so the update
    of one ``d_state`` row is one contiguous, vectorisable loop over the group's channels.

    ``out`` holds the gate ``silu(z)`` on entry and the result on return (one buffer less).

    Shapes: xbc (batch, length, d_inner + 2 ngroups d_state) = ``[x | B | C]`` after the
    convolution and SiLU; dt, decay (batch, length, nheads) with ``decay = exp(dt * A)``;
    D (nheads,); norm_weight (d_inner,); out (batch, length, d_inner).
    """
    batch, length, width = xbc.shape
    d_inner = norm_weight.shape[0]
    d_state = (width - d_inner) // (2 * ngroups)
    heads_per_group = nheads // ngroups
    headdim = d_inner // nheads
    group_width = heads_per_group * headdim  # channels per group (scan and norm alike)
    for s in prange(batch):
        state = np.zeros((ngroups, d_state, group_width), np.float32)
        x_dt = np.empty(group_width, np.float32)
        step_decay = np.empty(group_width, np.float32)
        y = np.empty(group_width, np.float32)
        for i in range(length):
            t = length - 1 - i if reverse else i
            row = xbc[s, t]
            dt_row = dt[s, t]
            decay_row = decay[s, t]
            out_row = out[s, t]
            for g in range(ngroups):
                for local in range(heads_per_group):
                    head = g * heads_per_group + local
                    dt_h, decay_h, skip_h = dt_row[head], decay_row[head], D[head]
                    for p in range(headdim):
                        j = local * headdim + p
                        x_value = row[g * group_width + j]
                        x_dt[j] = dt_h * x_value
                        step_decay[j] = decay_h
                        y[j] = skip_h * x_value
                b_offset = d_inner + g * d_state
                c_offset = d_inner + ngroups * d_state + g * d_state
                group_state = state[g]
                for k in range(d_state):
                    b_k = row[b_offset + k]
                    c_k = row[c_offset + k]
                    state_k = group_state[k]
                    for j in range(state_k.shape[0]):
                        value = step_decay[j] * state_k[j] + b_k * x_dt[j]
                        state_k[j] = value
                        y[j] += c_k * value
                out_group = out_row[g * group_width : (g + 1) * group_width]
                weight_group = norm_weight[g * group_width : (g + 1) * group_width]
                square_sum = np.float32(0.0)
                for j in range(out_group.shape[0]):
                    gated = y[j] * out_group[j]
                    out_group[j] = gated
                    square_sum += gated * gated
                scale = np.float32(1.0) / np.sqrt(square_sum / group_width + eps)
                for j in range(out_group.shape[0]):
                    out_group[j] = out_group[j] * scale * weight_group[j]


def set_threads(n_threads: int) -> None:
    """Use at most ``n_threads`` of numba's pool (kept in step with ``torch.get_num_threads``)."""
    pool: int = numba.config.NUMBA_NUM_THREADS  # type: ignore[attr-defined]
    numba.set_num_threads(max(1, min(n_threads, pool)))
