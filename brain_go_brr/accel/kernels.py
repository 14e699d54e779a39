"""Compiled CPU kernels for Mamba2 inference (numba): the pre-norm, dt and its decay, the
causal convolution and the fused scan.

Imported lazily by :mod:`brain_go_brr.models.mamba2` (``numba`` is imported here at module
level, so importing this module fails cleanly with ``ImportError`` when numba is missing).
The kernels work on numpy views of contiguous torch tensors, write into a given output
array, and run ``prange`` over sequences or blocks of rows (numba's thread pool).

Why: on CPU the chunked SSD scan of :mod:`.ssd` spends its time on a dozen element-wise
passes over (sequences, steps, d_inner) tensors, each a round trip to memory. The
recurrence itself is cheap (``d_state x d_inner`` multiply-adds per step), so running it
step by step, with the state of one sequence held in a small local array and the D skip,
the ``silu(z)`` gate and the grouped RMSNorm applied to each step's row while it is in
cache, takes one pass instead of twelve (``benchmarks/bench_model.py`` measures both).
Inference only: there is no backward here; training uses the chunked scan.

Inputs that come straight from a projection (the convolution's input, ``dt`` and the gate
``z``) may be float32 or bfloat16; bfloat16 tensors are passed as their ``uint16`` bit patterns
(``tensor.view(torch.uint16)``) and widened to float32 as they are read (exact: a 16-bit
shift); the RMSNorm and the scan can write their results as bfloat16 bits for the
bfloat16 products that read them.
Bfloat16 autocast then needs no conversion pass. Everything is computed in float32.

SiLU and softplus run inside the kernels on :func:`exp32`, a vectorisable float32 exponential
(this numba has no vector math library, and a call to ``exp`` per element keeps a loop
scalar): maximum relative error 4e-7 against float64, for arguments clamped to
[-87, 88]. The kernels are compiled with ``error_model="numpy"``: numba's default Python
error model checks every division for zero, which also keeps a loop scalar.

The loops index one-dimensional C-contiguous rows with ``range(row.shape[0])`` bounds:
that form is what numba/LLVM vectorise (offset arithmetic into a flat array, or strided
slices, fall back to scalar code and run several times slower). Loops over a handful of values
(the edge stream's 48 channels, a row's 4-16 heads) vectorise badly however written, so
:func:`dt_and_decay` and the narrow-row convolution loop over tiles of many rows instead.
Sequences as the vector lanes (a time-major layout) would be bound by loads and stores of the
state, so the lanes are channels.
"""

from __future__ import annotations

from typing import Any

import numba
import numpy as np
from llvmlite import ir
from numba import njit, prange, types
from numba.core import cgutils
from numba.extending import intrinsic

#: Steps ahead whose rows the reverse direction prefetches (see :func:`prefetch_row`).
PREFETCH_STEPS = 8
#: Rows per tile in :func:`dt_and_decay`.
_DT_TILE_ROWS = 256
#: Values (steps x channels) per tile in :func:`causal_conv_silu` (narrow rows).
_CONV_TILE = 1024
#: From this many channels on, :func:`causal_conv_silu` goes step by step.
_CONV_ROW_CHANNELS = 128
#: Rows per parallel chunk in :func:`rms_norm`.
_NORM_CHUNK_ROWS = 4096


def _float32_from_bits_typing(typingctx: Any, bits: Any) -> Any:
    """Reinterpret the low 32 bits of an integer as a float32 (no conversion)."""
    if not isinstance(bits, types.Integer):
        return None

    def codegen(context: Any, builder: Any, signature: Any, args: Any) -> Any:
        low = (
            builder.trunc(args[0], ir.IntType(32))
            if getattr(bits, "bitwidth", 32) > 32
            else args[0]
        )
        return builder.bitcast(low, ir.FloatType())

    return types.float32(bits), codegen


def _as_float32_typing(typingctx: Any, value: Any) -> Any:
    """A float32 as it is; a ``uint16`` holding bfloat16 bits widened to float32 (exact)."""
    if value == types.float32:
        return types.float32(value), lambda context, builder, signature, args: args[0]
    if value == types.uint16:

        def codegen(context: Any, builder: Any, signature: Any, args: Any) -> Any:
            wide = builder.zext(args[0], ir.IntType(32))
            wide = builder.shl(wide, ir.Constant(ir.IntType(32), 16))
            return builder.bitcast(wide, ir.FloatType())

        return types.float32(value), codegen
    return None


