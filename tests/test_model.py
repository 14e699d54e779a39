"""The V3 detector: shapes, configs, robustness, gradients, checkpoints, model-info."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch
from data_fixtures import group_config
from omegaconf import OmegaConf

from brain_go_brr.cli import main as cli_main
from brain_go_brr.models import PEConfig, V3Config, V3Detector, build_v3
from brain_go_brr.models.info import stage_flops, stage_parameters
from brain_go_brr.paths import conf_dir

SHORT = 1024  # 4 s windows keep the CPU tests fast; the structure does not depend on length


def _yaml_keys(name: str) -> dict[str, object]:
    """``model=<name>`` as composed (v3_tiny holds only its differences from v3)."""
    keys = OmegaConf.to_container(group_config("model", name))
    assert isinstance(keys, dict)
    keys.pop("_target_")
    return {str(k): v for k, v in keys.items()}


def _model(name: str = "v3_tiny", seed: int = 0, **overrides: object) -> V3Detector:
    torch.manual_seed(seed)
    return build_v3(**{**_yaml_keys(name), **overrides})


def _assert_finite_with_gradients(model: V3Detector, x: torch.Tensor) -> None:
    model.zero_grad(set_to_none=True)
    logits = model(x)
    assert logits.shape == (x.shape[0], x.shape[-1])
    assert torch.isfinite(logits).all()
    logits.sigmoid().mean().backward()
    for name, parameter in model.named_parameters():
        assert parameter.grad is not None, f"{name} got no gradient"
        assert torch.isfinite(parameter.grad).all(), f"{name} has a non-finite gradient"


@pytest.mark.parametrize("mode", ["dynamic", "semi"])
def test_tiny_shapes_for_both_pe_modes(mode: str) -> None:
    model = _model(pe={"mode": mode, "interval": 5})
    x = torch.randn(2, 19, SHORT)
    with torch.no_grad():
        logits = model(x)
    assert logits.shape == (2, SHORT) and logits.dtype == torch.float32
    assert model.lpe.mode == mode


def test_hydra_configs_compose_into_the_model_with_the_pe_group() -> None:
    from hydra import compose, initialize_config_dir
    from hydra.utils import instantiate

    with initialize_config_dir(config_dir=str(conf_dir()), version_base="1.3"):
        cfg = compose(config_name="model_info", overrides=["model=v3_tiny", "pe=semi"])
    model = instantiate(cfg.model)
    assert isinstance(model, V3Detector)
    assert model.config.pe == PEConfig(mode="semi", interval=5)
    assert model.config.node_dim == 8 and model.config.tcn_channels == (
        8,
        8,
        16,
        16,
        16,
        16,
        32,
        32,
    )
    # both YAML files spell out every V3Config field except the pe group
    fields = {f.name for f in dataclasses.fields(V3Config)} - {"pe"}
    assert set(_yaml_keys("v3")) == fields
    assert set(_yaml_keys("v3_tiny")) == fields
    assert build_v3(**_yaml_keys("v3")).config == V3Config()


@pytest.mark.parametrize(
    "kind", ["zeros", "constant_channels", "spikes_1e4", "noise_x100", "batch_of_1"]
)
def test_tiny_is_finite_for_extreme_inputs(kind: str) -> None:
    model = _model()
    generator = torch.Generator().manual_seed(1)
    x = torch.zeros(2, 19, SHORT)
    if kind == "constant_channels":
        x += torch.linspace(-3, 3, 19)[None, :, None]
    elif kind == "spikes_1e4":
        x[:, :, ::97] = 1e4
        x[:, :, 50::97] = -1e4
    elif kind == "noise_x100":
        x = 100 * torch.randn(2, 19, SHORT, generator=generator)
    elif kind == "batch_of_1":
        x = torch.randn(1, 19, SHORT, generator=generator)
    _assert_finite_with_gradients(model, x)


def test_full_v3_batch_of_1_every_parameter_gets_a_finite_gradient_on_spikes() -> None:
    model = _model("v3")
    x = torch.randn(1, 19, SHORT, generator=torch.Generator().manual_seed(2))
    x[:, 3, ::50] = 1e4
    _assert_finite_with_gradients(model, x)


@pytest.mark.slow
def test_full_v3_shape_on_a_60s_window() -> None:
    model = _model("v3").eval()
    with torch.no_grad():
        logits = model(torch.randn(1, 19, 15360, generator=torch.Generator().manual_seed(4)))
    assert logits.shape == (1, 15360)
    assert torch.isfinite(logits).all()


def test_tiny_full_window_shape() -> None:
    model = _model()
    with torch.no_grad():
        assert model(torch.randn(1, 19, 15360)).shape == (1, 15360)


@pytest.mark.parametrize(
    "memory_saving",
    [{"checkpointing": True}, {"mamba_recompute": True}, {"checkpointing": True, "top_k": 5}],
)
def test_memory_saving_changes_neither_outputs_nor_gradients(
    memory_saving: dict[str, object], monkeypatch: pytest.MonkeyPatch
) -> None:
    from brain_go_brr.models import mamba2

    # tiny recompute groups, so the edge and node sequences are recomputed in several groups
    monkeypatch.setattr(mamba2, "RECOMPUTE_GROUP_ELEMENTS", 3 * 64 * 16)
    x = torch.randn(2, 19, SHORT, generator=torch.Generator().manual_seed(3))
    results = []
    plain = {
        "checkpointing": False,
        "mamba_recompute": False,
        "top_k": memory_saving.get("top_k", 3),
    }
    for overrides in (plain, {**plain, **memory_saving}):
        model = _model(**overrides)
        logits = model(x)
        logits.sigmoid().mean().backward()
        results.append((logits.detach(), [p.grad for p in model.parameters()]))
    torch.testing.assert_close(results[0][0], results[1][0])
    for plain, recomputed in zip(results[0][1], results[1][1], strict=True):
        torch.testing.assert_close(plain, recomputed, atol=1e-6, rtol=1e-4)


def test_state_dict_round_trip_is_strict_and_holds_only_parameters(tmp_path: Path) -> None:
    source, target = _model(seed=0), _model(seed=1)
    x = torch.randn(1, 19, SHORT)
    with torch.no_grad():
        assert not torch.equal(source(x), target(x))
    state = source.state_dict()
    assert set(state) == {name for name, _ in source.named_parameters()}  # no stray buffers
    torch.save(state, tmp_path / "v3_tiny.pt")
    target.load_state_dict(torch.load(tmp_path / "v3_tiny.pt", weights_only=True), strict=True)
    with torch.no_grad():
        assert torch.equal(source(x), target(x))


def test_bad_inputs_and_configs_fail_with_the_fix() -> None:
    model = _model()
    with pytest.raises(ValueError, match=r"divisible by 16; got \(1, 19, 1000\)"):
        model(torch.zeros(1, 19, 1000))
    with pytest.raises(ValueError, match=r"\(batch, 19, samples\)"):
        model(torch.zeros(1, 18, 1024))
    with pytest.raises(ValueError, match=r"unknown key.*node_width"):
        build_v3(node_width=3)
    with pytest.raises(ValueError, match="decoder upsamples by 8"):
        V3Config(decoder_channels=(8, 8, 8))


def test_tcn_flops_match_the_convolution_arithmetic() -> None:
    model = _model()
    cfg = model.config
    expected, rate, width = 0, 15360, cfg.n_channels
    for out, stride in zip(cfg.tcn_channels, cfg.tcn_strides, strict=True):
        rate //= stride
        expected += 2 * width * out * cfg.tcn_kernel_size * rate  # the dilated conv
        expected += 2 * width * out * rate if width != out else 0  # the 1x1 skip conv
        width = out
    flops = stage_flops(model)
    assert flops["tcn"] == expected
    assert flops["total"] == sum(v for k, v in flops.items() if k != "total")
    assert stage_parameters(model)["lpe"] == 0


def test_flops_are_counted_on_the_plain_model_and_refused_on_an_accelerated_one() -> None:
    from brain_go_brr import accel

    auto, torch_only = _model(mamba_backend="auto"), _model(mamba_backend="torch")
    assert stage_flops(auto) == stage_flops(torch_only)  # both run the chunked scan on CPU
    with pytest.raises(ValueError, match=r"before brain_go_brr\.accel\.accelerate"):
        stage_flops(accel.accelerate(auto))
    assert stage_flops(accel.accelerate(auto, enabled=False)) == stage_flops(torch_only)


def test_model_info_command_prints_stages_and_live_parameters(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert cli_main(["model-info", "model=v3_tiny", "pe=semi"]) == 0
    out = capsys.readouterr().out
    total = sum(p.numel() for p in _model().parameters())
    assert f"live parameters: {total:,} of {total:,}" in out
    for stage in ("tcn", "node_stream", "edge_stream", "lpe", "gnn", "decoder", "total"):
        assert any(line.startswith(stage) for line in out.splitlines()), stage


def test_autocast_keeps_the_named_stages_in_float32() -> None:
    x = torch.randn(2, 19, SHORT)
    seen: dict[str, torch.dtype] = {}
    for stages in (("tcn", "decoder"), ()):
        model = _model(autocast_float32=stages).eval()
        model.tcn.register_forward_hook(lambda m, i, o: seen.__setitem__("tcn", o.dtype))
        model.node_stream.register_forward_hook(lambda m, i, o: seen.__setitem__("node", o.dtype))
        with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
            logits = model(x)
        expected = torch.float32 if stages else torch.bfloat16
        assert seen["tcn"] == expected and logits.dtype == expected
        assert seen["node"] == torch.float32  # the Mamba residual stream is float32 anyway
    with pytest.raises(ValueError, match="autocast_float32 names unknown stage"):
        V3Config(autocast_float32=("gnn",))


@pytest.mark.parametrize("stride", [1, 2, 3, 4])
@pytest.mark.parametrize("length", [4, 7, 64, 97])
def test_strided_mean_equals_avg_pool(stride: int, length: int) -> None:
    from brain_go_brr.models.tcn import StridedMean

    x = torch.randn(
        2, 5, length, generator=torch.Generator().manual_seed(length), requires_grad=True
    )
    got = StridedMean(stride)(x)
    expected = torch.nn.AvgPool1d(stride)(x)
    assert torch.equal(got, expected)
    (grad_got,) = torch.autograd.grad(got.sum(), x)
    (grad_expected,) = torch.autograd.grad(expected.sum(), x)
    assert torch.equal(grad_got, grad_expected)


@pytest.mark.parametrize("fast", [True, False], ids=["accelerated", "plain"])
def test_a_checkpoint_written_before_mamba2config_still_loads(fast: bool) -> None:
    """``tests/fixtures/checkpoints``: a v3_tiny training checkpoint (two steps of
    ``train()``) saved by the code before the Mamba2 settings became one ``Mamba2Config``
    and the CPU kernels moved to ``brain_go_brr.accel``, with the probabilities that code
    gave on a seeded input. It loads strictly, and gives them again."""
    import numpy as np

    from brain_go_brr import accel
    from brain_go_brr.inference import load_checkpoint

    fixtures = Path(__file__).parent / "fixtures" / "checkpoints"
    loaded = load_checkpoint(fixtures / "v3_tiny_before_mamba2config.ckpt", accelerate=fast)
    assert (accel.applied(loaded.detector) != []) == fast
    assert loaded.model_config["mamba_backend"] == "auto" and loaded.notes == []
    x = torch.randn(2, 19, 4096, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        probs = torch.sigmoid(loaded.detector(x)).numpy()
    expected = np.load(fixtures / "v3_tiny_before_mamba2config_probs.npy")
    assert np.abs(probs - expected).max() < 1e-5
