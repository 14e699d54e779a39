"""Our Mamba2: the chunked SSD scan against a sequential float64 scan, the block, BiMamba2."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest
import torch
import torch.nn.functional as F

from brain_go_brr.models import mamba2 as mamba2_module
from brain_go_brr.models.mamba2 import BiMamba2, BiMamba2Stack, Mamba2, Mamba2Config
from brain_go_brr.models.ssd import ssd_scan, ssd_scan_reference

LENGTHS = [1, 7, 64, 100, 257]


@pytest.fixture(autouse=True, scope="module")
def one_thread() -> Iterator[None]:
    """These tensors are tiny: on a busy 2-core machine, waking a second intra-op thread for
    each of the reference scan's thousands of small ops costs far more than the work."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def scan_inputs(
    length: int, batch: int = 2, nheads: int = 4, headdim: int = 8, ngroups: int = 1, seed: int = 0
) -> dict[str, torch.Tensor]:
    """Random scan inputs in the ranges Mamba2 produces: dt in ~(0.001, 0.5), A in [-16, -1]."""
    gen = torch.Generator().manual_seed(seed)
    d_state = 16
    return {
        "x": torch.randn(batch, length, nheads, headdim, generator=gen),
        "dt": F.softplus(torch.randn(batch, length, nheads, generator=gen) - 2.0),
        "A": -torch.empty(nheads).uniform_(1.0, 16.0, generator=gen),
        "B": torch.randn(batch, length, ngroups, d_state, generator=gen),
        "C": torch.randn(batch, length, ngroups, d_state, generator=gen),
        "D": torch.randn(nheads, generator=gen),
    }


def rel_err(a: torch.Tensor, ref: torch.Tensor) -> float:
    """``|a - ref| / |ref|``; where ``ref`` is exactly zero, the absolute error ``|a|``."""
    diff = (a.double() - ref.double()).norm().item()
    scale = ref.double().norm().item()
    return diff / scale if scale > 0 else diff


METHODS = ["factored", "blocked"]


@pytest.mark.parametrize("length", LENGTHS)
@pytest.mark.parametrize("ngroups", [1, 2])
@pytest.mark.parametrize("method", METHODS)
def test_ssd_scan_matches_sequential_float64(length: int, ngroups: int, method: str) -> None:
    inputs = scan_inputs(length, ngroups=ngroups)
    if method == "factored":  # keep every chunk's decay within the factored step's range
        inputs["dt"] = inputs["dt"].clamp(max=0.1)
    y = ssd_scan(**inputs, chunk_size=32, method=method)
    ref = ssd_scan_reference(**{k: v.double() for k, v in inputs.items()})
    assert y.dtype == torch.float32 and y.shape == inputs["x"].shape
    assert rel_err(y, ref) < 1e-5


@pytest.mark.parametrize("length", LENGTHS)
@pytest.mark.parametrize("method", METHODS)
def test_ssd_scan_gradients_match_sequential_float64(length: int, method: str) -> None:
    inputs = scan_inputs(length, seed=1)
    if method == "factored":
        inputs["dt"] = inputs["dt"].clamp(max=0.1)
    grad_out = torch.randn(inputs["x"].shape, generator=torch.Generator().manual_seed(2))

    ours = {k: v.clone().requires_grad_(True) for k, v in inputs.items()}
    (ssd_scan(**ours, chunk_size=32, method=method) * grad_out).sum().backward()
    ref = {k: v.double().requires_grad_(True) for k, v in inputs.items()}
    (ssd_scan_reference(**ref).double() * grad_out.double()).sum().backward()

    for name in ("x", "dt", "A", "B", "C", "D"):
        ours_grad, ref_grad = ours[name].grad, ref[name].grad
        assert ours_grad is not None and ref_grad is not None
        assert rel_err(ours_grad, ref_grad) < 1e-5, name


@pytest.mark.parametrize("method", METHODS)
def test_ssd_scan_is_independent_of_chunk_size(method: str) -> None:
    inputs = scan_inputs(200, seed=3)
    inputs["dt"] = inputs["dt"].clamp(max=0.05)  # 64 steps stay within the factored range
    ys = {q: ssd_scan(**inputs, chunk_size=q, method=method) for q in (16, 32, 64)}
    assert rel_err(ys[16], ys[64]) < 1e-6
    assert rel_err(ys[32], ys[64]) < 1e-6


