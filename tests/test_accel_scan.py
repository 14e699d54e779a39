"""The LLVM vector kernel of :mod:`brain_go_brr.accel.scan` (CPU inference): causal
convolution, selective scan, gate and grouped RMSNorm against a float64 reference, its
bfloat16 reading and writing, its thread split, and when the model uses it."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

pytest.importorskip("numba", reason="the kernel runs on numba's threads (pip install '.[accel]')")

from brain_go_brr.accel import mamba as accel_mamba
from brain_go_brr.accel import scan as cpu_scan
from brain_go_brr.accel.scan import ScanShape, conv_scan_gate_norm
from brain_go_brr.models.mamba2 import Mamba2, Mamba2Config

D_CONV = 4


def make_inputs(
    shape: ScanShape, batch: int, length: int, seed: int = 0
) -> dict[str, torch.Tensor]:
    """Inputs in Mamba2's ranges: dt = softplus(dt_raw + dt_bias) in ~(0.01, 2), A in [-4, -0.5]."""
    gen = torch.Generator().manual_seed(seed)
    return {
        "xbc": torch.randn(batch, length, shape.width, generator=gen),
        "conv_weight_t": 0.5 * torch.randn(shape.d_conv, shape.width, generator=gen),
        "conv_bias": 0.1 * torch.randn(shape.width, generator=gen),
        "dt_raw": torch.randn(batch, length, shape.nheads, generator=gen),
        "dt_bias": torch.randn(shape.nheads, generator=gen) - 1.5,
        "A": -torch.empty(shape.nheads).uniform_(0.5, 4.0, generator=gen),
        "D": torch.randn(shape.nheads, generator=gen),
        "z": torch.randn(batch, length, shape.d_inner, generator=gen),
        "norm_weight": torch.rand(shape.d_inner, generator=gen) + 0.5,
    }