def _stored_as_typing(typingctx: Any, array: Any, value: Any) -> Any:
    """``value`` (float32) as ``array`` stores it: float32 as is, bfloat16 bits (``uint16``
    arrays) rounded to nearest even, as torch rounds. NaN payloads are not preserved."""
    if value != types.float32 or not isinstance(array, types.Array):
        return None
    if array.dtype == types.float32:
        return types.float32(array, value), lambda context, builder, signature, args: args[1]
    if array.dtype == types.uint16:

        def codegen(context: Any, builder: Any, signature: Any, args: Any) -> Any:
            i32 = ir.IntType(32)
            bits = builder.bitcast(args[1], i32)
            odd = builder.and_(builder.lshr(bits, ir.Constant(i32, 16)), ir.Constant(i32, 1))
            rounded = builder.add(builder.add(bits, ir.Constant(i32, 0x7FFF)), odd)
            return builder.trunc(builder.lshr(rounded, ir.Constant(i32, 16)), ir.IntType(16))

        return types.uint16(array, value), codegen
    return None


def _prefetch_typing(typingctx: Any, row: Any, index: Any) -> Any:
    """Ask the CPU to bring the cache line of ``row[index]`` in (LLVM's ``llvm.prefetch``)."""
    if not (isinstance(row, types.Array) and row.ndim == 1 and isinstance(index, types.Integer)):
        return None

    def codegen(context: Any, builder: Any, signature: Any, args: Any) -> Any:
        row_type = signature.args[0]
        array = context.make_array(row_type)(context, builder, args[0])
        pointer = cgutils.get_item_pointer(
            context, builder, row_type, array, [args[1]], wraparound=False
        )
        i32, byte_pointer = ir.IntType(32), ir.IntType(8).as_pointer()
        function_type = ir.FunctionType(ir.VoidType(), [byte_pointer, i32, i32, i32])
        function = cgutils.get_or_insert_function(builder.module, function_type, "llvm.prefetch.p0")
        # read access, keep in all cache levels, data cache
        builder.call(function, [builder.bitcast(pointer, byte_pointer), i32(0), i32(3), i32(1)])
        return context.get_dummy_value()

    return types.none(row, index), codegen


def _call_address_typing(typingctx: Any, address: Any, arguments: Any) -> Any:
    """Call the C function at ``address`` (an integer) with the values of a tuple: integers
    passed as int64 (pointers too: the same in the C calling convention), floats as float32."""
    if not (isinstance(address, types.Integer) and isinstance(arguments, types.BaseTuple)):
        return None
    if not all(t in (types.int64, types.float32) for t in getattr(arguments, "types", ())):
        return None

    def codegen(context: Any, builder: Any, signature: Any, args: Any) -> Any:
        values = [builder.extract_value(args[1], i) for i in range(len(signature.args[1]))]
        function_type = ir.FunctionType(ir.VoidType(), [v.type for v in values])
        function = builder.inttoptr(args[0], function_type.as_pointer())
        builder.call(function, values)
        return context.get_dummy_value()

    return types.none(address, arguments), codegen


# numba intrinsics (typed as Any: their call signature is the typing function's minus
# the typing context)
_float32_from_bits: Any = intrinsic(_float32_from_bits_typing)
as_float32: Any = intrinsic(_as_float32_typing)
stored_as: Any = intrinsic(_stored_as_typing)
_prefetch: Any = intrinsic(_prefetch_typing)
_call_address: Any = intrinsic(_call_address_typing)