def test_auto_method_halves_the_chunk_then_falls_back_to_blocked() -> None:
    from brain_go_brr.models import ssd

    inputs = scan_inputs(64, seed=4)
    inputs["dt"] = torch.full_like(inputs["dt"], 1.0)
    # log-decay 5 per step: 160 per 32-step chunk (past the limit), 80 per 16-step chunk
    inputs["A"] = torch.full_like(inputs["A"], -5.0)
    assert 16 * 5.0 <= ssd.FACTORED_MAX_LOG_DECAY < 32 * 5.0
    auto = ssd_scan(**inputs, chunk_size=32)
    assert torch.equal(auto, ssd_scan(**inputs, chunk_size=16, method="factored"))
    # 16 per step: 128 even at a quarter chunk (8 steps), so the blocked scan is used
    inputs["A"] = torch.full_like(inputs["A"], -16.0)
    assert ssd.FACTORED_MAX_LOG_DECAY < 8 * 16.0
    auto = ssd_scan(**inputs, chunk_size=32)
    blocked = ssd_scan(**inputs, chunk_size=32, method="blocked")
    assert torch.equal(auto, blocked)
    factored = ssd_scan(**inputs, chunk_size=32, method="factored")
    assert not torch.isfinite(factored).all()  # why the fallback exists
    ref = ssd_scan_reference(**{k: v.double() for k, v in inputs.items()})
    assert rel_err(auto, ref) < 1e-5


def test_reference_scan_on_a_hand_computed_case() -> None:
    # One head, one channel, one state: state_t = e^{-dt} state_{t-1} + dt x_t, y = state.
    x = torch.tensor([1.0, 0.0, 2.0]).view(1, 3, 1, 1)
    dt = torch.full((1, 3, 1), 0.5)
    A = torch.tensor([-1.0])
    ones = torch.ones(1, 3, 1, 1)
    decay = torch.exp(torch.tensor(-0.5)).item()
    expected = [0.5, 0.5 * decay, 0.5 * decay**2 + 1.0]
    y_ref = ssd_scan_reference(x, dt, A, ones, ones).flatten()
    y_ours = ssd_scan(x, dt, A, ones, ones, chunk_size=2).flatten()
    assert y_ref.tolist() == pytest.approx(expected, rel=1e-6)
    assert y_ours.tolist() == pytest.approx(expected, rel=1e-6)


def mamba2_block_reference(block: Mamba2, u: torch.Tensor) -> torch.Tensor:
    """The Mamba2 block written out step by step around the float64 sequential scan."""
    d_inner, gn, h = block.d_inner, block.ngroups * block.d_state, block.nheads
    proj = u.double() @ block.in_proj.weight.double().T
    z, xbc, dt = proj[..., :d_inner], proj[..., d_inner : 2 * d_inner + 2 * gn], proj[..., -h:]
    # Causal depthwise convolution: output t sees inputs t-d_conv+1 .. t.
    kernel = block.conv1d.weight.double()  # (conv_dim, 1, d_conv)
    padded = F.pad(xbc.transpose(1, 2), (block.d_conv - 1, 0))
    xbc = F.conv1d(padded, kernel, block.conv1d.bias.double(), groups=kernel.shape[0])
    xbc = F.silu(xbc.transpose(1, 2))
    x, B, C = xbc[..., :d_inner], xbc[..., d_inner : d_inner + gn], xbc[..., d_inner + gn :]
    y = ssd_scan_reference(
        x.unflatten(-1, (h, block.headdim)),
        F.softplus(dt + block.dt_bias.double()),
        -torch.exp(block.A_log.double()),
        B.unflatten(-1, (block.ngroups, block.d_state)),
        C.unflatten(-1, (block.ngroups, block.d_state)),
        block.D.double(),
    ).flatten(2)
    gated = (y * F.silu(z)).unflatten(-1, (block.ngroups, -1))
    normed = gated / gated.pow(2).mean(-1, keepdim=True).add(block.norm.eps).sqrt()
    return (normed.flatten(-2) * block.norm.weight.double()) @ block.out_proj.weight.double().T


@pytest.mark.parametrize("ngroups", [1, 2])
def test_mamba2_block_matches_step_by_step_reference(ngroups: int) -> None:
    torch.manual_seed(0)
    block = Mamba2(
        16, Mamba2Config(d_state=8, headdim=4, ngroups=ngroups, chunk_size=16, backend="torch")
    )
    u = torch.randn(2, 37, 16)
    assert rel_err(block(u), mamba2_block_reference(block, u)) < 1e-5


