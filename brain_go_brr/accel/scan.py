"""Mamba2's causal convolution, selective scan, gate and RMSNorm for CPU inference, as
LLVM vector code with the scan state held in registers.

:func:`conv_scan_gate_norm` does, for one Mamba2 mixer, what
:func:`.kernels.dt_and_decay`, :func:`.kernels.causal_conv_silu` and
:func:`.kernels.scan_gate_norm` do. It is written in LLVM IR with ``llvmlite`` (which
numba is built on), compiled once per layer shape for the host CPU, and run on numba's
threads (:func:`.kernels.run_scan_parts`), one part of the sequences per thread.

Why not numba: the scan's state is ``d_state x d_inner`` values per sequence (the node
stream: 16 x 128 float32 = 8 KB). Numba's loops keep it in memory, so every step loads and
stores all of it. Here the channels are cut into groups of ``V`` lanes (``V`` = 16, one
AVX-512 register, where the widths allow it, else 8 or 4): for one lane group the
``d_state`` state vectors, the convolution's last ``d_conv - 1`` inputs and the constants
stay in registers for the whole sequence, and each step costs ``d_state`` multiplies and
``2 d_state`` fused multiply-adds on registers. numba cannot express that: it has no vector
types and its arrays live in memory. ``benchmarks/bench_model.py`` times v3 with this
kernel and with the numba scan (``BGB_LLVM_SCAN=0``).

Per sequence, in the order of the scan (time reversed with ``reverse``):

1. ``B`` and ``C`` (the last ``2 ngroups d_state`` channels of ``xBC``) through the causal
   convolution and SiLU, into a scratch array (one sequence, per thread), with
   ``dt = softplus(dt_raw + dt_bias)`` and its decay ``exp(dt A)`` where the heads fill
   whole vectors (:attr:`ScanShape.fused_dt`; else :func:`.kernels.dt_and_decay`
   computes them beforehand);
2. for each group of ``V`` channels of ``x``: the convolution and SiLU of ``x`` and the scan
   ``state = decay * state + dt * x * B``, ``y = C . state + D * x``, into a scratch ``y``;
3. for each step: ``out = rmsnorm_per_group(y * silu(z)) * norm_weight``.

The convolution in scan order needs no boundary cases: the ``d_conv - 1`` inputs before
the first step are the zeros the registers start with, whichever the direction.
Everything is computed in float32; ``xBC``, ``dt_raw`` and ``z`` may come as bfloat16 bits
(widened exactly) and ``out`` may be written as bfloat16 bits (rounded to nearest even, as torch
rounds). SiLU, softplus and exp are the polynomials of :func:`.kernels.exp32` and
:func:`.kernels.softplus32`, so the two scans agree to float32 rounding (tested).
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import llvmlite.binding as llvm
from llvmlite import ir

#: Vector widths tried, widest first: the lanes of one register (16 = AVX-512, float32).
LANE_WIDTHS = (16, 8, 4)

_F32 = ir.FloatType()
_I64 = ir.IntType(64)
_I32 = ir.IntType(32)
_PTR = ir.PointerType()


@dataclass(frozen=True)
class ScanShape:
    """The constants a kernel is compiled for (one per Mamba2 layer configuration)."""

    d_inner: int  # channels of x (= nheads * headdim)
    d_state: int  # state size per group (N)
    nheads: int
    ngroups: int
    d_conv: int  # taps of the causal convolution
    bf16_input: bool  # xBC given as bfloat16 bits (uint16) instead of float32
    bf16_gate: bool = False  # z given as bfloat16 bits (uint16)
    bf16_dt: bool = False  # dt (before softplus) given as bfloat16 bits (uint16)
    bf16_output: bool = False  # the result written as bfloat16 bits (uint16)

    @property
    def width(self) -> int:
        """Channels of one ``xBC`` row: ``d_inner + 2 ngroups d_state``."""
        return self.d_inner + 2 * self.ngroups * self.d_state

    @property
    def headdim(self) -> int:
        return self.d_inner // self.nheads

    @property
    def fused_dt(self) -> bool:
        """Whether the kernel computes dt and its decay itself: when the heads fill whole
        vectors. Else (the edge stream's 4 heads on 16 lanes) one vector per step would be
        mostly padding, and :func:`.kernels.dt_and_decay` computes them beforehand."""
        return self.lanes is not None and self.nheads % self.lanes == 0

    @property
    def lanes(self) -> int | None:
        """The vector width used, or ``None`` when no width in :data:`LANE_WIDTHS` fits."""
        group_width = self.d_inner // self.ngroups
        for lanes in LANE_WIDTHS:
            if group_width % lanes == 0 and (2 * self.ngroups * self.d_state) % lanes == 0:
                return lanes
        return None


def supported(shape: ScanShape) -> bool:
    """Whether :func:`conv_scan_gate_norm` handles this shape (else the numba kernels run)."""
    return (
        shape.nheads * shape.headdim == shape.d_inner
        and shape.d_inner % shape.ngroups == 0
        and shape.nheads % shape.ngroups == 0
        and shape.d_conv >= 1
        and shape.lanes is not None
        and _engine() is not None
    )


@functools.cache
def _engine() -> Any:
    """An MCJIT engine for the host CPU, or ``None`` if LLVM's native target is missing."""
    try:
        llvm.initialize_native_target()
        llvm.initialize_native_asmprinter()
        target = llvm.Target.from_default_triple()
        machine = target.create_target_machine(
            cpu=llvm.get_host_cpu_name(), features=llvm.get_host_cpu_features().flatten(), opt=3
        )
        engine = llvm.create_mcjit_compiler(llvm.parse_assembly(""), machine)
    except RuntimeError:  # pragma: no cover - llvmlite without a native target
        return None
    return engine, machine


_compile_lock = threading.Lock()


class _Builder:
    """Small helpers over ``ir.IRBuilder`` for float32 vectors of ``lanes`` values."""

    def __init__(self, function: ir.Function, lanes: int) -> None:
        self.function = function
        self.entry = function.append_basic_block("entry")
        self.b = ir.IRBuilder(self.entry)
        self.lanes = lanes
        self.vec = ir.VectorType(_F32, lanes)
        module = function.module
        suffix = f"v{lanes}f32"
        self._floor = ir.Function(
            module, ir.FunctionType(self.vec, [self.vec]), f"llvm.floor.{suffix}"
        )
        self._fma = ir.Function(
            module, ir.FunctionType(self.vec, [self.vec] * 3), f"llvm.fma.{suffix}"
        )
        self._sqrt = ir.Function(module, ir.FunctionType(_F32, [_F32]), "llvm.sqrt.f32")
        self._fabs = ir.Function(
            module, ir.FunctionType(self.vec, [self.vec]), f"llvm.fabs.{suffix}"
        )
        self._prefetch = ir.Function(
            module, ir.FunctionType(ir.VoidType(), [_PTR, _I32, _I32, _I32]), "llvm.prefetch.p0"
        )

    def const(self, value: float) -> ir.Constant:
        return ir.Constant(self.vec, [value] * self.lanes)

    def alloca(self, typ: ir.Type) -> ir.Instruction:
        """A variable in the entry block (promoted to a register by LLVM's mem2reg/SROA)."""
        with self.b.goto_block(self.entry):
            if self.entry.instructions:
                self.b.position_before(self.entry.instructions[0])
            return self.b.alloca(typ)

    def element(self, base: ir.Value, offset: ir.Value, typ: ir.Type = _F32) -> ir.Value:
        return self.b.gep(base, [offset], inbounds=True, source_etype=typ)

    def load_scalar(self, base: ir.Value, offset: ir.Value, bf16: bool = False) -> ir.Value:
        """One value from ``base[offset]``: float32, or bfloat16 bits widened."""
        if not bf16:
            return self.b.load(self.element(base, offset), typ=_F32, align=4)
        bits = self.b.load(self.element(base, offset, ir.IntType(16)), typ=ir.IntType(16), align=2)
        return self.b.bitcast(self.b.shl(self.b.zext(bits, _I32), _I32(16)), _F32)

    def load_vec(self, base: ir.Value, offset: ir.Value, bf16: bool = False) -> ir.Value:
        """``lanes`` consecutive values from ``base[offset]``: float32, or bfloat16 bits."""
        if not bf16:
            return self.b.load(self.element(base, offset), typ=self.vec, align=4)
        i16s = ir.VectorType(ir.IntType(16), self.lanes)
        i32s = ir.VectorType(_I32, self.lanes)
        bits = self.b.load(self.element(base, offset, ir.IntType(16)), typ=i16s, align=2)
        wide = self.b.shl(self.b.zext(bits, i32s), ir.Constant(i32s, [16] * self.lanes))
        return self.b.bitcast(wide, self.vec)

    def store_vec(
        self, value: ir.Value, base: ir.Value, offset: ir.Value, bf16: bool = False
    ) -> None:
        """Store ``lanes`` values at ``base[offset]``: float32, or bfloat16 bits rounded to
        nearest even as torch rounds (NaN payloads not preserved)."""
        if not bf16:
            self.b.store(value, self.element(base, offset), align=4)
            return
        i32s = ir.VectorType(_I32, self.lanes)
        bits = self.b.bitcast(value, i32s)
        odd = self.b.and_(self.b.lshr(bits, self.ints(16)), self.ints(1))
        rounded = self.b.add(self.b.add(bits, self.ints(0x7FFF)), odd)
        halves = self.b.trunc(
            self.b.lshr(rounded, self.ints(16)), ir.VectorType(ir.IntType(16), self.lanes)
        )
        self.b.store(halves, self.element(base, offset, ir.IntType(16)), align=2)

    def ints(self, value: int) -> ir.Constant:
        return ir.Constant(ir.VectorType(_I32, self.lanes), [value] * self.lanes)

    def sum(self, v: ir.Value) -> ir.Value:
        """The sum of a vector's lanes, by halves (a tree, not lane order)."""
        width = self.lanes
        undefined = ir.Constant(v.type, ir.Undefined)
        while width > 1:
            width //= 2
            mask = ir.Constant(
                ir.VectorType(_I32, self.lanes), [width + (i % width) for i in range(self.lanes)]
            )
            v = self.b.fadd(v, self.b.shuffle_vector(v, undefined, mask))
        return self.b.extract_element(v, _I32(0))

    def sqrt(self, x: ir.Value) -> ir.Value:
        return self.b.call(self._sqrt, [x])

    def splat(self, scalar: ir.Value) -> ir.Value:
        one = self.b.insert_element(ir.Constant(self.vec, ir.Undefined), scalar, _I32(0))
        mask = ir.Constant(ir.VectorType(_I32, self.lanes), [0] * self.lanes)
        return self.b.shuffle_vector(one, ir.Constant(self.vec, ir.Undefined), mask)

    def fma(self, a: ir.Value, b: ir.Value, c: ir.Value) -> ir.Value:
        return self.b.call(self._fma, [a, b, c])

    def prefetch(self, base: ir.Value, offset: ir.Value, typ: ir.Type) -> None:
        self.b.call(self._prefetch, [self.element(base, offset, typ), _I32(0), _I32(3), _I32(1)])

    def exp(self, x: ir.Value) -> ir.Value:
        """``exp(x)`` as :func:`.kernels.exp32`: clamp, ``2**n * p(r)``, degree-6 ``p``."""
        b = self.b
        x = b.select(b.fcmp_ordered("<", x, self.const(-87.0)), self.const(-87.0), x)
        x = b.select(b.fcmp_ordered(">", x, self.const(88.0)), self.const(88.0), x)
        n = b.call(self._floor, [self.fma(x, self.const(1.4426950408889634), self.const(0.5))])
        r = self.fma(n, self.const(-0.693145751953125), x)
        r = self.fma(n, self.const(-1.4286068203094173e-06), r)
        p = self.const(1.0 / 720.0)
        for coefficient in (1.0 / 120.0, 1.0 / 24.0, 1.0 / 6.0, 0.5, 1.0, 1.0):
            p = self.fma(p, r, self.const(coefficient))
        i32s = ir.VectorType(_I32, self.lanes)
        exponent = b.add(b.fptosi(n, i32s), ir.Constant(i32s, [127] * self.lanes))
        scale = b.bitcast(b.shl(exponent, ir.Constant(i32s, [23] * self.lanes)), self.vec)
        return b.fmul(p, scale)

    def softplus(self, x: ir.Value) -> ir.Value:
        """``log(1 + exp(x))`` as :func:`.kernels.softplus32`: ``max(x, 0) + log1p(e)``,
        ``e = exp(-|x|)``, ``log1p(e) = 2 atanh(e / (2 + e))`` by its odd series to ``q**13``."""
        b = self.b
        e = self.exp(b.fsub(self.const(0.0), b.call(self._fabs, [x])))
        q = b.fdiv(e, b.fadd(self.const(2.0), e))
        q2 = b.fmul(q, q)
        p = self.const(1.0 / 13.0)
        for coefficient in (1.0 / 11.0, 1.0 / 9.0, 1.0 / 7.0, 1.0 / 5.0, 1.0 / 3.0, 1.0):
            p = self.fma(p, q2, self.const(coefficient))
        positive = b.select(b.fcmp_ordered(">", x, self.const(0.0)), x, self.const(0.0))
        return self.fma(b.fmul(self.const(2.0), q), p, positive)

    def silu(self, x: ir.Value) -> ir.Value:
        b = self.b
        return b.fdiv(x, b.fadd(self.const(1.0), self.exp(b.fsub(self.const(0.0), x))))

    def loop(self, start: ir.Value, stop: ir.Value, body: Callable[[ir.Value], None]) -> None:
        """``for i in range(start, stop): body(i)`` (i64)."""
        b = self.b
        before = b.block
        head = self.function.append_basic_block("loop")
        inside = self.function.append_basic_block("body")
        after = self.function.append_basic_block("done")
        b.branch(head)
        b.position_at_end(head)
        index = b.phi(_I64)
        index.add_incoming(start, before)
        b.cbranch(b.icmp_signed("<", index, stop), inside, after)
        b.position_at_end(inside)
        body(index)
        index.add_incoming(b.add(index, _I64(1)), b.block)
        b.branch(head)
        b.position_at_end(after)


def _build(shape: ScanShape, name: str) -> ir.Module:
    """The IR of ``void name(xbc, conv_w, conv_b, dt_raw, dt_bias, A, D, z, norm_w, out,
    bc, y, s0, s1, length, reverse, eps)``.

    Pointers, contiguous, float32 unless a ``bf16_*`` flag of ``shape`` makes them uint16:
    xbc (S, L, width), conv_w (d_conv, width) tap-major, conv_b (width,), dt_raw
    (S, L, nheads) before its bias and softplus, dt_bias and A (nheads,), D (nheads,),
    z (S, L, d_inner), norm_w (d_inner,), out (S, L, d_inner); scratch for one sequence:
    bc (L, :func:`scratch_width`) = ``[B C | dt | decay]`` per step, y (L, d_inner).
    Without :attr:`ScanShape.fused_dt`, ``dt_raw`` and ``dt_bias`` are dt and its decay
    (S, L, nheads) float32, computed beforehand, and ``A`` is not read.
    Sequences ``s0 <= s < s1``; ``reverse`` != 0 runs the scan from the last step to the
    first; ``eps`` (float) is the RMSNorm's.
    """
    lanes = shape.lanes
    assert lanes is not None
    module = ir.Module(name=name)
    module.triple = llvm.get_process_triple()
    signature = ir.FunctionType(ir.VoidType(), [_PTR] * _POINTERS + [_I64] * 4 + [_F32])
    function = ir.Function(module, signature, name=name)
    (xbc, conv_w, conv_b, dt_raw, dt_bias, A, D, z, norm_w, out, bc, y) = function.args[:_POINTERS]
    s0, s1, length, reverse, eps = function.args[_POINTERS:]
    for arg in function.args[:_POINTERS]:
        arg.add_attribute("noalias")
    g = _Builder(function, lanes)
    b = g.b
    width, d_inner, nheads = shape.width, shape.d_inner, shape.nheads
    n_state, taps, headdim = shape.d_state, shape.d_conv, shape.headdim
    bc_width = 2 * shape.ngroups * n_state
    head_width = nheads if shape.fused_dt else 0
    row_width = scratch_width(shape)  # bc scratch: [B C | dt | decay] per step
    dt_at, decay_at = bc_width, bc_width + head_width
    group_width = d_inner // shape.ngroups
    x_type = ir.IntType(16) if shape.bf16_input else _F32
    is_reverse = b.icmp_signed("!=", reverse, _I64(0))
    zero = g.const(0.0)

    def weights(first_channel: int) -> tuple[list[ir.Value], ir.Value]:
        taps_v = [g.load_vec(conv_w, _I64(k * width + first_channel)) for k in range(taps)]
        return taps_v, g.load_vec(conv_b, _I64(first_channel))

    def conv_silu(
        current: ir.Value, history: list[ir.Instruction], w: list[ir.Value], bias: ir.Value
    ) -> ir.Value:
        """SiLU of the causal convolution at this step; shifts ``history`` (newest first)."""
        acc = g.fma(w[taps - 1], current, bias)
        previous = [b.load(slot, typ=g.vec) for slot in history]
        for shift, value in enumerate(previous, start=1):
            acc = g.fma(w[taps - 1 - shift], value, acc)
        for slot, value in zip(history, [current, *previous], strict=False):
            b.store(value, slot)  # newest first; the oldest input drops out
        return g.silu(acc)

    def step_row(s: ir.Value, i: ir.Value) -> tuple[ir.Value, ir.Value]:
        """Scan step ``i``'s time ``t`` (i, or L - 1 - i in reverse) and row ``s * L + t``."""
        t = b.select(is_reverse, b.sub(b.sub(length, _I64(1)), i), i)
        return t, b.add(b.mul(s, length), t)

    def sequence(s: ir.Value) -> None:
        # 1. B and C: convolution + SiLU into bc, all lane groups in one pass over time
        groups = []
        for q in range(bc_width // lanes):
            history = [g.alloca(g.vec) for _ in range(taps - 1)]
            for slot in history:
                b.store(zero, slot)
            groups.append((q * lanes, history, *weights(d_inner + q * lanes)))

        # dt = softplus(dt_raw + dt_bias) and decay = exp(dt A), whole vectors of heads
        head_constants = []
        for first in range(0, head_width, lanes):
            bias_v, a_v = g.load_vec(dt_bias, _I64(first)), g.load_vec(A, _I64(first))
            head_constants.append((first, bias_v, a_v))

        def bc_step(i: ir.Value) -> None:
            t, row = step_row(s, i)
            scratch_row = b.mul(t, _I64(row_width))
            for first, bias_v, a_v in head_constants:
                at = b.add(b.mul(row, _I64(nheads)), _I64(first))
                raw = g.load_vec(dt_raw, at, shape.bf16_dt)  # fused_dt: whole vectors
                step_dt = g.softplus(b.fadd(raw, bias_v))
                g.store_vec(step_dt, bc, b.add(scratch_row, _I64(dt_at + first)))
                step_decay = g.exp(b.fmul(step_dt, a_v))
                g.store_vec(step_decay, bc, b.add(scratch_row, _I64(decay_at + first)))
            # the hardware prefetcher does not follow descending rows: fetch 8 steps ahead
            ahead = b.select(is_reverse, b.sub(row, _I64(8)), b.add(row, _I64(8)))
            g.prefetch(xbc, b.mul(ahead, _I64(width)), x_type)
            for first, history, w, bias in groups:
                current = g.load_vec(
                    xbc, b.add(b.mul(row, _I64(width)), _I64(d_inner + first)), shape.bf16_input
                )
                value = conv_silu(current, history, w, bias)
                g.store_vec(value, bc, b.add(scratch_row, _I64(first)))

        g.loop(_I64(0), length, bc_step)

        # 2. x: convolution + SiLU and the scan, one group of lanes at a time
        for first in range(0, d_inner, lanes):
            group = first // group_width
            b_offset = group * n_state
            c_offset = shape.ngroups * n_state + group * n_state
            heads = [(first + lane) // headdim for lane in range(lanes)]
            w, bias = weights(first)
            skip = ir.Constant(g.vec, ir.Undefined)
            for lane, head in enumerate(heads):
                skip = b.insert_element(skip, g.load_scalar(D, _I64(head)), _I32(lane))
            history = [g.alloca(g.vec) for _ in range(taps - 1)]
            states = [g.alloca(g.vec) for _ in range(n_state)]
            for slot in history + states:
                b.store(zero, slot)

            def scan_step(
                i: ir.Value,
                first: int = first,
                w: list[ir.Value] = w,
                bias: ir.Value = bias,
                skip: ir.Value = skip,
                heads: list[int] = heads,
                history: list[Any] = history,
                states: list[Any] = states,
                b_offset: int = b_offset,
                c_offset: int = c_offset,
            ) -> None:
                t, row = step_row(s, i)
                current = g.load_vec(
                    xbc, b.add(b.mul(row, _I64(width)), _I64(first)), shape.bf16_input
                )
                x = conv_silu(current, history, w, bias)
                scratch_row = b.mul(t, _I64(row_width))
                head_row = b.mul(row, _I64(nheads))
                dt_v = ir.Constant(g.vec, ir.Undefined)
                decay_v = ir.Constant(g.vec, ir.Undefined)
                scalars = {}
                for head in dict.fromkeys(heads):
                    if shape.fused_dt:
                        scalars[head] = (
                            g.load_scalar(bc, b.add(scratch_row, _I64(dt_at + head))),
                            g.load_scalar(bc, b.add(scratch_row, _I64(decay_at + head))),
                        )
                    else:  # dt_raw and dt_bias point to dt and decay (S, L, nheads)
                        at = b.add(head_row, _I64(head))
                        scalars[head] = (g.load_scalar(dt_raw, at), g.load_scalar(dt_bias, at))
                for lane, head in enumerate(heads):
                    dt_v = b.insert_element(dt_v, scalars[head][0], _I32(lane))
                    decay_v = b.insert_element(decay_v, scalars[head][1], _I32(lane))
                x_dt = b.fmul(dt_v, x)
                bc_row = scratch_row
                accumulators = [b.fmul(skip, x), zero]
                for k, slot in enumerate(states):
                    b_k = g.splat(g.load_scalar(bc, b.add(bc_row, _I64(b_offset + k))))
                    c_k = g.splat(g.load_scalar(bc, b.add(bc_row, _I64(c_offset + k))))
                    state = g.fma(b_k, x_dt, b.fmul(decay_v, b.load(slot, typ=g.vec)))
                    b.store(state, slot)
                    accumulators[k % 2] = g.fma(c_k, state, accumulators[k % 2])
                out = b.fadd(accumulators[0], accumulators[1])
                g.store_vec(out, y, b.add(b.mul(t, _I64(d_inner)), _I64(first)))

            g.loop(_I64(0), length, scan_step)

        # 3. gate and grouped RMSNorm of each step's row: out = norm(y * silu(z)) * norm_w
        norm_weights = [g.load_vec(norm_w, _I64(first)) for first in range(0, d_inner, lanes)]

        def norm_step(t: ir.Value) -> None:
            row = b.add(b.mul(s, length), t)
            for group in range(shape.ngroups):
                gated, squares = [], zero
                firsts = range(group * group_width, (group + 1) * group_width, lanes)
                for first in firsts:
                    y_v = g.load_vec(y, b.add(b.mul(t, _I64(d_inner)), _I64(first)))
                    z_at = b.add(b.mul(row, _I64(d_inner)), _I64(first))
                    value = b.fmul(y_v, g.silu(g.load_vec(z, z_at, shape.bf16_gate)))
                    gated.append(value)
                    squares = g.fma(value, value, squares)
                mean = b.fdiv(g.sum(squares), ir.Constant(_F32, float(group_width)))
                scale = g.splat(b.fdiv(ir.Constant(_F32, 1.0), g.sqrt(b.fadd(mean, eps))))
                for first, value in zip(firsts, gated, strict=True):
                    result = b.fmul(b.fmul(value, scale), norm_weights[first // lanes])
                    out_at = b.add(b.mul(row, _I64(d_inner)), _I64(first))
                    g.store_vec(result, out, out_at, shape.bf16_output)

        g.loop(_I64(0), length, norm_step)

    g.loop(s0, s1, sequence)
    b.ret_void()
    return module


#: Pointer arguments of a kernel (the arrays, then the two scratch arrays).
_POINTERS = 12


def scratch_width(shape: ScanShape) -> int:
    """Values per step of the ``bc`` scratch: B and C, then dt and decay where the kernel
    computes them (:attr:`ScanShape.fused_dt`)."""
    heads = 2 * shape.nheads if shape.fused_dt else 0
    return 2 * shape.ngroups * shape.d_state + heads


@functools.cache
def _kernel(shape: ScanShape) -> Any:
    """The address of the compiled kernel for ``shape``."""
    engine, machine = _engine()
    name = (
        f"conv_scan_d{shape.d_inner}_n{shape.d_state}_h{shape.nheads}_g{shape.ngroups}"
        f"_k{shape.d_conv}_{int(shape.bf16_input)}{int(shape.bf16_dt)}{int(shape.bf16_gate)}"
        f"{int(shape.bf16_output)}"
    )
    with _compile_lock:
        parsed = llvm.parse_assembly(str(_build(shape, name)))
        parsed.verify()
        options = llvm.create_pipeline_tuning_options(speed_level=3)
        passes = llvm.create_pass_builder(machine, options)
        passes.getModulePassManager().run(parsed, passes)
        engine.add_module(parsed)
        engine.finalize_object()
        address = engine.get_function_address(name)
    return address


def conv_scan_gate_norm(
    shape: ScanShape,
    xbc: Any,
    conv_weight_t: Any,
    conv_bias: Any,
    dt_raw: Any,
    dt_bias: Any,
    A: Any,
    D: Any,
    z: Any,
    norm_weight: Any,
    eps: float,
    reverse: bool,
    out: Any,
    n_threads: int = 1,
) -> None:
    """Causal convolution + SiLU of ``xBC``, ``dt = softplus(dt_raw + dt_bias)`` with its
    decay ``exp(dt A)``, the selective scan with the D skip, the gate and the grouped
    RMSNorm: ``out = rmsnorm_per_group(y * silu(z)) * norm_weight``.

    Arguments are contiguous CPU torch tensors. Shapes: xbc (S, L, width); conv_weight_t
    (d_conv, width) tap-major; conv_bias (width,); dt_raw (S, L, nheads); dt_bias, A, D
    (nheads,); z (S, L, d_inner); norm_weight (d_inner,); out (S, L, d_inner), written.
    ``xbc``, ``dt_raw``, ``z`` and ``out`` are uint16 (bfloat16 bits) where ``shape`` says
    so, else float32, like the rest. Sequences are split over ``n_threads`` threads, each
    with its own scratch for one sequence.
    """
    import torch

    from brain_go_brr.accel import kernels as cpu_kernels

    n_seq, length = xbc.shape[:2]
    per_step = (n_seq, length)
    per_head = (shape.nheads,)
    expected = {
        "xbc": (xbc, (*per_step, shape.width), shape.bf16_input),
        "conv_weight_t": (conv_weight_t, (shape.d_conv, shape.width), False),
        "conv_bias": (conv_bias, (shape.width,), False),
        "dt_raw": (dt_raw, (*per_step, shape.nheads), shape.bf16_dt),
        "dt_bias": (dt_bias, per_head, False),
        "A": (A, per_head, False),
        "D": (D, per_head, False),
        "z": (z, (*per_step, shape.d_inner), shape.bf16_gate),
        "norm_weight": (norm_weight, (shape.d_inner,), False),
        "out": (out, (*per_step, shape.d_inner), shape.bf16_output),
    }
    for name, (tensor, dims, bf16) in expected.items():
        dtype = torch.uint16 if bf16 else torch.float32
        if tuple(tensor.shape) != dims or tensor.dtype != dtype or not tensor.is_contiguous():
            raise ValueError(
                f"conv_scan_gate_norm: {name} is {tuple(tensor.shape)} {tensor.dtype}, expected "
                f"contiguous {dims} {dtype} for {shape}"
            )
    if not shape.fused_dt:
        dt = torch.empty(n_seq, length, shape.nheads, dtype=torch.float32)
        decay = torch.empty_like(dt)
        cpu_kernels.set_threads(n_threads)
        cpu_kernels.dt_and_decay(
            dt_raw.view(-1, shape.nheads).numpy(),
            dt_bias.numpy(),
            A.numpy(),
            dt.view(-1, shape.nheads).numpy(),
            decay.view(-1, shape.nheads).numpy(),
        )
        dt_raw, dt_bias = dt, decay  # the kernel reads these two pointers as dt and decay
    address = _kernel(shape)
    n_parts = max(1, min(n_threads, n_seq))
    bc_scratch = torch.empty(n_parts, length, scratch_width(shape), dtype=torch.float32)
    y_scratch = torch.empty(n_parts, length, shape.d_inner, dtype=torch.float32)
    arrays = (xbc, conv_weight_t, conv_bias, dt_raw, dt_bias, A, D, z, norm_weight, out)
    pointers = torch.tensor([t.data_ptr() for t in arrays], dtype=torch.int64)
    scratch = torch.tensor(
        [[bc_scratch[p].data_ptr(), y_scratch[p].data_ptr()] for p in range(n_parts)],
        dtype=torch.int64,
    )
    bounds = torch.tensor([n_seq * p // n_parts for p in range(n_parts + 1)], dtype=torch.int64)
    cpu_kernels.set_threads(n_parts)
    cpu_kernels.run_scan_parts(
        address, pointers.numpy(), scratch.numpy(), bounds.numpy(), length, int(reverse), eps
    )