@njit(fastmath=True, error_model="numpy", inline="always")
def prefetch_row(row: Any) -> None:
    """Prefetch every 64-byte line of a one-dimensional row.

    Walking time backwards reads each sequence's rows in descending addresses, which the
    hardware prefetcher of the benchmark CPU did not follow: the reverse scan of the node
    stream ran far slower than the forward one until the kernels
    prefetched the rows :data:`PREFETCH_STEPS` steps ahead themselves.
    """
    per_line = max(1, 64 // row.itemsize)
    for index in range(0, row.shape[0], per_line):
        _prefetch(row, index)


@njit(fastmath=True, error_model="numpy", inline="always")
def exp32(x: Any) -> Any:
    """``exp(x)`` in float32: ``2**n * p(r)`` with ``x = n ln 2 + r``, ``|r| <= ln 2 / 2``.

    ``p`` is the degree-6 Taylor polynomial (relative error below 2e-7 on that range),
    ``ln 2`` is split in two for an exact ``n ln 2``, and ``2**n`` is built from its
    exponent bits. ``x`` is clamped to [-87, 88], inside float32's normal range.
    """
    x = min(max(x, np.float32(-87.0)), np.float32(88.0))
    n = np.floor(x * np.float32(1.4426950408889634) + np.float32(0.5))
    r = x - n * np.float32(0.693145751953125) - n * np.float32(1.4286068203094173e-06)
    p = np.float32(1.0 / 720.0)
    p = p * r + np.float32(1.0 / 120.0)
    p = p * r + np.float32(1.0 / 24.0)
    p = p * r + np.float32(1.0 / 6.0)
    p = p * r + np.float32(0.5)
    p = p * r + np.float32(1.0)
    p = p * r + np.float32(1.0)
    return p * _float32_from_bits((np.int32(n) + np.int32(127)) << np.int32(23))


@njit(fastmath=True, error_model="numpy", inline="always")
def softplus32(x: Any) -> Any:
    """``log(1 + exp(x))`` in float32, vectorisable: ``max(x, 0) + log1p(e)``, ``e = exp(-|x|)``.

    ``log1p(e) = 2 atanh(q)`` with ``q = e / (2 + e)`` in [0, 1/3], summed as its odd series
    up to ``q**13`` (the first term left out is below 1e-8).
    """
    e = exp32(-abs(x))
    q = e / (np.float32(2.0) + e)
    q2 = q * q
    p = np.float32(1.0 / 13.0)
    p = p * q2 + np.float32(1.0 / 11.0)
    p = p * q2 + np.float32(1.0 / 9.0)
    p = p * q2 + np.float32(1.0 / 7.0)
    p = p * q2 + np.float32(1.0 / 5.0)
    p = p * q2 + np.float32(1.0 / 3.0)
    p = p * q2 + np.float32(1.0)
    return max(x, np.float32(0.0)) + np.float32(2.0) * q * p


@njit(fastmath=True, error_model="numpy", inline="always")
def silu32(x: Any) -> Any:
    """``x * sigmoid(x)`` in float32 on :func:`exp32`."""
    return x / (np.float32(1.0) + exp32(-x))


@njit(parallel=True, fastmath=True, error_model="numpy", cache=True)
def _causal_conv_silu_rows(
    x: np.ndarray,
    weight_t: np.ndarray,
    bias: np.ndarray,
    reverse: bool,
    out: np.ndarray,
) -> None:
    """:func:`causal_conv_silu` step by step: a loop over the channels of each step."""
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
                        row[c] += wk[c] * as_float32(xr[c])
            for c in range(row.shape[0]):
                row[c] = silu32(row[c])


@njit(parallel=True, fastmath=True, error_model="numpy", cache=True)
def _causal_conv_silu_tiled(
    x: np.ndarray,
    weight_t: np.ndarray,
    bias: np.ndarray,
    reverse: bool,
    out: np.ndarray,
) -> None:
    """:func:`causal_conv_silu` a tile of steps at a time: one loop per tap over the tile's
    (steps x channels) values, contiguous in ``x`` and ``out``."""
    batch, length, channels = x.shape
    taps = weight_t.shape[0]
    tile_rows = max(1, _CONV_TILE // channels)
    tile = tile_rows * channels
    # bias and weights repeated over a tile of steps: each tap is then one long loop over a
    # tile's (steps x channels) values, contiguous in x and out (a loop over the channels
    # of one step is too short to vectorise well at the edge stream's 48 channels)
    bias_tiled = np.empty(tile, np.float32)
    weight_tiled = np.empty((taps, tile), np.float32)
    for j in range(tile):
        bias_tiled[j] = bias[j % channels]
        for k in range(taps):
            weight_tiled[k, j] = weight_t[k, j % channels]
    for s in prange(batch):
        xs = x[s].reshape(-1)  # (length * channels,)
        outs = out[s].reshape(-1)
        for t0 in range(0, length, tile_rows):
            t1 = min(length, t0 + tile_rows)
            block = outs[t0 * channels : t1 * channels]
            for j in range(block.shape[0]):
                block[j] = bias_tiled[j]
            for k in range(taps):
                shift = taps - 1 - k
                # steps t0 .. t1 - 1 whose source step (t - shift, or t + shift in
                # reverse) lies inside the sequence
                first = max(t0, shift) if not reverse else t0
                last = t1 if not reverse else min(t1, length - shift)
                if first >= last:
                    continue
                source_step = first - shift if not reverse else first + shift
                source = xs[source_step * channels : (source_step + last - first) * channels]
                target = block[(first - t0) * channels : (last - t0) * channels]
                weights = weight_tiled[k, (first - t0) * channels : (last - t0) * channels]
                for j in range(target.shape[0]):
                    target[j] += weights[j] * as_float32(source[j])
            for j in range(block.shape[0]):
                block[j] = silu32(block[j])


def causal_conv_silu(
    x: np.ndarray,
    weight_t: np.ndarray,
    bias: np.ndarray,
    reverse: bool,
    out: np.ndarray,
) -> None:
    """Depthwise causal convolution over time, per channel, followed by SiLU.

    ``out[s, t, c] = silu(bias[c] + sum_k weight_t[k, c] * x[s, t - K + 1 + k, c])``; with
    ``reverse`` the taps read ``t + K - 1 - k`` instead (the same convolution applied to the
    time-reversed sequence, outputs in the original order). Steps outside the sequence
    count as zero.

    Shapes: x (batch, length, C) float32 or bfloat16 bits (uint16), weight_t (K, C)
    tap-major, bias (C,) -> out (batch, length, C) float32.

    Narrow rows (fewer than :data:`_CONV_ROW_CHANNELS` channels: the edge stream's 48) go a
    tile of steps at a time, wide ones (the node stream's 160) step by step: each was the
    faster of the two on the benchmark CPU.
    """
    kernel = (
        _causal_conv_silu_rows if x.shape[-1] >= _CONV_ROW_CHANNELS else _causal_conv_silu_tiled
    )
    kernel(x, weight_t, bias, reverse, out)


@njit(parallel=True, fastmath=True, error_model="numpy", cache=True)
def scan_gate_norm(
    xbc: np.ndarray,
    dt: np.ndarray,
    decay: np.ndarray,
    z: np.ndarray,
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
        out_t   = rmsnorm_per_group(y_t * silu(z_t)) * norm_weight

    With ``reverse`` the scan runs from the last step to the first (outputs in the original
    order). The state is held as (ngroups, d_state, heads_per_group * headdim) so the update
    of one ``d_state`` row is one contiguous, vectorisable loop over the group's channels.

    Shapes: xbc (batch, length, d_inner + 2 ngroups d_state) = ``[x | B | C]`` after the
    convolution and SiLU; dt, decay (batch, length, nheads) with ``decay = exp(dt * A)``;
    z (batch, length, d_inner) float32 or bfloat16 bits (uint16), the gate before its SiLU;
    D (nheads,); norm_weight (d_inner,); out (batch, length, d_inner) float32, or uint16 for
    the result as bfloat16 bits.
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
            z_row = z[s, t]
            if reverse and t >= PREFETCH_STEPS:
                ahead = t - PREFETCH_STEPS
                prefetch_row(xbc[s, ahead])
                prefetch_row(z[s, ahead])
                prefetch_row(out[s, ahead])
                prefetch_row(dt[s, ahead])
                prefetch_row(decay[s, ahead])
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
                z_group = z_row[g * group_width : (g + 1) * group_width]
                weight_group = norm_weight[g * group_width : (g + 1) * group_width]
                square_sum = np.float32(0.0)
                for j in range(y.shape[0]):
                    gated = y[j] * silu32(as_float32(z_group[j]))
                    y[j] = gated
                    square_sum += gated * gated
                scale = np.float32(np.float32(1.0) / np.sqrt(square_sum / group_width + eps))
                for j in range(out_group.shape[0]):
                    out_group[j] = stored_as(out, np.float32(y[j] * scale * weight_group[j]))


@njit(parallel=True, fastmath=True, error_model="numpy", cache=True)
def dt_and_decay(
    dt_raw: np.ndarray, dt_bias: np.ndarray, A: np.ndarray, dt: np.ndarray, decay: np.ndarray
) -> None:
    """``dt = softplus(dt_raw + dt_bias)`` and ``decay = exp(dt * A)`` in one pass.

    The rows are taken in tiles of :data:`_DT_TILE_ROWS` so that each inner loop runs over a
    whole tile (``rows x nheads`` values, contiguous) against a tiled copy of ``dt_bias`` and
    ``A``: a loop over the few heads of one row is too short to vectorise.

    Shapes: dt_raw (rows, nheads) float32 or bfloat16 bits (uint16); dt_bias, A (nheads,);
    dt, decay (rows, nheads) float32.
    """
    rows, nheads = dt_raw.shape
    tile = _DT_TILE_ROWS * nheads
    bias_tiled = np.empty(tile, np.float32)
    a_tiled = np.empty(tile, np.float32)
    for j in range(tile):
        bias_tiled[j] = dt_bias[j % nheads]
        a_tiled[j] = A[j % nheads]
    raw_flat = dt_raw.reshape(-1)
    dt_flat = dt.reshape(-1)
    decay_flat = decay.reshape(-1)
    n_tiles = (rows + _DT_TILE_ROWS - 1) // _DT_TILE_ROWS
    for i in prange(n_tiles):
        start = i * tile
        stop = min(start + tile, rows * nheads)
        raw_t = raw_flat[start:stop]
        dt_t = dt_flat[start:stop]
        decay_t = decay_flat[start:stop]
        for j in range(raw_t.shape[0]):
            value = softplus32(as_float32(raw_t[j]) + bias_tiled[j])
            dt_t[j] = value
            decay_t[j] = exp32(value * a_tiled[j])


@njit(parallel=True, fastmath=True, error_model="numpy", cache=True)
def rms_norm(x: np.ndarray, weight: np.ndarray, eps: float, out: np.ndarray) -> None:
    """``out = x / sqrt(mean(x**2, -1) + eps) * weight`` row by row (``nn.RMSNorm``), one pass.

    Shapes: x (rows, d) float32; weight (d,); out (rows, d) float32, or uint16 for the
    result as bfloat16 bits.
    """
    rows, width = x.shape
    n_chunks = (rows + _NORM_CHUNK_ROWS - 1) // _NORM_CHUNK_ROWS
    for chunk in prange(n_chunks):
        for r in range(chunk * _NORM_CHUNK_ROWS, min(rows, (chunk + 1) * _NORM_CHUNK_ROWS)):
            row = x[r]
            target = out[r]
            square_sum = np.float32(0.0)
            for c in range(width):
                square_sum += row[c] * row[c]
            scale = np.float32(np.float32(1.0) / np.sqrt(square_sum / width + eps))
            for c in range(width):
                target[c] = stored_as(out, np.float32(row[c] * scale * weight[c]))


@njit(parallel=True, cache=True)
def run_scan_parts(
    address: int,
    pointers: np.ndarray,
    scratch: np.ndarray,
    bounds: np.ndarray,
    length: int,
    reverse: int,
    eps: float,
) -> None:
    """Run a :mod:`.cpu_scan` kernel on numba's threads, one part of the sequences each.

    The kernel's threads are then the ones the other kernels and torch's OpenMP products
    use: Python threads of their own ran slower in the model, sharing the cores
    with OpenMP workers still spinning after a product.

    ``address``: the kernel; ``pointers`` (10,) int64: its array arguments before the
    scratch; ``scratch`` (parts, 2) int64: each part's ``bc`` and ``y`` scratch;
    ``bounds`` (parts + 1,): part ``p`` runs sequences ``bounds[p]`` to ``bounds[p + 1]``.
    """
    for part in prange(scratch.shape[0]):
        _call_address(
            address,
            (
                pointers[0], pointers[1], pointers[2], pointers[3], pointers[4],
                pointers[5], pointers[6], pointers[7], pointers[8], pointers[9],
                scratch[part, 0], scratch[part, 1],
                bounds[part], bounds[part + 1],
                np.int64(length), np.int64(reverse), np.float32(eps),
            ),
        )  # fmt: skip


def set_threads(n_threads: int) -> None:
    """Use at most ``n_threads`` of numba's pool (kept in step with ``torch.get_num_threads``)."""
    pool: int = numba.config.NUMBA_NUM_THREADS  # type: ignore[attr-defined]
    numba.set_num_threads(max(1, min(n_threads, pool)))