@pytest.mark.slow
def test_state_dict_loads_into_hugging_face_mamba2mixer_with_same_outputs() -> None:
    # An independent implementation with mamba_ssm's parameter names: a strict load and
    # equal outputs check names, shapes and the meaning of every parameter at once.
    modeling = pytest.importorskip(
        "transformers.models.mamba2.modeling_mamba2", reason="transformers is in the bench extra"
    )
    from transformers import Mamba2Config as HFMamba2Config

    torch.manual_seed(0)
    ours = Mamba2(32, Mamba2Config(d_state=8, headdim=8, ngroups=2, chunk_size=16, backend="torch"))
    config = HFMamba2Config(
        hidden_size=32, state_size=8, head_dim=8, expand=2, num_heads=8, n_groups=2,
        conv_kernel=4, chunk_size=16, use_bias=False, use_conv_bias=True, num_hidden_layers=1,
        layer_norm_epsilon=1e-5,
    )  # fmt: skip
    theirs = modeling.Mamba2Mixer(config, layer_idx=0).eval()
    theirs.load_state_dict(ours.state_dict(), strict=True)
    u = torch.randn(2, 45, 32)
    with torch.no_grad():
        assert rel_err(ours(u), theirs(u)) < 1e-5


def test_init_matches_mamba2_ranges() -> None:
    torch.manual_seed(0)
    block = Mamba2(64, Mamba2Config(headdim=8), dt_min=0.001, dt_max=0.1)
    dt = F.softplus(block.dt_bias)
    A = torch.exp(block.A_log)
    assert dt.min() >= 0.001 * (1 - 1e-5) and dt.max() <= 0.1 * (1 + 1e-5)
    assert A.min() >= 1.0 and A.max() <= 16.0
    assert A.std() > 1.0  # spread over the range, not a constant
    assert torch.equal(block.D.detach(), torch.ones(16))
    assert torch.equal(block.norm.weight.detach(), torch.ones(128))


def test_parameter_names_and_shapes_match_mamba_ssm() -> None:
    # mamba_ssm.Mamba2(d_model=64, d_state=16, d_conv=4, expand=2, headdim=8, ngroups=1):
    # d_inner 128, nheads 16, conv_dim 128 + 2*16 = 160, in_proj 2*128 + 2*16 + 16 = 304.
    block = Mamba2(64, Mamba2Config(d_state=16, d_conv=4, expand=2, headdim=8, ngroups=1))
    shapes = {name: tuple(t.shape) for name, t in block.state_dict().items()}
    assert shapes == {
        "in_proj.weight": (304, 64),
        "conv1d.weight": (160, 1, 4),
        "conv1d.bias": (160,),
        "dt_bias": (16,),
        "A_log": (16,),
        "D": (16,),
        "norm.weight": (128,),
        "out_proj.weight": (64, 128),
    }
    assert list(block.buffers()) == []


def test_state_dict_round_trip_is_strict() -> None:
    torch.manual_seed(0)
    stack = BiMamba2Stack(16, 2, Mamba2Config(d_state=8, headdim=4, chunk_size=16))
    assert list(stack.buffers()) == []
    state = stack.state_dict()
    assert set(state) == {name for name, _ in stack.named_parameters()}

    torch.manual_seed(1)
    other = BiMamba2Stack(16, 2, Mamba2Config(d_state=8, headdim=4, chunk_size=16))
    u = torch.randn(2, 40, 16)
    assert not torch.allclose(other(u), stack(u))
    other.load_state_dict(state, strict=True)
    assert torch.equal(other(u), stack(u))


def _bumped_at(t: int) -> tuple[torch.Tensor, torch.Tensor]:
    """A (1, 50, 16) input and a copy with step ``t`` raised by 1."""
    torch.manual_seed(0)
    u = torch.randn(1, 50, 16)
    bumped = u.clone()
    bumped[:, t] += 1.0
    return u, bumped


def test_forward_block_is_causal_and_bidirectional_layer_sees_the_future() -> None:
    t = 30
    u, bumped = _bumped_at(t)

    causal = Mamba2(16, Mamba2Config(d_state=8, headdim=4, chunk_size=16))
    delta = (causal(bumped) - causal(u)).abs().amax(dim=(0, 2))  # (L,)
    assert delta[:t].max() == 0.0
    assert delta[t:].min() > 0.0

    for module in (
        BiMamba2(16, Mamba2Config(d_state=8, headdim=4, chunk_size=16)),
        BiMamba2Stack(16, 2, Mamba2Config(d_state=8, headdim=4, chunk_size=16)),
    ):
        delta = (module(bumped) - module(u)).abs().amax(dim=(0, 2))
        assert delta[:t].min() > 0.0  # every earlier step hears about the change
        assert delta[t:].min() > 0.0


