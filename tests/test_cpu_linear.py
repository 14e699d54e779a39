"""The oneDNN float32 linear maps of CPU inference agree with F.linear and fall back cleanly."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from brain_go_brr.models import cpu_linear


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


def test_gradients_and_autocast_take_f_linear() -> None:
    x, weight, other = _data()
    weight = weight.clone().requires_grad_(True)
    cpu_linear.linear_add(x, weight, other).sum().backward()  # autograd through addmm
    torch.testing.assert_close(weight.grad, x.sum(0).expand_as(weight).contiguous())
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


def test_training_path_gradients_match_f_linear() -> None:
    x, weight, _ = _data(rows=50)
    x3 = x.view(5, 10, 16).clone().requires_grad_(True)
    w = weight.clone().requires_grad_(True)
    grad_out = torch.randn(5, 10, 48, generator=torch.Generator().manual_seed(3))
    (cpu_linear.linear(x3, w) * grad_out).sum().backward()
    x_ref, w_ref = x3.detach().clone().requires_grad_(True), weight.clone().requires_grad_(True)
    (F.linear(x_ref, w_ref) * grad_out).sum().backward()
    torch.testing.assert_close(x3.grad, x_ref.grad)
    torch.testing.assert_close(w.grad, w_ref.grad)
    assert torch.autograd.gradcheck(
        cpu_linear._LinearFunction.apply,
        (torch.randn(4, 3, requires_grad=True), torch.randn(5, 3, requires_grad=True)),
        eps=1e-2,
        atol=1e-2,
    )


def _ops_called(fn: object) -> set[str]:
    with torch.profiler.profile() as prof:
        fn()  # type: ignore[operator]
    return {event.key for event in prof.key_averages()}


def test_switch_turns_the_onednn_path_off(monkeypatch: pytest.MonkeyPatch) -> None:
    x, weight, _ = _data()
    with torch.no_grad():
        assert "mkldnn::_linear_pointwise" in _ops_called(lambda: cpu_linear.linear(x, weight))
        monkeypatch.setattr(cpu_linear, "ENABLED", False)
        assert "mkldnn::_linear_pointwise" not in _ops_called(lambda: cpu_linear.linear(x, weight))
