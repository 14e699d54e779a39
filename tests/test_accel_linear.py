"""The oneDNN float32 linear maps of CPU inference (brain_go_brr.accel.linear) agree with
F.linear, refuse gradients, and fall back cleanly."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from brain_go_brr.accel import linear as cpu_linear


def _data(rows: int = 300, d_in: int = 16, d_out: int = 48) -> tuple[torch.Tensor, ...]:
    g = torch.Generator().manual_seed(0)
    return (
        torch.randn(rows, d_in, generator=g),
        torch.randn(d_out + 8, d_in, generator=g)[4 : 4 + d_out],  # a row slice, as in Mamba2
        torch.randn(rows, d_out, generator=g),
    )


def test_onednn_op_is_available_with_the_pinned_torch() -> None:
    # The speed of CPU inference (BENCHMARKS.md) assumes this path; a torch without the op
    # still works (F.linear) but slower, and this test says so.
    assert cpu_linear._onednn_linear() is not None


@pytest.mark.parametrize("shape", [(300, 16), (3, 100, 64), (1, 1, 8)])
def test_linear_and_linear_add_match_aten(shape: tuple[int, ...]) -> None:
    x = torch.randn(*shape, generator=torch.Generator().manual_seed(1))
    weight = torch.randn(40, shape[-1], generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        got = cpu_linear.linear(x, weight)
        torch.testing.assert_close(got, F.linear(x, weight), rtol=1e-6, atol=1e-5)
        flat = x.reshape(-1, shape[-1])
        other = torch.randn(flat.shape[0], 40)
        torch.testing.assert_close(
            cpu_linear.linear_add(flat, weight, other), other + F.linear(flat, weight)
        )
        assert torch.equal(other, other.clone())  # the addend is not written to


def test_gradients_are_refused_and_autocast_takes_f_linear() -> None:
    """Inference only: no hand-written backward of the private op exists to train through."""
    x, weight, other = _data()
    weight = weight.clone().requires_grad_(True)
    with pytest.raises(RuntimeError, match="for inference"):
        cpu_linear.linear_add(x, weight, other)
    with pytest.raises(RuntimeError, match="for inference"):
        cpu_linear.linear(x, weight)
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        assert cpu_linear.linear(x, weight).dtype == torch.bfloat16  # as F.linear under autocast


def test_without_the_op_everything_falls_back(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cpu_linear, "_onednn_linear", lambda: None)
    x, weight, other = _data()
    with torch.no_grad():
        torch.testing.assert_close(cpu_linear.linear(x, weight), F.linear(x, weight))
        torch.testing.assert_close(
            cpu_linear.linear_add(x, weight, other), torch.addmm(other, x, weight.T)
        )


def _ops_called(fn: object) -> set[str]:
    with torch.profiler.profile() as prof:
        fn()  # type: ignore[operator]
    return {event.key for event in prof.key_averages()}


def test_the_onednn_kernel_is_what_an_accelerated_stack_calls() -> None:
    from brain_go_brr import accel
    from brain_go_brr.models.mamba2 import BiMamba2Stack, Mamba2Config

    if not accel.available():
        pytest.skip("numba does not import here: no compiled Mamba2 path (pip install '.[accel]')")
    stack = BiMamba2Stack(16, 1, Mamba2Config(headdim=4)).eval()
    u = torch.randn(2, 30, 16)
    with torch.no_grad():
        accel.accelerate(stack)
        assert "mkldnn::_linear_pointwise" in _ops_called(lambda: stack(u))
        accel.accelerate(stack, kernels=["mamba", "llvm_scan"])
        assert "mkldnn::_linear_pointwise" not in _ops_called(lambda: stack(u))
        accel.accelerate(stack, enabled=False)
        assert "mkldnn::_linear_pointwise" not in _ops_called(lambda: stack(u))