@pytest.mark.parametrize("case", ["zeros", "large", "spikes", "batch_of_1"])
def test_outputs_and_gradients_are_finite(case: str) -> None:
    torch.manual_seed(0)
    stack = BiMamba2Stack(16, 2, Mamba2Config(d_state=8, headdim=4, chunk_size=16))
    u = {
        "zeros": torch.zeros(2, 70, 16),
        "large": torch.full((2, 70, 16), 1e4),
        "spikes": torch.randn(2, 70, 16) * 100 + 1e4 * (torch.rand(2, 70, 16) > 0.95),
        "batch_of_1": torch.randn(1, 70, 16),
    }[case].requires_grad_(True)
    out = stack(u)
    out.square().mean().backward()
    assert out.shape == u.shape
    assert torch.isfinite(out).all()
    assert u.grad is not None and torch.isfinite(u.grad).all()
    for name, p in stack.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name


def test_backend_choice_is_validated_and_logged(caplog: pytest.LogCaptureFixture) -> None:
    with pytest.raises(ValueError, match="backend 'triton' is not one of"):
        Mamba2(16, Mamba2Config(backend="triton"))
    mamba2_module._announced.clear()
    with caplog.at_level(logging.INFO, logger="brain_go_brr.models.mamba2"):
        Mamba2(16, Mamba2Config(headdim=4, backend="torch"))(torch.randn(1, 5, 16))
        Mamba2(16, Mamba2Config(headdim=4, backend="torch"))(torch.randn(1, 5, 16))
    messages = [r.getMessage() for r in caplog.records]
    assert messages == ["Mamba2 backend: torch (backend='torch' asked for)"]


def test_cuda_backend_without_mamba_ssm_says_how_to_install() -> None:
    if mamba2_module._mamba_ssm_kernel() is not None:
        pytest.skip("mamba_ssm is installed here, so backend='cuda' is legitimately available")
    with pytest.raises(ImportError, match=r"pip install \.\[gpu\]"):
        Mamba2(16, Mamba2Config(backend="cuda"))


@pytest.mark.gpu
def test_mamba_ssm_kernel_matches_our_scan() -> None:
    if mamba2_module._mamba_ssm_kernel() is None:
        pytest.skip("mamba_ssm does not import on this machine (pip install .[gpu])")
    torch.manual_seed(0)
    ours = Mamba2(64, Mamba2Config(d_state=16, headdim=8, chunk_size=64, backend="torch")).cuda()
    kernel = Mamba2(64, Mamba2Config(d_state=16, headdim=8, chunk_size=64, backend="cuda")).cuda()
    kernel.load_state_dict(ours.state_dict(), strict=True)
    u = torch.randn(4, 300, 64, device="cuda", requires_grad=True)
    y_ours, y_kernel = ours(u), kernel(u)
    assert rel_err(y_kernel, y_ours) < 1e-3  # TF32/Triton accumulation order vs ours
    grad_ours = torch.autograd.grad(y_ours.square().sum(), ours.A_log)[0]
    grad_kernel = torch.autograd.grad(y_kernel.square().sum(), kernel.A_log)[0]
    assert rel_err(grad_kernel, grad_ours) < 1e-2
    # Both against the float64 sequential scan, on the CPU.
    ref = mamba2_block_reference(ours.cpu(), u.detach().cpu())
    assert rel_err(y_kernel.detach().cpu(), ref) < 1e-3


def test_factored_scan_is_accurate_near_its_decay_limit() -> None:
    from brain_go_brr.models import ssd

    inputs = scan_inputs(200, seed=5)
    inputs["dt"] = torch.full_like(inputs["dt"], 0.2)
    inputs["A"] = torch.full_like(inputs["A"], -15.0)  # 3 per step: 96 per 32-step chunk
    assert 0.75 * ssd.FACTORED_MAX_LOG_DECAY < 32 * 3.0 <= ssd.FACTORED_MAX_LOG_DECAY
    grad_out = torch.randn(inputs["x"].shape, generator=torch.Generator().manual_seed(6))
    ours = {k: v.clone().requires_grad_(True) for k, v in inputs.items()}
    y = ssd_scan(**ours, chunk_size=32, method="factored")
    (y * grad_out).sum().backward()
    ref = {k: v.double().requires_grad_(True) for k, v in inputs.items()}
    y_ref = ssd_scan_reference(**ref)
    (y_ref * grad_out.double()).sum().backward()
    assert rel_err(y, y_ref) < 1e-5
    for name in ("x", "dt", "A", "B", "C", "D"):
        assert rel_err(ours[name].grad, ref[name].grad) < 1e-5, name