def reference(shape: ScanShape, inputs: dict[str, torch.Tensor], reverse: bool) -> torch.Tensor:
    """The same computation in float64, written out step by step (time flipped for reverse)."""
    t = {name: value.double() for name, value in inputs.items()}
    flip = (lambda v: v.flip(1)) if reverse else (lambda v: v)
    dt_all = F.softplus(t["dt_raw"] + t["dt_bias"])
    xbc, dt, z = flip(t["xbc"]), flip(dt_all), flip(t["z"])
    decay = torch.exp(dt * t["A"])
    batch, length, width = xbc.shape
    weight = t["conv_weight_t"].t().unsqueeze(1)  # (width, 1, d_conv)
    conv = F.conv1d(
        F.pad(xbc.transpose(1, 2), (shape.d_conv - 1, 0)), weight, t["conv_bias"], groups=width
    )
    conv = F.silu(conv.transpose(1, 2))
    d_inner, n, g, h = shape.d_inner, shape.d_state, shape.ngroups, shape.nheads
    x = conv[..., :d_inner].unflatten(-1, (h, shape.headdim))
    B = conv[..., d_inner : d_inner + g * n].unflatten(-1, (g, n)).repeat_interleave(h // g, 2)
    C = conv[..., d_inner + g * n :].unflatten(-1, (g, n)).repeat_interleave(h // g, 2)
    state = torch.zeros(batch, h, shape.headdim, n, dtype=torch.float64)
    ys = []
    for step in range(length):
        state = decay[:, step, :, None, None] * state + (
            dt[:, step, :, None, None] * x[:, step, :, :, None] * B[:, step, :, None, :]
        )
        ys.append((state * C[:, step, :, None, :]).sum(-1) + t["D"][:, None] * x[:, step])
    y = torch.stack(ys, 1).flatten(2)
    gated = (y * F.silu(z)).unflatten(-1, (g, -1))
    normed = gated / gated.pow(2).mean(-1, keepdim=True).add(1e-5).sqrt()
    return flip(normed.flatten(-2) * t["norm_weight"])


def run(
    shape: ScanShape, inputs: dict[str, torch.Tensor], reverse: bool, threads: int = 2
) -> torch.Tensor:
    out = torch.empty(inputs["z"].shape, dtype=torch.float32)
    conv_scan_gate_norm(
        shape, inputs["xbc"], inputs["conv_weight_t"], inputs["conv_bias"], inputs["dt_raw"],
        inputs["dt_bias"], inputs["A"], inputs["D"], inputs["z"], inputs["norm_weight"], 1e-5,
        reverse, out, n_threads=threads,
    )  # fmt: skip
    return out


# (d_inner, d_state, nheads, ngroups): v3's node and edge streams, v3_tiny's, several groups,
# a head wider than the lanes, widths that take 8 or 4 lanes, 20 heads on 8 lanes; dt inside
# the kernel where the heads fill whole vectors (the node stream, 32 heads on 8 lanes, 4 on 4)
SHAPES = [(128, 16, 16, 1), (32, 8, 4, 1), (16, 8, 4, 1), (8, 4, 2, 1), (64, 8, 8, 2),
          (32, 8, 2, 1), (24, 4, 3, 1), (12, 2, 3, 1), (40, 4, 20, 1),
          (64, 4, 32, 1), (8, 2, 4, 1)]  # fmt: skip


@pytest.mark.parametrize("dims", SHAPES)
@pytest.mark.parametrize("length", [1, 3, 37])
@pytest.mark.parametrize("reverse", [False, True])
def test_kernel_matches_float64_reference(
    dims: tuple[int, int, int, int], length: int, reverse: bool
) -> None:
    shape = ScanShape(*dims, d_conv=D_CONV, bf16_input=False)
    assert cpu_scan.supported(shape)
    inputs = make_inputs(shape, batch=3, length=length, seed=length)
    expected = reference(shape, inputs, reverse)
    got = run(shape, inputs, reverse)
    assert (got.double() - expected).abs().max().item() < 2e-5 * expected.abs().max().item()


@pytest.mark.parametrize("d_conv", [1, 2, 3, 5])
def test_other_convolution_widths(d_conv: int) -> None:
    shape = ScanShape(32, 8, 4, 1, d_conv=d_conv, bf16_input=False)
    inputs = make_inputs(shape, batch=2, length=11, seed=d_conv)
    for reverse in (False, True):
        expected = reference(shape, inputs, reverse)
        got = run(shape, inputs, reverse)
        assert (got.double() - expected).abs().max().item() < 2e-5 * expected.abs().max().item()


def test_lane_width_follows_the_channels() -> None:
    assert ScanShape(128, 16, 16, 1, 4, False).lanes == 16
    assert ScanShape(24, 4, 3, 1, 4, False).lanes == 8
    assert ScanShape(12, 2, 3, 1, 4, False).lanes == 4
    odd = ScanShape(6, 3, 2, 1, 4, False)  # 6 channels: no lane width divides them
    assert odd.lanes is None and not cpu_scan.supported(odd)


@pytest.mark.parametrize("reverse", [False, True])
def test_bfloat16_bits_in_and_out(reverse: bool) -> None:
    """bfloat16 inputs (uint16 bits) give what their float32 values give; a uint16 output
    holds the float32 result rounded to nearest even, as torch rounds it."""
    dims = (32, 8, 4, 1)
    plain = ScanShape(*dims, d_conv=D_CONV, bf16_input=False)
    inputs = make_inputs(plain, batch=2, length=29, seed=3)
    for name in ("xbc", "dt_raw", "z"):
        inputs[name] = inputs[name].bfloat16().float()
    expected = run(plain, inputs, reverse)
    bits = ScanShape(
        *dims, d_conv=D_CONV, bf16_input=True, bf16_gate=True, bf16_output=True, bf16_dt=True
    )
    as_bits = {name: inputs[name].bfloat16().view(torch.uint16) for name in ("xbc", "dt_raw", "z")}
    out = torch.empty(inputs["z"].shape, dtype=torch.uint16)
    conv_scan_gate_norm(
        bits, as_bits["xbc"], inputs["conv_weight_t"], inputs["conv_bias"], as_bits["dt_raw"],
        inputs["dt_bias"], inputs["A"], inputs["D"], as_bits["z"], inputs["norm_weight"], 1e-5,
        reverse, out, n_threads=2,
    )  # fmt: skip
    assert torch.equal(out, expected.bfloat16().view(torch.uint16))


def test_result_does_not_depend_on_the_thread_split() -> None:
    shape = ScanShape(32, 8, 4, 1, D_CONV, False)
    inputs = make_inputs(shape, batch=5, length=23, seed=5)
    one = run(shape, inputs, reverse=True, threads=1)
    for threads in (2, 3, 8):
        assert torch.equal(run(shape, inputs, reverse=True, threads=threads), one)


def test_wrong_input_names_the_tensor() -> None:
    shape = ScanShape(32, 8, 4, 1, D_CONV, bf16_input=True)
    inputs = make_inputs(shape, batch=1, length=5)
    with pytest.raises(ValueError, match=r"xbc is \(1, 5, 48\) torch.float32, expected"):
        run(shape, inputs, reverse=False)


@pytest.mark.parametrize("reverse", [False, True])
def test_mamba2_uses_the_kernel_where_it_fits_and_numba_elsewhere(
    reverse: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The block's compiled path gives the same result with the LLVM kernel, without it
    (the ``llvm_scan`` kernel not chosen), and for a width it does not take."""
    torch.manual_seed(0)
    block = Mamba2(16, Mamba2Config(d_state=8, headdim=4)).eval()
    u = torch.randn(2, 45, 16)
    calls: list[ScanShape] = []
    original = cpu_scan.conv_scan_gate_norm
    monkeypatch.setattr(
        cpu_scan,
        "conv_scan_gate_norm",
        lambda shape, *a, **k: calls.append(shape) or original(shape, *a, **k),
    )
    every, numba_only = frozenset(("llvm_scan",)), frozenset()
    with torch.no_grad():
        with_kernel = accel_mamba.mix(block, u, reverse, every)
        assert len(calls) == 1 and calls[0].d_inner == 32
        without = accel_mamba.mix(block, u, reverse, numba_only)
        assert len(calls) == 1  # the numba scan ran
        assert (with_kernel - without).abs().max().item() < 1e-5 * without.abs().max().item()
        odd = Mamba2(3, Mamba2Config(d_state=4, headdim=3)).eval()  # d_inner 6: no lanes fit
        accel_mamba.mix(odd, torch.randn(1, 9, 3), reverse, every)
        assert len(calls) == 1
